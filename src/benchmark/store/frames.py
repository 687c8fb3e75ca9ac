"""A run as the DataFrames the statistics read, built from the row declarations: the calls (the
``frame`` fields of ``CallRow``, in storing order, ``valid`` as bool), the items (an item's fields
such as ticker or title become columns) and the model loads."""

from __future__ import annotations

import json
import sqlite3
from typing import NamedTuple

import pandas as pd

from benchmark.store.rows import CallRow, ItemRow, LoadRow, frame_names


class Frames(NamedTuple):
    calls: pd.DataFrame
    items: pd.DataFrame
    loads: pd.DataFrame


def _select(db: sqlite3.Connection, table: str, cols, run_id: str, order: str) -> pd.DataFrame:
    return pd.read_sql_query(f"SELECT {', '.join(cols)} FROM {table} WHERE run_id=? ORDER BY {order}", db,
                             params=(run_id,))


def read_frames(db: sqlite3.Connection, run_id: str) -> Frames:
    calls = _select(db, "calls", frame_names(CallRow), run_id, "id")
    items = _select(db, "items", frame_names(ItemRow), run_id, "position")
    fields_json = items.pop("fields_json")
    if len(items):
        fields = pd.DataFrame([json.loads(f or "{}") for f in fields_json], index=items.index)
        items = pd.concat([items, fields[[c for c in fields.columns if c not in items.columns]]], axis=1)
    loads = _select(db, "model_loads", frame_names(LoadRow), run_id, "id")
    calls["valid"] = calls["valid"].astype(bool)
    return Frames(calls, items, loads)
