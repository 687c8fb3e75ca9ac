"""The item explorer's data: every item with its text and gold, each arm's answers and replies per
iteration, and per (item, arm) the figures the explorer filters and sorts by, as one compact JSON blob.

Answers are compared as codes: a classification answer is its label; a value answer is its direction
with the run's neutral band (``benchmark.stats.paired.direction``: |x| < band is neutral), the same
rule the report's direction figures follow; an invalid reply is a code of its own ("(invalid)").
Per item and arm, over the iterations both arms answered (valid or not):

- ``flip``: iterations whose answer differs from the arm's reference's answer in the same iteration
  (the runner gives both arms the same sampling seed for an item and iteration); -1 for an arm
  without a reference (a family's reference, or an only rung);
- ``disagree``: 1 when the arm's vote over its iterations (the most frequent answer; for values the
  direction of the mean of the valid answers) differs from its reference's vote, else 0; -1 without
  a reference;
- ``changes``: the number of distinct answers over the arm's iterations minus one (0: stable);
- ``invalid``: invalid replies; ``wrong``: calls whose answer is not the gold one (an invalid reply
  is wrong), -1 when the item has no gold; ``abs_error`` (values): mean absolute error of the valid
  answers.

The JSON keeps every string once (``s``) and refers to it by index, and stores the calls as flat
arrays indexed ((item * arms) + arm) * iterations + iteration.

Size: a 1,000-item x 4-arm x 5-iteration run with 2,000-character items and ~260-character replies
makes a blob of about 7.4 MB (benchmarks/html_view.py). When the distinct reply texts of a run exceed
``REPLY_BUDGET`` characters, the page keeps the replies of invalid calls and of calls that differ from
their reference (what the explorer's filters look for) and leaves the others out, and says so
(``note``); `shootout view` shows every reply.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd

from benchmark.stats.paired import direction

DIRECTIONS = ["negative", "neutral", "positive"]
REPLY_BUDGET = 12_000_000  # characters of distinct reply text kept in one page
INVALID = "(invalid)"


class Strings:
    """A table of distinct strings; ``add`` returns a string's index (-1 for None)."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.items: list[str] = []

    def add(self, s) -> int:
        if s is None or (isinstance(s, float) and math.isnan(s)):
            return -1
        s = str(s)
        k = self.index.get(s)
        if k is None:
            k = self.index[s] = len(self.items)
            self.items.append(s)
        return k


def _num(x, digits: int = 4):
    """A JSON number (rounded) or None."""
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else (round(x, digits) if x != int(x) else int(x))


def cube(inputs) -> dict:
    """The calls as (items, arms, iterations) arrays: present, valid, codes, values, and the code names."""
    items, calls = inputs.items.reset_index(drop=True), inputs.calls
    arms = list(inputs.arms)
    iters = sorted(int(i) for i in pd.unique(calls["iteration"])) if len(calls) else [0]
    I, M, R = len(items), len(arms), len(iters)
    ii = calls["item_id"].astype(str).map({str(k): n for n, k in enumerate(items["item_id"])})
    mi = calls["model"].map({a: n for n, a in enumerate(arms)})
    ri = calls["iteration"].map({r: n for n, r in enumerate(iters)})
    keep = (ii.notna() & mi.notna() & ri.notna()).to_numpy()
    c = calls[keep]
    idx = (ii[keep].astype(int).to_numpy(), mi[keep].astype(int).to_numpy(), ri[keep].astype(int).to_numpy())
    present = np.zeros((I, M, R), bool)
    present[idx] = True
    valid = np.zeros((I, M, R), bool)
    valid[idx] = c["valid"].astype(bool).to_numpy()
    value = np.full((I, M, R), np.nan)
    if inputs.kind == "label":
        names = list(inputs.labels)
        extra = [x for x in pd.unique(c.loc[c["valid"].astype(bool), "label"].dropna().astype(str)) if x not in names]
        names += extra                                   # answers outside the task's labels stay visible
        lab = {n: k for k, n in enumerate(names)}
        code_valid = c["label"].map(lambda x: lab.get(str(x), -1) if x is not None and x == x else -1).to_numpy()
        gold = np.array([lab.get(str(g), -1) if g is not None and g == g else -1 for g in items.get(
            "target_label", pd.Series([None] * I))], dtype=int)
    else:
        names = list(DIRECTIONS)
        value[idx] = pd.to_numeric(c["value"], errors="coerce").to_numpy(dtype=float)
        d = direction(value[idx], inputs.neutral_band)
        code_valid = np.where(np.isnan(d), -1, d + 1).astype(int)
        tv = pd.to_numeric(items.get("target_value", pd.Series([np.nan] * I)), errors="coerce").to_numpy(dtype=float)
        gd = direction(tv, inputs.neutral_band)
        gold = np.where(np.isnan(gd), -1, gd + 1).astype(int)
    K = len(names)
    codes = np.full((I, M, R), -1, dtype=int)
    v = valid[idx]
    codes[idx] = np.where(v & (code_valid >= 0), code_valid, K)  # a valid reply without an answer: invalid
    valid[idx] = v & (code_valid >= 0)
    return {"present": present, "valid": valid, "codes": codes, "value": value, "gold": gold, "names": names,
            "K": K, "iters": iters, "frame": c, "index": idx}


def _vote(codes: np.ndarray, value: np.ndarray, valid: np.ndarray, K: int, kind: str, band: float) -> np.ndarray:
    """(items, arms) the answer over the iterations: the most frequent answered code (the lowest code on a
    tie) or, for values, the direction of the mean valid value; K when nothing was answered."""
    if kind != "label":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an arm that answered no iteration: NaN
            mean = np.nanmean(np.where(valid, value, np.nan), axis=-1)
        d = direction(mean, band)
        return np.where(np.isnan(d), K, d + 1).astype(int)
    counts = np.stack([(codes == k).sum(-1) for k in range(K)], axis=-1)   # (items, arms, K)
    return np.where(counts.sum(-1) > 0, counts.argmax(-1), K)


def flags(inputs, cb: dict) -> dict[str, np.ndarray]:
    """Per (item, arm) the explorer's figures (see the module doc)."""
    codes, present, valid, K = cb["codes"], cb["present"], cb["valid"], cb["K"]
    arms = list(inputs.arms)
    ref = np.array([arms.index(inputs.references[a]) if inputs.references.get(a) in arms else -1 for a in arms])
    I, M, _ = codes.shape
    flip = np.full((I, M), -1, dtype=int)
    disagree = np.full((I, M), -1, dtype=int)
    vote = _vote(codes, cb["value"], valid, K, inputs.kind, inputs.neutral_band)
    for m, r in enumerate(ref):
        if r < 0:
            continue
        both = present[:, m] & present[:, r]
        flip[:, m] = (both & (codes[:, m] != codes[:, r])).sum(-1)
        disagree[:, m] = np.where(present[:, m].any(-1) & present[:, r].any(-1), (vote[:, m] != vote[:, r]), -1)
    distinct = np.stack([((codes == k) & present).any(-1) for k in range(K + 1)], axis=-1).sum(-1)
    changes = np.maximum(distinct - 1, 0)
    invalid = (present & ~valid).sum(-1)
    gold = cb["gold"][:, None, None]
    wrong = np.where(cb["gold"][:, None] >= 0, (present & (codes != gold)).sum(-1), -1)
    out = {"flip": flip, "disagree": disagree, "changes": changes, "invalid": invalid, "wrong": wrong, "vote": vote}
    if inputs.kind != "label" and "target_value" in inputs.items:
        tv = pd.to_numeric(inputs.items["target_value"], errors="coerce").to_numpy(dtype=float)[:, None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an item no call answered: NaN
            out["abs_error"] = np.nanmean(np.where(valid, np.abs(cb["value"] - tv), np.nan), axis=-1)
    return out


def class_errors(cb: dict, fl: dict) -> list[list[int]]:
    """Classification: wrong calls per gold class (rows) and arm (columns)."""
    wrong = np.where(fl["wrong"] > 0, fl["wrong"], 0)
    return [[int(wrong[cb["gold"] == k, m].sum()) for m in range(wrong.shape[1])] for k in range(cb["K"])]


def _kept_replies(inputs, cb: dict, raws: list, budget: int) -> tuple[np.ndarray, str]:
    """Which calls' reply texts the page keeps (see the module doc: invalid calls, calls that differ from
    their reference's answer in the same iteration, and that reference call), and the note saying what
    was left out."""
    n = len(raws)

    def chars(mask) -> int:
        return sum(len(x) for x in {r for r, k in zip(raws, mask) if k and isinstance(r, str)})

    if chars(np.ones(n, bool)) <= budget:
        return np.ones(n, bool), ""
    codes, present = cb["codes"], cb["present"]
    arms = list(inputs.arms)
    ref = np.array([arms.index(inputs.references[a]) if inputs.references.get(a) in arms else -1 for a in arms])
    ii, mi, ri = cb["index"]
    where = np.full(codes.shape, -1)
    where[ii, mi, ri] = np.arange(n)
    r_ = ref[mi]
    paired = (r_ >= 0) & present[ii, np.maximum(r_, 0), ri]
    differs = paired & (codes[ii, mi, ri] != codes[ii, np.maximum(r_, 0), ri])
    keep = differs | (codes[ii, mi, ri] == cb["K"])
    keep[where[ii[differs], r_[differs], ri[differs]]] = True      # the reference's reply beside each
    what = "the text of the replies that agree with their reference"
    if chars(keep) > budget:
        keep[:] = False
        what = "every reply's text"
    return keep, (f"This run's replies hold more than {budget:,} characters: {what} is left out of this page "
                  f"({int((~keep).sum()):,} of {n:,} calls); `shootout view` shows every reply.")


def explorer_data(inputs, reply_budget: int = REPLY_BUDGET) -> dict:
    """The explorer's JSON object (see the module doc)."""
    cb = cube(inputs)
    fl = flags(inputs, cb)
    items = inputs.items.reset_index(drop=True)
    arms = list(inputs.arms)
    s = Strings()
    I, M, R = cb["codes"].shape
    n = I * M * R
    raw, err, ans, conf = [-1] * n, [-1] * n, [None] * n, [None] * n
    ok = [-1] * n                                         # -1 no call, 0 invalid, 1 valid
    c, (ii, mi, ri) = cb["frame"], cb["index"]
    flat = ((ii * M) + mi) * R + ri
    raws = c["raw_text"].tolist() if "raw_text" in c else [None] * len(c)
    errs = c["error"].tolist() if "error" in c else [None] * len(c)
    confs = c["confidence"].tolist() if "confidence" in c else [None] * len(c)
    valid, codes, value = cb["valid"], cb["codes"], cb["value"]
    keep, note = _kept_replies(inputs, cb, raws, reply_budget)
    for k, f in enumerate(flat.tolist()):
        i, m, r = int(ii[k]), int(mi[k]), int(ri[k])
        raw[f], err[f] = (s.add(raws[k]) if keep[k] or raws[k] is None else -2), s.add(errs[k])
        ok[f] = int(valid[i, m, r])
        if valid[i, m, r]:
            ans[f] = int(codes[i, m, r]) if inputs.kind == "label" else _num(value[i, m, r])
        conf[f] = _num(confs[k], 3)
    gold = (cb["gold"].tolist() if inputs.kind == "label" else
            [_num(x) for x in pd.to_numeric(items.get("target_value", pd.Series([None] * I)), errors="coerce")])
    col = (lambda name: [s.add(x) for x in items[name]] if name in items else [-1] * I)
    ref = [arms.index(inputs.references[a]) if inputs.references.get(a) in arms else -1 for a in arms]
    out = {
        "kind": inputs.kind, "noun": inputs.item_noun, "value_name": inputs.value_name, "names": cb["names"],
        "arms": arms, "ref": ref, "iters": cb["iters"], "band": inputs.neutral_band,
        "items": {"id": [str(x) for x in items["item_id"]], "title": col("title"), "text": col("text"),
                  "split": col("split"), "gold": gold},
        "calls": {"ok": ok, "ans": ans, "raw": raw, "err": err, "conf": conf if any(x is not None for x in conf) else []},
        "flags": {k: ([_num(x, 3) for x in v.ravel()] if v.dtype.kind == "f" else v.ravel().tolist())
                  for k, v in fl.items()},
    }
    if inputs.kind == "label":
        out["class_errors"] = class_errors(cb, fl)
    if note:
        out["note"] = note
    out["s"] = s.items
    return out


def to_script_json(obj) -> str:
    """JSON safe inside a ``<script type="application/json">`` element: no ``<``, ``>`` or ``&`` (so no
    ``</script>`` or comment opener can end the element early), no line separators JavaScript once refused."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
