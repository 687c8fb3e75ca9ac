"""Seconds per training step and peak GPU memory of LoRA fine-tuning with Unsloth against
transformers + PEFT + TRL, on the same GPU, model, data and settings (a CUDA machine with Unsloth).

    python benchmarks/finetune_gpu.py TOKENIZER_DIR OUT_DIR [--hidden 1024 --layers 8 --steps 30]
    python benchmarks/finetune_gpu.py --model HF_DIR OUT_DIR --load-in-4bit --max-seq-len 1024 \
        --context-chars 2400 --batch 4 --steps 20

The first form builds a Llama-architecture model with random weights from the tokenizer folder;
the second takes a model folder as it is (e.g. the Llama-3-8B-shaped one from
build_random_llama.py). Each engine trains in its own process on a synthetic ShareGPT set
(``--context-chars`` of snapshot news before each text makes the sequences long), through the
project's own loading and trainer set-up (finetune/train.py) but without the merge and save that
``shootout finetune`` does after training. It prints, per engine: the median step time after the
first 5 steps (which include compilation and warm-up), the mean, the peak GPU memory allocated and
reserved during training, the load time, the tokens per step, and the ratio of the two engines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


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


def write_data(path: Path, context_chars: int) -> None:
    from finetune.data import synthetic_sharegpt

    rows = synthetic_sharegpt(512)
    if context_chars:
        from benchmark.tasks.sentiment.news import load_snapshot

        news = " ".join(x.text for x in load_snapshot())
        for i, r in enumerate(rows):
            start = (i * 997) % max(1, len(news) - context_chars)
            r["conversations"][1]["value"] = news[start:start + context_chars] + "\n\n" + r["conversations"][1]["value"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def worker(a) -> dict:
    """One engine's training run, in this process: load, LoRA, train; timings and peak memory."""
    import torch
    from rich.console import Console

    from finetune.data import load_conversations
    from finetune.train import (FinetuneOptions, _trainer, ensure_chat_template, ensure_pad, load_base, pick_engine,
                                set_seeds, split, tokenize_conversations)

    out = Path(a.out) / f"ft-{a.worker}"
    out.mkdir(parents=True, exist_ok=True)
    opts = FinetuneOptions(base=a.model, dataset=str(Path(a.out) / "train.sharegpt.jsonl"), out=str(out),
                           max_steps=a.steps, batch_size=a.batch, max_seq_len=a.max_seq_len, learning_rate=1e-4,
                           eval_fraction=0.0, engine=a.worker, load_in_4bit=a.load_in_4bit)
    engine = pick_engine(opts.engine)
    set_seeds(opts.seed)
    console = Console(stderr=True)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model, tok, arch, how = load_base(opts.base, opts, engine)
    load_s = time.perf_counter() - t0
    load_peak = torch.cuda.max_memory_allocated()
    ensure_chat_template(tok, arch, None)
    ensure_pad(tok, model)
    examples, counts = tokenize_conversations(tok, load_conversations(opts.dataset), opts.max_seq_len)
    train_ex, _ = split(examples, 0.0, opts.seed)
    lengths = [len(e["input_ids"]) for e in train_ex]
    log: list[dict] = []
    trainer, model = _trainer(model, tok, train_ex, [], opts, engine, out, log, console)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    result = trainer.train()
    torch.cuda.synchronize()
    train_s = time.perf_counter() - t1
    ticks = [e["t"] for e in log if "t" in e]
    steps = [b - c for c, b in zip(ticks, ticks[1:])]
    losses = [e["loss"] for e in log if "loss" in e]
    return {"engine": engine, "loaded_with": how, "load_seconds": round(load_s, 1),
            "load_peak_gib": round(load_peak / 2**30, 2),
            "train_seconds": round(train_s, 1), "steps": result.global_step,
            "median_step_s": round(statistics.median(steps[5:]), 4) if len(steps) > 6 else None,
            "step_s_range_after_5": [round(min(steps[5:]), 4), round(max(steps[5:]), 4)] if len(steps) > 6 else None,
            "mean_step_s": round(train_s / max(1, result.global_step), 4),
            "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
            "sequence_tokens": {"median": statistics.median(lengths), "max": max(lengths)},
            "tokens_per_step": round(statistics.mean(lengths) * a.batch),
            "dropped_too_long": counts.get("dropped_too_long"), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "gpu": torch.cuda.get_device_name(),
            "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "peft", "trl")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer", nargs="?", help="a tokenizer folder to build a model from (first form)")
    ap.add_argument("out")
    ap.add_argument("--model", default=None, help="a Hugging Face model folder to fine-tune as it is")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--engines", default="unsloth,transformers")
    ap.add_argument("--load-in-4bit", action="store_true", help="QLoRA: NF4 base weights for both engines")
    ap.add_argument("--context-chars", type=int, default=0,
                    help="prepend this many characters of snapshot news to each text (longer sequences)")
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    out = Path(a.out)
    if a.worker:
        res = worker(a)
        (out / f"{a.worker}.json").write_text(json.dumps(res, indent=2))
        return
    out.mkdir(parents=True, exist_ok=True)
    if a.model is None:
        if not a.tokenizer:
            ap.error("give a tokenizer folder or --model")
        a.model = str(build_model(Path(a.tokenizer), out / "base", a.hidden, a.layers))
    write_data(out / "train.sharegpt.jsonl", a.context_chars)
    results = {}
    for engine in a.engines.split(","):
        cmd = [sys.executable, str(Path(__file__).resolve()), str(out), "--model", a.model, "--worker", engine,
               "--steps", str(a.steps), "--batch", str(a.batch), "--max-seq-len", str(a.max_seq_len)]
        if a.load_in_4bit:
            cmd.append("--load-in-4bit")
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        (out / f"{engine}.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            results[engine] = {"error": (r.stderr or r.stdout)[-3000:]}
            print(f"{engine}: FAILED\n{results[engine]['error']}", flush=True)
            continue
        results[engine] = json.loads((out / f"{engine}.json").read_text())
        print(engine, json.dumps(results[engine]), flush=True)
    if all(results.get(e, {}).get("median_step_s") for e in ("unsloth", "transformers")):
        u, t = results["unsloth"], results["transformers"]
        results["transformers_over_unsloth_step_time"] = round(t["median_step_s"] / u["median_step_s"], 2)
        results["unsloth_over_transformers_peak_memory"] = round(u["peak_allocated_gib"] / t["peak_allocated_gib"], 2)
        print(f"median s/step: unsloth {u['median_step_s']}, transformers {t['median_step_s']} "
              f"(transformers / unsloth {results['transformers_over_unsloth_step_time']}); peak GiB allocated: "
              f"unsloth {u['peak_allocated_gib']}, transformers {t['peak_allocated_gib']}")
    (out / "finetune_gpu.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
