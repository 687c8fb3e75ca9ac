"""Results with known effects, for checking the statistics and timing the report.

Each item has a true value (its label, uniform in [-0.7, 0.7]). Model m answers item i in iteration r with

    clip(round(signal * label_i + b_i + shift_m + u_mi + s_i * sd_m * e_mir, step), -1, 1)

- signal: how much of the label the models see (1: answers centre on the label; the demo's Gemma 3
  270M barely sees it);
- b_i ~ N(0, bias_sd): how every model misreads item i (shared: the models agree with each other
  more than with the label);
- u_mi ~ N(0, item_sd_m): model m's own reading of item i (model x item variation: what makes an
  unpaired or call-level test overconfident);
- s_i = exp(N(0, het)): some items are harder to answer consistently than others (for every model);
- e_mir ~ N(0, 1), correlated across models by ``crn`` within one (item, iteration): the runner gives
  every model the same sampling seed for an (item, iteration);
- a share ``invalid_rate`` of calls is invalid (no value).
The defaults (signal 1, bias_sd = item_sd = het = crn = 0, step 0.01) give the plain model: true + shift + noise.
``DEMO_SHAPE`` and ``INTERACTION_SHAPE`` are the shapes the tests simulate. ``simulate`` draws many
independent runs at once as arrays (for the false-positive and power simulations); ``calls_frame``
draws one run as a calls table; ``write_db`` stores it in a real results database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.backends import DEFAULT_BACKEND as BACKEND  # what the synthetic rows say ran them

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
    item_sd: float = 0.0        # model x item variation (its own reading of each item)


# The demo's shape: the variance components of a demo run (24 articles x 3 iterations of Gemma 3 270M
# F16/Q8_0/Q5_K_M/Q4_K_M on the news snapshot, run 20261130-220341-704e): answers barely follow the
# labels (correlation of article means with the labels -0.05..0.14), article means spread 0.34-0.42,
# within-article sd 0.46-0.64, per-article differences between rungs sd 0.44-0.54 of which 27-40%
# between articles (model x article), same-seed correlation 0.00-0.11, answers in steps of 0.05,
# 10% at +-1.
DEMO_SHAPE = dict(signal=0.1, bias_sd=0.3, item_sd=0.2, sd=0.5, het=0.3, crn=0.05, step=0.05)
# Model x item variation dominates: each model reads each item its own way, little noise per call.
INTERACTION_SHAPE = dict(signal=1.0, bias_sd=0.2, item_sd=0.45, sd=0.1, het=0.3, crn=0.0, step=0.05)


def simulate(runs: int, n_models: int, n_items: int, n_iterations: int, seed: int = 0, *, shift=0.0, sd=0.1,
             item_sd=0.0, signal: float = 1.0, bias_sd: float = 0.0, het: float = 0.0, crn: float = 0.0,
             step: float = 0.01, invalid_rate=0.0, low: float = -1.0, high: float = 1.0) -> dict[str, np.ndarray]:
    """``runs`` independent studies as arrays: value (runs, models, items, iterations) with NaN for
    invalid calls, target (runs, items). ``shift``, ``sd``, ``item_sd`` and ``invalid_rate`` may be
    given per model (sequences of length n_models)."""
    rng = np.random.default_rng(seed)
    per_model = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n_models,))[None, :, None, None]  # noqa: E731
    shape = (runs, n_models, n_items, n_iterations)
    truth = rng.uniform(-0.7, 0.7, (runs, 1, n_items, 1))
    y = signal * truth + per_model(shift)
    if bias_sd:
        y = y + rng.normal(0, bias_sd, (runs, 1, n_items, 1))
    if np.any(np.asarray(item_sd) > 0):
        y = y + rng.normal(0, 1, (runs, n_models, n_items, 1)) * per_model(item_sd)
    s = np.exp(rng.normal(0, het, (runs, 1, n_items, 1))) if het else 1.0
    e = rng.normal(0, 1, shape)
    if crn:
        e = np.sqrt(1 - crn) * e + np.sqrt(crn) * rng.normal(0, 1, (runs, 1, n_items, n_iterations))
    y = y + s * per_model(sd) * e
    y = np.clip(np.round(y / step) * step, low, high)
    invalid = rng.random(shape) < per_model(invalid_rate)
    return {"value": np.where(invalid, np.nan, y), "target": np.round(truth[:, 0, :, 0], 2)}


def calls_frame(models: list[SynthModel], n_articles: int, n_iterations: int, seed: int = 0, *,
                signal: float = 1.0, bias_sd: float = 0.0, het: float = 0.0, crn: float = 0.0, step: float = 0.01,
                low: float = -1.0, high: float = 1.0) -> pd.DataFrame:
    """One run as a calls table (``simulate`` with runs=1); ``attrs["truth"]`` maps items to labels."""
    sim = simulate(1, len(models), n_articles, n_iterations, seed, shift=[m.shift for m in models],
                   sd=[m.sd for m in models], item_sd=[m.item_sd for m in models], signal=signal, bias_sd=bias_sd,
                   het=het, crn=crn,
                   step=step, invalid_rate=[m.invalid_rate for m in models], low=low, high=high)
    rng = np.random.default_rng([seed, 1])
    art_ids = np.array([f"art{i:05d}" for i in range(n_articles)])
    frames = []
    for k, m in enumerate(models):
        v = sim["value"][0, k]                                 # (items, iterations)
        art_idx = np.tile(np.arange(n_articles), n_iterations)  # iteration-major, as the runner stores them
        it = np.repeat(np.arange(n_iterations), n_articles)
        val = v[art_idx, it]
        n = len(val)
        valid = ~np.isnan(val)
        wall = m.seconds * rng.lognormal(0, 0.1, n)
        frames.append(pd.DataFrame({
            "model": m.name, "family": m.family, "quant": m.quant, "backend": BACKEND,
            "prompt_style": "few_shot", "iteration": it, "item_id": art_ids[art_idx], "valid": valid,
            "value": np.round(val, 2),
            "confidence": np.where(valid, np.round(rng.uniform(0.5, 1.0, n), 2), np.nan),
            "finish_reason": "stop", "prompt_tokens": 700, "cached_tokens": 650, "completion_tokens": 60,
            "prompt_seconds": 0.1 * wall, "gen_seconds": 0.85 * wall, "wall_seconds": wall,
        }))
    df = pd.concat(frames, ignore_index=True)
    df.attrs["truth"] = dict(zip(art_ids, sim["target"][0]))
    return df


SENTIMENT_TASK = {"name": "sentiment", "kind": "value", "item_noun": "article", "value_name": "sentiment",
                  "labels": [], "variants": [None]}


def write_db(path: str | Path, models: list[SynthModel], n_articles: int, n_iterations: int, seed: int = 0,
             run_id: str = "synthetic", pairs: list[tuple[str, str]] | None = None, report: dict | None = None,
             **shape) -> str:
    """Store one synthetic run (``calls_frame``; ``shape``: signal, bias_sd, het, crn, step, low, high) with its items and
    settings (compare pairs, the ``report`` block) in a results database."""
    df = calls_frame(models, n_articles, n_iterations, seed, **shape)
    truth = df.attrs["truth"]
    items = [Item(id=a, text="synthetic", value=float(t),
                  fields={"ticker": f"T{i % 50:02d}", "company": f"Company {i % 50}", "title": f"Synthetic article {i}",
                          "url": f"synthetic://{a}"})
             for i, (a, t) in enumerate(truth.items())]
    settings = {"compare": [list(p) for p in (pairs or [])]}
    if report is not None:
        settings["report"] = report
    with Store(path) as store:
        store.create_run(run_id, task="sentiment", seed=seed, iterations=n_iterations, config_path=None,
                         config_text="# synthetic", settings=settings,
                         versions={}, hardware={}, items=items, task_info=SENTIMENT_TASK)
        df = df.assign(run_id=run_id, position=0, seed=0, raw_text="{}", error=None, variant=None,
                       created_at="2026-01-01T00:00:00Z")
        df["valid"] = df["valid"].astype(int)
        store.add_calls(df.astype(object).where(df.notna(), None).to_dict("records"))
        for m in models:
            store.add_model_load(run_id, m.name, BACKEND, 0.5, 0.2, 700, {})
    return run_id


def write_label_db(path: str | Path, models, n_items: int, n_iterations: int, labels: list[str], priors=None,
                   seed: int = 0, run_id: str = "synthetic", pairs: list[tuple[str, str]] | None = None,
                   positive: str | None = None, betas=(), report: dict | None = None, difficulty_sd: float = 1.0,
                   split: str | None = "test") -> str:
    """Store a classification run from ``benchmark.stats.label_synth.synthetic_calls`` (``models``:
    SynthLabelModel) in a results database, items with their gold labels."""
    from benchmark.stats.label_synth import synthetic_calls

    calls, items = synthetic_calls(models, n_items, n_iterations, labels, priors=priors, seed=seed,
                                   difficulty_sd=difficulty_sd)
    task = {"name": "synth", "kind": "label", "item_noun": "text", "labels": list(labels), "positive": positive,
            "betas": list(betas), "variants": [None]}
    settings = {"compare": [list(p) for p in (pairs or [])]}
    if report is not None:
        settings["report"] = report
    with Store(path) as store:
        store.create_run(run_id, task="synth", seed=seed, iterations=n_iterations, config_path=None,
                         config_text="# synthetic", settings=settings, versions={}, hardware={}, task_info=task,
                         items=[Item(id=r.item_id, text="t", label=r.target_label, split=split)
                                for r in items.itertuples()])
        rows = calls.assign(run_id=run_id, valid=calls["valid"].astype(int), prompt_style="few_shot",
                            backend=BACKEND, position=0, seed=0, finish_reason="stop", created_at="2026-01-01T00:00:00Z")
        store.add_calls(rows.astype(object).where(rows.notna(), None).to_dict("records"))
        for m in models:
            store.add_model_load(run_id, m.name, BACKEND, 0.5, 0.2, 700, {})
    return run_id
