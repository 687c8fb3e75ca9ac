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


PERCENTILES = (50, 90, 99)
PERCENTILE_RULE = ("p50/p90/p99 are numpy's linear interpolation between order statistics (Hyndman & Fan type 7): "
                   "over the calls for TTFT and end-to-end time, over every inter-token gap of every call pooled "
                   "for ITL; with fewer than 100 values p99 lies between the two largest")


def _pct(values: pd.Series, q: int) -> float:
    import numpy as np

    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    return float(np.percentile(v, q)) if len(v) else float("nan")


def _gaps(itl_json: pd.Series) -> pd.Series:
    """Every inter-token gap (seconds) of the calls' stored gaps (JSON lists in ms)."""
    import json

    out = [g / 1000 for text in itl_json.dropna() for g in json.loads(text)]
    return pd.Series(out, dtype=float)


def latency_under_load(calls: pd.DataFrame) -> pd.DataFrame:
    """One row per model and concurrency level (a sweep's levels, or the run's one): the answered calls
    (failed ones left out), how many were streamed, TTFT, ITL and end-to-end percentiles, the mean
    per-call ITL, requests and generated tokens per second over the level's span (first start to last
    end, all endpoints together), and the knee of each model's sweep (:func:`mark_knee`). Empty when the
    run has no server calls to speak of (no streamed timings and a single level of one call in flight)."""
    if calls.empty or "concurrency" not in calls:
        return pd.DataFrame()
    c = calls[calls["finish_reason"].fillna("") != "failed"].copy()
    streamed = c["e2e_seconds"].notna()
    levels = c["concurrency"].dropna().unique()
    if c.empty or (not streamed.any() and len(levels) <= 1 and not (c["in_flight"].fillna(1) > 1).any()):
        return pd.DataFrame()
    c["e2e"] = c["e2e_seconds"].where(c["e2e_seconds"].notna(), c["wall_seconds"])
    c["ended_at"] = c["started_at"] + c["wall_seconds"]
    rows = []
    for (model, level), g in c.groupby(["model", "concurrency"], sort=False, dropna=False):
        span = g["ended_at"].max() - g["started_at"].min()
        gaps = _gaps(g["itl_json"]) if "itl_json" in g else pd.Series(dtype=float)
        row = {"model": model, "concurrency": level, "calls": len(g),
               "streamed_calls": int(g["e2e_seconds"].notna().sum())}
        for q in PERCENTILES:
            row[f"ttft_p{q}"] = _pct(g["ttft_seconds"], q)
        for q in PERCENTILES:
            row[f"itl_p{q}"] = _pct(gaps, q)
        row["itl_mean"] = float(g["itl_seconds"].mean()) if g["itl_seconds"].notna().any() else float("nan")
        for q in PERCENTILES:
            row[f"e2e_p{q}"] = _pct(g["e2e"], q)
        ok = span > 0 if pd.notna(span) else False
        row["requests_per_s"] = len(g) / span if ok else float("nan")
        row["gen_tok_per_s"] = g["completion_tokens"].sum() / span if ok else float("nan")
        rows.append(row)
    out = pd.DataFrame(rows).sort_values(["model", "concurrency"], kind="stable", key=lambda s: s if s.name ==
                                         "concurrency" else s.map({m: k for k, m in enumerate(pd.unique(c["model"]))}))
    return mark_knee(out.reset_index(drop=True))


KNEE_RULE = ("the knee of a model's sweep is the level with the highest power, requests per second divided by the "
             "median end-to-end time (Kleinrock's power: past it, more calls in flight add more waiting than "
             "throughput); a tie goes to the lower level; marked only with two levels or more")


def mark_knee(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``power`` column (requests/s / p50 end-to-end s) and ``knee`` (True at the level
    of highest power per model, when the model has two levels or more)."""
    out = table.copy()
    out["power"] = out["requests_per_s"] / out["e2e_p50"]
    out["knee"] = False
    for _, g in out.groupby("model", sort=False):
        g = g.dropna(subset=["power", "concurrency"])
        if len(g) >= 2:
            out.loc[g.sort_values(["power", "concurrency"], ascending=[False, True]).index[0], "knee"] = True
    return out
