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


TIMED = ("wall_seconds", "prompt_seconds", "gen_seconds", "energy_j")


def latency_view(calls: pd.DataFrame, which: str = "alone") -> tuple[pd.DataFrame, str]:
    """The calls with the timings of calls that shared their endpoint with others blanked (NaN), so that
    seconds per sample, latency percentiles and token rates describe a call that ran alone; quality
    figures are untouched. A model none of whose calls ran alone keeps all its timings. ``which="all"``
    keeps every timing. Returns (calls, a sentence saying what was used)."""
    if which == "all" or "in_flight" not in calls or not (calls["in_flight"].fillna(1) > 1).any():
        return calls, ("Latency figures use every call." if which == "all" else "")
    crowded = calls["in_flight"].fillna(1) > 1
    has_alone = (~crowded).groupby(calls["model"]).transform("any")
    blank = crowded & has_alone
    out = calls.copy()
    for col in TIMED:
        if col in out:
            out[col] = out[col].where(~blank)
    kept = sorted(set(calls.loc[crowded & ~has_alone, "model"]))
    note = (f"Latency figures (seconds per sample, percentiles, token rates) use the {int((~crowded).sum())} calls "
            f"that ran alone on their endpoint; {int(blank.sum())} calls made while others were in flight count "
            "only here (config: report.latency: all to use every call).")
    if kept:
        note += f" No call of {', '.join(kept)} ran alone: its latency figures are under load."
    return out, note
