"""Per-call time of every candidate rung of the demo's two families, side by side in one run, and
what a demo of the chosen ladders would take.

Builds (or keeps, in --out) the ladders of Gemma 3 270M and SmolLM2-135M with the candidate rungs
(timing each quantization), writes one demo config with all of them (shootout.demo.write_config),
loads every rung into one process and asks the demo's calls (the sentiment task, few-shot, JSON
schema, temperature 0.7, 256 tokens at most) interleaved: for each article, every rung once, the
order rotated from article to article, so that a shared machine's changing load falls on all rungs
alike. Each engine keeps its own context, so the few-shot prefix is reused per rung as in the demo.

Then the projection: the demo's calls (articles x iterations per rung) of each family's chosen
ladder (shootout.demo.LADDERS) at the measured seconds per call, plus loads and ladder builds, and
the ratio of the two-family demo's call time to the earlier Gemma-only demo's (F16/Q8_0/Q5_K_M/
Q4_K_M).

Usage: python benchmarks/demo_rungs.py [--articles 6] [--out DIR] [--threads N]
       [--demo-articles 24] [--demo-iterations 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import machine, table

EARLIER = ("F16", "Q8_0", "Q5_K_M", "Q4_K_M")  # the demo's ladder before the second family
CANDIDATES = {"gemma3-270m": ("Q8_0", "Q5_K_M", "Q4_K_M", "Q4_0"),
              "smollm2-135m": ("Q8_0", "Q5_0", "Q4_K_M", "Q4_0")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=6, help="articles asked of every rung")
    ap.add_argument("--out", type=Path, default=None, help="keep the ladders here")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default SHOOTOUT_THREADS or cores)")
    ap.add_argument("--demo-articles", type=int, default=24)
    ap.add_argument("--demo-iterations", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        os.environ["SHOOTOUT_THREADS"] = str(args.threads)
    from benchmark.backends import make_backend
    from benchmark.config import load_config
    from benchmark.tasks import task_for
    from core import sysinfo
    from core.embedded import embedded_gguf
    from export.quantize import build_ladder
    from shootout.demo import LADDERS, model_name, write_config

    tmp = None if args.out else tempfile.TemporaryDirectory()
    out = args.out or Path(tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    build: dict[str, float | None] = {}
    ladders = {}
    for family, rungs in CANDIDATES.items():
        src = embedded_gguf(model_name=LADDERS[family].model)

        def note(q, path, secs, family=family):
            build[model_name(family, q)] = secs

        ladders[family] = build_ladder(src, out / "models", family, rungs, progress=note)
    cfg = load_config(write_config(out, ladders, 1, args.articles))
    task = task_for(cfg)
    items = task.load_items(cfg, warn=print)[:args.articles]
    constraint = task.constraint()
    engines, loads = {}, {}
    for m in cfg.models:
        b = make_backend(m, cfg)
        t0 = time.perf_counter()
        b.load()
        b.chat(task.messages(task.warmup_item(), "few_shot", None, None), schema=constraint.schema,
               grammar=constraint.grammar, temperature=0.7, seed=1, max_tokens=16)  # the demo's warm-up
        loads[m.name] = time.perf_counter() - t0
        engines[m.name] = b
    names = list(engines)
    calls: dict[str, list] = {n: [] for n in names}
    t_run = time.perf_counter()
    for k, item in enumerate(items):
        messages = task.messages(item, "few_shot", None, None)
        for n in names[k % len(names):] + names[:k % len(names)]:
            t0 = time.perf_counter()
            reply = engines[n].chat(messages, schema=constraint.schema, grammar=constraint.grammar, temperature=0.7,
                                    seed=1234 + k, max_tokens=256)
            calls[n].append((time.perf_counter() - t0, reply, task.parse(reply.text).valid))
    run_s = time.perf_counter() - t_run
    for b in engines.values():
        b.close()

    per = {n: statistics.mean(c[0] for c in calls[n]) for n in names}
    rows = []
    for family, ladder in ladders.items():
        ref = per[model_name(family, "F16")]
        for q, path in ladder.items():
            n = model_name(family, q)
            cs = calls[n]
            gen_tok = sum(c[1].completion_tokens for c in cs) / sum(c[1].gen_seconds for c in cs)
            rows.append([n, f"{path.stat().st_size / 2**20:.1f}", "kept" if build[n] is None else f"{build[n]:.1f}",
                         len(cs), per[n], f"{per[n] / ref:.2f}", statistics.mean(c[1].prompt_seconds for c in cs),
                         statistics.mean(c[1].gen_seconds for c in cs),
                         f"{statistics.mean(c[1].completion_tokens for c in cs):.1f}", f"{gen_tok:.1f}",
                         f"{sum(c[2] for c in cs) / len(cs):.0%}", f"{loads[n]:.1f}"])
    print(f"machine: {machine()}; llama.cpp threads {sysinfo.default_threads()}; {len(names)} rungs x "
          f"{len(items)} articles, interleaved ({run_s:.0f} s of calls)\n")
    print(table(["model", "MiB", "built s", "calls", "s / call", "x F16", "prompt s", "gen s", "tokens", "gen tok/s",
                 "valid", "load+warm s"], rows))
    n_calls = args.demo_articles * args.demo_iterations
    total = 0.0
    lines = []
    for family, spec in LADDERS.items():
        chosen = [model_name(family, q) for q in ("F16", *spec.rungs)]
        secs = sum(per[n] * n_calls + loads[n] + (build[n] or 0) for n in chosen)
        total += secs
        lines.append(f"  {family}: {', '.join(('F16', *spec.rungs))}: {len(chosen)} x {n_calls} calls, "
                     f"{secs / 60:.1f} min with loads and the ladder build")
    gemma = [model_name("gemma3-270m", q) for q in EARLIER]
    every = [model_name(f, q) for f, spec in LADDERS.items() for q in ("F16", *spec.rungs)]
    print(f"\nprojected demo ({args.demo_articles} articles x {args.demo_iterations} iterations, the chosen ladders):")
    print("\n".join(lines))
    print(f"  calls, loads and ladders: {total / 60:.1f} min (the report and charts come on top)")
    print(f"  seconds of calls, the chosen ladders / the earlier demo's Gemma ladder {'/'.join(EARLIER)} (same "
          "articles and iterations): "
          f"{sum(per[n] for n in every) / sum(per[n] for n in gemma):.2f}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
