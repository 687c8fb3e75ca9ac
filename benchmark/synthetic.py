"""Results with known effects, for checking the statistics and timing the report.

Each article has a true sentiment; each model answers it with ``true + shift + noise`` (noise
standard deviation ``sd``), clipped to [-1, 1], over several iterations. A share of calls can be
made invalid. ``write_db`` stores the calls in a real results database through the store's schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.store import Store
from benchmark.tasks.base import Item


@dataclass
class SynthModel:
    name: str
    shift: float = 0.0
    sd: float = 0.1
    family: str = "fam"
    quant: str = "Q4_K_M"
    invalid_rate: float = 0.0
    seconds: float = 1.0


def calls_frame(models: list[SynthModel], n_articles: int, n_iterations: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-0.7, 0.7, n_articles)
    art_ids = np.array([f"art{i:05d}" for i in range(n_articles)])
    frames = []
    for m in models:
        n = n_articles * n_iterations
        art_idx = np.tile(np.arange(n_articles), n_iterations)
        it = np.repeat(np.arange(n_iterations), n_articles)
        sent = np.clip(truth[art_idx] + m.shift + rng.normal(0, m.sd, n), -1, 1)
        valid = rng.random(n) >= m.invalid_rate
        wall = m.seconds * rng.lognormal(0, 0.1, n)
        frames.append(pd.DataFrame({
            "model": m.name, "family": m.family, "quant": m.quant, "backend": "llamacpp",
            "prompt_style": "few_shot", "iteration": it, "item_id": art_ids[art_idx], "valid": valid,
            "value": np.where(valid, np.round(sent, 2), np.nan),
            "confidence": np.where(valid, np.round(rng.uniform(0.5, 1.0, n), 2), np.nan),
            "finish_reason": "stop", "prompt_tokens": 700, "cached_tokens": 650, "completion_tokens": 60,
            "prompt_seconds": 0.1 * wall, "gen_seconds": 0.85 * wall, "wall_seconds": wall,
        }))
    df = pd.concat(frames, ignore_index=True)
    df.attrs["truth"] = dict(zip(art_ids, truth))
    return df


SENTIMENT_TASK = {"name": "sentiment", "kind": "value", "item_noun": "article", "value_name": "sentiment",
                  "labels": [], "variants": [None]}


def write_db(path: str | Path, models: list[SynthModel], n_articles: int, n_iterations: int, seed: int = 0,
             run_id: str = "synthetic", pairs: list[tuple[str, str]] | None = None) -> str:
    df = calls_frame(models, n_articles, n_iterations, seed)
    truth = df.attrs["truth"]
    items = [Item(id=a, text="synthetic", value=round(float(t), 2),
                  fields={"ticker": f"T{i % 50:02d}", "company": f"Company {i % 50}", "title": f"Synthetic article {i}",
                          "url": f"synthetic://{a}"})
             for i, (a, t) in enumerate(truth.items())]
    with Store(path) as store:
        store.create_run(run_id, task="sentiment", seed=seed, iterations=n_iterations, config_path=None,
                         config_text="# synthetic", settings={"compare": [list(p) for p in (pairs or [])]},
                         versions={}, hardware={}, items=items, task_info=SENTIMENT_TASK)
        df = df.assign(run_id=run_id, position=0, seed=0, raw_text="{}", error=None, variant=None,
                       created_at="2026-01-01T00:00:00Z")
        df["valid"] = df["valid"].astype(int)
        store.add_calls(df.astype(object).where(df.notna(), None).to_dict("records"))
        for m in models:
            store.add_model_load(run_id, m.name, "llamacpp", 0.5, 0.2, 700, {})
    return run_id
