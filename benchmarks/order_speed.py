"""The demo's six rungs (Gemma 3 270M and SmolLM2-135M, F16 / Q8_0 / Q4_0 each) run twice on the same
ladders: ``run.order: grouped`` (one load per rung) and the default ``counterbalanced`` (the rungs take
turns per iteration block: one load per rung and block), to measure what counterbalancing costs in
loads and warm-ups; the counterbalanced run also measures the llama-bench-comparable block of every
rung (pp512, tg128, tg128 at the prompts' depth, 5 repetitions) and the memory copy test, and prints the
Speed sheet as the report shows it.

    python benchmarks/order_speed.py [--out DIR] [--articles 6] [--iterations 3] [--json OUT]

The threads are the engine's default (SHOOTOUT_THREADS, else every core). On a shared machine the two
runs see different loads: compare the load counts and the seconds per load, not the runs' wall times.
llama-bench itself is compared by benchmarks/llama_bench_compare.py where one is installed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import machine, table


def run(config: Path, db: Path, order: str, bench: bool) -> dict:
    from benchmark.config import load_config
    from benchmark.run.runner import Runner
    from benchmark.store import Store

    text = config.read_text().replace("run:\n", f"run:\n  order: {order}\n  speed_bench: {str(bench).lower()}\n", 1)
    path = config.with_name(f"config-{order}.yaml")
    path.write_text(text.replace("database: results.sqlite", f"database: {db.name}"))
    cfg = load_config(path)
    t0 = time.perf_counter()
    with Store(db) as store:
        result = Runner(cfg, store, run_id=order, progress=False).run()
        wall = time.perf_counter() - t0
        loads = store.loads(order)
        calls = [dict(r) for r in store.calls(order)]
        rows = store.bench_rows(order)
        bandwidth = store.bandwidth(order)
    load_s = sum((l.load_seconds or 0) + (l.warmup_seconds or 0) for l in loads)
    call_s = sum(c["wall_seconds"] or 0 for c in calls)
    bench_s = sum(json.loads(r.engine_json or "{}").get("seconds") or 0 for r in rows if r.test.startswith("pp"))
    return {"order": order, "calls": result.stored, "loads": len(loads), "load_and_warmup_s": load_s,
            "per_load_s": load_s / max(len(loads), 1), "calls_s": call_s, "bench_s": bench_s, "wall_s": wall,
            "bandwidth": bandwidth}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None, help="keep the ladders and results here")
    ap.add_argument("--articles", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="order-speed-"))
    out.mkdir(parents=True, exist_ok=True)
    from shootout.demo import prepare

    config = prepare(out, a.iterations, a.articles, log=lambda *_: None)
    got = [run(config, out / "grouped.sqlite", "grouped", False),
           run(config, out / "counterbalanced.sqlite", "counterbalanced", True)]
    print(f"machine: {machine()}\n{a.articles} articles x {a.iterations} iterations x 6 rungs per run\n")
    print(table(["order", "calls", "loads", "load + warm-up s", "s per load", "calls s", "speed block s", "wall s"],
                [[g["order"], g["calls"], g["loads"], g["load_and_warmup_s"], g["per_load_s"], g["calls_s"],
                  g["bench_s"], g["wall_s"]] for g in got]))
    extra = got[1]["load_and_warmup_s"] - got[0]["load_and_warmup_s"]
    print(f"\ncounterbalancing: {got[1]['loads'] - got[0]['loads']} more loads, {extra:.1f} s of loads and warm-ups, "
          f"{extra / got[1]['calls_s']:.1%} of the run's call time; the speed block: {got[1]['bench_s']:.1f} s")

    from benchmark import report as rpt
    from benchmark.store import Store

    with Store(out / "counterbalanced.sqlite") as store:
        rep = rpt.build(store, "counterbalanced")
    sheet = rep.sheet("Speed")
    t = sheet.table
    print("\nllama-bench-comparable block (in process), tokens/s mean +- sd:")
    print(table(["model", "test", "tok/s", "sd", "MiB/token", "bound tok/s", "share", "threads"],
                [[r.model, r.test, r.tok_s, r.tok_s_sd, r.mib_per_token, r.bound_tok_s, r.share_of_bound,
                  r.n_threads] for r in t.itertuples(index=False)]))
    print("\n" + "\n".join(rep.speed_lines))
    drift = sheet.appendix[0][2] if sheet.appendix else None
    if drift is not None and len(drift):
        print("\ndrift (late / early blocks):")
        print(table(["model", "ratio", "95% low", "95% high", "p Holm", "moved"],
                    [[r.model, r.ratio, r.ci95_low, r.ci95_high, r.p_holm, r.moved] for r in drift.itertuples()]))
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "runs": got, "bench": t.to_dict("records"),
                                      "lines": rep.speed_lines}, indent=1, default=str))


if __name__ == "__main__":
    main()
