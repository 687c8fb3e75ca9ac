"""Statistics and workbook for a results database of 1,000,000 calls.

Generates the database first (not timed), then times: loading the calls, the statistics (paired
tests, all pairs, verdicts, calibration), the workbook (with the Decision chart) and the CSVs. Usage: python benchmarks/report_1m.py [--calls N] [--models M]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from benchmark import report as rpt  # noqa: E402
from benchmark.stats import common  # noqa: E402
from benchmark.store import Store  # noqa: E402
from benchmark.synthetic import SynthModel, write_db  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=50)
    args = ap.parse_args()
    n_articles = args.calls // (args.models * args.iterations)
    quants = ["F16", "Q8_0", "Q5_K_M", "Q4_K_M"]
    models = [SynthModel(f"fam{i // 4}-{quants[i % 4].lower()}", shift=0.01 * i, family=f"fam{i // 4}",
                         quant=quants[i % 4], invalid_rate=0.03) for i in range(args.models)]
    pairs = [(models[i].name, models[i + 1].name) for i in range(0, args.models - 1, 2)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.sqlite"
        t0 = time.perf_counter()
        write_db(db, models, n_articles, args.iterations, seed=1, run_id="big", pairs=pairs)
        gen_s = time.perf_counter() - t0
        timings, cpu = {}, {}

        def step(name, fn):
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            timings[name], cpu[name] = time.perf_counter() - t, time.process_time() - c
            return out

        with Store(db) as store:
            total = store.count_calls("big")
            step("load calls from SQLite", lambda: common.load_frames(store, "big"))
            rep = step("statistics (incl. a second load)", lambda: rpt.build(store, "big"))
        step("workbook", lambda: rpt.write_workbook(rep, Path(tmp) / "big.xlsx"))
        step("CSV files and the Decision chart", lambda: rpt.write_csvs(rep, Path(tmp) / "csv"))
        size_mb = (Path(tmp) / "big.xlsx").stat().st_size / 2**20
    end_to_end = sum(v for k, v in timings.items() if k != "load calls from SQLite")
    end_to_end_cpu = sum(v for k, v in cpu.items() if k != "load calls from SQLite")
    print(f"results database: {total:,} calls ({args.models} models x {n_articles} articles x {args.iterations} "
          f"iterations, {len(pairs)} pairs); generated in {gen_s:.1f} s (not counted)")
    print(f"machine: {os.cpu_count()} cores")
    print(f"{'step':<40}{'wall s':>10}{'CPU s':>10}")
    for k, v in timings.items():
        print(f"{k:<40}{v:>10.2f}{cpu[k]:>10.2f}")
    print(f"{'report end to end (build + xlsx + csv)':<40}{end_to_end:>10.2f}{end_to_end_cpu:>10.2f}   (target < 60 s; "
          f"workbook {size_mb:.1f} MiB)")
    print(f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall time above "
          "includes waiting for a shared CPU; CPU time does not)")


if __name__ == "__main__":
    main()
