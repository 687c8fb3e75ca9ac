"""The Decision sheet, first in every report: which family (when the run has several: each at its
reference, ``benchmark.stats.families``), then per candidate the verdict against its reference at the
margins on the task's decision metrics (``benchmark.stats.decision``), in words
(``benchmark.report.verdicts``), quality with its interval, speed, the size the run stored,
Pareto-optimal rungs, each model against the trivial baselines (label tasks), and the chart."""

from __future__ import annotations

import numpy as np

from benchmark import conventions as CV
from benchmark import metrics as M
from benchmark.report.common import resource_columns
from benchmark.report.model import Report, Sheet
from benchmark.report.settings import Settings
from benchmark.report.verdicts import margin_text, words
from benchmark.stats import common
from benchmark.stats import decision as D
from benchmark.stats import families as F


def primary_metric(report: Report, measures: dict, fallback: str) -> str:
    """The Decision's quality metric: the first default decision metric of the quality role the task
    declares that the run can compute (e.g. MAE needs gold values), else the kind's fallback (a mean
    value without gold values)."""
    return next((m for m in M.decision_metrics(report.declared) if m in measures
                 and D.role_of(m, measures[m].higher_is_better) == "quality"), fallback)


def margins(cfg: Settings, measures: dict, primary: str, value_range) -> dict[str, float]:
    """The margins tested, primary first: those set (or defaulted) that the run can compute as per-item
    means or variances; the primary always, at its set or default margin."""
    usable = {k: v for k, v in (cfg.margins or {}).items() if k in measures and measures[k].kind in ("mean", "logvar")}
    if primary not in usable and primary in measures:
        usable = {primary: (cfg.margins or {}).get(primary, M.metric(primary, value_range=value_range).margin),
                  **usable}
    return {primary: usable[primary], **{k: v for k, v in usable.items() if k != primary}} if primary in usable \
        else usable


def family_lines(rows, labels: dict[str, str], noun: str, value_range) -> list[str]:
    """One verdict line per pair of families (``benchmark.stats.families``), first in the Decision."""
    out = []
    for (fa, ra, fb, rb), g in rows.groupby(["family_a", "reference_a", "family_b", "reference_b"], sort=False):
        verdict = F.pair_verdict(g)
        parts = []
        for r in g.itertuples(index=False):
            said = (f"{labels.get(r.metric, r.metric)} {r.value_a:.3g} vs {r.value_b:.3g}, difference "
                    f"{r.diff:+.3g} (95% CI [{r.ci95_low:+.3g}, {r.ci95_high:+.3g}], Holm p {r.p_holm:.3g}): {r.verdict}")
            if r.verdict == "not distinguishable":
                said += (f"; about {r.items_to_decide:.0f} {noun}s would decide it at the margin "
                         f"{margin_text(r.metric, r.margin, value_range)}" if np.isfinite(r.items_to_decide) else "")
            parts.append(said)
        out.append(f"Which family: {fa} (at {ra}) vs {fb} (at {rb}): {verdict.upper()}. " + "; ".join(parts) + ".")
    return out


def decision_sheet(report: Report, measures, fallback: str, extra_note: str,
                   baselines: dict[str, str] | None = None, baseline_table=None) -> Sheet:
    """The Decision of a report whose details, references and intervals are filled in; sets
    ``report.decision``, ``decision_long`` and ``decision_lines``. ``baselines``: model -> its line
    against the trivial baselines (label tasks); ``baseline_table``: those tests, shown below."""
    cfg = report.settings
    noun = report.task.noun
    value_name = report.task.value_name or "value"
    primary = primary_metric(report, measures, fallback)
    tested = margins(cfg, measures, primary, report.value_range)
    models = report.details[["model", "family", "quant", "iterations", "s_per_sample"]]
    table, long = D.decide(measures, models, report.refs, tested, cfg.alpha, cfg.power, report.sizes,
                           report.intervals, cfg.min_items, report.value_range)
    labels = {m: report.metric(m).label for m in tested}
    what, lines = words(table, long, noun, labels, value_name, cfg.min_items, baselines, report.value_range, cfg.alpha)
    fams = report.details[["model", "family"]]
    report.families = F.compare_families(measures, fams, F.family_pairs(fams, report.refs, list(report.references.pairs)),
                                         tested, cfg.alpha, cfg.power, report.value_range)
    lines = family_lines(report.families, labels, noun, report.value_range) + lines
    table["what_it_means"] = what
    if baselines:
        table["baseline"] = [baselines.get(m, "") for m in table["model"]]
    memory = resource_columns(report.details)
    if memory:
        table = table.merge(report.details[["model"] + memory], on="model", how="left")
    table.attrs["metric"] = primary
    report.decision, report.decision_long, report.decision_lines = table, long, lines
    n_items = int(report.details["items"].max()) if "items" in report.details else 0
    n_it = int(report.details["iterations"].max()) if "iterations" in report.details else 0
    sizes = ("file size as the run stored it" if report.sizes else
             "file size (not stored by this run: left out)")
    fill = dict(noun=noun, value=value_name, min_items=cfg.min_items, sizes=sizes)
    note = (f"Which one do I ship? Run {report.run_id}: {n_items} {noun}s x {n_it} iterations. "
            f"{report.references.statement()} "
            f"Each candidate is tested against its reference on {', '.join(labels[m] for m in tested)} "
            f"with margins {', '.join(margin_text(m, v, report.value_range) for m, v in tested.items())} "
            f"(config: report.margins; report.min_items {cfg.min_items}), on per-{noun} differences (iterations "
            f"kept together). "
            + CV.says(["verdicts", "overall", "items_to_decide", "equivalence_reach", "zero_spread",
                       "consistency_margin", "speed"], **fill)
            + (" " + CV.say("baselines", **fill) if baselines else "") + f" {extra_note}")
    keep = ["family", "model", "quant", "role", "reference", "verdict", "quality", "quality_ci95_low",
            "quality_ci95_high", "diff", "ci90_low", "ci90_high", "margin", "p_noninferior", "p_equivalence",
            "p_worse_holm", "mde80", "items", "iterations", "items_to_decide", "s_per_sample", "s_per_sample_ci95_low",
            "s_per_sample_ci95_high", "speedup_vs_ref", "speedup_ci95_low", "speedup_ci95_high", "speed_vs_ref",
            "size_mb", "size_vs_ref", *common.RESOURCE_COLUMNS, "pareto", "what_it_means", "baseline"]
    shown = table[[c for c in keep if c in table]].rename(columns={"quality": primary})
    lines = [f"Quality metric: {report.metric(primary).label}."] + lines
    fmt = report.metric(primary).fmt
    formats = {c: fmt for c in ("quality_ci95_low", "quality_ci95_high", "diff", "ci90_low", "ci90_high", "margin",
                                "mde80")}
    formats.update(speedup_vs_ref="0.00", speedup_ci95_low="0.00", speedup_ci95_high="0.00", size_vs_ref="0%", s_per_sample_ci95_low="0.000",
                   s_per_sample_ci95_high="0.000", size_mb="0.0", **{c: "0.0" for c in common.RESOURCE_COLUMNS})
    appendix = []
    if len(long):
        shown_long = long.drop(columns=["worse_by_ci90_high", "test_margin"], errors="ignore")
        appendix.append(("Every decision metric, candidate by candidate (consistency rows: ratios of within-"
                         f"{noun} variance)", "decision_tests", shown_long))
    if len(report.families):
        appendix.append(("Which family: each family at its reference, paired by item (two-sided, Holm across the "
                         "pair's metrics; difference = second family minus first)", "family_tests", report.families))
    if baseline_table is not None and len(baseline_table):
        appendix.append(("Each model against the trivial baselines (paired by item, one-sided)", "baselines",
                         baseline_table.drop(columns=["words"], errors="ignore")))
    return Sheet("Decision", "decision", shown, note=note, lines=lines, image="decision", formats=formats,
                 appendix=appendix)
