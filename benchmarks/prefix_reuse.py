"""Per-article latency with and without reuse of the few-shot prefix in the KV cache, on the
same articles and seeds, alternating the two modes article by article.

Usage: python benchmarks/prefix_reuse.py [--model GGUF] [--n 12] [--gpu-layers N]
"""

from __future__ import annotations

import argparse
import statistics

from _common import embedded_model, machine, table

from engine.llamacpp import LlamaCppBackend
from benchmark.tasks.sentiment.news import load_snapshot
from benchmark.tasks.sentiment import SENTIMENT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--gpu-layers", type=int, default=None)
    args = ap.parse_args()
    path = args.model or str(embedded_model())
    eng = LlamaCppBackend(path, chat_template="gemma", n_gpu_layers=args.gpu_layers)
    eng.load()
    arts = load_snapshot()[: args.n]
    warm = SENTIMENT.messages(arts[0].to_item(), "few_shot")
    eng.chat(warm, schema=SENTIMENT.constraint().schema, temperature=0.0, max_tokens=8)
    lat = {"reuse": [], "no reuse": []}
    prompt_eval = {"reuse": [], "no reuse": []}
    cached = []
    for i, a in enumerate(arts):
        m = SENTIMENT.messages(a.to_item(), "few_shot")
        for mode in (("reuse", "no reuse") if i % 2 == 0 else ("no reuse", "reuse")):
            if mode == "no reuse":
                eng.clear_cache()
            else:  # put the cache back to "prefix of the previous article", as in a run
                prev = arts[i - 1] if i else arts[-1]
                eng.clear_cache()
                eng.chat(SENTIMENT.messages(prev.to_item(), "few_shot"), schema=SENTIMENT.constraint().schema,
                         temperature=0.0, max_tokens=1)
            r = eng.chat(m, schema=SENTIMENT.constraint().schema, temperature=0.0, seed=i, max_tokens=160)
            lat[mode].append(r.wall_seconds)
            prompt_eval[mode].append(r.prompt_seconds)
            if mode == "reuse":
                cached.append(r.cached_tokens)
    prompt_len = len(eng.prompt_tokens(SENTIMENT.messages(arts[0].to_item(), "few_shot")))
    eng.close()
    base = statistics.fmean(lat["no reuse"])
    rows = [[k, statistics.fmean(v), statistics.fmean(prompt_eval[k]), base / statistics.fmean(v)] for k, v in lat.items()]
    print(f"model: {path}\nmachine: {machine()}\narticles: {args.n}; prompt about {prompt_len} tokens, of which "
          f"{min(cached)}-{max(cached)} came from the cache when reusing\n")
    print(table(["mode", "s per article", "s prompt eval", "speed-up"], rows))


if __name__ == "__main__":
    main()
