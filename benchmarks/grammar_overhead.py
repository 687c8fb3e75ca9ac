"""What a schema's grammar costs per generated token on the host, side by side in one process: the
sampler step's own time (``_draw``: the draw, the grammar's check and passes; decode excluded) and,
apart, the grammar taking the token (``_accept``, which ``chat`` runs after launching the next
decode: on a GPU it overlaps the device's work, on a CPU it adds to it), for free replies and for
schema-constrained ones, the latter with and without the kept set of tokens allowed after the JSON
value has ended (engine.grammar, ``_end_allowed``):

    python benchmarks/grammar_overhead.py [--model GGUF] [--n 12] [--rounds 3] [--temperatures 0,0.7]

Every configuration runs once per round, in the same order, on the same prompts and seeds; the
constrained replies with and without the kept set must be the same text (checked: the run stops
otherwise). Figures: microseconds of sampler step per token (median of the rounds), the number of
steps that needed more than the drawn token's check, and tokens/s of generation (decode included),
whose ratio constrained / free is issue 27's part 5 figure where decoding is fast (a GPU); and free
replies cut at the constrained replies' lengths (prompt by prompt), so that the per-call costs of a
short reply (the first steps after a prompt) weigh alike on both sides of that ratio."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _common import embedded_model, machine, table

from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot
from engine.llamacpp import LlamaCppBackend


def one_run(eng: LlamaCppBackend, prompts, schema, temperature: float, max_tokens) -> dict:
    """One reply per prompt (``max_tokens``: one limit, or one per prompt)."""
    spent, past = {"draw": 0.0, "accept": 0.0}, [0]
    draw, accept, full = eng._draw, eng._accept, eng._sample_full

    def timing(step, key):
        def timed(*args):
            t0 = time.perf_counter()
            try:
                return step(*args)
            finally:
                spent[key] += time.perf_counter() - t0
        return timed

    def counted(chain, grammar):
        past[0] += 1
        return full(chain, grammar)

    eng._draw, eng._accept, eng._sample_full = timing(draw, "draw"), timing(accept, "accept"), counted
    ends_before = eng.stats["grammar_end_passes"]
    toks = gen = 0.0
    texts, lengths = [], []
    try:
        for i, m in enumerate(prompts):
            limit = max_tokens[i] if isinstance(max_tokens, list) else max_tokens
            r = eng.chat(m, schema=schema, temperature=temperature, seed=500 + i, max_tokens=limit)
            toks += r.completion_tokens + 1  # the step that ends the reply is sampled too
            gen += r.gen_seconds
            texts.append(r.text)
            lengths.append(r.completion_tokens)
    finally:
        del eng._draw, eng._accept, eng._sample_full
    return {"us_per_token": spent["draw"] / toks * 1e6, "accept_us_per_token": spent["accept"] / toks * 1e6, "tok_s": (toks - len(prompts)) / gen, "texts": texts,
            "lengths": lengths, "full_steps": past[0], "end_passes": eng.stats["grammar_end_passes"] - ends_before}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=12, help="replies per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperatures", default="0,0.7")
    ap.add_argument("--gpu-layers", type=int, default=None, help="default: all when the build can offload")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import llama_cpp

    path = Path(a.model) if a.model else embedded_model()
    ngl = a.gpu_layers if a.gpu_layers is not None else (999 if llama_cpp.llama_supports_gpu_offload() else 0)
    prompts = [SENTIMENT.messages(x.to_item(), "few_shot") for x in (load_snapshot() * 4)[: a.n]]
    schema = SENTIMENT.constraint().schema
    eng = LlamaCppBackend(path, n_ctx=4096, n_gpu_layers=ngl, chat_template="gemma" if a.model is None else None)
    eng.load()
    eng.set_sampling("fast")  # the host's sampler: what a constrained call uses by default
    temps = [float(t) for t in a.temperatures.split(",")]
    kinds = ("free", "constrained, kept end set", "constrained, passes only", "free, constrained lengths")
    configs = [(t, kind) for t in temps for kind in kinds]
    for t in temps:  # warm-up: the first-character index, the grammar, the kept sets
        eng.chat(prompts[0], schema=schema, temperature=t, seed=1, max_tokens=a.max_tokens)
    raw: dict = {f"T={t} {k}": [] for t, k in configs}
    for _ in range(a.rounds):
        for t, kind in configs:
            eng._memo_ends = kind != "constrained, passes only"
            limit = a.max_tokens
            if kind == "free, constrained lengths":  # as many tokens per reply as the constrained one had
                limit = [max(1, n) for n in raw[f"T={t} constrained, kept end set"][-1]["lengths"]]
            raw[f"T={t} {kind}"].append(one_run(eng, prompts, None if kind.startswith("free") else schema, t, limit))
        for t in temps:  # the kept set changes nothing but the time
            kept, passes = raw[f"T={t} constrained, kept end set"][-1], raw[f"T={t} constrained, passes only"][-1]
            if kept["texts"] != passes["texts"]:
                raise SystemExit(f"T={t}: the kept end set changed a reply; it must not")
    eng.close()

    rows, out = [], {"model": path.name, "machine": machine(), "gpu_layers": ngl, "replies_per_run": a.n,
                     "rounds": a.rounds, "results": {}}
    for name, runs in raw.items():
        us = statistics.median(r["us_per_token"] for r in runs)
        tok_s = statistics.median(r["tok_s"] for r in runs)
        t = name.split(" ")[0]
        free = statistics.median(r["tok_s"] for r in raw[t + " free"])
        same = statistics.median(r["tok_s"] for r in raw[t + " free, constrained lengths"])
        acc = statistics.median(r["accept_us_per_token"] for r in runs)
        rows.append([name, f"{us:.1f}", f"{acc:.1f}", runs[0]["full_steps"], runs[0]["end_passes"], f"{tok_s:.1f}",
                     f"{tok_s / free:.3f}", f"{tok_s / same:.3f}"])
        out["results"][name] = {"us_per_token": [r["us_per_token"] for r in runs],
                                "accept_us_per_token": [r["accept_us_per_token"] for r in runs],
                                "tok_s": [r["tok_s"] for r in runs], "full_steps": runs[0]["full_steps"],
                                "end_passes": runs[0]["end_passes"]}
    print(f"{path.name}, layers offloaded {ngl}, {a.n} few-shot sentiment replies per run, {a.rounds} rounds\n")
    print(table(["configuration", "draw us/token", "accept us/token", "steps past the check", "of them: kept end set",
                 "tokens/s", "x free", "x free at the same lengths"], rows))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
