"""Throughput with 1, 2 and 4 endpoints, side by side in one run: N OpenAI-compatible servers of
one GGUF (llama.cpp's llama-server, or llama-cpp-python's server) on 127.0.0.1, the same grid of
calls spread over them by the scheduler, requests/s and generated tokens/s for each N and as a
ratio to one endpoint.

Usage:
  python benchmarks/endpoints_throughput.py --model M.gguf [--endpoints 1,2,4] [--concurrency 1]
      [--items 24] [--iterations 2] [--gpus 2] [--server "llama-server -m {model} --port {port} -ngl 99"]

The default server is `python -m llama_cpp.server` (one thread each on a CPU machine). With --gpus
K the i-th server sees GPU i mod K only (CUDA_VISIBLE_DEVICES): one server per GPU when N <= K,
several per GPU beyond. Replies are not constrained and run to --max-tokens, so every call
generates the same number of tokens whatever the weights (random weights are fine for speed).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import machine, table

DEFAULT_SERVER = (f"{sys.executable} -m llama_cpp.server --model {{model}} --host 127.0.0.1 --port {{port}} "
                  "--n_threads 1 --n_ctx 2048 --model_alias m")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: str, model: str, n: int, gpus: int) -> tuple[list[subprocess.Popen], list[str]]:
    procs, urls = [], []
    for i in range(n):
        port = _port()
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        log = tempfile.TemporaryFile()  # the server's output, shown if it fails to come up
        procs.append(subprocess.Popen(shlex.split(cmd.format(model=model, port=port)), env=env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        procs[-1].log = log
        urls.append(f"http://127.0.0.1:{port}/v1")
    for url, p in zip(urls, procs):
        t0 = time.time()
        while True:
            if p.poll() is not None:
                p.log.seek(0)
                tail = p.log.read().decode("utf-8", "replace")[-3000:]
                raise SystemExit(f"server for {url} exited with {p.returncode}:\n{tail}")
            try:
                urllib.request.urlopen(url + "/models", timeout=2)
                break
            except OSError:
                if time.time() - t0 > 300:
                    raise SystemExit(f"{url} did not come up")
                time.sleep(0.5)
    return procs, urls


def stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def run_grid(urls: list[str], concurrency: int, items: int, iterations: int, max_tokens: int, workdir: Path):
    import sqlite3

    from benchmark.config import load_config
    from benchmark.run.runner import Runner
    from benchmark.store import Store

    cfg_path = workdir / f"n{len(urls)}.yaml"
    cfg_path.write_text(
        f"task: sentiment\nnews: {{source: snapshot, max_articles: {items}}}\n"
        f"run: {{iterations: {iterations}, temperature: 0.7, num_predict: {max_tokens}, seed: 1, "
        f"structured_output: false, warmup: true, concurrency: {concurrency}, database: n{len(urls)}.sqlite}}\n"
        "models:\n  - {name: m, backend: openai, model: m, family: f, quant: q, prompt_style: zero_shot, endpoints: ["
        + ", ".join(urls) + "]}\n")
    cfg = load_config(cfg_path)
    t0 = time.perf_counter()
    with Store(workdir / f"n{len(urls)}.sqlite") as store:
        Runner(cfg, store, progress=False).run()
        wall = time.perf_counter() - t0
    # the same figures as benchmark.stats.throughput, in SQL (no pandas needed on a bare GPU box)
    con = sqlite3.connect(workdir / f"n{len(urls)}.sqlite")
    n, tokens, start, end = con.execute("SELECT COUNT(*), SUM(completion_tokens), MIN(started_at), "
                                        "MAX(started_at + wall_seconds) FROM calls").fetchone()
    per = [c for _, c in con.execute("SELECT endpoint, COUNT(*) FROM calls GROUP BY endpoint ORDER BY endpoint")]
    con.close()
    span = end - start
    return {"calls": n, "wall_s": wall, "req_s": n / span, "tok_s": tokens / span, "tokens": tokens,
            "per_endpoint": per}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--endpoints", default="1,2,4")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--gpus", type=int, default=0)
    ap.add_argument("--server", default=DEFAULT_SERVER)
    args = ap.parse_args()
    rows = []
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.endpoints.split(",")):
            procs, urls = start(args.server, args.model, n, args.gpus)
            try:
                r = run_grid(urls, args.concurrency, args.items, args.iterations, args.max_tokens, Path(tmp))
            finally:
                stop(procs)
            base = base or r["req_s"]
            rows.append([n, r["calls"], r["wall_s"], r["req_s"], r["tok_s"], r["req_s"] / base,
                         "/".join(map(str, r["per_endpoint"]))])
    print(f"model: {args.model}\nmachine: {machine()}\nservers: {args.server}\n"
          f"grid: {args.items} items x {args.iterations} iterations, {args.max_tokens} tokens per reply, "
          f"{args.concurrency} call(s) in flight per endpoint, GPUs {args.gpus or 'none'}\n")
    print(table(["endpoints", "calls", "wall s", "requests/s", "gen tok/s", "x 1 endpoint", "calls per endpoint"],
                rows))


if __name__ == "__main__":
    main()
