"""The Decision in words: one headline per candidate that says what to do, one sentence per metric with
its figures, and the baseline line of every model (label tasks). The verdicts themselves are
``benchmark.stats.decision``'s; what they mean is stated once in ``benchmark.conventions``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import metrics as M


def _fmt(value: float, metric: str, signed: bool = False, role: str = "quality", size: bool = False) -> str:
    """A figure as the sentences show it: a rate as a percentage, a difference of rates (``signed``) or a
    size of one (``size``: an MDE, a half-width) in points, a consistency figure as a ratio."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if role == "consistency":
        return f"{value:.2f}x"
    m = M.metric(metric)
    if m.percent:
        return f"{value * 100:+.1f} points" if signed else f"{value * 100:.1f} points" if size else f"{value:.1%}"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _amount(metric: str, margin: float) -> str:
    return f"{margin * 100:g} points" if M.metric(metric).percent else f"{margin:g}"


def margin_text(metric: str, margin: float, value_range=(-1.0, 1.0)) -> str:
    m = M.metric(metric, value_range=value_range)
    if m.role == "consistency":
        return f"variance ratio up to {margin:g}x"
    amount = _amount(metric, margin)
    if m.higher_is_better is None:
        return f"+-{amount}"
    return f"{amount} {'lower' if m.higher_is_better else 'higher'}"


def _items(n: float, more: float, iterations: int, noun: str) -> str:
    if not np.isfinite(n) or n >= 1e6:
        return f"no practical number of {noun}s would"
    each = f"{iterations} iteration{'s' if iterations != 1 else ''} each"
    return f"about {int(n):,} {noun}s in all ({int(more):,} more, {each}) would"


def metric_words(row: dict, noun: str, label: str, value_range=(-1.0, 1.0), alpha: float = 0.05) -> str:
    """One sentence per (candidate, metric) row of ``stats.decision.candidate_rows``."""
    ref, metric, role, v = row["reference"], row["metric"], row["role"], row["verdict"]
    ci = (f"{_fmt(row['diff'], metric, True, role)}, 90% CI [{_fmt(row['ci90_low'], metric, True, role)}, "
          f"{_fmt(row['ci90_high'], metric, True, role)}]")
    margin = f"margin {margin_text(metric, row['margin'], value_range)}"
    decide = (f"{_items(row['items_to_decide'], row['more_items'], row['iterations'], noun)} decide it, whatever the "
              f"true difference")
    mde = f"smallest difference this run detects 80% of the time: {_fmt(row['mde80'], metric, role=role, size=True)}"
    if role == "consistency":
        mde = "smallest ratio this run detects 80% of the time: " + _fmt(float(np.exp(row["mde80"])), metric, role=role)
    reach = ""
    if not row["equivalence_reachable"] and v != "equivalent" and role != "consistency":
        n_eq = row["items_for_equivalence"]
        more = max(n_eq - row["items"], 0) if np.isfinite(n_eq) else n_eq
        reach = (f" Equivalence within +-{_amount(metric, row['margin'])} is out of reach at this size (90% interval "
                 f"+-{_fmt(row['h90'], metric, size=True)}); {_items(n_eq, more, row['iterations'], noun)} show it "
                 "with 80% power if the true difference is 0.")
    floor = (f" (every {noun} differed by the same amount: the interval is the zero-spread bound, not zero-wide)"
             if row.get("spread_floor") else "")
    holm = f"Holm-adjusted p = {row['p_worse_holm']:.3g}"
    if v == "equivalent":
        return f"{label}: as good as {ref} within the margin ({ci}; {margin}){floor}."
    if v == "non-inferior":
        hib = M.metric(metric).higher_is_better
        better = role == "quality" and ((hib and row["ci95_low"] > 0) or (hib is False and row["ci95_high"] < 0))
        worse = (f"; significantly worse ({holm}), but by less than the margin" if row["p_worse_holm"] < alpha
                 else "; significantly better" if better else "")
        return f"{label}: not worse than {ref} by more than the margin ({ci}; {margin}{worse}){floor}.{reach}"
    if v == "worse":
        if role == "consistency":
            return (f"{label}: less consistent than {ref}: its answers vary more across the iterations of one {noun} "
                    f"({ci}; 95% CI [{_fmt(row['ci95_low'], metric, role=role)}, "
                    f"{_fmt(row['ci95_high'], metric, role=role)}]; {holm}; {margin}).")
        beyond = " by more than the margin" if row["worse_by_ci90_low"] > row["test_margin"] else ""
        return f"{label}: worse than {ref}{beyond} ({ci}; {holm}; {margin})."
    if v == "shifted":
        return (f"{label}: shifted against {ref} by {_fmt(row['diff'], metric, True)} (95% CI "
                f"[{_fmt(row['ci95_low'], metric, True)}, {_fmt(row['ci95_high'], metric, True)}]; {holm}): it answers "
                f"systematically {'higher' if row['diff'] > 0 else 'lower'}; {margin}.")
    if v == "too few items":
        why = (f"fewer than report.min_items {noun}s ({int(row['items'])})" if row.get("few")
               else f"the {mde} ({_ratio(row)} the margin)")
        return (f"{label}: nothing can be decided with {int(row['items'])} {noun}s at its margin "
                f"({margin_text(metric, row['margin'], value_range)}; {ci}): {why}; {decide}.")
    what = ("bounded within the margin" if role != "quality" else "decided")
    none = "1x (no difference)" if role == "consistency" else "0"
    return (f"{label}: not {what} yet ({ci}; {margin}): the 90% interval reaches past the margin and also includes "
            f"{none}; {decide}. The {mde}.{reach}")


def _ratio(row: dict) -> str:
    m = row["test_margin"]
    return f"{row['mde80'] / m:.1f} x" if m > 0 and np.isfinite(row["mde80"]) else "several times"


def speed_words(row) -> str:
    """The candidate's speed against its reference: the ratio with its 95% interval, and "not
    distinguishable" when the interval holds 1 (``benchmark.stats.decision.speed_vs_ref``)."""
    x = getattr(row, "speedup_vs_ref", np.nan)
    if not np.isfinite(x):
        return ""
    lo, hi = getattr(row, "speedup_ci95_low", np.nan), getattr(row, "speedup_ci95_high", np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{x:.2f}x the speed"
    tail = ", not distinguishable" if getattr(row, "speed_vs_ref", "") == "not distinguishable" else ""
    return f"{x:.2f}x the speed (95% CI {lo:.2f}-{hi:.2f}{tail})"


def _slower(row) -> bool:
    """Slower than the reference: its interval below 1 (the point estimate where no interval was made)."""
    x = getattr(row, "speedup_vs_ref", np.nan)
    hi = getattr(row, "speedup_ci95_high", np.nan)
    return bool(hi < 1) if np.isfinite(hi) else bool(np.isfinite(x) and x < 1)


def headline(row, long: pd.DataFrame, labels: dict[str, str], value_name: str, noun: str = "item") -> str:
    """What to do with a candidate, from its overall verdict, speed and size against its reference."""
    ref = row.reference
    speed = speed_words(row)
    size = f"{row.size_vs_ref:.0%} of the size" if np.isfinite(row.size_vs_ref) else ""
    cost = "; ".join(x for x in (speed, size) if x)
    cost = f" (against {ref}: {cost})" if cost else ""
    mine = long[long["candidate"] == row.model] if len(long) else long
    open_ = [labels.get(r.metric, r.metric) for r in mine.itertuples() if r.role != "quality"
             and r.verdict not in ("equivalent", "non-inferior")]
    slower = _slower(row) and not (np.isfinite(row.size_vs_ref) and row.size_vs_ref < 1)
    gain = (f"but it is slower and no smaller: nothing to gain by shipping it in place of {ref}" if slower
            else "ship it if the gain matters")
    shifted = mine[mine["verdict"] == "shifted"]
    most = float(mine["items_to_decide"].max()) if len(mine) else np.nan
    need = (f"about {int(most):,} {noun}s in all would decide every metric, whatever the true differences"
            if np.isfinite(most) and most < 1e6 else f"run more {noun}s")
    act = {
        "equivalent": f"As good as {ref} within the margins; {gain}",
        "non-inferior": ("Safe to ship: not worse than the reference by more than the margins, its answers not "
                         "shifted and as consistent within the margins" if not slower else
                         f"Not worse than {ref} by more than the margins, {gain}"),
        "not bounded": (f"Not safe to ship yet: not worse than {ref} on quality by more than the margins, but "
                        f"{' and '.join(open_) or 'its bias'} not bounded within the margin"),
        "worse": f"Do not ship in place of {ref}: worse",
        "shifted": (f"Do not ship in place of {ref} unnoticed: its {value_name}s are shifted by "
                    f"{_fmt(shifted['diff'].iloc[0], shifted['metric'].iloc[0], True)}" if len(shifted) else
                    f"Do not ship in place of {ref} unnoticed: its answers are shifted"),
        "less consistent": f"Less consistent than {ref}: its answers to the same item vary more",
        "too few items": f"Too few {noun}s for at least one metric to reach a verdict: {need}",
        "inconclusive": f"No decision yet: {need}",
        "no verdict": ("No decision: fewer than two items were answered by both this model and the reference, "
                       "so there is no interval yet; run more items"),
    }.get(row.verdict, row.verdict)
    pareto = (" Pareto-optimal." if row.pareto else
              " Not Pareto-optimal (another rung is at least as good on quality, speed and size, and better on one).")
    return f"{act}{cost}.{pareto}"


def reference_words(row, primary: str, label: str) -> str:
    what = "the reference of its family" if row.role == "reference" else "no other rung of its family to compare with"
    q = (f"{label} {_fmt(row.quality, primary)} [95% CI {_fmt(row.quality_ci95_low, primary)}, "
         f"{_fmt(row.quality_ci95_high, primary)}]")
    pareto = " Pareto-optimal." if row.pareto else ""
    return f"{row.model}: {what}; {q}.{pareto}"


def words(table: pd.DataFrame, long: pd.DataFrame, noun: str, labels: dict[str, str], value_name: str,
          min_items: int, baselines: dict[str, str] | None = None, value_range=(-1.0, 1.0),
          alpha: float = 0.05) -> tuple[list[str], list[str]]:
    """(the 'what it means' text of every row of the Decision table, the verdict lines for the console)."""
    baselines = baselines or {}
    primary = table.attrs["metric"]
    out, lines = [], []
    for row in table.itertuples(index=False):
        base = f" {baselines[row.model]}" if row.model in baselines else ""
        if row.role != "candidate":
            out.append(reference_words(row, primary, labels.get(primary, primary)) + base)
            if base:
                lines.append(baselines[row.model])
            continue
        mine = long[long["candidate"] == row.model]
        parts = [metric_words({**x, "few": x["items"] < min_items}, noun, labels.get(x["metric"], x["metric"]),
                              value_range, alpha) for x in mine.to_dict("records")]
        text = f"{headline(row, long, labels, value_name, noun)} " + " ".join(parts)
        out.append(text + base)
        lines.append(f"{row.model} vs {row.reference}: {row.verdict.upper()}. " + text)
        if base:
            lines.append(baselines[row.model])
    return out, lines
