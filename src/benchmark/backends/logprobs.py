"""Label probabilities from what a server says about the tokens it generated: pure functions, no I/O.

A server that scores labels (task.decoding: logprob) is asked to answer once, greedily, with the
log-probability of each token it generated and of the most likely alternatives at each position
(OpenAI's ``logprobs`` + ``top_logprobs``, Ollama's the same, mlx_lm.server's). A label's probability
is then what it is in process (engine/scoring.py): the chance that generation held to the labels
answers it. Where labels part (a position at which the tokens the server lists lead to different
labels), the tokens that continue some label are renormalized over themselves; where every label
still open goes on with the same token, nothing is counted. So for labels that part at their first
token (the usual case) a label's probability is its first token's probability over the label
tokens listed there.

What a server's answer cannot show is never guessed:

- A label whose token is not among the alternatives listed where it parts from the reply (the
  server lists the top N of the whole vocabulary, and under a constraint the label may lie below
  them) is **unscored**.
- A label that parts from the reply at a token it shares with another label (the answer shows only
  the path the reply took, not what follows a token off it) is unscored.
- Labels the reply never parted (it ended first) are unscored.

Probabilities are over the scored labels; the unscored ones are named with the reason
(``Scores.unscored``), and stored as ``null`` in the call's ``label_probs_json``.

Two ways to find a label among the alternatives:

- :func:`from_text`: by the tokens' text along the reply. The reply's text locates the task's answer
  prefix (``{"label": "``, whitespace as the server wrote it) and each alternative's text is laid
  against every label's continuation (llama.cpp's server, llama-cpp-python's, Ollama, vLLM: their
  token strings are the decoded text).
- :func:`from_first_token`: by token id at the first generated position, for a server whose token
  strings are vocabulary pieces and whose labels are held only by ``logit_bias`` on each label's
  first token (mlx_lm.server): the bias shifts every label token alike, so their log-odds stay the
  model's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

STRUCTURAL = "{}[]:,"  # JSON punctuation around which a server may write whitespace


@dataclass(frozen=True)
class Token:
    """A token a server named: its text, its natural-log probability, and its id where given."""

    text: str
    logprob: float
    id: int | None = None


@dataclass(frozen=True)
class Step:
    """One generated position: the token generated there (None where the server does not say which it
    was) and the alternatives it listed."""

    token: Token | None
    alternatives: tuple[Token, ...] = ()

    def events(self) -> list[Token]:
        """The distinct tokens known at this position: the alternatives, and the generated token
        unless it is listed among them (same id, or same text and log-probability)."""
        out = [t for t in self.alternatives if _finite(t.logprob)]
        tok = self.token
        if tok is not None and _finite(tok.logprob) and not any(_same(tok, t) for t in out):
            out.append(tok)
        return out


@dataclass
class Scores:
    """Every label either scored or named as unscored, with why."""

    logprobs: dict[str, float] = field(default_factory=dict)  # the model's log-probability of the choosing tokens
    probs: dict[str, float] = field(default_factory=dict)     # renormalized over the scored labels
    unscored: dict[str, str] = field(default_factory=dict)    # label -> why it has no probability

    @property
    def best(self) -> str | None:
        return max(self.probs, key=self.probs.get) if self.probs else None


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _same(a: Token, b: Token) -> bool:
    if a.id is not None and b.id is not None:
        return a.id == b.id
    return a.text == b.text and abs(a.logprob - b.logprob) < 1e-6


def logsumexp(values: Iterable[float]) -> float:
    vals = [v for v in values if _finite(v)]
    if not vals:
        return -math.inf
    m = max(vals)
    return m + math.log(sum(math.exp(v - m) for v in vals))


def normalise(logweights: Mapping[str, float]) -> dict[str, float]:
    """exp(w) / sum exp(w) over the keys (a stable softmax)."""
    z = logsumexp(logweights.values())
    return {k: math.exp(v - z) for k, v in logweights.items()}


# ---------------------------------------------------------------------------- reading answers


def _float(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return x if not math.isnan(x) else None


def _token(entry: Any) -> Token | None:
    if not isinstance(entry, Mapping):
        return None
    lp = _float(entry.get("logprob"))
    text = entry.get("token")
    if lp is None or not isinstance(text, str):
        return None
    tid = entry.get("id")
    return Token(text=text, logprob=lp, id=tid if isinstance(tid, int) and not isinstance(tid, bool) else None)


def steps_openai(logprobs: Any, *, entry_is_alternative: bool = False) -> list[Step] | None:
    """The steps of an OpenAI-style ``choices[0].logprobs`` (``{"content": [{token, logprob,
    top_logprobs: [{token, logprob}, ...]}, ...]}``); None when there are none.

    ``entry_is_alternative``: the entry's own token is one of the alternatives, not the generated one
    (mlx_lm.server: ``dict(top[0], top_logprobs=top)`` over an unsorted top list), so the generated
    token is not known from the entry."""
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list) or not content:
        return None
    steps = []
    for entry in content:
        alts = tuple(t for t in (_token(a) for a in (entry.get("top_logprobs") or [] if isinstance(entry, Mapping)
                                                      else [])) if t is not None)
        steps.append(Step(token=None if entry_is_alternative else _token(entry), alternatives=alts))
    return steps


def steps_ollama(logprobs: Any) -> list[Step] | None:
    """The steps of Ollama's ``logprobs`` reply field (api/types.go Logprob: ``[{token, logprob, bytes,
    top_logprobs: [{token, logprob, bytes}]}]``, one per generated token); None when there are none."""
    if not isinstance(logprobs, list) or not logprobs:
        return None
    out = []
    for entry in logprobs:
        if hasattr(entry, "model_dump"):  # ollama.Logprob
            entry = entry.model_dump()
        alts = tuple(t for t in (_token(a) for a in (entry.get("top_logprobs") or [])) if t is not None)
        out.append(Step(token=_token(entry), alternatives=alts))
    return out


# ---------------------------------------------------------------------------- what the request asks


def json_schema_of(choices) -> dict | None:
    """The JSON schema that allows exactly the replies of ``choices`` when they are one JSON object
    with one string field (prefix ``{"KEY": "``, each continuation ``LABEL"}``): an object whose KEY
    is one of the labels. None for bare labels (no schema spells them)."""
    m = re.fullmatch(r'\{"([^"\\]+)": "', choices.prefix)
    if not m or not all(c == f'{label}"}}' for label, c in choices.continuations.items()):
        return None
    key = m.group(1)
    return {"type": "object", "properties": {key: {"type": "string", "enum": list(choices.continuations)}},
            "required": [key], "additionalProperties": False}


def token_budget(choices) -> int:
    """Enough tokens for any reply of ``choices`` to reach where its label is decided: one per
    character of the prefix and the longest continuation (a token holds at least one), and room for
    the whitespace a server may put between JSON's punctuation."""
    return len(choices.prefix) + max(len(c) for c in choices.continuations.values()) + 8


# ---------------------------------------------------------------------------- scoring by text


def _prefix_pattern(prefix: str) -> re.Pattern:
    parts = [r"\s*"]
    for c in prefix:
        if c.isspace():
            parts.append(r"\s*")
        elif c in STRUCTURAL:
            parts.append(r"\s*" + re.escape(c) + r"\s*")
        else:
            parts.append(re.escape(c))
    return re.compile("".join(parts))


def _fits(region: str, cont: str, terminal: bool) -> bool:
    """Whether a reply whose answer so far is ``region`` can still be (or is) the continuation ``cont``."""
    if cont.startswith(region):
        return True
    if region.startswith(cont):
        rest = region[len(cont):]
        return not (terminal and rest[:1] and (rest[0].isalnum() or rest[0] == "_"))
    return False


def from_text(steps: list[Step], choices, *, listed: int) -> Scores:
    """Label probabilities from a reply's steps, finding labels by the tokens' text (see the module's
    text). ``listed``: how many alternatives the server was asked for (named in the reasons)."""
    labels = list(choices.continuations)
    out = Scores()
    if any(s.token is None for s in steps):
        raise ValueError("from_text needs the generated token of every step")
    text = "".join(s.token.text for s in steps)
    m = _prefix_pattern(choices.prefix).match(text)
    if m is None:
        squeezed = "".join(text.split())
        why = ("the reply ended before its label" if "".join(choices.prefix.split()).startswith(squeezed) else
               f"the reply does not begin with the answer's prefix {choices.prefix!r}: {text[:60]!r}")
        out.unscored = {k: why for k in labels}
        return out
    start = m.end()
    offsets, pos = [], 0
    for s in steps:
        offsets.append(pos)
        pos += len(s.token.text)
    first = next((j for j, s in enumerate(steps) if offsets[j] + len(s.token.text) > start), None)
    if first is None:
        out.unscored = {k: "the reply ended before its label" for k in labels}
        return out
    head = text[offsets[first]:start]  # the part of the first answer token before the label (a quote, a space)

    def region(j: int, token_text: str) -> str | None:
        """The answer text (from the label's start) if the reply took ``token_text`` at step j."""
        if j > first:
            return text[start:offsets[j]] + token_text
        if token_text.startswith(head):
            return token_text[len(head):]
        h, t = head.lstrip(), token_text.lstrip()  # another spelling of the whitespace before it
        return t[len(h):] if t.startswith(h) else None

    conts = {k: choices.continuations[k] for k in labels}
    terminal = bool(getattr(choices, "terminal", False))

    def leads_to(r: str | None, alive: set[str]) -> frozenset[str]:
        return frozenset() if r is None else frozenset(k for k in alive if _fits(r, conts[k], terminal))

    alive = set(labels)
    raw = dict.fromkeys(labels, 0.0)    # log-probability of the path's choosing tokens
    held = dict.fromkeys(labels, 0.0)   # the same, renormalized where labels part
    for j in range(first, len(steps)):
        if len(alive) < 2:
            break
        step = steps[j]
        events = step.events()
        sets = [leads_to(region(j, e.text), alive) for e in events]
        taken = leads_to(region(j, step.token.text), alive)
        if taken == alive and len(alive) > 1:
            continue  # every open label goes on with this token: nothing parts here
        z = logsumexp(e.logprob for e, s in zip(events, sets) if s)
        decided = alive - taken if len(taken) > 1 else alive
        for k in sorted(decided, key=labels.index):
            own = [e.logprob for e, s in zip(events, sets) if s == {k}]
            if own:
                lp = logsumexp(own)
                out.logprobs[k] = raw[k] + lp
                held[k] += lp - z
            elif any(k in s for s in sets):
                others = sorted({x for s in sets if k in s for x in s} - {k}, key=labels.index)
                out.unscored[k] = (f"parts from the reply at a token it shares with {', '.join(others)}; what follows "
                                   "that token is not in the answer")
            else:
                out.unscored[k] = f"not among the {listed} alternatives the server listed where it parts from the reply"
        alive = set(taken) if len(taken) > 1 else set()
        lp = step.token.logprob if _finite(step.token.logprob) else -math.inf
        for k in alive:
            raw[k] += lp
            held[k] += lp - z
    for k in sorted(alive, key=labels.index):
        out.unscored[k] = "the reply ended before it chose among " + ", ".join(sorted(alive, key=labels.index))
    return _finish(out, {k: held[k] for k in out.logprobs}, labels)


def _finish(out: Scores, held: dict[str, float], labels: list[str]) -> Scores:
    finite = {k: v for k, v in held.items() if _finite(v)}
    for k in held:
        if k not in finite:
            out.logprobs.pop(k, None)
            out.unscored[k] = "the server gave its token no probability"
    out.probs = normalise(finite) if finite else {}
    out.logprobs = {k: out.logprobs[k] for k in labels if k in out.logprobs}
    out.probs = {k: out.probs[k] for k in labels if k in out.probs}
    out.unscored = {k: out.unscored[k] for k in labels if k in out.unscored}
    return out


# ---------------------------------------------------------------------------- scoring by the first token id


def from_first_token(step: Step, first_ids: Mapping[str, int | None], *, listed: int,
                     why_missing: str = "its first token could not be found") -> Scores:
    """Label probabilities at the first generated position, finding each label by its first token's
    id (``first_ids``; None: not known, with ``why_missing``). Labels that share a first token cannot
    be told apart there and are unscored. The log-probabilities are the server's as listed (with a
    logit bias, shifted by it: only their differences are the model's)."""
    labels = list(first_ids)
    out = Scores()
    by_id: dict[int, float] = {}
    for t in step.events():
        if t.id is not None and t.id not in by_id:
            by_id[t.id] = t.logprob
    owners: dict[int, list[str]] = {}
    for k, tid in first_ids.items():
        if tid is not None:
            owners.setdefault(tid, []).append(k)
    held = {}
    for k in labels:
        tid = first_ids[k]
        if tid is None:
            out.unscored[k] = why_missing
        elif len(owners[tid]) > 1:
            others = [x for x in owners[tid] if x != k]
            out.unscored[k] = f"shares its first token with {', '.join(others)}; only the first token is scored here"
        elif tid not in by_id:
            out.unscored[k] = f"not among the {listed} alternatives the server listed"
        else:
            out.logprobs[k] = held[k] = by_id[tid]
    return _finish(out, held, labels)
