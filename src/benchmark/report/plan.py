"""How many items and iterations to run: the sample size of the paired design, from a pilot run.

The test of a comparison runs over items on d_i, the item's mean over R iterations of the per-call
difference D_ir = score_b,ir - score_a,ir (the runner gives both models the same seed in one iteration,
so D pairs calls of the same iteration). Its variance splits into

    Var(d_i) = sigma2_items + sigma2_calls / R

- sigma2_calls: the variance of D across the iterations of one item (sample variance, ddof=1,
  averaged over items): noise that more iterations average away;
- sigma2_items: the variance between items of the true per-item difference (model x item variation):
  only more items reduce it. Estimated as Var(d_i) - mean(sigma2_calls / R_i), floored at 0.

For each candidate number of iterations R, the items needed come from statsmodels' power of the
paired t-test (``paired.items_needed``): two-sided for a difference, one-sided at the margin for
non-inferiority, and for equivalence (two one-sided tests, true difference 0) each side at power
1 - (1 - power) / 2 (a close, slightly conservative approximation).

The pilot's estimates carry its own uncertainty: with n pilot items the standard deviation is known
to about +-sqrt(1 / (2 (n - 1))) (15% at 24 items); the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.stats import common
from benchmark.stats import paired as P
from core.errors import ShootoutError

GOALS = ("difference", "non-inferiority", "equivalence")


@dataclass
class Plan:
    metric: str
    goal: str
    effect: float
    alpha: float
    power: float
    pairs: pd.DataFrame                    # per pair: variance components and the pilot's MDE
    designs: pd.DataFrame                  # per pair and iterations: items needed, calls, hours
    recommendation: dict = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    references: str = ""                   # the reference rule and sign the pairs follow


def _score_cube(store, run_id: str, metric: str | None, pairs):
    """(models, per-call score of ``metric`` as (models, items, iterations), seconds per call, the metric,
    settings, references) of a pilot run; the metric defaults to the task's first decision metric."""
    from benchmark import metrics as M
    from benchmark.report.inputs import read_run
    from benchmark.report.kinds import kind_of

    _, rd = read_run(store, run_id, pairs)
    order = common.model_order(rd.calls)
    got = kind_of(rd.task).plan_scores(rd, order)
    scores = got["scores"]
    metric = metric or M.primary(rd.task.scorer().metrics)
    if metric not in scores:
        if metric in rd.task.scorer().metrics and M.metric(metric).margin is not None:
            raise ShootoutError(f"run {run_id} has no gold values to score '{metric}' against",
                                f"pass --metric {next(iter(scores))} (or another of {', '.join(scores)})")
        raise ShootoutError(f"the planner handles {', '.join(scores)} for this task, not '{metric}'",
                            f"pass --metric {next(iter(scores))} (or another of those)")
    return order, scores[metric], got["seconds"], metric, rd.settings, rd.references


def components(score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float]:
    """Variance components of the per-item mean difference from (items, iterations) per-call scores."""
    D = score_b - score_a                         # matched by iteration (the same seed)
    r = np.sum(~np.isnan(D), -1)
    d = common.item_mean(D)
    within = common.item_var(D)                   # ddof=1 across iterations of one item
    res = P.paired(d)
    ok = ~np.isnan(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        calls_var = float(np.nanmean(within)) if np.isfinite(within).any() else 0.0
        inv_r = float(np.mean(1.0 / r[ok])) if ok.any() else np.nan
        items_var = max(float(res["sd"]) ** 2 - calls_var * inv_r, 0.0) if np.isfinite(res["sd"]) else np.nan
    return {"items": int(res["n"]), "iterations": float(np.mean(r[ok])) if ok.any() else np.nan,
            "mean_diff": float(res["mean"]), "sd_diff": float(res["sd"]), "sigma2_items": items_var,
            "sigma2_calls": calls_var}


def make_plan(store, run_id: str, *, metric: str | None = None, effect: float | None = None, goal: str = "difference",
              assume: float = 0.0, alpha: float | None = None, power: float | None = None,
              iterations=(1, 2, 3, 5, 10), pairs: list[tuple[str, str]] | None = None) -> Plan:
    """The plan for a pilot run: per comparison (the Decision's references, or ``pairs`` turned to match
    them: ``benchmark.report.references``) and number of iterations, the items that give ``power`` to show
    ``goal`` at ``effect`` (a difference to detect, or the margin; default: the run's margin for the
    metric). Differences are candidate minus reference."""
    if goal not in GOALS:
        raise ShootoutError(f"unknown goal '{goal}'", f"use one of {', '.join(GOALS)}")
    order, score, seconds, metric, cfg, references = _score_cube(store, run_id, metric, pairs)
    alpha = cfg.alpha if alpha is None else alpha
    power = cfg.power if power is None else power
    if effect is None:
        if goal == "difference" or metric not in (cfg.margins or {}):
            raise ShootoutError("no effect to plan for", "pass --effect (the difference to detect, or the margin; "
                                                         "in the metric's units, e.g. 0.05 for mae, 0.02 for 2 points)")
        effect = cfg.margins[metric]
    if not effect > 0:
        raise ShootoutError(f"--effect must be positive, got {effect}", "pass the size of the difference or margin")
    for pair in pairs or []:
        missing = [m for m in pair if m not in order]
        if missing:
            raise ShootoutError(f"pair [{pair[0]}, {pair[1]}]: {', '.join(missing)} not in run {run_id}",
                                f"models there: {', '.join(order)}")
    refs = dict(references.of) if pairs is None else {c: r for r, c in references.pairs}
    if not refs:
        raise ShootoutError("no comparison to plan for: every family has one model",
                            "pass --compare REFERENCE,CANDIDATE")
    index = {m: k for k, m in enumerate(order)}
    sec = float(np.nanmean(seconds))
    pair_rows, design_rows = [], []
    for cand, ref in refs.items():
        if cand not in index or ref not in index:
            raise ShootoutError(f"pair [{ref}, {cand}]: not in run {run_id}", f"models there: {', '.join(order)}")
        c = components(score[index[ref]], score[index[cand]])
        sd_now = c["sd_diff"]
        pair_rows.append({"reference": ref, "candidate": cand, **c,
                          "mde80_now": float(P.mde(sd_now, c["items"], alpha, power)),
                          "sd_uncertainty": float(np.sqrt(1 / (2 * max(c["items"] - 1, 1))))})
        for R in sorted(set(list(iterations) + [int(round(c["iterations"]))])):
            sd = float(np.sqrt(c["sigma2_items"] + c["sigma2_calls"] / R))
            if goal == "difference":
                n = P.items_needed(effect, sd, alpha, power, "two-sided")
            elif goal == "non-inferiority":
                n = P.items_needed(effect - assume, sd, alpha, power, "larger")
            else:
                n = P.items_needed(effect - abs(assume), sd, alpha, 1 - (1 - power) / 2, "larger")
            design_rows.append({"reference": ref, "candidate": cand, "iterations": R, "sd_diff": sd, "items": n,
                                "calls_per_model": n * R, "calls_all_models": n * R * len(order),
                                "hours_all_models": n * R * len(order) * sec / 3600})
    designs = pd.DataFrame(design_rows)
    # one design for every comparison: per number of iterations, the largest number of items needed
    worst = designs.groupby("iterations").agg(items=("items", "max"), calls_all_models=("calls_all_models", "max"),
                                             hours_all_models=("hours_all_models", "max")).reset_index()
    finite = worst[np.isfinite(worst["items"])]
    rec = {}
    lines = []
    what = {"difference": f"detect a difference of {effect:g}",
            "non-inferiority": f"show non-inferiority at a margin of {effect:g} (true difference {assume:g})",
            "equivalence": f"show equivalence within +-{effect:g} (true difference {assume:g})"}[goal]
    label = metric
    if len(finite):
        best = finite.sort_values(["calls_all_models", "iterations"]).iloc[0]
        rec = {"iterations": int(best["iterations"]), "items": int(best["items"]),
               "calls_all_models": int(best["calls_all_models"]), "hours_all_models": float(best["hours_all_models"])}
        lines.append(f"To {what} in {label} with {power:.0%} power at alpha {alpha:g} for every comparison: "
                     f"{rec['items']:,} items x {rec['iterations']} iterations ({rec['calls_all_models']:,} calls for "
                     f"{len(order)} models, about {rec['hours_all_models']:.1f} h at the pilot's "
                     f"{sec:.2f} s per call).")
    else:
        lines.append(f"No number of items reaches {power:.0%} power to {what} in {label}.")
    pr = pd.DataFrame(pair_rows)
    for r in pr.itertuples(index=False):
        share = r.sigma2_items / (r.sigma2_items + r.sigma2_calls / max(r.iterations, 1)) \
            if (r.sigma2_items + r.sigma2_calls) > 0 else np.nan
        lines.append(f"{r.candidate} vs {r.reference}: pilot {r.items} items x {r.iterations:.0f} iterations, "
                     f"difference {r.mean_diff:+.3f}, sd of per-item differences {r.sd_diff:.3f} "
                     f"({share:.0%} from items, the rest from calls); smallest difference the pilot finds 80% of "
                     f"the time: {r.mde80_now:.3f}.")
    if len(pr):
        unc = float(pr["sd_uncertainty"].max())
        lines.append(f"The pilot's standard deviations are known to about +-{unc:.0%}; the items needed scale with "
                     f"their square (+-{(1 + unc) ** 2 - 1:.0%}). When most of the variance comes from items, more "
                     "iterations barely help: add items.")
    lines.append(references.statement())
    return Plan(metric, goal, float(effect), alpha, power, pr, designs, rec, lines, references.rule)
