"""The one reference resolver: which model each candidate is compared with, for every sheet, chart and
plan of a report (the Decision, the Comparisons sheet, the console verdicts, the heatmaps' colours
and the sample-size plan), so that a pair is never read one way in one place and the other way in
another.

The rule (config: ``report.reference``):

- ``highest_precision`` (the default): per family, the rung of the widest quant. Between rungs of the
  same precision (prompt variants of one model; two models of one quant) the one a configured
  ``compare`` pair names as reference; failing that, the first in report order.
- ``compare``: the configured pairs [reference, candidate]; a candidate named in several pairs takes
  the reference of its first pair.

The Comparisons sheet shows the configured pairs (each model against its reference when none are
configured). A configured pair that runs against the rule (``[a-q4, a-f16]`` when a-f16 is a-q4's
reference) is shown the rule's way round, and the sheets say so.

One sign everywhere: a difference is candidate minus reference, in the metric's own units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.naming import quant_bits

SIGN = ("Differences are candidate minus reference, in the metric's own units (an error: positive = the candidate "
        "errs more; an accuracy: positive = the candidate is right more often).")


@dataclass(frozen=True)
class References:
    of: dict[str, str]                        # candidate -> its reference
    pairs: tuple[tuple[str, str], ...]        # [reference, candidate]: the Comparisons sheet's pairs
    rule: str                                 # how the references were chosen, in words
    turned: tuple[tuple[str, str], ...] = ()  # configured pairs shown the other way round (as configured)
    configured: bool = False                  # the pairs are the configured ones

    def statement(self) -> str:
        """The reference and sign convention, as every sheet and the console state it."""
        text = f"Reference: {self.rule}. {SIGN}"
        if self.turned:
            shown = "; ".join(f"[{a}, {b}] is shown as [{b}, {a}]" for a, b in self.turned)
            text += (f" Configured pairs turned to match the references: {shown} (set report.reference: compare "
                     "to make the configured pairs the references).")
        return text

    def lines(self) -> list[str]:
        """Who is compared with whom, one line per reference (for the console)."""
        by_ref: dict[str, list[str]] = {}
        for cand, ref in self.of.items():
            by_ref.setdefault(ref, []).append(cand)
        return [f"{ref} is the reference of {', '.join(c)}" for ref, c in by_ref.items()]


def _highest_precision(models: pd.DataFrame, pairs: list[tuple[str, str]]) -> dict[str, str]:
    named = [a for a, _ in pairs]
    out: dict[str, str] = {}
    for _, g in models.groupby("family", sort=False):
        names = list(g["model"])
        bits = np.array([quant_bits(q) for q in g["quant"]], dtype=float)
        widest = [n for n, b in zip(names, bits) if b == bits.max()]
        ref = next((a for a in named if a in widest), widest[0])
        out.update({n: ref for n in names if n != ref})
    return out


def resolve(models: pd.DataFrame, mode: str = "highest_precision",
            pairs: list[tuple[str, str]] | None = None) -> References:
    """The references of a run's models. ``models``: one row per model in report order with family and
    quant; ``pairs``: the configured (or --compare) pairs [reference, candidate], those of models in
    ``models`` kept."""
    known = set(models["model"])
    pairs = [(str(a), str(b)) for a, b in (pairs or []) if a in known and b in known and a != b]
    if mode == "compare":
        of: dict[str, str] = {}
        for a, b in pairs:
            of.setdefault(b, a)
        rule = "the configured compare pairs [reference, candidate]"
    else:
        of = _highest_precision(models, pairs)
        rule = ("each family's widest quant (highest precision); between rungs of the same precision, the one a "
                "compare pair names as reference, else the first")
    if not pairs:
        return References(of, tuple((r, c) for c, r in of.items()), rule)
    shown, turned = [], []
    for a, b in pairs:
        if of.get(a) == b:  # configured against the rule: b is a's reference
            turned.append((a, b))
            a, b = b, a
        if (a, b) not in shown:
            shown.append((a, b))
    return References(of, tuple(shown), rule, tuple(turned), configured=True)
