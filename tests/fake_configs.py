"""Configs for runs on the scripted fake backend (``backend: fake``): in process, no model, seconds."""

from __future__ import annotations

import csv
from pathlib import Path

LABELS = ("negative", "positive")


def sentiment_config(tmp_path: Path, *, models: str | None = None, iterations: int = 2, articles: int = 3,
                     run_extra: str = "", extra: str = "") -> Path:
    """The built-in sentiment task over the shipped snapshot; ``models`` is the YAML of the models list."""
    models = models or ("  - {name: a, backend: fake, family: fam, quant: Q4_K_M}\n"
                        "  - {name: b, backend: fake, family: fam, quant: Q8_0, prompt_style: zero_shot}\n")
    text = (f"task: sentiment\nnews:\n  source: snapshot\n  max_articles: {articles}\n"
            f"run:\n  iterations: {iterations}\n  seed: 7\n  database: results.sqlite\n{run_extra}"
            f"models:\n{models}{extra}")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def classify_config(tmp_path: Path, *, models: str, n_items: int = 12, iterations: int = 2, decoding: str = "generate",
                    answer: str = "json", run_extra: str = "", extra: str = "") -> Path:
    """A binary classification task over a CSV of ``n_items`` test items (and a few training ones)."""
    rows = [{"id": f"t{i:02d}", "text": f"test sentence number {i} about the film", "label": LABELS[i % 2],
             "split": "test"} for i in range(n_items)]
    rows += [{"id": f"r{i}", "text": f"training sentence {i}", "label": LABELS[i % 2], "split": "train"}
             for i in range(4)]
    data = tmp_path / "items.csv"
    with data.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    text = (f"task:\n  name: films\n  kind: classify\n  labels: [{', '.join(LABELS)}]\n  positive: positive\n"
            f"  data: {{path: items.csv, format: csv, id: id, split: split, evaluate: test}}\n"
            f"  few_shot: {{k: 1, seed: 0}}\n  answer: {answer}\n  decoding: {decoding}\n"
            f"run:\n  iterations: {iterations}\n  seed: 7\n  database: results.sqlite\n{run_extra}"
            f"models:\n{models}{extra}")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path
