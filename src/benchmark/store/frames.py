"""A run as the DataFrames the statistics read, built from the row declarations: the calls (the
``frame`` fields of ``CallRow``, in the order one box asks them, ``valid`` as bool), the items (an item's fields
such as ticker or title become columns) and the model loads."""

from __future__ import annotations

import json
import sqlite3
from typing import NamedTuple

import pandas as pd

from benchmark.store.rows import CallRow, ItemRow, LoadRow, columns, frame_names


class Frames(NamedTuple):
    calls: pd.DataFrame
    items: pd.DataFrame
    loads: pd.DataFrame


def _select(db: sqlite3.Connection, table: str, cols, run_id: str, order: str) -> pd.DataFrame:
    return pd.read_sql_query(f"SELECT {', '.join(cols)} FROM {table} WHERE run_id=? ORDER BY {order}", db,
                             params=(run_id,))


def _in_run_order(calls: pd.DataFrame, run) -> pd.DataFrame:
    """The calls in the order one box asks them: the config's models (then prompt variants), each
    iteration in its item order; so that models and items show in the same order (and a tie for a
    family's reference goes the same way) however the calls were stored: shards merged or arriving
    from a cluster, a run resumed model by model. Models the config no longer lists follow, in the
    order they were stored."""
    if calls.empty or run is None:
        return calls.drop(columns="position")
    models = {m.get("name"): k for k, m in enumerate(json.loads(run[0] or "{}").get("models") or [])}
    variants = {v: k for k, v in enumerate(json.loads(run[1] or "{}").get("variants") or [])}
    stored = list(pd.unique(calls["model"]))

    def arm(name: str) -> tuple:
        entry, _, variant = name.partition("@")
        return models.get(entry, len(models)), variants.get(variant, -1), stored.index(name)

    rank = {name: k for k, name in enumerate(sorted(stored, key=arm))}
    order = calls.assign(_arm=calls["model"].map(rank)).sort_values(["_arm", "iteration", "position"], kind="stable")
    return order.drop(columns=["_arm", "position"]).reset_index(drop=True)


def read_frames(db: sqlite3.Connection, run_id: str) -> Frames:
    calls = _select(db, "calls", (*frame_names(CallRow), "position"), run_id, "id")
    calls = _in_run_order(calls, db.execute("SELECT settings_json, task_json FROM runs WHERE run_id=?",
                                            (run_id,)).fetchone())
    items = _select(db, "items", frame_names(ItemRow), run_id, "position")
    fields_json = items.pop("fields_json")
    if len(items):
        fields = pd.DataFrame([json.loads(f or "{}") for f in fields_json], index=items.index)
        items = pd.concat([items, fields[[c for c in fields.columns if c not in items.columns]]], axis=1)
    loads = _select(db, "model_loads", frame_names(LoadRow), run_id, "id")
    calls["valid"] = calls["valid"].astype(bool)
    return Frames(_numbers(calls, CallRow), items, _numbers(loads, LoadRow))


def _numbers(frame: pd.DataFrame, cls) -> pd.DataFrame:
    """Number columns as numbers: a column SQLite returns all NULL (every call failed, say) reads as
    objects otherwise, and statistics over it (a quantile) would fail."""
    for f in columns(cls):
        if f.name in frame and frame[f.name].dtype == object and f.metadata["sql"].split()[0] in ("REAL", "INTEGER"):
            frame[f.name] = pd.to_numeric(frame[f.name], errors="coerce").astype(float)
    return frame
