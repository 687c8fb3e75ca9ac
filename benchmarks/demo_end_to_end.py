"""`shootout demo` end to end in a fresh folder (ladder build, run, report, heatmaps), with the
time of each phase taken from the command's output and the results database.

Usage: python benchmarks/demo_end_to_end.py [--iterations 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--articles", type=int, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        cmd = [sys.executable, "-m", "shootout.cli", "demo", "--out", str(out), "--iterations", str(args.iterations),
               "--no-progress"] + (["--articles", str(args.articles)] if args.articles else [])
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        total = time.perf_counter() - t0
        if res.returncode != 0:
            print(res.stderr)
            raise SystemExit(res.returncode)
        con = sqlite3.connect(out / "results.sqlite")
        per_model = con.execute("SELECT model, COUNT(*), SUM(wall_seconds), AVG(wall_seconds), AVG(valid) FROM calls "
                                "GROUP BY model ORDER BY MIN(id)").fetchall()
        loads = con.execute("SELECT SUM(load_seconds + warmup_seconds) FROM model_loads").fetchone()[0]
    rows = [[m, n, s, a, f"{v:.0%}"] for m, n, s, a, v in per_model]
    calls_s = sum(r[2] for r in per_model)
    print(f"machine: {machine()}\n")
    print(table(["model", "calls", "seconds", "s / call", "valid"], rows))
    print(f"\ncalls {calls_s:.1f} s + loads/warm-ups {loads:.1f} s + ladder, report, heatmaps and start-up "
          f"{total - calls_s - loads:.1f} s = {total:.1f} s end to end ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
