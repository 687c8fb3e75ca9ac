"""The engine's per-token host work apart from decoding, on logits the model really produced: choosing a
token (free) and choosing it under the task's JSON grammar (constrained), at temperature 0 and 0.7.

    python benchmarks/sampling_cost.py [--model GGUF] [--replies 4] [--runs 5] [--decode-ms 1.0]

It generates schema-constrained sentiment replies (few-shot prompts, one seed per reply) and keeps
the logits of every step. Then, with llama.cpp's decoding out of the way, it replays each reply:
the same logits, the same seed, so the same tokens come out (checked), timing per token
- free: the sampler alone (``_sample_free``), as an unconstrained call chooses;
- constrained: the grammar's whole step (``_sample``: the sampled token checked, the grammar's
  passes when it is rejected, the grammar advanced);
each with the default sampling (``fast``), the default less its near-top step (``top-40``: the 40
largest logits always; the sampling of earlier versions) and llama.cpp's sampler over the whole
vocabulary (``reference``). Every configuration once per round, ``--runs`` rounds: median and
range of microseconds per token. Last, the constrained / free ratio these costs give with
decoding at ``--decode-ms`` per token (1 ms: Gemma 3 270M on an H200, tg128 at depth ~1,000 tok/s),
and the same ratio measured end to end here through ``chat`` (decoding on this CPU dominates).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import embedded_model, machine, table

from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot
from engine.llamacpp import LlamaCppBackend

MODES = ("fast", "top-40", "reference")


def capture(eng: LlamaCppBackend, prompts, temperature: float, max_tokens: int) -> list[dict]:
    """Constrained replies with the logits of every step (copies) and the tokens chosen."""
    out = []
    for i, msgs in enumerate(prompts):
        steps: list[np.ndarray] = []
        tokens: list[int] = []
        original = eng._sample

        def recording(chain, grammar):
            steps.append(eng._logits().copy())
            token = original(chain, grammar)
            tokens.append(token)
            return token

        eng._sample = recording
        try:
            eng.chat(msgs, schema=SENTIMENT.constraint().schema, temperature=temperature, seed=100 + i,
                     max_tokens=max_tokens)
        finally:
            del eng._sample
        out.append({"seed": 100 + i, "logits": steps, "tokens": tokens})
    return out


def replay(eng: LlamaCppBackend, replies, temperature: float, mode: str, constrained: bool) -> tuple[float, int, bool]:
    """(seconds, tokens, same tokens as captured) of choosing every captured token again."""
    eng.sampling = "reference" if mode == "reference" else "fast"
    if mode == "top-40":
        eng._near_top = lambda logits: None
    current = [None]
    eng._logits = lambda: current[0]
    if mode == "reference":  # llama_sampler_sample over these logits instead of the context's
        eng._sample_free = lambda chain, logits=None: type(eng)._sample_free(eng, chain, current[0])
    schema = SENTIMENT.constraint().schema
    secs, n, same = 0.0, 0, True
    try:
        for r in replies:
            chain = eng._chain(temperature, r["seed"])
            eng._greedy = temperature <= 0
            grammar = eng._grammar(schema) if constrained else None
            got = []
            t0 = time.perf_counter()
            for logits in r["logits"]:
                current[0] = logits
                got.append(eng._sample(chain, grammar) if constrained else eng._sample_free(chain))
            secs += time.perf_counter() - t0
            eng.L.llama_sampler_free(chain)
            n += len(got)
            if constrained:
                same &= got == r["tokens"]
    finally:
        del eng._logits
        eng.__dict__.pop("_near_top", None)
        eng.__dict__.pop("_sample_free", None)
        eng.sampling = "fast"
    return secs, n, same


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--chat-template", default=None)
    ap.add_argument("--replies", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--decode-ms", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    path = a.model or str(embedded_model())
    eng = LlamaCppBackend(path, chat_template=a.chat_template or ("gemma" if a.model is None else None),
                          n_ctx=4096, n_threads=a.threads)
    eng.load()
    arts = load_snapshot()
    prompts = [SENTIMENT.messages(x.to_item(), "few_shot") for x in (arts * 4)[: a.replies]]
    temps = (0.0, 0.7)
    captured = {t: capture(eng, prompts, t, a.max_tokens) for t in temps}
    configs = [(t, m, c) for t in temps for m in MODES for c in (False, True)]
    times: dict = {k: [] for k in configs}
    same: dict = {k: True for k in configs}
    for _ in range(a.runs):
        for key in configs:
            t, m, c = key
            s, n, ok = replay(eng, captured[t], t, m, c)
            times[key].append(s / n * 1e6)
            same[key] &= ok
    # end to end here: chat, free and constrained, alternating, at T=0.7
    e2e = {False: [], True: []}
    for r in range(a.runs):
        for c in ((False, True) if r % 2 == 0 else (True, False)):
            toks = secs = 0
            for i, m in enumerate(prompts):
                rep = eng.chat(m, schema=SENTIMENT.constraint().schema if c else None, temperature=0.7,
                               seed=500 + i, max_tokens=a.max_tokens)
                toks += rep.completion_tokens
                secs += rep.gen_seconds
            e2e[c].append(toks / secs)
    eng.close()

    n_tok = {t: sum(len(r["tokens"]) for r in captured[t]) for t in temps}
    print(f"model: {path}, vocabulary {eng.n_vocab}\nmachine: {machine()}\n{a.replies} constrained sentiment "
          f"replies per temperature ({n_tok[0.0]} and {n_tok[0.7]} tokens), replayed {a.runs} times; "
          f"microseconds per token, median (range)\n")
    rows = []
    for t in temps:
        for m in MODES:
            free, con = times[(t, m, False)], times[(t, m, True)]
            proj = (a.decode_ms * 1e3 + statistics.median(free)) / (a.decode_ms * 1e3 + statistics.median(con))
            rows.append([f"T={t} {m}", f"{statistics.median(free):.0f} ({min(free):.0f}-{max(free):.0f})",
                         f"{statistics.median(con):.0f} ({min(con):.0f}-{max(con):.0f})",
                         f"{statistics.median(con) - statistics.median(free):.0f}", f"{proj:.3f}",
                         "yes" if same[(t, m, True)] else "NO"])
    print(table(["sampling", "free us/token", "constrained us/token", "grammar us/token",
                 f"constrained/free at {a.decode_ms:g} ms decode", "same tokens"], rows))
    ratios = [c / f for c, f in zip(e2e[True], e2e[False])]
    print(f"\nend to end here (chat, T=0.7, decoding on this CPU): free {statistics.median(e2e[False]):.1f} tok/s, "
          f"constrained {statistics.median(e2e[True]):.1f} tok/s; constrained/free per round: median "
          f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, {a.runs} rounds)")
    print(f"grammar passes in the last replay rounds: {eng.stats}")


if __name__ == "__main__":
    main()
