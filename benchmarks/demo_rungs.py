"""Per-call time of every candidate rung of the demo's two families, side by side in one run, and
what a demo of a chosen ladder, article count and iteration count would take.

Builds (or keeps, in --out) the ladders of Gemma 3 270M and SmolLM2-135M with the candidate rungs,
writes one demo config with all of them (shootout.demo.write_config), runs it with `shootout run`
(one model after another, as the demo runs them; with SHOOTOUT_THREADS=1 on a shared machine, as
llama.cpp's spinning threads slow down many times over when other processes take the cores) and
reads the calls back from the results database. Then it projects the demo: for each family's chosen ladder
(shootout.demo.LADDERS), rungs x articles x iterations x the measured seconds per call, plus each
model's load and warm-up and the ladder build.

Usage: python benchmarks/demo_rungs.py [--articles 6] [--iterations 1] [--out DIR]
       [--demo-articles 24] [--demo-iterations 3]
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

CANDIDATES = {"gemma3-270m": ("Q8_0", "Q5_K_M", "Q4_K_M", "Q4_0"),
              "smollm2-135m": ("Q8_0", "Q5_0", "Q4_K_M", "Q4_0")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=6, help="articles measured per rung")
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="keep the ladders and results here")
    ap.add_argument("--demo-articles", type=int, default=24)
    ap.add_argument("--demo-iterations", type=int, default=3)
    args = ap.parse_args()
    from core.embedded import embedded_gguf
    from export.quantize import build_ladder
    from shootout.demo import LADDERS, model_name, write_config

    tmp = None if args.out else tempfile.TemporaryDirectory()
    out = args.out or Path(tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    build: dict[str, float] = {}
    ladders = {}
    for family, rungs in CANDIDATES.items():
        src = embedded_gguf(model_name=LADDERS[family].model)

        def note(q, path, secs, family=family):
            build[model_name(family, q)] = secs if secs is not None else float("nan")

        ladders[family] = build_ladder(src, out / "models", family, rungs, progress=note)
    config = write_config(out, ladders, args.iterations, args.articles)
    db = out / "results.sqlite"
    db.unlink(missing_ok=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "shootout.cli", "run", "-c", str(config), "--no-progress"], cwd=ROOT,
                       capture_output=True, text=True)
    run_s = time.perf_counter() - t0
    if r.returncode:
        print(r.stderr)
        raise SystemExit(r.returncode)
    con = sqlite3.connect(db)
    per = {m: (n, s, p, g, c, v) for m, n, s, p, g, c, v in con.execute(
        "SELECT model, COUNT(*), AVG(wall_seconds), AVG(prompt_seconds), AVG(gen_seconds), AVG(completion_tokens),"
        " AVG(valid) FROM calls GROUP BY model")}
    loads = {m: lw for m, lw in con.execute("SELECT model, SUM(load_seconds + warmup_seconds) FROM model_loads "
                                            "GROUP BY model")}
    rows = []
    for family, ladder in ladders.items():
        ref = per[model_name(family, "F16")][1]
        for q, path in ladder.items():
            name = model_name(family, q)
            n, s, p, g, c, v = per[name]
            rows.append([name, f"{path.stat().st_size / 2**20:.1f}", f"{build[name]:.1f}", n, s, f"{s / ref:.2f}",
                         p, g, f"{c:.1f}", f"{v:.0%}", f"{loads.get(name, 0):.1f}"])
    print(f"machine: {machine()}; one run of {len(per)} models x {args.articles} articles x {args.iterations} "
          f"iterations, one model after another ({run_s:.0f} s end to end)\n")
    print(table(["model", "MiB", "built s", "calls", "s / call", "x F16", "prompt s", "gen s", "tokens", "valid",
                 "load+warm s"], rows))
    calls = args.demo_articles * args.demo_iterations
    total = 0.0
    lines = []
    for family, spec in LADDERS.items():
        names = [model_name(family, q) for q in ("F16", *spec.rungs)]
        secs = sum(per[n][1] * calls + loads.get(n, 0) + (build[n] if build[n] == build[n] else 0) for n in names)
        total += secs
        lines.append(f"  {family}: {', '.join(q for q in ('F16', *spec.rungs))}: {len(names)} x {calls} calls, "
                     f"{secs / 60:.1f} min with loads and the ladder build")
    print(f"\nprojected demo ({args.demo_articles} articles x {args.demo_iterations} iterations, the chosen ladders):")
    print("\n".join(lines))
    print(f"  calls, loads and ladders: {total / 60:.1f} min (the report and charts come on top)")
    gemma = [model_name("gemma3-270m", q) for q in ("F16", *LADDERS["gemma3-270m"].rungs)]
    every = [model_name(f, q) for f, spec in LADDERS.items() for q in ("F16", *spec.rungs)]
    ratio = sum(per[n][1] for n in every) / sum(per[n][1] for n in gemma)
    print(f"  seconds of calls, both families' ladders / Gemma's ladder alone (same articles and iterations): "
          f"{ratio:.2f}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
