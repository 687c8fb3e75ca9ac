"""What a report (and the planner) reads of a run: its frames, its stored task and ``report``
settings, its compare pairs, the facts of its models, and the references resolved once from them."""

from __future__ import annotations

import json

import pandas as pd

from benchmark.report.model import RunData
from benchmark.report.references import resolve
from benchmark.report.settings import Settings, stored_pairs, stored_settings
from benchmark.stats import common
from benchmark.tasks.base import TaskInfo
from core.errors import ShootoutError


def models_frame(calls: pd.DataFrame) -> pd.DataFrame:
    """One row per model in report order: model, family, quant (and variant)."""
    order = common.model_order(calls)
    cols = ["model", "family", "quant"] + (["variant"] if "variant" in calls else [])
    return calls.drop_duplicates("model").set_index("model").loc[order].reset_index()[cols]


def stored_facts(store, run_id: str) -> tuple[dict[str, float], dict[str, float]]:
    """(model -> file size in MB, model -> checkpoint) as the run stored them (``Store.arm_facts``): the
    same wherever the report runs, whether or not the model files are still there."""
    facts = store.arm_facts(run_id)
    sizes = {m: round(float(b) / 1e6, 1) for m, b in zip(facts["model"], facts["model_bytes"]) if b == b and b > 0}
    checkpoints = {m: float(c) for m, c in zip(facts["model"], facts["checkpoint"]) if c == c}
    return sizes, checkpoints


def read_run(store, run_id: str, pairs: list[tuple[str, str]] | None = None, settings: dict | None = None,
             frames: tuple | None = None) -> tuple:
    """(the run row, its RunData with the references resolved) for the builders and the planner. ``pairs``
    default to the run's stored compare pairs, the settings to its stored ``report`` block with
    ``settings`` overriding; ``frames``: the run's (calls, items, loads) when already read. Everything
    comes from the results database."""
    calls, items, loads = frames or store.frames(run_id)
    if calls.empty:
        raise ShootoutError(f"run {run_id} has no stored calls", "run `shootout run` first")
    run = store.run(run_id)
    task = TaskInfo.stored(json.loads(run["task_json"] or "{}"), run["task"])
    cfg = Settings.of(stored_settings(run), settings).for_task(task.scorer().metrics, task.value_range)
    known = set(calls["model"])
    pairs = stored_pairs(run) if pairs is None else pairs
    pairs = [tuple(p) for p in pairs if p[0] in known and p[1] in known]
    refs = resolve(models_frame(calls), cfg.reference, pairs)
    sizes, checkpoints = stored_facts(store, run_id)
    return run, RunData(run_id, task, cfg, calls, items, loads, refs, {k: v for k, v in sizes.items() if k in known},
                        {k: v for k, v in checkpoints.items() if k in known})


