"""Runs of a real config written to a real results database without a model: the config's task loads
its items, the runner's own records give each arm's facts, and a script says what each arm replies to
each item in each iteration; every reply goes through the task's parser, as in a run. For report tests
that need a known outcome (which model is better, which replies are invalid) in seconds."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from benchmark.config import load_config
from benchmark.run.records import arm_facts
from benchmark.store import Store
from benchmark.tasks import task_for
from benchmark.tasks.base import Item, TaskInfo


def store_run(config: Path, db: Path, reply: Callable[[str, Item, int], str], *, run_id: str = "scripted",
              iterations: int = 3, seconds: Callable[[str], float] = lambda arm: 1.0,
              max_items: int | None = None) -> tuple:
    """Store one run of ``config`` in ``db``: ``reply(arm, item, iteration)`` is the reply text,
    ``seconds(arm)`` the wall time of each of its calls. Returns (config, task, items)."""
    cfg = load_config(config, check_files=False)
    task = task_for(cfg)
    items = task.load_items(cfg)[:max_items]
    arms = cfg.arms(task.variants)
    with Store(db) as store:
        store.create_run(run_id, task=task.name, seed=cfg.run.seed, iterations=iterations,
                         config_path=str(config), config_text=cfg.text, settings=json.loads(cfg.model_dump_json()),
                         versions={}, hardware={}, items=items, task_info=asdict(TaskInfo.of(task)))
        store.add_arms([arm_facts(cfg, a, run_id) for a in arms])
        rows = []
        for arm in arms:
            for it in range(iterations):
                for pos, item in enumerate(items):
                    text = reply(arm.name, item, it)
                    a = task.parse(text)
                    wall = seconds(arm.name)
                    rows.append({"run_id": run_id, "model": arm.name, "family": arm.entry.family,
                                 "quant": arm.entry.quant, "backend": arm.entry.backend,
                                 "prompt_style": arm.entry.prompt_style, "variant": arm.variant, "iteration": it,
                                 "item_id": item.id, "position": pos, "seed": it, "raw_text": text,
                                 "valid": int(a.valid), "error": a.error, "answer_json": a.fields_json(),
                                 "label": a.label, "value": a.value, "confidence": a.confidence,
                                 "finish_reason": "stop", "prompt_tokens": 300, "cached_tokens": 250,
                                 "completion_tokens": 6, "prompt_seconds": 0.2 * wall, "gen_seconds": 0.7 * wall,
                                 "wall_seconds": wall})
            store.add_model_load(run_id, arm.name, arm.entry.backend, 0.5, 0.1, 300, {})
        store.add_calls(rows)
    return cfg, task, items
