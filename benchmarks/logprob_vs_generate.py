"""Label scoring against label-constrained generation on a classification example: the seconds
per item of each, side by side on the same items (alternating the order item by item), and how
often the two give the same label.

- generate: the task's label grammar, greedy (temperature 0), as a `decoding: generate` run asks;
- logprob: every label's log-probability from one evaluation of the prompt (`decoding: logprob`).

Usage: python benchmarks/logprob_vs_generate.py [--example sst2] [--n 40] [--model GGUF]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import ROOT, embedded_model, machine, table

from engine.llamacpp import LlamaCppBackend
from benchmark.config import load_config
from benchmark.tasks import task_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default="sst2")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--model", default=None)
    ap.add_argument("--gpu-layers", type=int, default=None)
    args = ap.parse_args()
    cfg = load_config(ROOT / "examples" / args.example / "config.yaml")
    task = task_for(cfg)
    items = task.load_items()[: args.n]
    eng = LlamaCppBackend(args.model or embedded_model(), n_ctx=cfg.run.num_ctx, chat_template="gemma",
                          n_gpu_layers=args.gpu_layers)
    eng.load()
    c, choices = task.constraint(), task.choices()
    eng.chat(task.messages(items[0], "few_shot"), schema=c.schema, grammar=c.grammar, max_tokens=16)  # warm cache
    secs = {"generate": [], "logprob": []}
    same = 0
    for i, item in enumerate(items):
        msgs = task.messages(item, "few_shot")
        got = {}
        for mode in (("generate", "logprob") if i % 2 == 0 else ("logprob", "generate")):
            t0 = time.perf_counter()
            if mode == "generate":
                got[mode] = task.parse(eng.chat(msgs, schema=c.schema, grammar=c.grammar, temperature=0.0,
                                                max_tokens=16).text).label
            else:
                scored = eng.score_choices(msgs, choices)
                got[mode] = max(scored.probs, key=scored.probs.get)
            secs[mode].append(time.perf_counter() - t0)
        same += got["generate"] == got["logprob"]
    eng.close()
    gen, lp = statistics.median(secs["generate"]), statistics.median(secs["logprob"])
    print(f"model: {args.model or 'embedded Gemma 3 270M Q4_K_M'}\nmachine: {machine()}\n"
          f"task: {task.name}, {len(items)} items, few-shot prompts, {len(task.labels)} labels, "
          f"answer {task.spec.answer}\n")
    print(table(["mode", "median s/item", "x generate"],
                [["generate (label grammar, greedy)", gen, 1.0], ["logprob (every label scored)", lp, lp / gen]]))
    print(f"\nsame label: {same}/{len(items)} ({same / len(items):.1%})")


if __name__ == "__main__":
    main()
