"""Harness overhead: the time a run spends outside the engine, as a share of each call.

Runs the real runner (one model, the snapshot, a fresh SQLite store) and compares the wall time
of the measuring loop with the engine's own time (prompt evaluation + generation). Everything
else (messages, chat template, tokenization, parsing, the SQLite transaction, the progress bar)
is overhead. Model load and the warm-up call are excluded on both sides.

Usage: python benchmarks/harness_overhead.py [--model GGUF] [--articles 12] [--iterations 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import embedded_model, machine, table

from benchmark.config import parse_config
from benchmark.run.runner import Runner
from benchmark.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--articles", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=2)
    args = ap.parse_args()
    path = args.model or str(embedded_model())
    with tempfile.TemporaryDirectory() as tmp:
        text = (f"news: {{source: snapshot, max_articles: {args.articles}}}\n"
                f"run: {{iterations: {args.iterations}, temperature: 0.7, num_predict: 160, database: r.sqlite}}\n"
                f"models:\n  - {{name: m, path: {path}, family: gemma3-270m, quant: Q4_K_M, "
                f"options: {{chat_template: gemma}}}}\n")
        cfg = parse_config(text, base_dir=Path(tmp))
        with Store(Path(tmp) / "r.sqlite") as store:
            t0 = time.perf_counter()
            Runner(cfg, store, run_id="h", progress=True).run()
            total = time.perf_counter() - t0
            load = store.db.execute("SELECT load_seconds + warmup_seconds FROM model_loads").fetchone()[0]
            engine, wall_in_rows, n = store.db.execute(
                "SELECT SUM(prompt_seconds + gen_seconds), SUM(wall_seconds), COUNT(*) FROM calls").fetchone()
    loop = total - load
    rows = [["measuring loop (wall)", loop, 1.0], ["engine (prompt eval + generation)", engine, engine / loop],
            ["harness overhead", loop - engine, (loop - engine) / loop],
            ["  of which inside the stored per-call wall", wall_in_rows - engine, (wall_in_rows - engine) / loop]]
    print(f"model: {path}\nmachine: {machine()}\ncalls: {n} ({args.articles} articles x {args.iterations} iterations); "
          f"load + warm-up {load:.2f} s excluded\n")
    print(table(["", "seconds", "share of loop"], rows))
    print(f"\nper call: {loop / n:.3f} s, of which harness {(loop - engine) / n * 1000:.1f} ms")


if __name__ == "__main__":
    main()
