"""The report of a value task (a number per item in the task's range: a sentiment in [-1, 1], a 1-5
rating): Summary, Model Details, Comparisons (paired by item, long format), ANOVA (+ all pairs,
paired, Holm), Calibration, Per <item>; the Decision on MAE (a mean value without gold values).

What the range means comes from the run's task (``TaskInfo``): its ends (the worst error of an
unanswered call, the colour scales), whether the sign means something (direction accuracy with the
neutral band) and whether values are whole numbers (exact and within-one accuracy, weighted kappa)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import conventions as CV
from benchmark.report.common import COLOUR_LEGEND, compare_all, pairs_note, resource_columns
from benchmark.report.decision import decision_sheet
from benchmark.report.model import Report, Sheet
from benchmark.stats import anova as AN
from benchmark.stats import common
from benchmark.stats import compare as C
from benchmark.stats import ordinal
from benchmark.stats import speed as SP
from benchmark.stats import value as vstats

FALLBACK = "mean_value"  # the Decision's metric when the items have no gold value


def data_of(run, order: list[str]) -> vstats.ValueData:
    t, cfg = run.task, run.settings
    return vstats.ValueData.of(run.calls, run.items, cfg.neutral_band, t.value_range, models=order,
                               direction=t.direction, integer=t.integer)


def details(run) -> pd.DataFrame:
    """One row per model: timing and the value figures (the end-of-run table)."""
    data = data_of(run, common.model_order(run.calls))
    return vstats.per_model(run.calls, run.items, run.loads, run.settings.price_per_hour, data=data)


def plan_scores(run, order: list[str]) -> dict:
    """Per-call (models, items, iterations) scores the planner can size a study for, and the seconds."""
    data = data_of(run, order)
    scores = {"mean_value": data.value, "valid_rate": np.where(data.present, data.valid.astype(float), np.nan)}
    if data.has_target:
        scores.update(mae=data.abs_error(), mae_answered=data.abs_error(True))
        if data.direction:
            scores.update(sign_accuracy=data.direction_correct(), sign_accuracy_answered=data.direction_correct(True))
        if data.integer:
            scores.update(exact_accuracy=data.exact(),
                          within_one_accuracy=ordinal.within_one(data.value, data.present, data.target))
    return {"scores": scores, "seconds": data.cube.get("wall_seconds")}


def _measures(data: vstats.ValueData) -> dict[str, C.Measure]:
    scores = data.item_scores()
    measures = {k: C.measure(k, "logvar" if k == "value_variance" else "mean", x=v) for k, v in scores.items()}
    c = data.cube  # speed: per call, paired by (item, block), clustered both ways (``stats.speed``)
    timed = {k: C.measure(k, "speed", x=v) for k, v in SP.cells(
        np.where(data.present, c.get("wall_seconds"), np.nan),
        c.get("completion_tokens") if "completion_tokens" in c._calls else None,
        np.where(data.present, c.get("gen_seconds"), np.nan) if "gen_seconds" in c._calls else None).items()}
    measures.update({k: v for k, v in timed.items() if k in measures})
    if data.has_target:
        measures["correlation"] = C.correlation_measure(scores["mean_value"], data.target)
        if data.integer:
            k = data.steps
            measures["weighted_kappa"] = C.measure("weighted_kappa", "jackknife", suff=data.kappa_tables(),
                                                   fn=lambda s: ordinal.weighted_kappa(s, k))
    if data.direction:
        measures["direction_disagreement"] = C.measure("direction_disagreement", "agreement",
                                                       codes=data.direction_codes(), n_codes=4)
    elif data.integer:
        measures["answer_disagreement"] = C.measure("answer_disagreement", "agreement", codes=data.answer_codes(),
                                                    n_codes=data.steps + 1)
    return measures


def build(run) -> Report:
    task, cfg, calls, items = run.task, run.settings, run.calls, run.items
    noun, value_name = task.noun, task.value_name or "value"
    order = common.model_order(calls)
    data = data_of(run, order)
    details_ = vstats.per_model(calls, items, run.loads, cfg.price_per_hour, data=data)
    pa = vstats.per_item(calls, items, data=data)
    measures = _measures(data)
    vs = compare_all(order, measures, run.references, cfg)
    mat = AN.item_matrix(calls, order)
    anova = [AN.rm_anova(calls, mat), AN.friedman(calls, mat)]
    fq = AN.family_quant_anova(calls, mat)
    anova_df = pd.concat([pd.DataFrame(anova), fq if fq is not None else pd.DataFrame(
        [{"test": "two-way ANOVA family x quant", "note": "skipped: needs a complete grid of at least 2 families x 2 quants"}])],
        ignore_index=True)
    from benchmark.stats import calibration as cal

    conf = np.where(data.valid, data.cube.get("confidence"), np.nan) if "confidence" in calls else None
    right = data.correct() if data.has_target else None
    what = "direction right" if data.direction else "value right"
    calib, relia = (cal.summary(order, conf, right, cfg.calibration_bins, f"stated confidence vs {what}")
                    if conf is not None and right is not None and np.isfinite(conf).any()
                    else (pd.DataFrame(), pd.DataFrame()))
    n_items, n_it = int(details_["items"].max()), int(details_["iterations"].max())
    lo, hi = task.value_range
    scale = f"{value_name.capitalize()} on [{lo:g}, {hi:g}]" + (" in whole numbers" if task.integer else "") + "."
    fill = dict(noun=noun, value=value_name)
    variance_def = CV.say("variance", iterations=n_it, ratio=(n_it - 1) / n_it, **fill) if n_it > 1 else ""
    band = (f"Direction accuracy uses a neutral band: |{value_name}| < {cfg.neutral_band:g} is 'neutral', for "
            "labels and answers alike (config: report.neutral_band)." if task.direction else "")
    ordinal_def = ("Exact accuracy: the answer equals the gold value; within-one: at most one step away; weighted "
                   "kappa: Cohen's kappa with quadratic weights against the gold values (scikit-learn's "
                   "cohen_kappa_score, weights='quadratic'); an unanswered call is wrong, and the farthest value of the "
                   "scale in the kappa." if task.integer else "")
    legend = COLOUR_LEGEND.format(how="", extra=" Times are coloured by their ratio to the reference (0.5x-2x).")
    report = Report(run.run_id, task, details_, pa, [], references=run.references, versus=vs.versus, best=vs.best,
                    intervals=vs.intervals, calibration=calib, reliability=relia, settings=cfg, sizes=run.sizes)
    extra = " ".join(x for x in (scale, band, f"An unanswered call counts as the worst error on the scale"
                                             f"{' and as a wrong direction' if task.direction else ''}.") if x)
    decision = decision_sheet(report, measures, FALLBACK, extra)
    quality = dict.fromkeys([report.decision.attrs["metric"], "mean_value"])  # all pairs: the Decision's metric
    apairs = pd.concat([C.all_pairs(measures[k], order, cfg.alpha) for k in quality if k in measures],
                       ignore_index=True) if len(order) >= 2 else pd.DataFrame()
    summary = details_[["model", "family", "quant"] + (["variant"] if "variant" in details_ else [])
                       + report.columns("summary") + resource_columns(details_)]
    wrong = " / wrong" if task.direction or task.integer else ""
    sheets = [
        decision,
        Sheet("Summary", "summary", summary, best=True, colour=True,
              note=f"Run {run.run_id}: {n_items} {noun}s x {n_it} iterations per model. {scale} {variance_def} MAE"
                   f"{' and accuracies' if task.direction or task.integer else ''} count every call (an unanswered "
                   f"call = the worst error{wrong}); the 'answered calls only' figures stand beside them. {band} "
                   f"{ordinal_def} Seconds per sample cover every call. {CV.say('token_rates', **fill)} {legend}"),
        Sheet("Model Details", "model_details", details_, best=True, colour=True,
              note=f"Validity and timings over all calls; {value_name} figures are means over {noun}s of per-{noun} "
                   f"figures. 'Pooled' variance mixes between-{noun} differences with inconsistency: read it as "
                   f"pooled, not as consistency. {variance_def} {CV.say('token_rates', **fill)} {legend}"),
        Sheet("Comparisons", "comparisons", vs.comparisons, sig_cols=("p_holm",),
              note=f"{pairs_note(run.references, noun)} {CV.say('paired', **fill)} Mean {value_name}, MAE "
                   f"(unanswered = worst error), accuracies, validity: paired t over {noun}s, 95% t interval. "
                   f"{CV.say('speed_tests', **fill)} "
                   f"{CV.say('mde', **fill)} {CV.say('consistency', **fill)} Disagreement (direction, or the answer "
                   "on a scale of whole numbers): share of answer pairs from DIFFERENT iterations that differ, "
                   "candidate vs reference (value_cand) beside the reference vs itself (value_ref); the estimate is "
                   "the excess (the runner gives both models the same seed per iteration, so same-iteration pairs "
                   "agree more: 'same_seed' shows them, without a baseline). "
                   f"{CV.says(['correlation', 'jackknife', 'token_rates', 'direction'], **fill)}"),
        Sheet("ANOVA", "anova", anova_df, sig_cols=("p",),
              note=f"All models, {noun}s every model answered: {CV.says(['anova', 'friedman'], **fill)} Family x "
                   "quant: two-way ANOVA where the grid is complete. All pairs: "
                   f"paired t over {noun}s for every pair of models, Holm across all pairs (uses the pairing; "
                   "Tukey's HSD, which treats models as independent groups, is not used). Differences: model_b minus "
                   "model_a.",
              appendix=[(f"All pairs of models, paired by {noun} (Holm across all pairs)", "all_pairs", apairs)]
              if len(apairs) else []),
    ]
    if len(calib):
        right_is = ("the direction, with the neutral band" if task.direction else "the exact value")
        sheets.append(Sheet("Calibration", "calibration", calib,
                            note=f"Stated confidence against correctness ({right_is}): expected calibration error "
                                 f"over {cfg.calibration_bins} equal-width bins (weighted by calls; biased upward when "
                                 "bins hold few calls), Brier score, mean confidence minus accuracy (> 0: "
                                 "overconfident). " + CV.says(["calibration_accuracy", "calibration_bins"], **fill)
                                 + " Reliability table below.",
                            appendix=[("Reliability table (per model and confidence bin)", "reliability", relia)]))
    per = ("direction_accuracy is the share of iterations with the right direction" if task.direction else
           "exact_accuracy and within_one_accuracy are the shares of iterations exactly right and at most one step "
           "off" if task.integer else "")
    sheets.append(Sheet(f"Per {noun.title()}", "per_item", pa,
                        note=f"One row per model and {noun}, over its iterations; value_variance is that {noun}'s "
                             "consistency (sample variance, ddof=1); abs_error counts an unanswered call as the worst "
                             f"error{'; ' + per if per else ''}."))
    report.sheets = sheets
    return report
