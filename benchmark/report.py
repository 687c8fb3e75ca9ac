"""The comparison report: tables built by task kind, written as a formatted workbook (openpyxl) and
one CSV per table. Every table says n, the test and what it assumes; labels, number formats and
colour directions come from the metric table (``benchmark.metrics``).

Value tasks (sentiment): Summary, Model Details, Per <item>, Comparisons, ANOVA (+ Tukey), Run Info.
Label tasks (classification): Summary (baselines beside the models), Per Class, Confusion,
Comparisons, Per <item>, Learning Curve (checkpoints), Run Info. Both: Quant Quality when the
models have export manifests (rows handed in by the caller; the report never reads export's files).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.stats import common, value as vstats
from core.errors import ShootoutError

ID_LABELS = {
    "model": "Model", "family": "Family", "quant": "Quant", "backend": "Backend", "prompt_style": "Prompt style",
    "variant": "Prompt variant", "items": "Items (n)", "iterations": "Iterations", "calls": "Calls",
    "baseline": "Baseline",
}
VALUE_SUMMARY = ["model", "family", "quant", "variant", "s_per_sample", "valid_rate", "value_variance", "mean_value",
                 "mean_confidence", "gen_tok_s", "mae", "sign_accuracy"]


@dataclass
class Sheet:
    title: str                     # the workbook sheet
    csv: str                       # the CSV file stem
    table: pd.DataFrame
    note: str = ""
    best: bool = False             # mark the best value per metric column
    colour: bool = False           # colour scales on metric columns
    sig_cols: tuple[str, ...] = ()
    appendix: list[tuple[str, str, pd.DataFrame]] = field(default_factory=list)  # (title, csv, table) below it


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

    @property
    def kind(self) -> str:
        return self.task.get("kind", "value")

    def metric(self, name: str) -> M.Metric:
        return M.metric(name, self.task.get("value_name") or "value", self.task.get("item_noun") or "item")

    def sheet(self, title: str) -> Sheet:
        return next(s for s in self.sheets if s.title == title)

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {}
        for s in self.sheets:
            out[s.csv] = s.table
            for _, csv, t in s.appendix:
                out[csv] = t
        return out


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


def _run_info(run, run_id: str, task: dict, loads: pd.DataFrame | None = None) -> pd.DataFrame:
    versions, hardware = json.loads(run["versions_json"]), json.loads(run["hardware_json"])
    info = [("run id", run_id), ("created", run["created_at"]), ("finished", run["finished_at"] or "unfinished"),
            ("task", run["task"]), ("task kind", task.get("kind")), ("seed", run["seed"]),
            ("iterations", run["iterations"]), ("config file", run["config_path"])]
    if task.get("labels"):
        info.append(("labels", ", ".join(task["labels"])))
    info += [(f"hardware: {k}", ", ".join(v) if isinstance(v, list) else v) for k, v in hardware.items()]
    info += [(f"version: {k}", v) for k, v in versions.items()]
    info += _engine_facts(loads)
    info += [("config text", run["config_text"])]
    return pd.DataFrame(info, columns=["key", "value"])


def stored_pairs(run) -> list[tuple[str, str]]:
    settings = json.loads(run["settings_json"])
    return [tuple(p) for p in settings.get("compare", [])]


def stored_price(run) -> float | None:
    settings = json.loads(run["settings_json"])
    return (settings.get("report") or {}).get("price_per_hour")


def build(store, run_id: str, pairs: list[tuple[str, str]] | None = None, *,
          quant_quality: list[dict] | pd.DataFrame | None = None, price_per_hour: float | None = None,
          checkpoints: dict[str, float] | None = None) -> Report:
    """The report of one run. ``pairs`` default to the run's stored compare pairs, the price to its
    stored report settings; ``quant_quality`` rows come from export manifests (the caller reads them);
    ``checkpoints`` maps model (arm) names to training steps or epochs for learning curves."""
    calls, items, loads = common.load_frames(store, run_id)
    if calls.empty:
        raise ShootoutError(f"run {run_id} has no stored calls", "run `shootout run` first")
    run = store.run(run_id)
    task = json.loads(run["task_json"] or "{}") or {"name": run["task"], "kind": "value", "value_name": run["task"],
                                                    "item_noun": "item"}
    pairs = stored_pairs(run) if pairs is None else pairs
    price = stored_price(run) if price_per_hour is None else price_per_hour
    known = set(calls["model"])
    pairs = [p for p in pairs if p[0] in known and p[1] in known]
    qq = pd.DataFrame(quant_quality if quant_quality is not None else [])
    if len(qq):
        qq = qq[qq["model"].isin(known)].reset_index(drop=True)
    builder = _build_label if task.get("kind") == "label" else _build_value
    report = builder(run_id, task, calls, items, loads, pairs, price, checkpoints or {})
    if len(qq):
        report.quant_quality = qq
        report.sheets.insert(len(report.sheets), Sheet(
            "Quant Quality", "quant_quality", qq, best=True, colour=True,
            note="From each model's export manifest: KL divergence of the level's next-token distribution from the "
                 "F16 GGUF's (nats, per position of the task's prompts) and the share of positions with the same top "
                 "token, as llama.cpp's perplexity tool reports them. F16 is the reference."))
    report.sheets.append(Sheet("Run Info", "run_info", _run_info(run, run_id, task, loads)))
    return report


def _build_value(run_id, task, calls, items, loads, pairs, price, checkpoints) -> Report:
    noun = task.get("item_noun") or "item"
    value_name = task.get("value_name") or "value"
    details = vstats.per_model(calls, items, loads, price)
    summary = details[[c for c in VALUE_SUMMARY if c in details]]
    pa = vstats.per_item(calls, items)
    comparisons = vstats.compare_pairs(calls, pairs)
    mat = vstats.item_matrix(calls)  # items x models, shared by the all-model tests
    anova = [vstats.rm_anova(calls, mat), vstats.friedman(calls, mat)]
    fq = vstats.family_quant_anova(calls, mat)
    anova_df = pd.DataFrame(anova)
    anova_df = pd.concat([anova_df, fq if fq is not None else pd.DataFrame(
        [{"test": "two-way ANOVA family x quant", "note": "skipped: needs a complete grid of at least 2 families x 2 quants"}])],
        ignore_index=True)
    tukey = vstats.tukey(calls, mat)
    n_items, n_it = int(details["items"].max()), int(details["iterations"].max())
    sheets = [
        Sheet("Summary", "summary", summary, best=True, colour=True,
              note=f"Run {run_id}: {n_items} {noun}s x {n_it} iterations per model. Best value per column in green. "
                   f"{value_name.capitalize()} variance = sample variance (ddof=1) across iterations of the same "
                   f"{noun}, averaged over {noun}s (consistency; lower is better). Seconds per sample cover every call."),
        Sheet("Model Details", "model_details", details, best=True, colour=True,
              note=f"Validity and timings over all calls; {value_name} figures over valid calls. 'Pooled' variance "
                   f"mixes between-{noun} differences with inconsistency: read it as pooled, not as consistency."),
        Sheet(f"Per {noun.title()}", "per_item", pa, colour=True,
              note=f"One row per model and {noun}, over its iterations; value_variance is that {noun}'s consistency "
                   "(ddof=1)."),
        Sheet("Comparisons", "comparisons", comparisons,
              sig_cols=("paired_p_holm", "wilcoxon_p_holm", "welch_p_holm", "brown_forsythe_p_holm"),
              note=f"Each configured pair [a, b], b minus a. Paired t-test and Wilcoxon signed-rank on per-{noun} "
                   f"means ({noun}s both answered validly; assumes independent {noun}s, t assumes roughly normal "
                   "differences). Welch's t on all valid calls is the unpaired view. Brown-Forsythe (Levene around "
                   f"medians) compares within-{noun} deviations (consistency). Mean difference with its 95% t "
                   "interval and Cohen's d_z. Holm-adjusted p across pairs, highlighted below 0.05. Sign flip "
                   f"rate: share of (iteration, {noun}) where b's sign differs from a's."),
        Sheet("ANOVA", "anova", anova_df, sig_cols=("p",),
              note=f"All models: repeated-measures ANOVA on per-{noun} means with the {noun} as block, and Friedman "
                   "as the non-parametric check. Family x quant: two-way ANOVA where the grid is complete.",
              appendix=[(f"Tukey HSD, all pairs of models on per-{noun} means (unpaired view)", "tukey_hsd", tukey)]
              if len(tukey) else []),
    ]
    return Report(run_id, task, details, pa, sheets)


def _build_label(run_id, task, calls, items, loads, pairs, price, checkpoints) -> Report:
    from benchmark.stats import label as lstats

    noun = task.get("item_noun") or "item"
    labels = list(task.get("labels") or sorted(items["target_label"].dropna().unique()))
    positive, betas = task.get("positive"), tuple(task.get("betas") or ())
    gold = items[["item_id", "target_label", "split"]]
    timing = common.timing(calls, loads, price)
    splits = [s for s in dict.fromkeys(items["split"].dropna())] or [None]
    main_split = splits[-1]  # the evaluated split (last listed; train first in learning curves)
    eval_ids = set(items.loc[items["split"] == main_split, "item_id"]) if main_split else set(items["item_id"])
    ev_calls, ev_items = calls[calls["item_id"].isin(eval_ids)], gold[gold["item_id"].isin(eval_ids)]
    quality = lstats.per_model(ev_calls, ev_items, labels, positive=positive, betas=betas, price_per_hour=price)
    details = timing.drop(columns=["items", "iterations", "calls", "valid_rate"]).merge(
        quality.drop(columns=[c for c in ("family", "quant", "variant", "s_per_sample", "cost_per_1k")
                              if c in quality]), on="model", how="left")
    order = ["model", "family", "quant"] + (["variant"] if "variant" in details else []) + \
        [c for c in ("items", "iterations", "calls") if c in details]
    details = details[order + [c for c in details.columns if c not in order]]
    base = lstats.baselines(ev_items, labels, positive=positive, betas=betas)
    metric_cols = [c for c in details.columns if c not in order and c not in (
        "backend", "prompt_style")]
    summary_cols = [c for c in ("accuracy", "accuracy_answered", "balanced_accuracy", "macro_f1", "kappa",
                                "precision", "recall", "f1") if c in details] + \
        [c for c in details.columns if c.startswith("f_beta_")] + \
        [c for c in ("vote_accuracy", "self_consistency", "invalid_rate", "s_per_sample", "cost_per_1k")
         if c in details]
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
    comparisons = lstats.compare_pairs(ev_calls, ev_items, pairs, labels=labels) if pairs else pd.DataFrame()
    q = lstats.cochran_q(ev_calls, ev_items, labels=labels)
    per_item = _label_per_item(ev_calls, items)
    split_note = f" on the '{main_split}' split" if main_split else ""
    n_items, n_it = int(timing["items"].max()), int(timing["iterations"].max())
    sheets = [
        Sheet("Summary", "summary", summary, best=True, colour=True,
              note=f"Run {run_id}: {len(ev_items)} {noun}s{split_note} x {n_it} iterations per model. Every call "
                   "counts; an invalid reply counts as wrong (accuracy of answered calls beside it). Baselines "
                   "(majority class, each constant label, stratified random guessing) are rows of the same table. "
                   "Vote accuracy: the majority answer over an item's iterations. Best model value per column in "
                   "green."),
        Sheet("Model Details", "model_details", details, best=True, colour=True,
              note="Timing over all calls (valid or not); quality figures from scikit-learn on every call."),
        Sheet("Per Class", "per_class", per_class, colour=True,
              note="Precision, recall and F1 per class and model (scikit-learn), over every call; support counts calls."),
        Sheet("Confusion", "confusion", conf_long,
              note="Gold label (rows) x answer (columns) per model, counts of calls; '(invalid)' counts replies that "
                   "gave no label."),
        Sheet("Comparisons", "comparisons", comparisons, sig_cols=tuple(c for c in comparisons.columns
                                                                        if c.endswith("_p_holm")),
              note=f"Each configured pair [reference, candidate], paired by {noun}. Accuracy difference with a 95% "
                   f"bootstrap interval over {noun}s (a {noun}'s iterations resampled together); McNemar on each "
                   f"{noun}'s majority-vote correctness (exact, and mid-p); Holm across pairs. Flips: over matched "
                   "(item, iteration) calls, right->wrong and wrong->right against the reference, beside the "
                   "reference's own flip rate between its iterations.",
              appendix=[("Cochran's Q across all models (per-item majority-vote correctness)", "cochran_q",
                         pd.DataFrame([q]))]),
        Sheet(f"Per {noun.title()}", "per_item", per_item,
              note=f"One row per model and {noun}: its gold label, answers over the iterations and their accuracy."),
    ]
    report = Report(run_id, task, details, per_item, sheets, confusion=confusion, per_class=per_class)
    curve = _learning_curve(calls, gold, labels, positive, betas, checkpoints)
    if len(curve):
        report.learning_curve = curve
        sheets.insert(2, Sheet("Learning Curve", "learning_curve", curve,
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
    price = stored_price(run)
    if task.get("kind") != "label":
        return task, vstats.per_model(calls, items, loads, price)
    from benchmark.stats import label as lstats

    timing = common.timing(calls, loads, price)
    quality = lstats.per_model(calls, items[["item_id", "target_label", "split"]], list(task.get("labels") or []),
                               positive=task.get("positive"), betas=tuple(task.get("betas") or ()))
    keep = [c for c in quality.columns if c not in timing.columns or c == "model"]
    return task, timing.merge(quality[keep], on="model", how="left")


# --------------------------------------------------------------------------- writing


def write_csvs(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in report.tables().items():
        p = out_dir / f"{name}.csv"
        df.to_csv(p, index=False)
        paths.append(p)
    return paths


def _number_format(report: Report, col: str) -> str:
    if col.endswith("_p") or col.endswith("_p_holm") or col in ("p", "p_adj"):
        return "0.0000"
    if col in ("calls", "items", "iterations", "paired_calls", "df_model", "df_error", "models", "support"):
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


def _write_table(report: Report, ws, df: pd.DataFrame, start: int, *, best: bool, colour: bool,
                 sig_cols=()) -> int:
    """Write ``df`` with its header at row ``start``; returns the last row written."""
    from openpyxl.formatting.rule import CellIsRule, ColorScaleRule
    from openpyxl.styles import Alignment, Font, PatternFill
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
            fmt = _number_format(report, c)
            for i in range(start + 1, last + 1):
                ws.cell(row=i, column=j).number_format = fmt
    for j, c in enumerate(cols, 1):
        sample = [len(str(_header(report, c)))] + [len(f"{v:.3f}" if isinstance(v, float) else str(v))
                                                   for v in df[c].head(200).tolist()]
        width = min(max(sample) + 2, 60 if c != "value" else 100)
        ws.column_dimensions[get_column_letter(j)].width = max(ws.column_dimensions[get_column_letter(j)].width or 0,
                                                               width)
    is_model = df["model"].isin(report.details["model"]) if "model" in df else pd.Series(True, index=df.index)
    metric_cols = [c for c in cols if (c in M.METRICS or c.startswith("f_beta_"))
                   and report.metric(c).higher_is_better is not None and pd.api.types.is_numeric_dtype(df[c])]
    if colour and len(df) >= 2:
        for c in metric_cols:
            j = cols.index(c) + 1
            good, bad = "63BE7B", "F8696B"
            lo, hi = (bad, good) if report.metric(c).higher_is_better else (good, bad)
            rng = f"{get_column_letter(j)}{start + 1}:{get_column_letter(j)}{last}"
            ws.conditional_formatting.add(rng, ColorScaleRule(start_type="min", start_color=lo, mid_type="percentile",
                                                              mid_value=50, mid_color="FFEB84", end_type="max",
                                                              end_color=hi))
    for c in sig_cols:
        if c in cols and len(df):
            j = cols.index(c) + 1
            rng = f"{get_column_letter(j)}{start + 1}:{get_column_letter(j)}{last}"
            ws.conditional_formatting.add(rng, CellIsRule(operator="lessThan", formula=[str(common.ALPHA)],
                                                          fill=PatternFill("solid", fgColor="FFD966"),
                                                          font=Font(bold=True)))
    if best and is_model.sum() >= 2:
        fill = PatternFill("solid", fgColor="C6EFCE")
        for c in metric_cols:
            col = df.loc[is_model, c]
            if col.isna().all():
                continue
            target = col.max() if report.metric(c).higher_is_better else col.min()
            j = cols.index(c) + 1
            for i, (v, m) in enumerate(zip(df[c].tolist(), is_model.tolist()), start + 1):
                if m and v == target:
                    ws.cell(row=i, column=j).fill = fill
                    ws.cell(row=i, column=j).font = Font(bold=True)
    return last


def _write_sheet(report: Report, wb, sheet: Sheet):
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ws = wb.create_sheet(sheet.title[:31])
    start = 1
    if sheet.note:
        ws.cell(row=1, column=1, value=sheet.note).font = Font(italic=True)
        start = 3
    df = sheet.table
    last = _write_table(report, ws, df, start, best=sheet.best, colour=sheet.colour, sig_cols=sheet.sig_cols)
    ws.freeze_panes = ws.cell(row=start + 1, column=2)
    if len(df) and len(df.columns):
        ws.auto_filter.ref = f"A{start}:{get_column_letter(len(df.columns))}{last}"
    for title, _, table in sheet.appendix:
        row = ws.max_row + 3
        ws.cell(row=row - 1, column=1, value=title).font = Font(italic=True)
        _write_table(report, ws, table, row, best=False, colour=False, sig_cols=("p", "p_adj"))
    return ws


def write_workbook(report: Report, path: Path) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment

    wb = Workbook()
    wb.remove(wb.active)
    for sheet in report.sheets:
        ws = _write_sheet(report, wb, sheet)
        if sheet.title == "Run Info":
            for row in ws.iter_rows(min_row=2, min_col=2, max_col=2):
                for cell in row:
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    wb.save(tmp)
    tmp.replace(path)
    return path
