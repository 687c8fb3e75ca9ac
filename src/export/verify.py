"""Export checks, all on real engines: parity of the F16 GGUF with its source, quant quality of
each rung against F16, and a smoke call per rung.

- parity: next-token logits at every position of a few task prompts, the same token ids fed to
  the source (transformers for a Hugging Face folder, llama.cpp for a GGUF) and to the F16 GGUF;
  max absolute logit difference and top-1 agreement.
- quant quality: per position, KL(F16 || rung) of the next-token distributions and whether the
  top token is the same, over the benchmark task's prompts; mean, median, 99th percentile and
  maximum KLD and same-top-token %, the figures llama.cpp's perplexity tool reports for KLD.
- smoke: each rung answers one few-shot task prompt, constrained by the task's schema; the
  reply must end by end-of-turn/EOS (not by the token limit) and validate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import LlamaCppBackend


def task_prompts(task, items, n: int) -> list[list[dict[str, str]]]:
    """The task's zero-shot prompts over its first ``n`` items."""
    return [task.messages(item, "zero_shot") for item in items[:n]]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kld_rows(ref_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """KL(ref || other) per row, in nats."""
    lp, lq = _log_softmax(ref_logits), _log_softmax(logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def summarize_kld(kld: np.ndarray, same_top: np.ndarray) -> dict:
    return {"mean_kld": float(kld.mean()), "median_kld": float(np.median(kld)),
            "p99_kld": float(np.percentile(kld, 99)), "max_kld": float(kld.max()),
            "same_top_pct": float(100.0 * same_top.mean()), "positions": int(kld.size)}


def _engine(path: Path, chat_template: str | None, n_ctx: int = 2048) -> LlamaCppBackend:
    b = LlamaCppBackend(path, n_ctx=n_ctx, n_batch=256, chat_template=chat_template, name=Path(path).name)
    b.load()
    return b


def prompt_token_sets(engine: LlamaCppBackend, prompts) -> list[list[int]]:
    return [engine.prompt_tokens(m) for m in prompts]


def quant_quality(f16: Path, rung: Path, token_sets: list[list[int]], chat_template: str | None = None) -> dict:
    """KLD of ``rung`` from ``f16`` and same-top-token %, over every position of ``token_sets``.
    Both models are loaded side by side and compared chunk by chunk, so memory holds two models and
    two logit chunks, never the logits of all positions (262k floats each for Gemma)."""
    ref, q = _engine(f16, chat_template), _engine(rung, chat_template)
    try:
        klds, same = [], []
        for toks in token_sets:
            for (_, a), (_, b) in zip(ref.logits_chunks(toks), q.logits_chunks(toks)):
                klds.append(kld_rows(a, b))
                same.append(a.argmax(-1) == b.argmax(-1))
        return summarize_kld(np.concatenate(klds), np.concatenate(same))
    finally:
        ref.close()
        q.close()


def _tensor_rows(path: Path, info, t) -> np.ndarray:
    """A tensor's raw bytes, memory-mapped, one row of ``t.shape[0]`` weights per line: the layout
    gguf-py's ``dequantize`` takes for every type it knows."""
    rows = t.n_elements // max(1, t.shape[0])
    return np.memmap(path, dtype=np.uint8, mode="r", offset=info.data_offset + t.offset,
                     shape=(rows, t.n_bytes // max(1, rows)))


def parity_weights(source: Path, f16: Path) -> dict:
    """Every tensor of the F16 GGUF against the source GGUF's, dequantized (gguf-py): the F16 file
    must hold the source's weights up to float16 rounding. (Logits are not comparable here: llama.cpp
    multiplies quantized weights with quantized activations, F16 weights with F16 activations.)
    The tensor tables come from formats.gguf_meta and the data is memory-mapped: gguf-py's reader
    builds an object per vocabulary entry (12 s for Gemma 3 270M's header against 0.17 s; the whole
    check 8.9 s against 48.8 s: benchmarks/gguf_reading.py)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    from formats import gguf_meta

    a, b = gguf_meta.read(source), gguf_meta.read(f16)
    theirs = {t.name: t for t in b.tensors}
    worst, worst_name, n = 0.0, None, 0
    missing = [t.name for t in a.tensors if t.name not in theirs]
    for t in a.tensors:
        u = theirs.get(t.name)
        if u is None:
            continue
        if t.shape != u.shape or t.n_bytes is None or u.n_bytes is None:
            missing.append(t.name)
            continue
        x = dequantize(_tensor_rows(source, a, t), GGMLQuantizationType(t.type_id)).astype(np.float32).reshape(-1)
        y = dequantize(_tensor_rows(f16, b, u), GGMLQuantizationType(u.type_id)).astype(np.float32).reshape(-1)
        rel = float(np.abs(x - y).max() / max(float(np.abs(x).max()), 1e-12))
        n += x.size
        if rel > worst:
            worst, worst_name = rel, t.name
    return {"reference": "source GGUF weights (dequantized)", "tensors": len(a.tensors), "weights": n,
            "max_rel_weight_diff": worst, "worst_tensor": worst_name, "mismatched_tensors": missing}


def parity_hf(folder: Path, f16: Path, prompts) -> dict:
    """The F16 GGUF against transformers on the HF folder, fed the same token ids (the HF
    tokenizer's, through the folder's chat template when it has one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    token_sets = []
    for m in prompts:
        if tok.chat_template:
            text = tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False).input_ids
        else:
            ids = tok("\n\n".join(x["content"] for x in m)).input_ids
        token_sets.append(ids)
    out = _engine(f16, None)
    try:
        diff, same, scale = 0.0, [], 0.0
        for ids in token_sets:
            with torch.no_grad():
                ref = model(torch.tensor([ids])).logits[0].float().numpy()
            got = np.concatenate([b for _, b in out.logits_chunks(ids)])
            diff = max(diff, float(np.abs(ref - got).max()))
            scale = max(scale, float(np.abs(ref).max()))
            same.append(ref.argmax(-1) == got.argmax(-1))
        same_all = np.concatenate(same)
        return {"reference": "transformers (float32)", "max_abs_logit_diff": diff, "max_abs_logit": scale,
                "top1_agreement": float(same_all.mean()), "positions": int(same_all.size)}
    finally:
        out.close()


def smoke(path: Path, chat_template: str | None, task, items, max_tokens: int = 256) -> dict:
    """One few-shot call of the task on its first item, constrained, temperature 0."""
    b = _engine(path, chat_template, n_ctx=4096)
    c = task.constraint()
    try:
        r = b.chat(task.messages(items[0], "few_shot"), schema=c.schema, grammar=c.grammar,
                   temperature=0.0, max_tokens=max_tokens)
    finally:
        b.close()
    parsed = task.parse(r.text)
    return {"finish": r.finish_reason, "valid": parsed.valid, "error": parsed.error,
            "completion_tokens": r.completion_tokens, "ok": r.finish_reason == "stop" and parsed.valid,
            "reply": r.text[:300]}
