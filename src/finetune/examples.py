"""The training examples of a fine-tune: the tokenizer made ready (pad differs from EOS, a chat
template), conversations tokenized with the loss on the answer only and EOS at the end of every
example, the checks a user should see, and the seeded train/eval split."""

from __future__ import annotations

import random

from core.errors import ShootoutError


def ensure_pad(tok, model=None) -> str:
    """Make the pad token differ from EOS; returns what was done."""
    if tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id:
        return f"kept {tok.pad_token!r}"
    for cand in ("<pad>", "<|pad|>", "<|finetune_right_pad_id|>", "[PAD]"):
        tid = tok.convert_tokens_to_ids(cand)
        if isinstance(tid, int) and tid != tok.unk_token_id and tid != tok.eos_token_id and tid is not None:
            tok.pad_token = cand
            return f"set to existing {cand!r}"
    tok.add_special_tokens({"pad_token": "<|pad|>"})
    if model is not None:
        model.resize_token_embeddings(len(tok))
    return "added '<|pad|>' (embeddings resized)"


def ensure_chat_template(tok, architecture: str | None, chat_format: str | None) -> str:
    from formats.chat import BY_ARCHITECTURE, FAMILIES

    if chat_format:
        if chat_format not in FAMILIES:
            raise ShootoutError(f"unknown chat format '{chat_format}'", f"use one of {', '.join(FAMILIES)}")
        tok.chat_template = FAMILIES[chat_format].jinja
        return f"built-in {chat_format} (named)"
    if tok.chat_template:
        return "the model's own"
    fam = BY_ARCHITECTURE.get(architecture or "")
    if fam is None:
        raise ShootoutError("the base model has no chat template and its architecture names no default",
                            "pass --chat-format (chatml, llama3, gemma, mistral, phi3)")
    tok.chat_template = FAMILIES[fam].jinja
    return f"built-in {fam} (architecture {architecture})"


def tokenize_conversations(tok, conversations: list[list[dict]], max_len: int) -> tuple[list[dict], dict]:
    """Pre-tokenized examples ``{input_ids, labels}``: labels -100 on the prompt, the answer (with
    its end-of-turn and EOS) learned. Returns (examples, counts)."""
    eos_id, eos = tok.eos_token_id, tok.eos_token
    out, dropped, eos_added = [], 0, 0
    for msgs in conversations:
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ShootoutError("the chat template renders the answer's prompt differently from the whole "
                                "conversation, so the answer cannot be separated", "pass --chat-format")
        answer = full[len(prompt):]
        if not answer.rstrip().endswith(eos):
            answer = answer + eos
            eos_added += 1
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        a_ids = tok(answer, add_special_tokens=False).input_ids
        while a_ids and a_ids[-1] != eos_id and tok.decode(a_ids[-1:]).strip() == "":
            a_ids = a_ids[:-1]  # whitespace after EOS is not trained
        ids = p_ids + a_ids
        if len(ids) > max_len:
            dropped += 1
            continue
        out.append({"input_ids": ids, "labels": [-100] * len(p_ids) + a_ids})
    return out, {"examples": len(out), "dropped_too_long": dropped, "eos_appended": eos_added}


def check_examples(examples: list[dict], tok) -> dict:
    """The checks a user should see: every example ends with EOS, pad differs from EOS, answers are trained."""
    ends = sum(1 for e in examples if e["input_ids"][-1] == tok.eos_token_id)
    trained = sum(1 for e in examples if any(x != -100 for x in e["labels"]))
    res = {"all_end_with_eos": ends == len(examples), "pad_differs_from_eos": tok.pad_token_id != tok.eos_token_id,
           "all_have_trained_tokens": trained == len(examples), "eos_token": tok.eos_token, "pad_token": tok.pad_token}
    if not (res["all_end_with_eos"] and res["pad_differs_from_eos"] and res["all_have_trained_tokens"]):
        raise ShootoutError(f"training data check failed: {res}", "check the chat template and tokenizer")
    return res


def split(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    n_eval = int(round(len(idx) * fraction)) if fraction > 0 else 0
    if fraction > 0 and len(idx) > 1:
        n_eval = max(1, n_eval)
    ev = [examples[i] for i in idx[:n_eval]]
    tr = [examples[i] for i in idx[n_eval:]]
    if not tr:
        raise ShootoutError("no training examples left after the eval split", "add data or lower --eval-fraction")
    return tr, ev
