"""Label scoring on an OpenAI-compatible server against generation on the same server: seconds per
item of each, side by side on the same items (the order alternating item by item), how often the
two give the same label, and how many labels the server's alternatives left unscored, for each
``top_logprobs`` asked.

- generate: the backend's chat with the labels' JSON schema, greedy, as `decoding: generate` asks;
- logprob N: `decoding: logprob` with `options.top_logprobs: N` (one greedy reply with logprobs).

Starts `python -m llama_cpp.server` on 127.0.0.1 with the embedded Gemma 3 270M (one thread unless
--threads), or asks a server already running (--base-url, --model-name).

Usage: python benchmarks/server_label_scoring.py [--example sst2] [--n 20] [--top 5 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import ROOT, embedded_model, machine, table

from benchmark.backends.openai_compat import OpenAICompatBackend
from benchmark.config import load_config
from benchmark.tasks import task_for


def start_server(threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model()), "--host",
                                 "127.0.0.1", "--port", str(port), "--chat_format", "gemma", "--n_ctx", "2048",
                                 "--n_threads", str(threads), "--n_threads_batch", str(threads), "--model_alias",
                                 "gemma3-270m"], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(900):
        try:
            urllib.request.urlopen(base + "/models", timeout=1)
            return proc, base
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start:\n" + log.read_text()[-2000:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default="sst2")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--top", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--model-name", default="gemma3-270m")
    args = ap.parse_args()

    cfg = load_config(ROOT / "examples" / args.example / "config.yaml")
    task = task_for(cfg)
    items = task.load_items(cfg, warn=print)[: args.n]
    proc = None
    base = args.base_url
    if base is None:
        proc, base = start_server(args.threads, Path(tempfile.mkdtemp()) / "server.log")
    try:
        arms = {"generate": OpenAICompatBackend(base, args.model_name)}
        arms.update({f"logprob {k}": OpenAICompatBackend(base, args.model_name, top_logprobs=k) for k in args.top})
        for b in arms.values():
            b.load()
        constraint = task.constraint()
        seconds = {name: [] for name in arms}
        labels = {name: [] for name in arms}
        unscored = {name: 0 for name in arms}
        warm = task.messages(items[0], "few_shot")
        arms["generate"].chat(warm, schema=constraint.schema, max_tokens=cfg.run.num_predict)
        for n, item in enumerate(items):
            messages = task.messages(item, "few_shot")
            order = list(arms) if n % 2 == 0 else list(reversed(arms))
            for name in order:
                t0 = time.perf_counter()
                if name == "generate":
                    reply = arms[name].chat(messages, schema=constraint.schema, max_tokens=cfg.run.num_predict)
                    labels[name].append(task.parse(reply.text).label)
                else:
                    scored = arms[name].score_choices(messages, task.choices())
                    labels[name].append(max(scored.probs, key=scored.probs.get) if scored.probs else None)
                    unscored[name] += len(scored.unscored)
                seconds[name].append(time.perf_counter() - t0)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    gen = statistics.median(seconds["generate"])
    rows = []
    for name in arms:
        same = sum(a == b for a, b in zip(labels[name], labels["generate"])) / len(items)
        med = statistics.median(seconds[name])
        rows.append([name, med, med / gen, same, unscored[name] if name != "generate" else "-"])
    print(f"{machine()}\n{args.example}: {len(items)} items, llama_cpp.server with {args.threads} thread(s)\n")
    print(table(["arm", "median s/item", "x generate", "same label as generate", "labels unscored"], rows))


if __name__ == "__main__":
    main()
