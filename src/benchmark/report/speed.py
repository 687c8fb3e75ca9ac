"""The Speed sheet: the order the run asked its models in, each model's drift (early blocks against
late ones, ``benchmark.stats.speed.drift``) with a warning when one moved, and the llama-bench-comparable
block of every in-process model (pp512, tg128, tg128 at the task's prompt depth, mean +- sd; with the
bytes a generated token reads and the machine's memory bandwidth, the share of the bandwidth bound).
Its lines lead the console's speed summary (``benchmark.report.console``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from benchmark import conventions as CV
from benchmark.report.model import Sheet
from benchmark.stats import common
from benchmark.stats import speed as SP

BENCH_COLUMNS = ["model", "test", "n_prompt", "n_gen", "n_depth", "reps", "tok_s", "tok_s_sd", "mib_per_token",
                 "bound_tok_s", "share_of_bound", "n_threads", "n_batch", "n_ctx", "n_gpu_layers"]


def bench_table(rows, bandwidth_gbs: float | None) -> pd.DataFrame:
    """One row per (model, test) of the stored block (``BenchRow``): tokens/s mean and sd, MiB a generated
    token reads, the bound (bandwidth / those bytes: generation only) and the share of it reached."""
    out = []
    for b in rows:
        engine = json.loads(b.engine_json or "{}")
        read = (b.weights_bytes_per_token or 0) + (b.kv_bytes_per_token or 0) if b.weights_bytes_per_token else None
        bound = bandwidth_gbs * 1e9 / read if (bandwidth_gbs and read and b.n_gen and not b.n_prompt) else np.nan
        out.append({"model": b.model, "test": b.test, "n_prompt": b.n_prompt, "n_gen": b.n_gen, "n_depth": b.n_depth,
                    "reps": b.reps, "tok_s": b.avg_ts, "tok_s_sd": b.stddev_ts,
                    "mib_per_token": read / 2**20 if read and b.n_gen and not b.n_prompt else np.nan,
                    "bound_tok_s": bound, "share_of_bound": b.avg_ts / bound if np.isfinite(bound) else np.nan,
                    "n_threads": engine.get("n_threads"), "n_batch": engine.get("n_batch"),
                    "n_ctx": engine.get("n_ctx"), "n_gpu_layers": engine.get("n_gpu_layers")})
    return pd.DataFrame(out, columns=BENCH_COLUMNS)


def drift_table(calls: pd.DataFrame, alpha: float, tolerance: float) -> pd.DataFrame:
    """Per model, its seconds per call in its late blocks over its early ones (``speed.drift``)."""
    if calls.empty or "wall_seconds" not in calls:
        return pd.DataFrame()
    cube = common.Cube(calls)
    y = SP.log_cells(np.where(cube.present, cube.get("wall_seconds"), np.nan))
    return pd.DataFrame(SP.drift(y, cube.models, alpha, tolerance))


def order_table(order: dict | None) -> pd.DataFrame:
    if not order:
        return pd.DataFrame()
    if order["order"] == "grouped":  # one arm's every block, then the next arm's
        last = len(order["blocks"]) - 1
        return pd.DataFrame([{"block": f"0-{last}" if last else "0", "order": " > ".join(order["blocks"][0])
                              + " (each model's blocks in a row)"}])
    return pd.DataFrame([{"block": b, "order": " > ".join(row)} for b, row in enumerate(order["blocks"])])


def bench_lines(table: pd.DataFrame, bandwidth: float | None, source: str) -> list[str]:
    lines = []
    for model, g in table.groupby("model", sort=False):
        parts = []
        for r in g.itertuples(index=False):
            share = (f" ({r.share_of_bound:.0%} of the {r.bound_tok_s:.0f} tok/s bound)"
                     if np.isfinite(r.share_of_bound) else "")
            parts.append(f"{r.test} {r.tok_s:.1f} +- {r.tok_s_sd:.1f} tok/s{share}")
        lines.append(f"{model}: llama-bench figures in process (mean +- sd of {int(g['reps'].iloc[0])} repetitions): "
                     + ", ".join(parts))
    if lines:
        lines.append(f"memory bandwidth: {bandwidth:.1f} GB/s ({source})" if bandwidth else
                     "memory bandwidth: unknown (no copy test stored; set report.memory_bandwidth_gbs): no bound")
    return lines


def drift_lines(drift: pd.DataFrame, tolerance: float) -> list[str]:
    if drift.empty:
        return []
    moved = drift[drift["moved"]]
    out = []
    for r in moved.itertuples(index=False):
        out.append(f"DRIFT: {r.model}'s seconds per call moved {r.ratio:.2f}x between its early and late iteration "
                   f"blocks (95% CI {r.ci95_low:.2f}-{r.ci95_high:.2f}, Holm p = {r.p_holm:.2g}): the machine's "
                   f"speed changed during the run; speed ratios carry it in their intervals only where the run "
                   "was counterbalanced")
    return out


def sheet(calls: pd.DataFrame, settings, bench_rows, order: dict | None, measured: tuple | None,
          noun: str = "item") -> tuple[Sheet, list[str]]:
    """(the Speed sheet, its lines for the console and the Decision) of one run."""
    bandwidth, source = (settings.memory_bandwidth_gbs, "declared: report.memory_bandwidth_gbs") \
        if settings.memory_bandwidth_gbs else (measured[0], f"measured: {measured[1].get('method')}, "
                                                             f"{measured[1].get('threads')} thread(s)") \
        if measured else (None, "")
    bench = bench_table(bench_rows, bandwidth)
    drift = drift_table(calls, settings.alpha, settings.drift_tolerance)
    how = order["order"] if order else "unknown (a run stored before the order was recorded: grouped)"
    lines = drift_lines(drift, settings.drift_tolerance)
    if order and order["order"] == "grouped" and calls["model"].nunique() > 1:
        lines.append("Order grouped: every call of one model in a row; a drift of the machine between the models' "
                     "runs is in no interval (run.order: counterbalanced avoids it)")
    lines += bench_lines(bench, bandwidth, source)
    blocks = int(drift["blocks"].max()) if len(drift) else 0
    note = (CV.says(["order", "drift", "bench"], noun=noun, order=how, tolerance=settings.drift_tolerance)
            + (" One iteration block: no drift check." if blocks < 2 else "")
            + (f" Memory bandwidth {bandwidth:.1f} GB/s ({source})." if bandwidth else
               " No memory bandwidth stored or declared: no bound.")
            + ("" if len(bench) else " No llama-bench block in this run (no in-process model, or run.speed_bench: "
                                     "false)."))
    appendix = [("Drift: each model's late blocks against its early ones", "drift", drift)] if len(drift) else []
    if order:
        appendix.append(("The order of the run (per iteration block)", "order", order_table(order)))
    formats = {"tok_s": "0.0", "tok_s_sd": "0.0", "mib_per_token": "0.0", "bound_tok_s": "0.0",
               "share_of_bound": "0%", "ratio": "0.00", "ci95_low": "0.00", "ci95_high": "0.00"}
    return Sheet("Speed", "speed", bench, note=note, lines=lines, formats=formats, appendix=appendix), lines
