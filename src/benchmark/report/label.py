"""The report of a label task (classification): Summary (baselines beside the models), Per Class,
Confusion, Comparisons (McNemar, bootstrap, flips; the paired measures below), Calibration, Per <item>,
Learning Curve (checkpoints); the Decision on accuracy. Figures over the evaluated split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import conventions as CV
from benchmark.report.common import COLOUR_LEGEND, compare_all, pairs_note, resource_columns
from benchmark.report.decision import decision_sheet
from benchmark.report.model import Report, Sheet
from benchmark.stats import common
from benchmark.stats import compare as C
from benchmark.stats import speed as SP

FALLBACK = "accuracy"


def _labels(run) -> list[str]:
    return list(run.task.labels or sorted(run.items["target_label"].dropna().unique()))


def _evaluated(run):
    """(the split asked about, its calls, its items with gold labels)."""
    items = run.items
    splits = [s for s in dict.fromkeys(items["split"].dropna())] or [None]
    main_split = splits[-1]  # the evaluated split (last listed; train first in learning curves)
    ids = set(items.loc[items["split"] == main_split, "item_id"]) if main_split else set(items["item_id"])
    gold = items[["item_id", "target_label", "split"]]
    return main_split, run.calls[run.calls["item_id"].isin(ids)], gold[gold["item_id"].isin(ids)]


def _usable(task) -> tuple[str | None, tuple[float, ...], list[str]]:
    """(the positive class, the betas the figures can use, what a stored run asked for that cannot be
    computed, and why): a run stored without the config's checks still reports."""
    scorer = task.scorer()
    return (task.positive if scorer.positive_usable else None), scorer.usable_betas, scorer.unusable()


def details(run) -> pd.DataFrame:
    """One row per model: timing over all calls and the label figures (the end-of-run table)."""
    from benchmark.stats import label as lstats
    from benchmark.stats import label_items as LI

    positive, betas, _ = _usable(run.task)
    timing = common.timing(run.calls, run.loads, run.settings.price_per_hour)
    quality = lstats.per_model(run.calls, run.items[["item_id", "target_label", "split"]], _labels(run),
                               positive=positive, betas=betas)
    keep = [c for c in quality.columns if c not in timing.columns or c == "model"]
    out = timing.merge(quality[keep], on="model", how="left")
    probs = LI.label_prob_figures(run.calls)
    return out.merge(probs, on="model", how="left") if len(probs) else out


def plan_scores(run, order: list[str]) -> dict:
    """Per-call (models, items, iterations) scores the planner can size a study for, and the seconds."""
    from benchmark.stats import label_items as LI

    data = LI.LabelData.of(run.calls, run.items[["item_id", "target_label", "split"]], _labels(run), models=order)
    present = data.codes >= 0
    right = (data.codes == data.gold[None, :, None]).astype(float)
    valid = (data.codes < data.K).astype(float)
    scores = {"accuracy": np.where(present, right, np.nan),
              "accuracy_answered": np.where(present & (data.codes < data.K), right, np.nan),
              "valid_rate": np.where(present, valid, np.nan), "invalid_rate": np.where(present, 1 - valid, np.nan)}
    return {"scores": scores, "seconds": data.wall}


def _per_item(calls: pd.DataFrame, items: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """One row per model and item: gold, every answer over the iterations ('(invalid)' for a reply that
    gave no label), the majority vote ('(tie: a, b)' for a tie) and its credit, the accuracy."""
    from benchmark.stats import label as lstats

    pi = lstats.per_item(calls, items, labels)
    ok = calls["valid"].fillna(False).astype(bool) & calls["label"].astype("string").isin(labels).fillna(False)
    text = calls["label"].astype("string").where(ok, lstats.INVALID).astype(object)
    answers = (calls.assign(answer=text).sort_values("iteration", kind="stable")
               .groupby(["model", "item_id"], sort=False)["answer"].agg(", ".join).rename("answers").reset_index())
    pi = pi.merge(answers.astype({"item_id": str}), on=["model", "item_id"], how="left")
    pi = pi[["model", "item_id", "target_label", "answers", "vote", "vote_credit", "accuracy", "calls"]]
    keep = ["item_id"] + [c for c in ("title", "split") if c in items]
    return pi.merge(items[keep].astype({"item_id": str}), on="item_id", how="left")


def _vote_gain(data, models: list[str], alpha: float) -> pd.DataFrame:
    """Per model: majority-vote accuracy against per-call accuracy on the same items (ties split), the gain
    with its 95% interval and the paired t over items."""
    from benchmark.stats import label as lstats
    from benchmark.stats import paired as P

    s = data.item_scores()
    _, _, tied = lstats.vote(data.counts(), np.broadcast_to(data.gold, s["accuracy"].shape))
    rows = []
    for k, m in enumerate(models):
        r = P.paired(s["vote_accuracy"][k] - s["accuracy"][k])
        lo, hi = P.t_interval(r, 1 - alpha)
        seen = np.isfinite(s["accuracy"][k])
        rows.append({"model": m, "items": int(r["n"]), "vote_ties": int(tied[k][seen].sum()),
                     "vote_accuracy": float(np.nanmean(s["vote_accuracy"][k])),
                     "accuracy": float(np.nanmean(s["accuracy"][k])), "vote_gain": float(r["mean"]),
                     "ci95_low": float(lo), "ci95_high": float(hi), "p": float(r["p"])})
    return pd.DataFrame(rows)


def _learning_curve(calls, gold, labels, positive, betas, checkpoints: dict[str, float]) -> pd.DataFrame:
    if not checkpoints:
        return pd.DataFrame()
    from benchmark.stats import label as lstats

    rows = []
    for split in [s for s in dict.fromkeys(gold["split"].dropna())]:
        ids = set(gold.loc[gold["split"] == split, "item_id"])
        c = calls[calls["item_id"].isin(ids) & calls["model"].isin(checkpoints)]
        if c.empty:
            continue
        pm = lstats.per_model(c, gold[gold["item_id"].isin(ids)], labels, positive=positive, betas=betas)
        for r in pm.itertuples(index=False):
            rows.append({"model": r.model, "checkpoint": checkpoints[r.model], "split": split,
                         "accuracy": r.accuracy, "macro_f1": r.macro_f1, "invalid_rate": r.invalid_rate})
    return pd.DataFrame(rows).sort_values(["split", "checkpoint"]).reset_index(drop=True) if rows else pd.DataFrame()


def _measures(data, positive, betas) -> dict[str, C.Measure]:
    from benchmark.stats import label_items as LI

    scores = data.item_scores()
    K = data.K
    pos = data.labels.index(str(positive)) if positive is not None and str(positive) in data.labels else None
    scores["invalid_rate"] = 1 - scores["valid_rate"]
    measures = {k: C.measure(k, "mean", x=v) for k, v in scores.items()}
    # speed: per call, paired by (item, block), clustered both ways (``benchmark.stats.speed``)
    measures["s_per_sample"] = C.measure("s_per_sample", "speed", x=SP.log_cells(data.wall))
    tables = data.tables().reshape(len(data.models), len(data.item_ids), -1)
    for name in ["balanced_accuracy", "macro_f1", "kappa"] + (["precision", "recall", "f1"] if pos is not None else []) \
            + [f"f_beta_{b:g}" for b in betas]:
        measures[name] = C.measure(name, "jackknife", suff=tables, fn=LI.table_metric(name, K, pos))
    measures["answer_disagreement"] = C.measure("answer_disagreement", "agreement", codes=data.codes, n_codes=K + 1)
    return measures


def build(run) -> Report:
    from benchmark.stats import calibration as cal
    from benchmark.stats import label as lstats
    from benchmark.stats import label_baselines as LB
    from benchmark.stats import label_compare as LC
    from benchmark.stats import label_items as LI

    task, cfg, calls, items = run.task, run.settings, run.calls, run.items
    noun = task.noun
    fill = dict(noun=noun)
    labels = _labels(run)
    positive, betas, not_computed = _usable(task)
    gold = items[["item_id", "target_label", "split"]]
    timing = common.timing(calls, run.loads, cfg.price_per_hour)
    main_split, ev_calls, ev_items = _evaluated(run)
    quality = lstats.per_model(ev_calls, ev_items, labels, positive=positive, betas=betas,
                               price_per_hour=cfg.price_per_hour)
    details = timing.drop(columns=["items", "iterations", "calls", "valid_rate"]).merge(
        quality.drop(columns=[c for c in ("family", "quant", "variant", "s_per_sample", "cost_per_1k")
                              if c in quality]), on="model", how="left")
    probs = LI.label_prob_figures(ev_calls)
    if len(probs):
        details = details.merge(probs, on="model", how="left")
    order = ["model", "family", "quant"] + (["variant"] if "variant" in details else []) + \
        [c for c in ("items", "iterations", "calls") if c in details]
    details = details[order + [c for c in details.columns if c not in order]]
    base = LB.baselines(ev_items, labels, positive=positive, betas=betas)
    per_class = lstats.per_class(ev_calls, ev_items, labels)
    confusion = lstats.confusion(ev_calls, ev_items, labels)
    conf_long = pd.concat([m.rename_axis("gold").reset_index().assign(model=name)
                           for name, m in confusion.items()], ignore_index=True)
    conf_long = conf_long[["model", "gold"] + [c for c in conf_long.columns if c not in ("model", "gold")]]
    model_names = list(details["model"])

    data = LI.LabelData.of(ev_calls, ev_items, labels, models=model_names)
    measures = _measures(data, positive, betas)
    refs = run.references
    vs = compare_all(model_names, measures, refs, cfg)
    comparisons = LC.compare_pairs(ev_calls, ev_items, list(refs.pairs), labels=labels) if refs.pairs \
        else pd.DataFrame()
    q = LC.cochran_q(ev_calls, ev_items, labels=labels)
    # per-class F1 against the reference (paired jackknife over items), for the honest per-class heatmap
    K = data.K
    tables = data.tables().reshape(len(model_names), len(data.item_ids), -1)
    pcv = []
    for k_, lab in enumerate(data.labels):
        ms = C.measure("f1", "jackknife", suff=tables, fn=LI.table_metric("f1", K, k_))
        for cand, ref in refs.of.items():
            r = C.pair(ms, model_names.index(ref), model_names.index(cand), cfg.alpha, cfg.power)
            pcv.append({"model": cand, "reference": ref, "class": lab, "direction": r["direction"],
                        "estimate": r["estimate"], "ci95_low": r["ci95_low"], "ci95_high": r["ci95_high"]})
    calib, relia = pd.DataFrame(), pd.DataFrame()
    if np.isfinite(data.confidence).any():
        right = np.where((data.codes >= 0) & (data.codes < K), (data.codes == data.gold[None, :, None]).astype(float),
                         np.nan)
        what = ("label probability" if "label_probs_json" in calls and calls["label_probs_json"].notna().any()
                else "stated confidence")
        calib, relia = cal.summary(model_names, data.confidence, right, cfg.calibration_bins, what + " vs label right")
    split_note = f" on the '{main_split}' split" if main_split else ""
    n_it = int(timing["iterations"].max())
    legend = COLOUR_LEGEND.format(how="; jackknife over items for F1, kappa, balanced accuracy",
                                  extra=" Baseline rows are not coloured.")
    acc = data.item_scores()["accuracy"]
    vs_base = LB.baseline_rows(model_names, acc, data.gold, data.labels, cfg.alpha, noun)
    report = Report(run.run_id, task, details, _per_item(ev_calls, ev_items, labels), [], references=refs,
                    confusion=confusion, per_class=per_class, versus=vs.versus, best=vs.best, intervals=vs.intervals,
                    calibration=calib, reliability=relia, per_class_versus=pd.DataFrame(pcv), settings=cfg,
                    sizes=run.sizes, per_class_baselines=LB.per_class_baselines(ev_items, labels))
    summary = details[order + report.columns("summary") + resource_columns(details)]
    base_rows = base.drop(columns=["strategy"], errors="ignore")
    base_rows["model"] = "baseline: " + base_rows["model"]
    summary = pd.concat([summary, base_rows[[c for c in base_rows.columns if c in summary.columns]]],
                        ignore_index=True)
    missing = (" Not computed: " + "; ".join(not_computed) + ".") if not_computed else ""
    decision = decision_sheet(report, measures, FALLBACK,
                              "Accuracy counts every call; an invalid reply is wrong. " + CV.say("mcnemar", **fill)
                              + missing, baselines={m: LB.baseline_verdict(vs_base, m) for m in model_names},
                              baseline_table=vs_base)
    logprob = CV.say("label_prob", **fill) if len(probs) else ""
    sheets = [
        decision,
        Sheet("Summary", "summary", summary, best=True, colour=True,
              note=f"Run {run.run_id}: {len(ev_items)} {noun}s{split_note} x {n_it} iterations per model. Every call "
                   "counts; an invalid reply counts as wrong (accuracy of answered calls beside it). Baselines "
                   "(majority class, each constant label, stratified random guessing) are rows of the same table; "
                   f"the Decision tests each model against them. {CV.says(['vote', 'macro', 'token_rates'], **fill)} "
                   f"{logprob}{missing} {legend}"),
        Sheet("Model Details", "model_details", details, best=True, colour=True,
              note="Timing over all calls (valid or not); quality figures from scikit-learn on every call. "
                   f"{CV.say('token_rates', **fill)} {logprob} {legend}",
              appendix=[("Majority vote against one call (ties split; paired t over items)", "vote_gain",
                         _vote_gain(data, model_names, cfg.alpha))]),
        Sheet("Per Class", "per_class", per_class,
              note="Precision, recall and F1 per class and model (scikit-learn), over every call; support counts calls."
                   " The per-class chart marks the baselines' F1 per class."),
        Sheet("Confusion", "confusion", conf_long,
              note="Gold label (rows) x answer (columns) per model, counts of calls; '(invalid)' counts replies that "
                   "gave no label."),
        Sheet("Comparisons", "comparisons", comparisons, sig_cols=tuple(c for c in comparisons.columns
                                                                        if c.endswith("_p_holm")),
              note=f"{pairs_note(refs, noun)} " + CV.says(["paired", "accuracy_difference", "mcnemar"], **fill)
                   + " Holm across pairs. Flips: over matched (item, iteration) calls, right->wrong and "
                   "wrong->right against the reference, beside the reference's own flip rate between its iterations "
                   "(matched calls share the sampling seed). Below: Cochran's Q (same tied-vote rule as McNemar), "
                   f"and the paired measures in long format (paired t over {noun}s for accuracy, vote accuracy, "
                   "validity and consistency; answer disagreement over pairs of different iterations against "
                   "the reference's own). " + CV.says(["jackknife", "mde", "speed_tests", "token_rates", "direction"], **fill),
              appendix=[("Cochran's Q across all models (per-item majority-vote correctness)", "cochran_q",
                         pd.DataFrame([q])),
                        (f"Paired measures, per {noun} (long format)", "paired_measures", vs.comparisons)]),
    ]
    if len(calib):
        sheets.append(Sheet("Calibration", "calibration", calib,
                            note="Label probability (log-probability mode) or stated confidence against correctness: "
                                 f"expected calibration error over {cfg.calibration_bins} equal-width bins, Brier "
                                 "score, mean confidence minus accuracy. "
                                 + CV.says(["calibration_accuracy", "calibration_bins"], **fill)
                                 + " Reliability table below.",
                            appendix=[("Reliability table (per model and confidence bin)", "reliability", relia)]))
    sheets.append(Sheet(f"Per {noun.title()}", "per_item", report.per_item,
                        note=f"One row per model and {noun}: its gold label, its answers over the iterations in "
                             "iteration order, the majority vote and its credit, and the accuracy. "
                             + CV.says(["invalid", "vote"], **fill)))
    report.sheets = sheets
    curve = _learning_curve(calls, gold, labels, positive, betas, run.checkpoints)
    if len(curve):
        report.learning_curve = curve
        sheets.insert(3, Sheet("Learning Curve", "learning_curve", curve,
                               note="Per checkpoint of a fine-tune (training step or epoch) and split: the metric "
                                    "on that split's items. A widening gap between train and validation shows "
                                    "overfitting."))
    return report
