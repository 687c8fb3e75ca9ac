"""The engine's in-process llama-bench figures (``speed_bench``: pp512, tg128, tg128 at a depth, mean
+- sd of 5 repetitions) beside ``llama-bench`` from the same llama.cpp build, in rounds that alternate
the two (engine, llama-bench, engine, llama-bench, ...), so a drift of the machine falls on both.

    python benchmarks/llama_bench_compare.py [--model GGUF] [--llama-bench PATH] [--depth N]
        [--rounds 2] [--reps 5] [--threads N] [--gpu-layers N] [--json OUT]

The depth defaults to the median length of the sentiment task's few-shot prompts on this model.
Without llama-bench (none given, none on PATH) it prints the engine's figures alone. The ratio per
test is engine / llama-bench of the means, per round, and their median over rounds.

    python benchmarks/llama_bench_compare.py --db results.sqlite [--run-id ID] [--llama-bench PATH]

compares the blocks a run stored (the Speed sheet: measured after each in-process model's first
warm-up) with llama-bench on the same GGUFs, at the run's depth, repetitions and threads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
from pathlib import Path

from _common import embedded_model, machine, table

from engine.llamacpp import LlamaCppBackend


def llama_bench_rows(binary: str, model: str, depth: int, reps: int, threads: int | None,
                     ngl: int | None) -> list[dict]:
    """llama-bench's JSON rows for pp512 + tg128, then tg128 at ``depth`` (when this build knows -d)."""
    runs = [["-p", "512", "-n", "128"]]
    helptext = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    if depth > 0 and "n-depth" in helptext:
        runs.append(["-p", "0", "-n", "128", "-d", str(depth)])
    rows = []
    for extra in runs:
        cmd = [binary, "-m", model, "-r", str(reps), "-o", "json", *extra]
        if threads:
            cmd += ["-t", str(threads)]
        if ngl is not None:
            cmd += ["-ngl", str(ngl)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"llama-bench failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
        rows += json.loads(out.stdout)
    return rows


def bench_name(row: dict) -> str:
    name = f"pp{row['n_prompt']}" if row.get("n_prompt") and not row.get("n_gen") else f"tg{row['n_gen']}"
    return name + (f" @ d{row['n_depth']}" if row.get("n_depth") else "")


def prompt_depth(eng: LlamaCppBackend) -> int:
    from benchmark.tasks.sentiment import SENTIMENT
    from benchmark.tasks.sentiment.news import load_snapshot

    lengths = [len(eng.prompt_tokens(SENTIMENT.messages(a.to_item(), "few_shot"))) for a in load_snapshot()[:12]]
    return int(statistics.median(lengths))


def stored(db: Path, run_id: str | None, binary: str | None, gpu_layers: int | None) -> None:
    """A run's stored blocks beside llama-bench on the same GGUFs (``--db``)."""
    from benchmark.store import Store

    with Store(db, create=False) as store:
        rid = run_id or store.latest_run_id(with_calls=True)
        rows = store.bench_rows(rid)
        where = {a.entry: a.location for a in store.arm_rows(rid)}
    if not rows:
        raise SystemExit(f"run {rid} in {db} holds no speed block (no in-process model, or run.speed_bench: false)")
    out = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        engine = json.loads(mine[0].engine_json or "{}")
        depth = max(r.n_depth for r in mine)
        theirs = {}
        if binary and where.get(model):
            theirs = {bench_name(b): b for b in llama_bench_rows(binary, where[model], depth, mine[0].reps,
                                                                 engine.get("n_threads"), gpu_layers)}
        for r in mine:
            b = theirs.get(r.test)
            out.append([model, r.test, f"{r.avg_ts:.2f} +- {r.stddev_ts or 0:.2f}",
                        f"{b['avg_ts']:.2f} +- {b['stddev_ts']:.2f}" if b else "-",
                        f"{r.avg_ts / b['avg_ts']:.3f}" if b else "-"])
    print(f"run {rid} in {db}; llama-bench: {binary or 'not found (stored figures only)'}\n")
    print(table(["model", "test", "stored (engine)", "llama-bench", "engine / llama-bench"], out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, default=None, help="compare a run's stored speed blocks instead")
    ap.add_argument("--run-id", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--chat-template", default=None)
    ap.add_argument("--llama-bench", default=None)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--gpu-layers", type=int, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    binary = a.llama_bench or shutil.which("llama-bench")
    if a.db:
        stored(a.db, a.run_id, binary, a.gpu_layers)
        return
    path = Path(a.model) if a.model else embedded_model()
    eng = LlamaCppBackend(path, n_ctx=4096, n_threads=a.threads, n_gpu_layers=a.gpu_layers,
                          chat_template=a.chat_template or ("gemma" if a.model is None else None))
    eng.load()
    depth = a.depth if a.depth is not None else prompt_depth(eng)
    rounds = []
    for _ in range(a.rounds):
        engine = eng.speed_bench(depth=depth, reps=a.reps)
        bench = llama_bench_rows(binary, str(path), depth, a.reps, eng.n_threads, a.gpu_layers) if binary else []
        rounds.append({"engine": engine, "llama_bench": bench})
    info = eng.engine_info()
    eng.close()

    rows, ratios = [], {}
    for r, got in enumerate(rounds, 1):
        theirs = {bench_name(b): b for b in got["llama_bench"]}
        for t in got["engine"]["tests"]:
            b = theirs.get(t["test"])
            ratio = t["avg_ts"] / b["avg_ts"] if b else None
            if ratio:
                ratios.setdefault(t["test"], []).append(ratio)
            rows.append([r, t["test"], f"{t['avg_ts']:.2f} +- {t['stddev_ts']:.2f}",
                         f"{b['avg_ts']:.2f} +- {b['stddev_ts']:.2f}" if b else "-",
                         f"{ratio:.3f}" if ratio else "-"])
    e0 = rounds[0]["engine"]
    build = rounds[0]["llama_bench"][0].get("build_commit") if rounds[0]["llama_bench"] else None
    print(f"model: {path} ({info['model_desc']})\nmachine: {machine()}\nengine: llama-cpp-python "
          f"{info['llama_cpp_python']}, {e0['n_threads']} threads, n_batch {e0['n_batch']}, layers offloaded "
          f"{info.get('layers_offloaded')}/{info.get('layers_offloadable')}; llama-bench: "
          f"{binary or 'not found (engine figures only)'}" + (f", build {build}" if build else "")
          + f"\ntokens/s, mean +- sd of {a.reps} repetitions; depth {depth} (the sentiment prompts' median length)"
          f"; a token reads {e0['weights_bytes_per_token'] / 2**20:.1f} MiB of weights"
          + (f" + {e0['kv_bytes_per_token_at_depth'] / 2**20:.1f} MiB of KV cache at depth"
             if e0['kv_bytes_per_token_at_depth'] else "") + "\n")
    print(table(["round", "test", "engine", "llama-bench", "engine / llama-bench"], rows))
    if ratios:
        print("\nmedian over rounds: " + ", ".join(f"{k} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"
                                                    for k, v in ratios.items()))
    if a.json:
        Path(a.json).write_text(json.dumps({"model": str(path), "machine": machine(), "engine_info": info,
                                            "depth": depth, "rounds": rounds,
                                            "ratio_median": {k: statistics.median(v) for k, v in ratios.items()}},
                                           indent=1, default=str))


if __name__ == "__main__":
    main()
