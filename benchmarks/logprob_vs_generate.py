"""Label scoring (log-probability mode) against greedy label generation on the classification examples,
side by side in one run: per example and prompt variant, how often the two give the same label, the
share of the most frequent answer of each (a constant answer shows as 100%), and the seconds per call
of each, as ratios item by item.

Four ways of answering each item, in an order rotated item by item, on one loaded model:
- generate: the task's label grammar, greedy (temperature 0), as a `decoding: generate` run asks;
  its confidence is read from its own logits where the labels part (the chosen label's probability
  among the labels' first tokens), so "items where generation is confident" does not lean on the
  scorer;
- logprob: ``score_choices`` as a `decoding: logprob` run calls it (no end-of-turn term);
- logprob + end of turn: ``score_choices(..., end_of_turn=True)``, the unconstrained probability that
  the whole reply is the label;
- earlier scoring: the scoring this engine had before (each label its own decode, float64
  log-softmax over the vocabulary at every position, the end-of-turn term for bare labels), for the
  before/after figures.
Each item is scored again at the end, after other items: the largest change of any probability
shows whether the same item gets the same probabilities.

Usage: python benchmarks/logprob_vs_generate.py [--examples spam,sst2,...] [--n N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from _common import ROOT, embedded_model, machine, table

from benchmark.config import load_config
from benchmark.tasks import task_for
from engine.llamacpp import LlamaCppBackend

EXAMPLES = ("spam", "sst2", "stance", "sarcasm", "japanese_news")
MODES = ("generate", "logprob", "logprob_eot", "earlier")


def earlier_scoring(eng: LlamaCppBackend, messages, choices) -> dict[str, float]:
    """The label probabilities as this engine computed them before (for comparison only)."""
    text = eng.render(messages) + choices.prefix
    eog = int(eng._eog[0]) if choices.terminal else None
    seqs = {}
    for label, cont in choices.continuations.items():
        toks = eng.tokenize(text + cont)
        if eng.add_bos and toks[0] != eng.bos:
            toks.insert(0, eng.bos)
        seqs[label] = toks + ([eog] if eog is not None else [])
    first = next(iter(seqs.values()))
    shared = min(len(t) for t in seqs.values())
    for toks in seqs.values():
        shared = next((i for i, (a, b) in enumerate(zip(first, toks)) if a != b), shared)
    shared = max(1, min(shared, min(len(t) for t in seqs.values()) - 1))
    cached = eng._reuse_prefix(first[:shared])
    eng._decode(first[cached:shared - 1])
    base, out = shared - 1, {}
    for label, toks in seqs.items():
        eng.L.llama_memory_seq_rm(eng.mem, 0, base, -1)
        del eng._kv[base:]
        tail = toks[base:]
        lp = eng._decode_all(tail).astype(np.float64)
        lp = lp - lp.max(axis=1, keepdims=True)
        lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
        out[label] = float(lp[np.arange(len(tail) - 1), tail[1:]].sum())
    v = np.array(list(out.values()))
    p = np.exp(v - v.max())
    return dict(zip(out, p / p.sum()))


def generate(eng: LlamaCppBackend, task, messages, max_tokens: int) -> tuple[str | None, float | None]:
    """(label, confidence) of greedy label generation; the confidence is the chosen label's share among
    the labels' first tokens in the logits of the step where the reply's text reaches the labels."""
    choices, c = task.choices(), task.constraint()
    steps: list[tuple[str, np.ndarray]] = []
    text_so_far: list[int] = []
    original = eng._sample

    def recording(chain, grammar):
        steps.append((eng.detokenize(text_so_far), eng._logits().copy()))
        token = original(chain, grammar)
        text_so_far.append(token)
        return token

    eng._sample = recording
    try:
        reply = eng.chat(messages, schema=c.schema, grammar=c.grammar, temperature=0.0, max_tokens=max_tokens)
    finally:
        del eng._sample
    answer = task.parse(reply.text)
    if not answer.valid:
        return None, None
    # the labels' first tokens after the prompt and the answer prefix, tokenized as the scorer does
    text = eng.render(messages) + choices.prefix
    seqs = {k: eng.tokenize(text + v) for k, v in choices.continuations.items()}
    n = len(eng.tokenize(text))
    firsts = {k: s[n] if len(s) > n else None for k, s in seqs.items()}
    at = next((logits for before, logits in steps if before == choices.prefix), None)
    if at is None or None in firsts.values() or len(set(firsts.values())) < len(firsts):
        return answer.label, None
    x = np.array([at[t] for t in firsts.values()], dtype=np.float64)
    p = np.exp(x - x.max())
    p /= p.sum()
    return answer.label, float(p[list(firsts).index(answer.label)])


def run_example(name: str, n: int | None, threads: int | None) -> list[dict]:
    """Every item of the example, each mode on an engine of its own (the model loaded once per mode), so
    that each call finds in the cache what a run leaves there: the previous item's prompt."""
    cfg = load_config(ROOT / "examples" / name / "config.yaml")
    task = task_for(cfg)
    engines = {m: LlamaCppBackend(embedded_model(), n_ctx=cfg.run.num_ctx, chat_template="gemma", n_threads=threads)
               for m in MODES}
    for eng in engines.values():  # before the data are read: a CUDA build loaded beside pandas can crash a load
        eng.load()
    items = task.load_items(cfg, lambda msg: None)[:n]
    choices = task.choices()
    rows = []
    try:
        for variant in task.variants:
            prompts = [task.messages(it, "few_shot", variant) for it in items]
            for mode, eng in engines.items():  # warm-up, not counted: the last items (another comes before the first)
                for msgs in (prompts[-1], prompts[-2] if len(prompts) > 2 else prompts[-1]):
                    eng.score_choices(msgs, choices) if mode != "generate" else generate(eng, task, msgs, 4)
            for i, (item, msgs) in enumerate(zip(items, prompts)):
                row = {"example": name, "variant": variant, "item": item.id, "gold": item.label}
                for mode in MODES[i % 4:] + MODES[:i % 4]:
                    eng = engines[mode]
                    t0 = time.perf_counter()
                    if mode == "generate":
                        row["gen_label"], row["gen_conf"] = generate(eng, task, msgs, cfg.run.num_predict)
                    elif mode == "earlier":
                        p = earlier_scoring(eng, msgs, choices)
                        row["earlier_label"] = max(p, key=p.get)
                    else:
                        s = eng.score_choices(msgs, choices, end_of_turn=mode == "logprob_eot")
                        row[f"{mode}_probs"] = s.probs
                        row[f"{mode}_label"] = max(task.labels, key=lambda k: (s.probs[k], -task.labels.index(k)))
                        row[f"{mode}_decoded"] = s.decoded_tokens
                    row[f"{mode}_s"] = time.perf_counter() - t0
                rows.append(row)
            # the same items again, in reverse order (another item before each): the same probabilities?
            eng = engines["logprob"]
            for row, msgs in reversed(list(zip(rows[-len(items):], prompts))):
                again = eng.score_choices(msgs, choices).probs
                row["rescore_diff"] = max(abs(again[k] - row["logprob_probs"][k]) for k in again)
    finally:
        for eng in engines.values():
            eng.close()
    return rows


def share_of_mode(labels: list) -> float:
    labels = [x for x in labels if x is not None]
    return max(labels.count(x) for x in set(labels)) / len(labels) if labels else float("nan")


def summarize(rows: list[dict], threshold: float) -> dict:
    gen = [r["gen_label"] for r in rows]
    out = {"items": len(rows), "generation_valid": sum(g is not None for g in gen)}
    conf = [r for r in rows if r["gen_conf"] is not None and r["gen_conf"] >= threshold]
    out["confident_items"] = len(conf)
    for mode in ("logprob", "logprob_eot", "earlier"):
        out[f"{mode}_agree"] = float(np.mean([r[f"{mode}_label"] == r["gen_label"] for r in rows]))
        out[f"{mode}_agree_confident"] = (float(np.mean([r[f"{mode}_label"] == r["gen_label"] for r in conf]))
                                          if conf else float("nan"))
        out[f"{mode}_mode_share"] = share_of_mode([r[f"{mode}_label"] for r in rows])
        ratios = [r[f"{mode}_s"] / r["generate_s"] for r in rows]
        q = np.percentile(ratios, [25, 50, 75])
        out[f"{mode}_x_gen"] = {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2]),
                                "total": sum(r[f"{mode}_s"] for r in rows) / sum(r["generate_s"] for r in rows)}
    out["generate_mode_share"] = share_of_mode(gen)
    out["generate_s_median"] = statistics.median(r["generate_s"] for r in rows)
    out["logprob_s_median"] = statistics.median(r["logprob_s"] for r in rows)
    out["logprob_decoded_tokens"] = max(r["logprob_decoded"] for r in rows)
    out["rescore_max_diff"] = max(r["rescore_diff"] for r in rows)
    bins = [(0.0, 0.6), (0.6, 0.75), (0.75, 0.9), (0.9, 1.01)]
    out["agree_by_generation_confidence"] = {
        f"[{lo}, {min(hi, 1.0)}{')' if hi <= 1 else ']'}": (sum(r["logprob_label"] == r["gen_label"] for r in b), len(b))
        for lo, hi in bins
        for b in [[r for r in rows if r["gen_conf"] is not None and lo <= r["gen_conf"] < hi]]}
    out["accuracy"] = {m: float(np.mean([r[f"{m}_label"] == r["gold"] for r in rows]))
                       for m in ("gen", "logprob", "logprob_eot", "earlier")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", default=",".join(EXAMPLES))
    ap.add_argument("--n", type=int, default=None, help="items per example (default: all of its evaluation split)")
    ap.add_argument("--confident", type=float, default=0.75,
                    help="generation is confident when its label has at least this probability among the labels")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    all_rows, summary = [], {}
    for name in a.examples.split(","):
        rows = run_example(name, a.n, a.threads)
        all_rows += rows
        for variant in dict.fromkeys(r["variant"] for r in rows):
            key = name + (f"@{variant}" if variant else "")
            summary[key] = summarize([r for r in rows if r["variant"] == variant], a.confident)
    print(f"model: embedded Gemma 3 270M Q4_K_M, few-shot prompts as each example's config asks\n"
          f"machine: {machine()}\ngeneration: the label grammar, greedy; confident: its label's probability among "
          f"the labels >= {a.confident}\n")
    head = ["example", "items", "agree", "agree (confident n)", "top answer gen / lp", "s/call x gen (IQR)",
            "lp +eot: agree, top", "earlier: agree, top, x gen", "rescore max |dp|"]
    rows = []
    for key, s in summary.items():
        x = s["logprob_x_gen"]
        rows.append([key, s["items"], f"{s['logprob_agree']:.1%}",
                     f"{s['logprob_agree_confident']:.1%} ({s['confident_items']})",
                     f"{s['generate_mode_share']:.0%} / {s['logprob_mode_share']:.0%}",
                     f"{x['median']:.2f} ({x['q25']:.2f}-{x['q75']:.2f})",
                     f"{s['logprob_eot_agree']:.1%}, {s['logprob_eot_mode_share']:.0%}",
                     f"{s['earlier_agree']:.1%}, {s['earlier_mode_share']:.0%}, {s['earlier_x_gen']['median']:.2f}",
                     f"{s['rescore_max_diff']:.1e}"])
    print(table(head, rows))
    conf = [r for r in all_rows if r["gen_conf"] is not None and r["gen_conf"] >= a.confident]
    agree = np.mean([r["logprob_label"] == r["gen_label"] for r in conf]) if conf else float("nan")
    ratio = [r["logprob_s"] / r["generate_s"] for r in all_rows]
    print(f"\nall examples: agreement where generation is confident {agree:.1%} of {len(conf)} items; "
          f"per-call time / generation's: median {statistics.median(ratio):.2f} "
          f"(IQR {np.percentile(ratio, 25):.2f}-{np.percentile(ratio, 75):.2f}), of the totals "
          f"{sum(r['logprob_s'] for r in all_rows) / sum(r['generate_s'] for r in all_rows):.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(), "confident": a.confident, "summary": summary,
                                            "rows": all_rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
