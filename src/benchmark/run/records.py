"""What the runner stores about each arm and each call, as the store's rows: the facts of an arm
before it loads (where the model is, its file's size), and a call's row with the reply capped
(``run.max_reply_chars``, default ``num_predict`` x 16 characters; the full length kept)."""

from __future__ import annotations

import json

from benchmark.backends import BACKENDS
from benchmark.config import Arm, Config
from benchmark.store.rows import ArmFacts, CallRow
from core.errors import ShootoutError

REPLY_CHARS_PER_TOKEN = 16  # the default cap on a stored reply: num_predict x this many characters


def _capped_json(text: str | None, cap: int) -> str | None:
    """An answer's JSON within ``cap`` characters: its long strings cut (marked with an ellipsis)."""
    if text is None or len(text) <= cap:
        return text
    answer = json.loads(text)
    if not isinstance(answer, dict):
        return None
    room = max(16, cap // max(1, len(answer)))
    return json.dumps({k: v[:room] + "…" if isinstance(v, str) and len(v) > room else v for k, v in answer.items()},
                      ensure_ascii=False)


def arm_facts(cfg: Config, arm: Arm, run_id: str) -> ArmFacts:
    """What the run knows about an arm before loading it: its entry, and where the model is (a local
    GGUF with its size and modification time)."""
    entry = arm.entry
    where = BACKENDS[entry.backend].where  # the entry field that says where the model is
    location = (getattr(entry, where, None) if where else None) or (", ".join(entry.endpoints) if entry.endpoints else None)
    size = mtime = None
    if where == "path" and location:  # a file on this machine
        try:
            path = cfg.model_path(entry)
            stat = path.stat()
            location, size, mtime = str(path), stat.st_size, stat.st_mtime
        except (OSError, ShootoutError):
            pass
    return ArmFacts(run_id=run_id, model=arm.name, entry=entry.name, variant=arm.variant, backend=entry.backend,
                    family=entry.family, quant=entry.quant, prompt_style=entry.prompt_style, model_bytes=size,
                    location=location, checkpoint=entry.checkpoint, file_mtime=mtime)


def call_row(cfg: Config, arm: Arm, *, run_id: str, iteration: int, item_id: str, position: int, seed: int,
             reply, answer, wall: float, energy: float | None, **where) -> CallRow:
    """One call as stored: the arm's identity, the reply (cut at the cap, its length kept), the
    parsed answer and the timings; ``where``: endpoint, in_flight, started_at, concurrency (and the
    attempts of a failed call)."""
    entry = arm.entry
    text = reply.text or ""
    cap = cfg.run.max_reply_chars or REPLY_CHARS_PER_TOKEN * cfg.setting(entry, "num_predict")
    return CallRow(run_id=run_id, model=arm.name, family=entry.family, quant=entry.quant, backend=entry.backend,
                   prompt_style=entry.prompt_style, variant=arm.variant, iteration=iteration, item_id=item_id,
                   position=position, seed=seed, raw_text=text[:cap], raw_chars=len(text), valid=int(answer.valid),
                   error=answer.error, answer_json=_capped_json(answer.fields_json(), cap), label=answer.label,
                   value=answer.value, confidence=answer.confidence,
                   label_probs_json=json.dumps(answer.label_probs) if answer.label_probs else None,
                   finish_reason=reply.finish_reason, prompt_tokens=reply.prompt_tokens,
                   cached_tokens=reply.cached_tokens, completion_tokens=reply.completion_tokens,
                   prompt_seconds=reply.prompt_seconds, gen_seconds=reply.gen_seconds, wall_seconds=wall,
                   energy_j=energy, **_server_facts(reply), **where)


def _server_facts(reply) -> dict:
    """What a server backend's reply adds (``benchmark.backends.http.HTTPReply``): the requests the call
    took and, streamed, its timings (the inter-token gaps as JSON, in ms); nothing for other replies."""
    gaps = getattr(reply, "itl_gaps", None)
    return {"attempts": getattr(reply, "attempts", None), "ttft_seconds": getattr(reply, "ttft_seconds", None),
            "itl_seconds": getattr(reply, "itl_seconds", None), "e2e_seconds": getattr(reply, "e2e_seconds", None),
            "itl_json": json.dumps([round(g * 1000, 3) for g in gaps]) if gaps else None}
