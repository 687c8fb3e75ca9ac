"""Throughput of a run spread over endpoints: per endpoint and overall, requests per second and
generated tokens per second over the time the calls took (first start to last end), with the
calls in flight. Latency figures elsewhere keep to calls that ran alone on their endpoint."""

from __future__ import annotations

import pandas as pd


def throughput(calls: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, endpoint) and one per model over all its endpoints; empty when the run
    recorded no endpoints (one local engine)."""
    if "endpoint" not in calls or calls["endpoint"].isna().all() or "started_at" not in calls:
        return pd.DataFrame()
    c = calls.dropna(subset=["started_at"]).assign(
        ended_at=lambda d: d["started_at"] + d["wall_seconds"], endpoint=lambda d: d["endpoint"].fillna("local"))

    def rows(group_cols):
        g = c.groupby(group_cols, sort=False)
        span = g["ended_at"].max() - g["started_at"].min()
        out = pd.DataFrame({"calls": g.size(), "span_seconds": span,
                            "requests_per_s": g.size() / span.where(span > 0),
                            "gen_tok_per_s": g["completion_tokens"].sum() / span.where(span > 0),
                            "max_in_flight": g["in_flight"].max(),
                            "mean_in_flight": g["in_flight"].mean()})
        return out.reset_index()

    per_endpoint = rows(["model", "endpoint"])
    overall = rows(["model"]).assign(endpoint="all endpoints")
    out = pd.concat([per_endpoint, overall], ignore_index=True)
    out["max_in_flight"] = out["max_in_flight"].astype(float)
    return out.sort_values(["model", "endpoint"], key=lambda s: s.map(lambda v: (v == "all endpoints", v))
                           if s.name == "endpoint" else s, kind="stable").reset_index(drop=True)


def latency_calls(calls: pd.DataFrame) -> pd.DataFrame:
    """The calls latency figures use: those that ran alone on their endpoint (all of them in latency mode)."""
    if "in_flight" not in calls or calls["in_flight"].isna().all():
        return calls
    alone = calls[calls["in_flight"].fillna(1) <= 1]
    return alone if len(alone) else calls

