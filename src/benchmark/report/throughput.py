"""The Throughput sheet and its chart: server calls under load. The sheet's table is one row per model
and concurrency level (TTFT, ITL and end-to-end percentiles, requests and generated tokens per
second, the knee of a concurrency sweep), with the calls spread over endpoints below it; the chart
draws each model's sweep as throughput against median latency with the knee marked, and the time to
first token and the inter-token latency against the level when the calls were streamed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import draw as D
from benchmark.report.model import Report, Sheet
from benchmark.stats import throughput as TP

TITLE = "Throughput"
CHART = "throughput_latency.png"
FORMATS = {**{f"{k}_p{q}": "0.0000" for k in ("ttft", "itl", "e2e") for q in TP.PERCENTILES},
           "itl_mean": "0.0000", "requests_per_s": "0.00", "gen_tok_per_s": "0.0", "power": "0.000",
           "concurrency": "0", "streamed_calls": "0"}


def sheet(calls: pd.DataFrame, latency_note: str = "") -> Sheet | None:
    """The Throughput sheet of a run's calls (every timing, not the latency view's), or None when the run
    had no calls under load, no streamed timings and a single endpoint."""
    load = TP.latency_under_load(calls)
    spread = TP.throughput(calls)
    endpoints = spread["endpoint"][spread["endpoint"] != "all endpoints"].nunique() if len(spread) else 0
    crowded = len(spread) and spread["max_in_flight"].max() > 1
    if load.empty and endpoints <= 1 and not crowded:
        return None
    spread_note = ("Calls spread over endpoints: per model and endpoint, then over all its endpoints, requests and "
                   "generated tokens per second over the span from the first call's start to the last call's end, "
                   "with the calls in flight on the endpoint when each started. ")
    if load.empty:
        return Sheet(TITLE, "throughput", spread, note=spread_note + latency_note)
    sweep = load["concurrency"].nunique() > 1
    note = ("Latency under load, per model and concurrency level (calls allowed in flight per endpoint"
            + ("; run.concurrency swept the levels, each over its own consecutive block of the model's calls, "
               "lowest first: with as many iterations as levels each level asks every item once, and a drift of "
               "the machine falls on the later levels" if sweep else "") + "). Answered calls only "
            "(failed ones have no timing). TTFT: from sending the request to the first streamed chunk that carries "
            "content (a chunk naming only the role does not count; a streamed call whose reply is empty has none). ITL: the gaps between consecutive content "
            "chunks as they arrived (one token per chunk on llama.cpp and Ollama); itl_mean: the mean of each "
            "call's mean gap. End-to-end (e2e): request sent to the answer's last byte for streamed calls, the "
            "call's wall clock otherwise. TTFT and ITL need options.stream: true. " + TP.PERCENTILE_RULE + ". "
            "requests_per_s and gen_tok_per_s: answered calls and their generated tokens over the level's span, "
            "first start to last end, all endpoints together. power = requests_per_s / e2e_p50; "
            + TP.KNEE_RULE + ". Below: " + spread_note + latency_note)
    appendix = [("Calls spread over endpoints", "throughput", spread)] if len(spread) else []
    return Sheet(TITLE, "latency", load, note=note, appendix=appendix, formats=dict(FORMATS))


def chart(report: Report, out_dir: Path) -> Path | None:
    """Each model's throughput (answered requests per second, the knee's measure) against its median
    end-to-end time per level, the knee ringed; beside it, TTFT and ITL p50 per level when streamed.
    None without a Throughput sheet of two levels or streamed calls."""
    s = next((x for x in report.sheets if x.title == TITLE and x.csv == "latency"), None)
    if s is None or s.table.empty:
        return None
    t = s.table
    streamed = t["streamed_calls"].sum() > 0
    if t["concurrency"].nunique() < 2 and not streamed:
        return None
    x_col, x_label = "requests_per_s", "answered requests per second (all endpoints)"
    plt = D.plt()
    fig, axes = plt.subplots(1, 2 if streamed else 1, figsize=(12 if streamed else 6.5, 4.8), squeeze=False)
    ax = axes[0][0]
    colours = plt.get_cmap("tab10")
    for k, (model, g) in enumerate(t.groupby("model", sort=False)):
        g = g.sort_values("concurrency")
        c = colours(k % 10)
        ax.plot(g[x_col], g["e2e_p50"], marker="o", color=c, label=D.short(str(model), 30))
        ax.vlines(g[x_col], g["e2e_p50"], g["e2e_p90"], color=c, alpha=0.35, linewidth=3)
        for r in g.itertuples(index=False):
            ax.annotate(f"c={int(r.concurrency)}" if pd.notna(r.concurrency) else "c=?", (getattr(r, x_col), r.e2e_p50),
                        textcoords="offset points", xytext=(5, -11), fontsize=8, color=c)
        knee = g[g["knee"]]
        if len(knee):
            ax.scatter(knee[x_col], knee["e2e_p50"], s=260, facecolors="none", edgecolors="black", linewidths=1.8,
                       zorder=5, label="knee" if k == 0 else None)
    ax.set_xlabel(x_label)
    ax.set_ylabel("end-to-end seconds per call: p50 (dot) to p90 (bar)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    D.title(ax, "Throughput against latency per concurrency level (knee: highest requests/s per median second)", 6)
    if streamed:
        ax2 = axes[0][1]
        for k, (model, g) in enumerate(t[t["streamed_calls"] > 0].groupby("model", sort=False)):
            g = g.sort_values("concurrency")
            c = colours(k % 10)
            ax2.plot(g["concurrency"], g["ttft_p50"] * 1000, marker="o", color=c, label=f"{D.short(str(model), 24)} TTFT")
            ax2.plot(g["concurrency"], g["itl_p50"] * 1000, marker="s", linestyle="--", color=c,
                     label=f"{D.short(str(model), 24)} ITL")
        ax2.set_xscale("log", base=2)
        levels = sorted(t["concurrency"].dropna().unique())
        ax2.set_xticks(levels)
        ax2.set_xticklabels([str(int(v)) for v in levels])
        ax2.set_xlabel("calls in flight per endpoint (concurrency)")
        ax2.set_ylabel("milliseconds (p50)")
        if np.isfinite(t["ttft_p50"].to_numpy(dtype=float)).any():
            ax2.set_ylim(bottom=0)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8)
        D.title(ax2, "Time to first content token and inter-token latency (p50) per level", 6)
    return D.save(fig, Path(out_dir) / CHART)
