"""Time per training step of `shootout finetune` with Unsloth against transformers + PEFT + TRL,
on the same GPU, model, data and settings (run on a CUDA machine with Unsloth installed).

    python benchmarks/finetune_gpu.py TOKENIZER_DIR OUT_DIR [--hidden 1024 --layers 8 --steps 30]

It builds a Llama-architecture model with random weights from the tokenizer folder (no hub
access needed), writes a synthetic ShareGPT set, fine-tunes it once per engine in a subprocess,
and prints seconds per step for each and their ratio: the median step time after the first 5
steps (which include kernel compilation and warm-up), and the mean over all steps (eval steps
included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_model(tok_dir: Path, out: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=int(hidden * 2.75),
                      num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 256,
                      max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer")
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--engines", default="unsloth,transformers")
    ap.add_argument("--context-chars", type=int, default=0,
                    help="prepend this many characters of snapshot news to each text (longer sequences)")
    ap.add_argument("--max-seq-len", type=int, default=512)
    a = ap.parse_args()
    from finetune.data import synthetic_sharegpt

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(Path(a.tokenizer), out / "base", a.hidden, a.layers)
    data = out / "train.sharegpt.jsonl"
    rows = synthetic_sharegpt(512)
    if a.context_chars:
        from benchmark.tasks.sentiment.news import load_snapshot

        news = " ".join(x.text for x in load_snapshot())
        for i, r in enumerate(rows):
            start = (i * 997) % max(1, len(news) - a.context_chars)
            r["conversations"][1]["value"] = news[start:start + a.context_chars] + "\n\n" + r["conversations"][1]["value"]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {}
    for engine in a.engines.split(","):
        run_dir = out / f"ft-{engine}"
        cmd = [sys.executable, "-m", "shootout.cli", "finetune", str(model), str(data), "--out", str(run_dir),
               "--engine", engine, "--max-steps", str(a.steps), "--batch-size", str(a.batch), "--lr", "1e-3",
               "--eval-fraction", "0.05", "--eval-steps", str(a.steps), "--max-seq-len", str(a.max_seq_len)]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        (out / f"{engine}.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            results[engine] = {"error": (r.stderr or r.stdout)[-2000:]}
            print(f"{engine}: FAILED\n{results[engine]['error']}")
            continue
        rep = json.loads((run_dir / "training_report.json").read_text())
        results[engine] = {"median_step_s": rep["median_step_seconds_after_5"],
                           "seconds_per_step": rep["seconds_per_step"], "train_seconds": rep["train_seconds"],
                           "steps": rep["global_steps"], "first_loss": rep["train_loss_per_step"][0]["loss"],
                           "last_loss": rep["train_loss_per_step"][-1]["loss"],
                           "final_eval_loss": rep["final_eval_loss"], "versions": rep["versions"]}
        print(engine, json.dumps(results[engine]))
    if all("median_step_s" in results.get(e, {}) for e in ("unsloth", "transformers")):
        ratio = results["transformers"]["median_step_s"] / results["unsloth"]["median_step_s"]
        results["transformers_over_unsloth"] = round(ratio, 2)
        print(f"median seconds per step: unsloth {results['unsloth']['median_step_s']}, transformers "
              f"{results['transformers']['median_step_s']} -> ratio {ratio:.2f}")
    (out / "finetune_gpu.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
