"""The Decision sheet, first in every report: per candidate, the verdict against its reference at the
margins on the task's decision metrics (``benchmark.stats.decision``), quality with its interval,
speed, the size the run stored, Pareto-optimal rungs and the chart."""

from __future__ import annotations

from benchmark import metrics as M
from benchmark.report.common import resource_columns
from benchmark.report.model import Report, Sheet
from benchmark.report.settings import Settings
from benchmark.stats import common
from benchmark.stats import decision as D

VERDICTS = ("Verdicts: EQUIVALENT = the 90% interval lies within the margin on both sides; NON-INFERIOR = not "
            "worse by more than the margin (may be better); WORSE = significantly worse (95% interval above 0); "
            "INCONCLUSIVE = the data cannot tell: the items that would decide it are given (80% power, if the true "
            "difference is the one observed). Not significantly different never means 'as good'.")


def primary_metric(report: Report, measures: dict, fallback: str) -> str:
    """The Decision's quality metric: the first default decision metric the task declares that the run can
    compute (e.g. MAE needs gold values), else the kind's fallback (a mean value without gold values)."""
    return next((m for m in M.decision_metrics(report.declared) if m in measures), fallback)


def margins(cfg: Settings, measures: dict, primary: str, value_range) -> dict[str, float]:
    """The margins tested, primary first: those set (or defaulted) that the run can compute as per-item
    means; the primary always, at its set or default margin."""
    usable = {k: v for k, v in (cfg.margins or {}).items() if k in measures and measures[k].kind == "mean"}
    if primary not in usable and primary in measures:
        usable = {primary: (cfg.margins or {}).get(primary, M.metric(primary, value_range=value_range).margin),
                  **usable}
    return {primary: usable[primary], **{k: v for k, v in usable.items() if k != primary}} if primary in usable \
        else usable


def decision_sheet(report: Report, measures, fallback: str, extra_note: str) -> Sheet:
    """The Decision of a report whose details, references and intervals are filled in; sets
    ``report.decision``, ``decision_long`` and ``decision_lines``."""
    cfg = report.settings
    noun = report.task.noun
    primary = primary_metric(report, measures, fallback)
    tested = margins(cfg, measures, primary, report.value_range)
    models = report.details[["model", "family", "quant", "iterations", "s_per_sample"]]
    table, long, lines = D.decide(measures, models, report.refs, tested, cfg.alpha, cfg.power, report.sizes,
                                  report.intervals)
    memory = resource_columns(report.details)
    if memory:
        table = table.merge(report.details[["model"] + memory], on="model", how="left")
    table.attrs["metric"] = primary
    report.decision, report.decision_long, report.decision_lines = table, long, lines
    n_items = int(report.details["items"].max()) if "items" in report.details else 0
    n_it = int(report.details["iterations"].max()) if "iterations" in report.details else 0
    sizes = ("file size as the run stored it" if report.sizes else
             "file size (not stored by this run: left out)")
    note = (f"Which one do I ship? Run {report.run_id}: {n_items} {noun}s x {n_it} iterations. "
            f"{report.references.statement()} "
            f"Each candidate is tested against its reference on {', '.join(report.metric(m).label for m in tested)} "
            f"with margins {', '.join(D._margin_text(m, v) for m, v in tested.items())} (config: report.margins): "
            f"two one-sided tests on per-{noun} differences (iterations kept together), 90% interval. {VERDICTS} "
            f"Pareto: no other rung of the family is at least as good on quality (point estimate), seconds per "
            f"sample and {sizes}, and better on one. {extra_note}")
    keep = ["family", "model", "quant", "role", "reference", "verdict", "quality", "quality_ci95_low",
            "quality_ci95_high", "diff", "ci90_low", "ci90_high", "margin", "p_noninferior", "p_equivalence",
            "mde80", "items", "iterations", "items_to_decide", "s_per_sample", "s_per_sample_ci95_low",
            "s_per_sample_ci95_high", "speedup_vs_ref", "size_mb", "size_vs_ref", *common.RESOURCE_COLUMNS, "pareto",
            "what_it_means"]
    shown = table[[c for c in keep if c in table]].rename(columns={"quality": primary})
    lines = [f"Quality metric: {report.metric(primary).label}."] + lines
    fmt = report.metric(primary).fmt
    formats = {c: fmt for c in ("quality_ci95_low", "quality_ci95_high", "diff", "ci90_low", "ci90_high", "margin",
                                "mde80")}
    formats.update(speedup_vs_ref="0.00", size_vs_ref="0%", s_per_sample_ci95_low="0.000",
                   s_per_sample_ci95_high="0.000", size_mb="0.0", **{c: "0.0" for c in common.RESOURCE_COLUMNS})
    return Sheet("Decision", "decision", shown, note=note, lines=lines, image="decision", formats=formats,
                 appendix=[("Every decision metric, candidate by candidate (TOST at the margin)", "decision_tests",
                            long)] if len(long) else [])
