"""`shootout finetune-demo` (`make finetune-demo`): the whole chain on CPU, offline.

1. Split the news snapshot: every third article is held out for the benchmark; the rest become
   training records (the snapshot's hand labels, the headline as the reasoning).
2. Fine-tune Gemma 3 270M, loaded from the embedded GGUF through transformers, with LoRA for a
   few dozen steps (transformers + PEFT + TRL on CPU; Unsloth where CUDA is present).
3. Export the merged model to F16 / Q8_0 / Q4_K_M with the checks.
4. Benchmark base (few-shot) against fine-tune (zero-shot, the prompt it was trained on) at Q8_0
   and Q4_K_M on the held-out articles; report and heatmaps.

Each step keeps its output, so a re-run continues where an interrupted one stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.tasks.sentiment.news import default_snapshot_path, load_snapshot

FT_NAME = "gemma3-270m-ft"
BASE = "gemma3-270m"
LEVELS = ("Q8_0", "Q4_K_M")

CONFIG = """\
# Written by `shootout finetune-demo`: the embedded Gemma 3 270M (few-shot) against its LoRA
# fine-tune (zero-shot, the prompt it was trained on) at two quant levels, on held-out articles.
task: sentiment
news:
  source: snapshot
  snapshot: holdout_snapshot.json   # articles the fine-tune never saw
run:
  iterations: {iterations}
  temperature: 0.7
  num_ctx: 2048
  num_predict: 256
  seed: 1234
  structured_output: true
  database: results.sqlite
models:
{models}compare:
{pairs}"""


def split_snapshot(out_dir: Path) -> tuple[Path, list]:
    """(held-out snapshot file, training articles)."""
    data = json.loads(default_snapshot_path().read_text(encoding="utf-8"))
    items = data["items"]
    articles = load_snapshot()
    hold = [i for i in range(len(items)) if i % 3 == 2]
    holdout = out_dir / "holdout_snapshot.json"
    holdout.write_text(json.dumps({**data, "about": data.get("about", "") + " (held-out third, finetune-demo)",
                                   "items": [items[i] for i in hold]}, indent=1), encoding="utf-8")
    return holdout, [a for i, a in enumerate(articles) if i not in set(hold)]


def training_set(out_dir: Path, articles) -> Path:
    from finetune import data

    records = [data.sentiment_record(f"snapshot-{a.id}", a.text, a.title[:200], float(a.expected_sentiment), 0.9,
                                     "news_snapshot", a.company)
               for a in articles if a.expected_sentiment is not None]
    raw = out_dir / "data" / "snapshot_records.jsonl"
    data.write_records(records, raw)
    joined = out_dir / "data" / "train.jsonl"
    data.join([raw], joined)
    sharegpt = out_dir / "data" / "train.sharegpt.jsonl"
    data.export(joined, sharegpt, "sharegpt")
    return sharegpt


def write_config(out_dir: Path, base_ladder: dict[str, Path], ft_ladder: dict[str, Path], iterations: int) -> Path:
    models, pairs = "", ""
    for q in LEVELS:
        b = f"{BASE}-{q.lower()}"
        f = f"{FT_NAME}-{q.lower()}"
        models += (f"  - name: {b}\n    backend: llamacpp\n    path: {base_ladder[q].relative_to(out_dir).as_posix()}\n"
                   f"    family: {BASE}\n    quant: {q}\n    prompt_style: few_shot\n"
                   f"    options: {{chat_template: gemma}}\n")
        models += (f"  - name: {f}\n    backend: llamacpp\n    path: {ft_ladder[q].relative_to(out_dir).as_posix()}\n"
                   f"    family: {FT_NAME}\n    quant: {q}\n    prompt_style: zero_shot\n")
        pairs += f"  - [{b}, {f}]\n"
    path = out_dir / "config.yaml"
    path.write_text(CONFIG.format(iterations=iterations, models=models, pairs=pairs), encoding="utf-8")
    return path


def prepare(out_dir: Path, steps: int, iterations: int, console) -> Path:
    from export.pipeline import ExportOptions, print_summary, run_export
    from export.quantize import build_ladder
    from finetune.train import FinetuneOptions, finetune
    from shootout.demo import embedded_source

    out_dir.mkdir(parents=True, exist_ok=True)
    src = embedded_source(out_dir / "models")
    holdout, train_articles = split_snapshot(out_dir)
    dataset = training_set(out_dir, train_articles)
    console.print(f"training set: {len(train_articles)} snapshot articles -> {dataset}; held out: {holdout}")
    ft_dir = out_dir / "finetune"
    report = ft_dir / "training_report.json"
    if report.is_file() and (ft_dir / "merged" / "config.json").is_file():
        rep = json.loads(report.read_text())
        console.print(f"fine-tune kept (already trained: {rep['global_steps']} steps)")
    else:
        rep = finetune(FinetuneOptions(base=str(src), dataset=str(dataset), out=str(ft_dir), lora_r=8, lora_alpha=16,
                                       max_steps=steps, learning_rate=5e-4, batch_size=2, max_seq_len=512,
                                       eval_fraction=0.2, eval_steps=max(5, steps // 3), seed=42), console=console)
    console.print(f"fine-tune: {rep['global_steps']} steps, {rep['seconds_per_step']} s/step; eval loss "
                  f"{rep.get('initial_eval_loss') or float('nan'):.4f} -> {rep.get('final_eval_loss') or float('nan'):.4f}")
    res = run_export(ft_dir / "merged", ExportOptions(name=FT_NAME, out=out_dir / "ft-gguf", quants=LEVELS,
                                                      kld_prompts=4), console=console)
    print_summary(console, res)
    ft_ladder = {q: res.out / res.manifest["files"][q]["file"] for q in LEVELS}
    base_ladder = build_ladder(src, out_dir / "models", BASE, LEVELS)
    return write_config(out_dir, base_ladder, ft_ladder, iterations)
