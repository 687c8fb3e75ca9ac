"""The comparison report: tables built by task kind, written as a formatted workbook (openpyxl) and
one CSV per table. Every table says n, the test and what it assumes; labels, number formats and
colour scales come from the metric table (``benchmark.metrics``).

Both kinds start with the **Decision** sheet: per family, each rung's verdict against its reference
(equivalent / non-inferior / worse / inconclusive at the configured margins, with the 90% interval
and the items that would decide it), quality with its interval, seconds per sample, file size, the
Pareto-optimal rungs, and the chart. Then:

Value tasks (sentiment): Summary, Model Details, Comparisons (paired by item, long format), ANOVA
(+ all pairs, paired, Holm), Calibration, Per <item>, Run Info.
Label tasks (classification): Summary (baselines beside the models), Per Class, Confusion,
Comparisons (McNemar, bootstrap, flips; the paired measures below), Calibration, Per <item>,
Learning Curve (checkpoints), Run Info. Both: Quant Quality when the models have export manifests
(rows handed in by the caller; the report never reads export's files).

Colours: a metric's cell is coloured on the metric's FIXED scale (or, for times and rates, by its
ratio to the reference on a fixed 0.5x-2x scale) only for a family's reference and for models that
differ significantly from it (paired 95% interval of the difference excludes 0); a cell whose
interval includes the reference's value is hatched grey. "Best" (bold, boxed) is marked only for a
model significantly better than every other model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.stats import common
from benchmark.stats import compare as C
from benchmark.stats import throughput as TP
from benchmark.stats import value as vstats
from core.errors import ShootoutError

ID_LABELS = {
    "model": "Model", "family": "Family", "quant": "Quant", "backend": "Backend", "prompt_style": "Prompt style",
    "variant": "Prompt variant", "items": "Items (n)", "iterations": "Iterations", "calls": "Calls",
    "baseline": "Baseline",
    # the Decision sheet
    "role": "Role", "reference": "Reference", "verdict": "Verdict", "quality_ci95_low": "95% CI low",
    "quality_ci95_high": "95% CI high", "diff": "Difference vs reference", "ci90_low": "90% CI low",
    "ci90_high": "90% CI high", "margin": "Margin", "p_noninferior": "p non-inferiority",
    "p_equivalence": "p equivalence (TOST)", "mde80": "Smallest difference found 80% of the time",
    "items_to_decide": "Items that would decide (80% power)", "s_per_sample_ci95_low": "s/sample 95% CI low",
    "s_per_sample_ci95_high": "s/sample 95% CI high", "speedup_vs_ref": "Speed vs reference (x)",
    "size_vs_ref": "Size vs reference", "pareto": "Pareto-optimal", "what_it_means": "What it means",
}
VALUE_SUMMARY = ["model", "family", "quant", "variant", "s_per_sample", "valid_rate", "value_variance", "mean_value",
                 "mean_confidence", "gen_tok_s", "mae", "mae_answered", "sign_accuracy", "sign_accuracy_answered"]
ALIASES = {"cost_per_1k": "s_per_sample", "invalid_rate": "invalid_rate"}  # colour a column by another's test

GREEN, YELLOW, RED, GREY = "63BE7B", "FFEB84", "F8696B", "BFBFBF"
VERDICT_FILLS = {"equivalent": "C6EFCE", "non-inferior": "E2EFDA", "worse": "FFC7CE", "inconclusive": "EDEDED",
                 "differs": "FCE4D6"}


@dataclass
class Settings:
    """How the report compares and decides (config.yaml's ``report`` block, stored with the run)."""

    reference: str = "highest_precision"
    margins: dict = field(default_factory=lambda: {"mae": 0.05, "sign_accuracy": 0.05, "accuracy": 0.02})
    neutral_band: float = 0.1
    alpha: float = 0.05
    power: float = 0.8
    calibration_bins: int = 10
    price_per_hour: float | None = None
    latency: str = "alone"

    @classmethod
    def of(cls, stored: dict | None, override: dict | None = None) -> "Settings":
        """From a run's stored ``report`` settings (validated by the config schema), then ``override``."""
        from benchmark.config import ReportSettings

        merged = {**(stored or {}), **{k: v for k, v in (override or {}).items() if v is not None}}
        try:
            rs = ReportSettings(**merged)
        except Exception as exc:
            raise ShootoutError(f"report settings: {exc}", "fix the report block of config.yaml") from None
        return cls(reference=rs.reference, margins=dict(rs.margins), neutral_band=rs.neutral_band, alpha=rs.alpha,
                   power=rs.power, calibration_bins=rs.calibration_bins, price_per_hour=rs.price_per_hour,
                   latency=rs.latency)


@dataclass
class Sheet:
    title: str                     # the workbook sheet
    csv: str                       # the CSV file stem
    table: pd.DataFrame
    note: str = ""
    best: bool = False             # mark the significantly best value per metric column
    colour: bool = False           # honest colours on metric columns (see the module doc)
    sig_cols: tuple[str, ...] = ()
    appendix: list[tuple[str, str, pd.DataFrame]] = field(default_factory=list)  # (title, csv, table) below it
    lines: list[str] = field(default_factory=list)   # text lines above the table (the Decision's verdicts)
    image: str | None = None       # "decision": the Pareto chart is drawn into the sheet
    formats: dict = field(default_factory=dict)      # column -> number format, over the metric table's


@dataclass
class Report:
    run_id: str
    task: dict                     # the run's TaskInfo (name, kind, labels, item_noun, value_name, ...)
    details: pd.DataFrame          # one row per model (arm)
    per_item: pd.DataFrame
    sheets: list[Sheet]
    confusion: dict[str, pd.DataFrame] = field(default_factory=dict)
    per_class: pd.DataFrame = field(default_factory=pd.DataFrame)
    learning_curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    quant_quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    settings: Settings = field(default_factory=Settings)
    refs: dict = field(default_factory=dict)            # candidate -> reference
    versus: pd.DataFrame = field(default_factory=pd.DataFrame)       # every model vs its reference, per metric
    best: dict = field(default_factory=dict)            # metric -> significantly best model
    intervals: pd.DataFrame = field(default_factory=pd.DataFrame)    # per (model, metric) value and 95% interval
    decision: pd.DataFrame = field(default_factory=pd.DataFrame)
    decision_long: pd.DataFrame = field(default_factory=pd.DataFrame)
    decision_lines: list = field(default_factory=list)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_class_versus: pd.DataFrame = field(default_factory=pd.DataFrame)
    sizes: dict = field(default_factory=dict)
    chart: Path | None = None      # the Decision chart once drawn (copied, not drawn again, for other folders)

    @property
    def kind(self) -> str:
        return self.task.get("kind", "value")

    @property
    def value_range(self) -> tuple[float, float]:
        return vstats.value_range(self.task)

    def metric(self, name: str) -> M.Metric:
        return M.metric(name, self.task.get("value_name") or "value", self.task.get("item_noun") or "item",
                        self.value_range)

    def sheet(self, title: str) -> Sheet:
        return next(s for s in self.sheets if s.title == title)

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {}
        for s in self.sheets:
            out[s.csv] = s.table
            for _, csv, t in s.appendix:
                out[csv] = t
        return out

    def status(self, model: str, metric: str) -> str:
        """How a cell of ``model`` on ``metric`` may be coloured: "reference" (a family's reference, or
        its only rung), "better" / "worse" / "differs" (significantly, against the reference),
        "not distinguishable" (the interval of the difference includes 0: greyed), "untested"."""
        metric = ALIASES.get(metric, metric)
        if model not in self.refs:
            return "reference" if model in set(self.details["model"]) else "untested"
        v = self.versus
        if v.empty:
            return "untested"
        hit = v[(v["candidate"] == model) & (v["metric"] == metric)]
        return str(hit["direction"].iloc[0]) if len(hit) else "untested"

    def ratio_to_reference(self, model: str, column: str, table: pd.DataFrame) -> float:
        ref = self.refs.get(model, model)
        t = table.set_index("model")[column] if "model" in table else pd.Series(dtype=float)
        try:
            return float(t.loc[model] / t.loc[ref])
        except (KeyError, ZeroDivisionError, TypeError):
            return np.nan


# --------------------------------------------------------------------------- building


def _engine_facts(loads: pd.DataFrame) -> list[tuple[str, object]]:
    """Per model load, what its engine reported (llama.cpp system info, server version, digest...)."""
    out = []
    if loads is None or loads.empty or "engine_json" not in loads:
        return out
    for r in loads.drop_duplicates("model", keep="last").itertuples(index=False):
        facts = json.loads(r.engine_json or "{}")
        for k, v in facts.items():
            if v is None or v == "" or v == [] or v == {}:
                continue
            out.append((f"model {r.model}: {k}", json.dumps(v) if isinstance(v, (dict, list)) else v))
    return out


def _run_info(run, run_id: str, task: dict, loads: pd.DataFrame | None, settings: Settings) -> pd.DataFrame:
    versions, hardware = json.loads(run["versions_json"]), json.loads(run["hardware_json"])
    info = [("run id", run_id), ("created", run["created_at"]), ("finished", run["finished_at"] or "unfinished"),
            ("task", run["task"]), ("task kind", task.get("kind")), ("seed", run["seed"]),
            ("iterations", run["iterations"]), ("config file", run["config_path"])]
    if task.get("labels"):
        info.append(("labels", ", ".join(task["labels"])))
    info += [("report: reference", settings.reference),
             ("report: margins", ", ".join(f"{k} {v:g}" for k, v in settings.margins.items())),
             ("report: alpha", settings.alpha), ("report: power", settings.power)]
    if task.get("kind") != "label":
        info.append(("report: neutral band", settings.neutral_band))
    info += [(f"hardware: {k}", ", ".join(v) if isinstance(v, list) else v) for k, v in hardware.items()]
    info += [(f"version: {k}", v) for k, v in versions.items()]
    info += _engine_facts(loads)
    info += [("config text", run["config_text"])]
    return pd.DataFrame(info, columns=["key", "value"])


def stored_settings(run) -> dict:
    settings = json.loads(run["settings_json"] or "{}")
    return settings.get("report") or {}


def stored_pairs(run) -> list[tuple[str, str]]:
    settings = json.loads(run["settings_json"] or "{}")
    return [tuple(p) for p in settings.get("compare", [])]


def stored_price(run) -> float | None:
    return stored_settings(run).get("price_per_hour")


def build(store, run_id: str, pairs: list[tuple[str, str]] | None = None, *,
          quant_quality: list[dict] | pd.DataFrame | None = None, price_per_hour: float | None = None,
          checkpoints: dict[str, float] | None = None, sizes: dict[str, float] | None = None,
          settings: dict | None = None) -> Report:
    """The report of one run. ``pairs`` default to the run's stored compare pairs, the report settings
    (reference, margins, neutral band, alpha, power, price) to its stored ``report`` block with
    ``settings`` / ``price_per_hour`` overriding; ``quant_quality`` rows come from export manifests
    (the caller reads them); ``sizes`` maps models to file sizes in MB (the quant-quality rows' size_mb
    win); ``checkpoints`` maps model (arm) names to training steps or epochs for learning curves."""
    calls, items, loads = common.load_frames(store, run_id)
    if calls.empty:
        raise ShootoutError(f"run {run_id} has no stored calls", "run `shootout run` first")
    run = store.run(run_id)
    task = json.loads(run["task_json"] or "{}") or {"name": run["task"], "kind": "value", "value_name": run["task"],
                                                    "item_noun": "item"}
    cfg = Settings.of(stored_settings(run), {**(settings or {}), "price_per_hour": price_per_hour})
    spread = TP.throughput(calls)
    calls, latency_note = TP.latency_view(calls, cfg.latency)
    pairs = stored_pairs(run) if pairs is None else pairs
    known = set(calls["model"])
    pairs = [tuple(p) for p in pairs if p[0] in known and p[1] in known]
    qq = pd.DataFrame(quant_quality if quant_quality is not None else [])
    if len(qq):
        qq = qq[qq["model"].isin(known)].reset_index(drop=True)
    all_sizes = {k: float(v) for k, v in (sizes or {}).items() if k in known and v is not None}
    if len(qq) and "size_mb" in qq:
        all_sizes.update({m: float(s) for m, s in zip(qq["model"], qq["size_mb"]) if s is not None and s == s and s > 0})
    builder = _build_label if task.get("kind") == "label" else _build_value
    report = builder(run_id, task, calls, items, loads, pairs, cfg, checkpoints or {}, all_sizes)
    report.settings, report.sizes = cfg, all_sizes
    if len(qq):
        report.quant_quality = qq
        report.sheets.append(Sheet(
            "Quant Quality", "quant_quality", qq, colour=True,
            note="From each model's export manifest: KL divergence of the level's next-token distribution from the "
                 "F16 GGUF's (nats, per position of the task's prompts) and the share of positions with the same top "
                 "token, as llama.cpp's perplexity tool reports them. F16 is the reference. size_mb: the GGUF file."))
    endpoints = spread["endpoint"][spread["endpoint"] != "all endpoints"].nunique() if len(spread) else 0
    if endpoints > 1 or (len(spread) and spread["max_in_flight"].max() > 1):
        report.sheets.append(Sheet(
            "Throughput", "throughput", spread,
            note="Calls spread over endpoints: per model and endpoint, then over all its endpoints, requests and "
                 "generated tokens per second over the span from the first call's start to the last call's end, "
                 "with the calls in flight on the endpoint when each started. " + latency_note))
    report.sheets.append(Sheet("Run Info", "run_info", _run_info(run, run_id, task, loads, cfg)))
    return report


def _resource_columns(details: pd.DataFrame) -> list[str]:
    """The resource columns measured for some model (resident memory, KV cache, VRAM, energy per call), for
    Summary and Decision."""
    return [c for c in common.RESOURCE_COLUMNS if c in details and details[c].notna().any()]


def _models_frame(details: pd.DataFrame) -> pd.DataFrame:
    return details[["model", "family", "quant"] + (["variant"] if "variant" in details else [])]


def _compare_all(report_models: list[str], details: pd.DataFrame, measures: dict[str, C.Measure], pairs, cfg: Settings):
    """(refs, versus-reference table, comparisons of the configured pairs, best per metric, intervals)."""
    refs = common.family_references(_models_frame(details), cfg.reference, pairs)
    refs = {c: r for c, r in refs.items() if c in report_models and r in report_models}
    ms = list(measures.values())
    ref_pairs = [(r, c) for c, r in refs.items()]
    versus = C.compare(ms, report_models, ref_pairs, cfg.alpha, cfg.power)
    comparisons = C.compare(ms, report_models, pairs, cfg.alpha, cfg.power) if pairs else versus
    best = {}
    for name, m in measures.items():
        if m.kind in ("mean", "logvar", "jackknife"):
            k = C.significant_best(m, cfg.alpha)
            if k is not None:
                best[name] = report_models[k]
    intervals = C.model_intervals(ms, report_models)
    return refs, versus, comparisons, best, intervals


def _margins(cfg: Settings, measures: dict, primary: str) -> dict[str, float]:
    from benchmark.config import DEFAULT_MARGINS

    usable = {k: v for k, v in cfg.margins.items() if k in measures and measures[k].kind == "mean"}
    if primary not in usable and primary in measures:
        usable = {primary: cfg.margins.get(primary, DEFAULT_MARGINS.get(primary, 0.1)), **usable}
    return {primary: usable[primary], **{k: v for k, v in usable.items() if k != primary}} if primary in usable \
        else usable


def _decision_sheet(report: Report, measures, cfg: Settings, primary: str, noun: str, extra_note: str) -> Sheet:
    from benchmark.stats import decision as D

    margins = _margins(cfg, measures, primary)
    models = report.details[["model", "family", "quant", "iterations", "s_per_sample"]]
    table, long, lines = D.decide(measures, models, report.refs, margins, cfg.alpha, cfg.power, report.sizes,
                                  report.intervals)
    memory = _resource_columns(report.details)
    if memory:
        table = table.merge(report.details[["model"] + memory], on="model", how="left")
    report.decision, report.decision_long, report.decision_lines = table, long, lines
    ref_text = ("each family's widest quant (highest precision)" if cfg.reference == "highest_precision"
                else "the configured compare pairs [reference, candidate]")
    n_items = int(report.details["items"].max()) if "items" in report.details else 0
    n_it = int(report.details["iterations"].max()) if "iterations" in report.details else 0
    note = (f"Which one do I ship? Run {report.run_id}: {n_items} {noun}s x {n_it} iterations. Reference: {ref_text}. "
            f"Each candidate is tested against its reference on {', '.join(report.metric(m).label for m in margins)} "
            f"with margins {', '.join(D._margin_text(m, v) for m, v in margins.items())} (config: report.margins): "
            "two one-sided tests on per-" + noun + " differences (iterations kept together), 90% interval. "
            "Verdicts: EQUIVALENT = the 90% interval lies within the margin on both sides; NON-INFERIOR = not worse "
            "by more than the margin (may be better); WORSE = significantly worse (95% interval above 0); "
            "INCONCLUSIVE = the data cannot tell: the items that would decide it are given (80% power, if the "
            "true difference is the one observed). Not significantly different never means 'as good'. "
            "Pareto: no other rung of the family is at least as good on quality (point estimate), seconds per "
            "sample and file size, and better on one. " + extra_note)
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


def _build_value(run_id, task, calls, items, loads, pairs, cfg: Settings, checkpoints, sizes) -> Report:
    noun = task.get("item_noun") or "item"
    value_name = task.get("value_name") or "value"
    rng = vstats.value_range(task)
    order = common.model_order(calls)
    data = vstats.ValueData.of(calls, items, cfg.neutral_band, rng, models=order)
    details = vstats.per_model(calls, items, loads, cfg.price_per_hour, data=data)
    summary = details[[c for c in VALUE_SUMMARY if c in details] + _resource_columns(details)]
    pa = vstats.per_item(calls, items, data=data)
    scores = data.item_scores()
    measures = {k: C.measure(k, "logvar" if k == "value_variance" else "mean", x=v) for k, v in scores.items()}
    if data.has_target:
        measures["correlation"] = C.correlation_measure(scores["mean_value"], data.target)
    measures["direction_disagreement"] = C.measure("direction_disagreement", "agreement", codes=data.direction_codes(),
                                                   n_codes=4)
    refs, versus, comparisons, best, intervals = _compare_all(order, details, measures, pairs, cfg)
    mat = vstats.item_matrix(calls, order)
    anova = [vstats.rm_anova(calls, mat), vstats.friedman(calls, mat)]
    fq = vstats.family_quant_anova(calls, mat)
    anova_df = pd.concat([pd.DataFrame(anova), fq if fq is not None else pd.DataFrame(
        [{"test": "two-way ANOVA family x quant", "note": "skipped: needs a complete grid of at least 2 families x 2 quants"}])],
        ignore_index=True)
    apairs = pd.concat([C.all_pairs(measures[k], order, cfg.alpha) for k in ("mae", "mean_value") if k in measures],
                       ignore_index=True) if len(order) >= 2 else pd.DataFrame()
    conf = np.where(data.valid, data.cube.get("confidence"), np.nan) if "confidence" in calls else None
    from benchmark.stats import calibration as cal

    calib, relia = (cal.summary(order, conf, data.direction_correct(True), cfg.calibration_bins,
                                "stated confidence vs direction right")
                    if conf is not None and data.has_target else (pd.DataFrame(), pd.DataFrame()))
    n_items, n_it = int(details["items"].max()), int(details["iterations"].max())
    variance_def = (f"{value_name.capitalize()} variance = SAMPLE variance (ddof=1) across the iterations of one "
                    f"{noun}, averaged over {noun}s (consistency; lower is better). The older tool used the population "
                    f"variance (ddof=0): at {n_it} iterations its figure is {(n_it - 1) / n_it:.2f} x this one." if n_it > 1
                    else "")
    band = (f"Direction accuracy uses a neutral band: |{value_name}| < {cfg.neutral_band:g} is 'neutral', for "
            "labels and answers alike (config: report.neutral_band).")
    legend = ("Colours: the metric's fixed scale, shown only for a family's reference and for models significantly "
              "different from it (paired 95% interval excludes 0); hatched grey = not distinguishable from the "
              "reference; bold and boxed = significantly best of all models. Times are coloured by their ratio to "
              "the reference (0.5x-2x).")
    report = Report(run_id, task, details, pa, [], refs=refs, versus=versus, best=best, intervals=intervals,
                    calibration=calib, reliability=relia, settings=cfg, sizes=sizes)
    extra = f"{band} An unanswered call counts as the worst error on the scale and as a wrong direction."
    decision = _decision_sheet(report, measures, cfg, "mae" if data.has_target else "mean_value", noun, extra)
    sheets = [
        decision,
        Sheet("Summary", "summary", summary, best=True, colour=True,
              note=f"Run {run_id}: {n_items} {noun}s x {n_it} iterations per model. {variance_def} MAE and direction "
                   f"accuracy count every call (an unanswered call = the worst error / wrong); the 'answered calls "
                   f"only' figures stand beside them. {band} Seconds per sample cover every call. {legend}"),
        Sheet("Model Details", "model_details", details, best=True, colour=True,
              note=f"Validity and timings over all calls; {value_name} figures are means over {noun}s of per-{noun} "
                   f"figures. 'Pooled' variance mixes between-{noun} differences with inconsistency: read it as "
                   f"pooled, not as consistency. {variance_def} {legend}"),
        Sheet("Comparisons", "comparisons", comparisons, sig_cols=("p_holm",),
              note=f"Each pair [reference, candidate] ({'the configured compare pairs' if pairs else 'each model against its family reference'}), "
                   f"paired by {noun} (a {noun}'s iterations reduced first; n = {noun}s). Mean value, MAE (unanswered "
                   "= worst error), direction accuracy, validity, time: paired t over items, 95% t interval, MDE80 = "
                   "the smallest true difference found with 80% power at this run's size. Consistency: paired t on "
                   f"per-{noun} log variance (estimate: variance ratio; interval: geometric-mean ratio). Direction "
                   "disagreement: share of answer pairs from DIFFERENT iterations whose direction differs, candidate "
                   "vs reference (value_cand) beside the reference vs itself (value_ref); the estimate is the excess "
                   "(the runner gives both models the same seed per iteration, so same-iteration pairs agree more: "
                   "'same_seed' shows them, without a baseline). Correlation: paired t on per-item jackknife pseudo-values. Holm "
                   "across pairs within each metric."),
        Sheet("ANOVA", "anova", anova_df, sig_cols=("p",),
              note=f"All models: repeated-measures ANOVA on per-{noun} means with the {noun} as block, and Friedman "
                   "as the non-parametric check. Family x quant: two-way ANOVA where the grid is complete. All pairs: "
                   f"paired t over {noun}s for every pair of models, Holm across all pairs (uses the pairing; "
                   "Tukey's HSD, which treats models as independent groups, is not used).",
              appendix=[(f"All pairs of models, paired by {noun} (Holm across all pairs)", "all_pairs", apairs)]
              if len(apairs) else []),
    ]
    if len(calib):
        sheets.append(Sheet("Calibration", "calibration", calib,
                            note="Stated confidence against correctness (the direction, with the neutral band), over "
                                 f"answered calls: expected calibration error over {cfg.calibration_bins} equal-width "
                                 "bins (weighted by calls; biased upward when bins hold few calls), Brier score, "
                                 "mean confidence minus accuracy (> 0: overconfident). Reliability table below.",
                            appendix=[("Reliability table (per model and confidence bin)", "reliability", relia)]))
    sheets.append(Sheet(f"Per {noun.title()}", "per_item", pa,
                        note=f"One row per model and {noun}, over its iterations; value_variance is that {noun}'s "
                             "consistency (sample variance, ddof=1); abs_error counts an unanswered call as the worst "
                             "error; direction_accuracy is the share of iterations with the right direction."))
    report.sheets = sheets
    return report


def _build_label(run_id, task, calls, items, loads, pairs, cfg: Settings, checkpoints, sizes) -> Report:
    from benchmark.stats import calibration as cal
    from benchmark.stats import label as lstats

    noun = task.get("item_noun") or "item"
    labels = list(task.get("labels") or sorted(items["target_label"].dropna().unique()))
    positive, betas = task.get("positive"), tuple(task.get("betas") or ())
    gold = items[["item_id", "target_label", "split"]]
    timing = common.timing(calls, loads, cfg.price_per_hour)
    splits = [s for s in dict.fromkeys(items["split"].dropna())] or [None]
    main_split = splits[-1]  # the evaluated split (last listed; train first in learning curves)
    eval_ids = set(items.loc[items["split"] == main_split, "item_id"]) if main_split else set(items["item_id"])
    ev_calls, ev_items = calls[calls["item_id"].isin(eval_ids)], gold[gold["item_id"].isin(eval_ids)]
    quality = lstats.per_model(ev_calls, ev_items, labels, positive=positive, betas=betas,
                               price_per_hour=cfg.price_per_hour)
    details = timing.drop(columns=["items", "iterations", "calls", "valid_rate"]).merge(
        quality.drop(columns=[c for c in ("family", "quant", "variant", "s_per_sample", "cost_per_1k")
                              if c in quality]), on="model", how="left")
    order = ["model", "family", "quant"] + (["variant"] if "variant" in details else []) + \
        [c for c in ("items", "iterations", "calls") if c in details]
    details = details[order + [c for c in details.columns if c not in order]]
    base = lstats.baselines(ev_items, labels, positive=positive, betas=betas)
    summary_cols = [c for c in ("accuracy", "accuracy_answered", "balanced_accuracy", "macro_f1", "kappa",
                                "precision", "recall", "f1") if c in details] + \
        [c for c in details.columns if c.startswith("f_beta_")] + \
        [c for c in ("vote_accuracy", "self_consistency", "invalid_rate", "s_per_sample", "cost_per_1k")
         if c in details] + _resource_columns(details)
    summary = details[order + summary_cols]
    base_rows = base.drop(columns=["strategy"], errors="ignore")
    base_rows["model"] = "baseline: " + base_rows["model"]
    summary = pd.concat([summary, base_rows[[c for c in base_rows.columns if c in summary.columns]]],
                        ignore_index=True)
    per_class = lstats.per_class(ev_calls, ev_items, labels)
    confusion = lstats.confusion(ev_calls, ev_items, labels)
    conf_long = pd.concat([m.rename_axis("gold").reset_index().assign(model=name)
                           for name, m in confusion.items()], ignore_index=True)
    conf_long = conf_long[["model", "gold"] + [c for c in conf_long.columns if c not in ("model", "gold")]]
    model_names = list(details["model"])

    # per-item figures for the paired tests (report order)
    data = lstats.LabelData.of(ev_calls, ev_items, labels, models=model_names)
    scores = data.item_scores()
    K = data.K
    pos = data.labels.index(str(positive)) if positive is not None and str(positive) in data.labels else None
    cnt = data.counts()
    answered = cnt[..., :K]
    vote = np.where(answered.sum(-1) > 0, answered.argmax(-1), K)
    scores["vote_accuracy"] = np.where(cnt.sum(-1) > 0, (vote == data.gold[None, :]).astype(float), np.nan)
    scores["invalid_rate"] = 1 - scores["valid_rate"]
    measures = {k: C.measure(k, "mean", x=v) for k, v in scores.items()}
    tables = data.tables().reshape(len(model_names), len(data.item_ids), -1)
    for name in ["balanced_accuracy", "macro_f1", "kappa"] + (["precision", "recall", "f1"] if pos is not None else []) \
            + [f"f_beta_{b:g}" for b in betas]:
        measures[name] = C.measure(name, "jackknife", suff=tables, fn=lstats.table_metric(name, K, pos))
    measures["answer_disagreement"] = C.measure("answer_disagreement", "agreement", codes=data.codes, n_codes=K + 1)
    refs, versus, paired_cmp, best, intervals = _compare_all(model_names, details, measures, pairs, cfg)
    cmp_pairs = pairs or [(r, c) for c, r in refs.items()]
    comparisons = lstats.compare_pairs(ev_calls, ev_items, cmp_pairs, labels=labels) if cmp_pairs else pd.DataFrame()
    q = lstats.cochran_q(ev_calls, ev_items, labels=labels)
    # per-class F1 against the reference (paired jackknife over items), for the honest per-class heatmap
    pcv = []
    for k_, lab in enumerate(data.labels):
        ms = C.measure("f1", "jackknife", suff=tables, fn=lstats.table_metric("f1", K, k_))
        for cand, ref in refs.items():
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
    per_item = _label_per_item(ev_calls, items)
    split_note = f" on the '{main_split}' split" if main_split else ""
    n_it = int(timing["iterations"].max())
    legend = ("Colours: the metric's fixed scale, shown only for a family's reference and for models significantly "
              "different from it (paired 95% interval excludes 0; jackknife over items for F1, kappa, balanced "
              "accuracy); hatched grey = not distinguishable from the reference; bold and boxed = significantly best "
              "of all models. Baseline rows are not coloured.")
    report = Report(run_id, task, details, per_item, [], confusion=confusion, per_class=per_class, refs=refs,
                    versus=versus, best=best, intervals=intervals, calibration=calib, reliability=relia,
                    per_class_versus=pd.DataFrame(pcv), settings=cfg, sizes=sizes)
    decision = _decision_sheet(report, measures, cfg, "accuracy", noun,
                               "Accuracy counts every call; an invalid reply is wrong. McNemar (exact) is conservative "
                               "by construction at these sizes and its mid-p version cannot reach 5% exactly with "
                               "few discordant items: the verdicts rest on the paired t over items, whose false-"
                               "positive rate is checked in simulations.")
    sheets = [
        decision,
        Sheet("Summary", "summary", summary, best=True, colour=True,
              note=f"Run {run_id}: {len(ev_items)} {noun}s{split_note} x {n_it} iterations per model. Every call "
                   "counts; an invalid reply counts as wrong (accuracy of answered calls beside it). Baselines "
                   "(majority class, each constant label, stratified random guessing) are rows of the same table. "
                   f"Vote accuracy: the majority answer over an item's iterations. {legend}"),
        Sheet("Model Details", "model_details", details, best=True, colour=True,
              note="Timing over all calls (valid or not); quality figures from scikit-learn on every call. " + legend),
        Sheet("Per Class", "per_class", per_class,
              note="Precision, recall and F1 per class and model (scikit-learn), over every call; support counts calls."),
        Sheet("Confusion", "confusion", conf_long,
              note="Gold label (rows) x answer (columns) per model, counts of calls; '(invalid)' counts replies that "
                   "gave no label."),
        Sheet("Comparisons", "comparisons", comparisons, sig_cols=tuple(c for c in comparisons.columns
                                                                        if c.endswith("_p_holm")),
              note=f"Each pair [reference, candidate] ({'the configured compare pairs' if pairs else 'each model against its family reference'}), "
                   f"paired by {noun}. Accuracy difference with a 95% "
                   f"bootstrap interval over {noun}s (a {noun}'s iterations resampled together); McNemar on each "
                   f"{noun}'s majority-vote correctness (exact: conservative by construction, its false-positive rate "
                   "stays below 5%; mid-p: closer to 5% but discrete, it cannot reach 3-7% with few discordant "
                   f"{noun}s); Holm across pairs. Flips: over matched (item, iteration) calls, right->wrong and "
                   "wrong->right against the reference, beside the reference's own flip rate between its iterations "
                   "(matched calls share the sampling seed). Below: Cochran's Q, and the paired measures in long "
                   f"format (paired t over {noun}s for accuracy, validity, time and consistency; answer "
                   "disagreement over pairs of different iterations against the reference's own; jackknife for "
                   "F1, kappa and balanced accuracy; MDE80 = smallest true difference found 80% of the time).",
              appendix=[("Cochran's Q across all models (per-item majority-vote correctness)", "cochran_q",
                         pd.DataFrame([q])),
                        (f"Paired measures, per {noun} (long format)", "paired_measures", paired_cmp)]),
    ]
    if len(calib):
        sheets.append(Sheet("Calibration", "calibration", calib,
                            note="Label probability (log-probability mode) or stated confidence against correctness, "
                                 f"over answered calls: expected calibration error over {cfg.calibration_bins} "
                                 "equal-width bins, Brier score, mean confidence minus accuracy. Reliability table below.",
                            appendix=[("Reliability table (per model and confidence bin)", "reliability", relia)]))
    sheets.append(Sheet(f"Per {noun.title()}", "per_item", per_item,
                        note=f"One row per model and {noun}: its gold label, answers over the iterations and their "
                             "accuracy."))
    report.sheets = sheets
    curve = _learning_curve(calls, gold, labels, positive, betas, checkpoints)
    if len(curve):
        report.learning_curve = curve
        sheets.insert(3, Sheet("Learning Curve", "learning_curve", curve,
                               note="Per checkpoint of a fine-tune (training step or epoch) and split: the metric "
                                    "on that split's items. A widening gap between train and validation shows "
                                    "overfitting."))
    return report


def _label_per_item(calls: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    g = calls.assign(correct=calls["valid"] & (calls["label"] == calls["item_id"].map(
        items.set_index("item_id")["target_label"]))).groupby(["model", "item_id"], sort=False)
    out = pd.DataFrame({"answers": g["label"].agg(lambda s: ", ".join(str(x) if x is not None else "(invalid)"
                                                                      for x in s)),
                        "accuracy": g["correct"].mean(), "calls": g.size()}).reset_index()
    keep = ["item_id", "target_label"] + [c for c in ("title", "split") if c in items]
    return out.merge(items[keep], on="item_id", how="left")


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


def details(store, run_id: str) -> tuple[dict, pd.DataFrame | None]:
    """(the run's task, one row per model) without the comparisons: the end-of-run table."""
    calls, items, loads = common.load_frames(store, run_id)
    run = store.run(run_id)
    task = json.loads(run["task_json"] or "{}") if run else {}
    if calls.empty:
        return task, None
    cfg = Settings.of(stored_settings(run))
    if task.get("kind") != "label":
        return task, vstats.per_model(calls, items, loads, cfg.price_per_hour, band=cfg.neutral_band,
                                      value_range=vstats.value_range(task))
    from benchmark.stats import label as lstats

    timing = common.timing(calls, loads, cfg.price_per_hour)
    quality = lstats.per_model(calls, items[["item_id", "target_label", "split"]], list(task.get("labels") or []),
                               positive=task.get("positive"), betas=tuple(task.get("betas") or ()))
    keep = [c for c in quality.columns if c not in timing.columns or c == "model"]
    return task, timing.merge(quality[keep], on="model", how="left")


# --------------------------------------------------------------------------- writing


def decision_png(report: Report, path: Path) -> Path | None:
    """The Decision chart at ``path``: drawn once per report, then copied (workbook, CSV folder, heatmaps)."""
    import shutil

    from benchmark.report.charts import decision_chart

    if report.chart is not None and report.chart.is_file():
        if report.chart.resolve() != path.resolve():
            shutil.copyfile(report.chart, path)
        return path
    report.chart = decision_chart(report, path)
    return report.chart


def write_csvs(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in report.tables().items():
        p = out_dir / f"{name}.csv"
        df.to_csv(p, index=False)
        paths.append(p)
    if len(report.decision):
        p = decision_png(report, out_dir / "decision_pareto.png")
        if p:
            paths.append(p)
    return paths


def _number_format(report: Report, col: str) -> str:
    if col.endswith("_p") or col.endswith("_p_holm") or col in ("p", "p_adj", "p_holm") or col.startswith("p_"):
        return "0.0000"
    if col in ("calls", "items", "iterations", "paired_calls", "df_model", "df_error", "models", "support",
               "items_to_decide", "more_items", "matched_calls"):
        return "0"
    if col in M.METRICS or col.startswith("f_beta_"):
        return report.metric(col).fmt
    if col.endswith("_rate"):
        return "0.0%"
    return "0.000"


def _header(report: Report, col: str) -> str:
    if col in ID_LABELS:
        return ID_LABELS[col]
    if col in M.METRICS or col.startswith("f_beta_"):
        return report.metric(col).label
    return col


def _hex(rgb) -> str:
    return "".join(f"{int(round(255 * c)):02X}" for c in rgb[:3])


def _scale_colour(t: float, higher_is_better: bool | None) -> str:
    """Colour of a position t in [0, 1] on the fixed scale: red-yellow-green (or its reverse), or blue-white-red
    for a metric without a better direction."""
    t = float(min(max(t, 0.0), 1.0))
    if higher_is_better is None:
        stops = [(0.26, 0.45, 0.71), (0.97, 0.97, 0.97), (0.80, 0.25, 0.25)]
    else:
        stops = [tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)) for h in (RED, YELLOW, GREEN)]
        if higher_is_better is False:
            stops = stops[::-1]
    if t <= 0.5:
        a, b, u = stops[0], stops[1], t / 0.5
    else:
        a, b, u = stops[1], stops[2], (t - 0.5) / 0.5
    return _hex([a[i] + (b[i] - a[i]) * u for i in range(3)])


def cell_colour(report: Report, model: str, col: str, value: float, table: pd.DataFrame) -> str | None:
    """The fill of one metric cell: a hex colour, "grey" (hatched: not distinguishable from the reference), or
    None (not coloured: no test for this metric, no fixed scale, or not a model)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    m = report.metric(col)
    if m.exact and m.scale is not None:  # measured once, exactly (export checks): its place on the scale
        return _scale_colour(m.position(float(value)), m.higher_is_better)
    status = report.status(model, col)
    if status == "untested":
        return None
    if status == "not distinguishable":
        return "grey"
    if m.ratio:
        r = report.ratio_to_reference(model, col, table) if model in report.refs else 1.0
        if not np.isfinite(r) or r <= 0:
            return None
        lo, hi = M.RATIO_SCALE
        t = (math.log(r) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return _scale_colour(t, m.higher_is_better)
    if m.scale is None:
        return None
    return _scale_colour(m.position(float(value)), m.higher_is_better)


def _write_table(report: Report, ws, df: pd.DataFrame, start: int, *, best: bool, colour: bool,
                 sig_cols=(), formats: dict | None = None) -> int:
    """Write ``df`` with its header at row ``start``; returns the last row written."""
    from openpyxl.formatting.rule import CellIsRule
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    cols = list(df.columns)
    for j, c in enumerate(cols, 1):
        cell = ws.cell(row=start, column=j, value=_header(report, c))
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for i, row in enumerate(df.to_numpy(dtype=object), start + 1):
        for j, v in enumerate(row, 1):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            if isinstance(v, (np.floating, np.integer, np.bool_)):
                v = v.item()
            ws.cell(row=i, column=j, value=v)
    last = start + len(df)
    for j, c in enumerate(cols, 1):
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            fmt = (formats or {}).get(c) or _number_format(report, c)
            for i in range(start + 1, last + 1):
                ws.cell(row=i, column=j).number_format = fmt
    for j, c in enumerate(cols, 1):
        sample = [len(str(_header(report, c)))] + [len(f"{v:.3f}" if isinstance(v, float) else str(v))
                                                   for v in df[c].head(200).tolist()]
        width = min(max(sample) + 2, 60 if c not in ("value", "what_it_means") else 100)
        ws.column_dimensions[get_column_letter(j)].width = max(ws.column_dimensions[get_column_letter(j)].width or 0,
                                                               width)
    models = set(report.details["model"])
    metric_cols = [c for c in cols if (c in M.METRICS or c.startswith("f_beta_"))
                   and report.metric(c).higher_is_better is not None and pd.api.types.is_numeric_dtype(df[c])]
    if colour and "model" in df:
        grey = PatternFill(fill_type="lightUp", fgColor=GREY, bgColor="F2F2F2")
        for c in [c for c in cols if (c in M.METRICS or c.startswith("f_beta_")) and pd.api.types.is_numeric_dtype(df[c])]:
            j = cols.index(c) + 1
            for i, (model, v) in enumerate(zip(df["model"].tolist(), df[c].tolist()), start + 1):
                if model not in models:
                    continue
                fill = cell_colour(report, model, c, v, report.details if c in report.details else df)
                if fill == "grey":
                    ws.cell(row=i, column=j).fill = grey
                elif fill:
                    ws.cell(row=i, column=j).fill = PatternFill("solid", fgColor=fill)
    if "verdict" in cols:  # the Decision's verdicts in words and colour
        j = cols.index("verdict") + 1
        for i, v in enumerate(df["verdict"].tolist(), start + 1):
            if v in VERDICT_FILLS:
                ws.cell(row=i, column=j).fill = PatternFill("solid", fgColor=VERDICT_FILLS[v])
                ws.cell(row=i, column=j).font = Font(bold=True)
    for c in sig_cols:
        if c in cols and len(df):
            j = cols.index(c) + 1
            rng = f"{get_column_letter(j)}{start + 1}:{get_column_letter(j)}{last}"
            ws.conditional_formatting.add(rng, CellIsRule(operator="lessThan", formula=[str(report.settings.alpha)],
                                                          fill=PatternFill("solid", fgColor="FFD966"),
                                                          font=Font(bold=True)))
    if best and "model" in df:
        thick = Side(style="medium", color="000000")
        for c in metric_cols:
            winner = report.best.get(ALIASES.get(c, c) if c != "cost_per_1k" else "s_per_sample")
            if winner is None:
                continue
            j = cols.index(c) + 1
            for i, model in enumerate(df["model"].tolist(), start + 1):
                if model == winner:
                    cell = ws.cell(row=i, column=j)
                    cell.font = Font(bold=True)
                    cell.border = Border(left=thick, right=thick, top=thick, bottom=thick)
    return last


def _write_sheet(report: Report, wb, sheet: Sheet, chart_dir: Path | None = None):
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    ws = wb.create_sheet(sheet.title[:31])
    start = 1
    if sheet.note:
        ws.cell(row=1, column=1, value=sheet.note).font = Font(italic=True)
        start = 3
    if sheet.lines:
        for k, line in enumerate(sheet.lines):
            cell = ws.cell(row=start + k, column=1, value=line)
            cell.font = Font(bold=k > 0)
        start += len(sheet.lines) + 1
    df = sheet.table
    last = _write_table(report, ws, df, start, best=sheet.best, colour=sheet.colour, sig_cols=sheet.sig_cols,
                        formats=sheet.formats)
    ws.freeze_panes = ws.cell(row=start + 1, column=2)
    if len(df) and len(df.columns):
        ws.auto_filter.ref = f"A{start}:{get_column_letter(len(df.columns))}{last}"
    if "what_it_means" in df:
        j = list(df.columns).index("what_it_means") + 1
        for i in range(start + 1, last + 1):
            ws.cell(row=i, column=j).alignment = Alignment(wrap_text=True, vertical="top")
    row = last + 2
    if sheet.image == "decision" and chart_dir is not None:
        png = decision_png(report, chart_dir / "decision_pareto.png")
        if png:
            from openpyxl.drawing.image import Image

            img = Image(str(png))
            ws.add_image(img, f"A{row}")
            row += int(img.height / 20) + 2
    for title, _, table in sheet.appendix:
        row = max(row, ws.max_row + 3)
        ws.cell(row=row - 1, column=1, value=title).font = Font(italic=True)
        _write_table(report, ws, table, row, best=False, colour=False, sig_cols=("p", "p_adj", "p_holm"))
        row = ws.max_row + 3
    return ws


def write_workbook(report: Report, path: Path) -> Path:
    import tempfile

    from openpyxl import Workbook
    from openpyxl.styles import Alignment

    wb = Workbook()
    wb.remove(wb.active)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for sheet in report.sheets:
            ws = _write_sheet(report, wb, sheet, Path(tmp))
            if sheet.title == "Run Info":
                for row in ws.iter_rows(min_row=2, min_col=2, max_col=2):
                    for cell in row:
                        cell.alignment = Alignment(wrap_text=True, vertical="top")
        tmp_path = path.with_name(path.name + ".part")
        wb.save(tmp_path)
    tmp_path.replace(path)
    return path
