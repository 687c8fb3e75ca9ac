"""What the statistics of every task kind share: reading a run into DataFrames, the order models
are shown in, timing figures over every call, and Holm's adjustment."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.naming import quant_bits

ALPHA = 0.05

CALL_COLUMNS = ["model", "family", "quant", "backend", "prompt_style", "variant", "iteration", "item_id", "valid",
                "label", "value", "confidence", "label_probs_json", "finish_reason", "prompt_tokens", "cached_tokens",
                "completion_tokens", "prompt_seconds", "gen_seconds", "wall_seconds", "endpoint", "in_flight",
                "started_at", "energy_j"]


def load_frames(store, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(calls, items, model_loads) of one run; an item's fields (ticker, title, ...) become columns."""
    calls = pd.read_sql_query(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE run_id=? ORDER BY id", store.db,
                              params=(run_id,))
    items = pd.read_sql_query("SELECT item_id, position, split, target_label, target_value, fields_json "
                              "FROM items WHERE run_id=? ORDER BY position", store.db, params=(run_id,))
    if len(items):
        fields = pd.DataFrame([json.loads(f or "{}") for f in items.pop("fields_json")], index=items.index)
        fields = fields[[c for c in fields.columns if c not in items.columns]]
        items = pd.concat([items, fields], axis=1)
    else:
        items = items.drop(columns=["fields_json"])
    loads = pd.read_sql_query("SELECT model, load_seconds, warmup_seconds, engine_json FROM model_loads "
                              "WHERE run_id=?", store.db, params=(run_id,))
    calls["valid"] = calls["valid"].astype(bool)
    return calls, items, loads


def model_order(calls: pd.DataFrame) -> list[str]:
    """Models grouped by family (in order of appearance), widest quant first, then prompt variant."""
    cols = ["model", "family", "quant"] + (["variant"] if "variant" in calls else [])
    first = calls.drop_duplicates("model")[cols]
    fam_rank = {f: i for i, f in enumerate(dict.fromkeys(first["family"]))}
    var_rank = {v: i for i, v in enumerate(dict.fromkeys(first["variant"]))} if "variant" in first else {}
    ranked = sorted(first.itertuples(index=False),
                    key=lambda r: (fam_rank[r.family], -quant_bits(r.quant), var_rank.get(getattr(r, "variant", None), 0)))
    return [r.model for r in ranked]


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (statsmodels); NaNs stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def timing(calls: pd.DataFrame, loads: pd.DataFrame | None = None, price_per_hour: float | None = None) -> pd.DataFrame:
    """Per model, over every call (valid or not): identity columns, counts, validity, seconds per
    sample, token rates (prompt rate counts evaluated tokens only: cached ones cost no time),
    latency percentiles, token-limit hits, load time and cost per 1,000 calls."""
    order = model_order(calls)
    g = calls.groupby("model", sort=False)
    evaluated = (calls["prompt_tokens"] - calls["cached_tokens"].fillna(0)).groupby(calls["model"]).sum()
    prompt_s = g["prompt_seconds"].sum(min_count=1)
    gen_s = g["gen_seconds"].sum(min_count=1)
    first = g[["family", "quant", "backend", "prompt_style"] + (["variant"] if "variant" in calls else [])].first()
    out = pd.DataFrame({
        **{c: first[c] for c in first.columns},
        "items": g["item_id"].nunique(), "iterations": g["iteration"].nunique(), "calls": g.size(),
        "s_per_sample": g["wall_seconds"].mean(),
        "valid_rate": g["valid"].mean(),
        "prompt_tok_s": (evaluated / prompt_s).where(prompt_s > 0),
        "gen_tok_s": (g["completion_tokens"].sum() / gen_s).where(gen_s > 0),
        "latency_p50": g["wall_seconds"].quantile(0.50),
        "latency_p95": g["wall_seconds"].quantile(0.95),
        "truncated_rate": (calls["finish_reason"] == "length").groupby(calls["model"]).mean(),
    })
    out["load_seconds"] = (loads.groupby("model")["load_seconds"].mean().reindex(out.index)
                           if loads is not None and len(loads) else np.nan)
    out["cost_per_1k"] = out["s_per_sample"] * 1000 / 3600 * price_per_hour if price_per_hour else np.nan
    if "variant" in out and out["variant"].isna().all():
        out = out.drop(columns=["variant"])
    return out.reindex(order).rename_axis("model").reset_index()
