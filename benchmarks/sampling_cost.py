"""CPU time the engine spends choosing one token, apart from decoding: the default sampling
(``fast``: numpy over llama.cpp's logits, the chain over the top candidates) against llama.cpp's
sampler over the whole vocabulary (``reference``), on logits the model really produced.

    python benchmarks/sampling_cost.py [--model GGUF] [--positions 64] [--runs 5]

It decodes a few sentiment replies, keeps the logits of ``--positions`` steps, then times, for
greedy and for temperature 0.7: each mode's choice of a token from each kept logit vector (the
grammar-free path, as in an unconstrained call), ``--runs`` times; prints the median and range of
microseconds per token, and checks that both modes chose the same tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import embedded_model, machine, table

from engine.llamacpp import LlamaCppBackend
from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot


def capture(eng: LlamaCppBackend, n: int) -> list:
    """Logit vectors (copies) at the first steps of greedy replies to a few prompts."""
    out = []
    for art in load_snapshot():
        prompt = eng.prompt_tokens(SENTIMENT.messages(art.to_item(), "few_shot"))
        eng.clear_cache()
        eng._decode(prompt)
        for _ in range(16):
            logits = eng._logits().copy()
            out.append(logits)
            eng._decode_one(int(logits.argmax()))
            if len(out) >= n:
                return out
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--chat-template", default=None)
    ap.add_argument("--positions", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    path = a.model or str(embedded_model())
    eng = LlamaCppBackend(path, chat_template=a.chat_template or ("gemma" if a.model is None else None),
                          n_ctx=4096)
    eng.load()
    vectors = capture(eng, a.positions)
    rows, chosen = [], {}
    for temperature in (0.0, 0.7):
        eng._greedy = temperature <= 0
        for mode in ("reference", "fast"):
            eng.sampling = mode
            times = []
            for _ in range(a.runs):
                chain = eng._chain(temperature, seed=7)
                t0 = time.perf_counter()
                tokens = [eng._sample_free(chain, v) for v in vectors]
                times.append((time.perf_counter() - t0) / len(vectors) * 1e6)
                eng.L.llama_sampler_free(chain)
            chosen[(temperature, mode)] = tokens
            rows.append([f"T={temperature} {mode}", f"{statistics.median(times):.0f}",
                         f"{min(times):.0f}-{max(times):.0f}"])
        same = chosen[(temperature, "fast")] == chosen[(temperature, "reference")]
        rows.append([f"T={temperature} same tokens", str(same), ""])
    eng.close()
    print(f"model: {path}, vocabulary {eng.n_vocab}\nmachine: {machine()}\n{len(vectors)} logit vectors, "
          f"{a.runs} runs each; microseconds per token, median (range)\n")
    print(table(["sampling", "us/token", "range"], rows))


if __name__ == "__main__":
    main()
