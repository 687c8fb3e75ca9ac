"""The comparison workbook (openpyxl) and one CSV per table.

Sheets: Summary, Model Details, Per Article, Comparisons, ANOVA, Run Info. Every table says n, the test and what it assumes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import stats

LABELS = {
    "model": "Model", "family": "Family", "quant": "Quant", "backend": "Backend", "prompt_style": "Prompt style",
    "articles": "Articles (n)", "iterations": "Iterations", "calls": "Calls",
    "s_per_sample": "Seconds per sample (all calls)", "valid_rate": "Valid JSON rate",
    "sentiment_variance": "Sentiment variance (mean within-article)", "mean_sentiment": "Mean sentiment",
    "mean_confidence": "Mean confidence", "pooled_sentiment_variance": "Pooled sentiment variance (all calls)",
    "prompt_tok_s": "Prompt tokens/s", "gen_tok_s": "Generated tokens/s", "latency_p50": "Latency p50 (s)",
    "latency_p95": "Latency p95 (s)", "truncated_rate": "Hit token limit", "load_seconds": "Load time (s)",
    "mae": "MAE vs expected", "sign_accuracy": "Direction accuracy", "correlation": "Correlation with expected",
}
SUMMARY_COLUMNS = ["model", "family", "quant", "s_per_sample", "valid_rate", "sentiment_variance", "mean_sentiment",
                   "mean_confidence", "gen_tok_s", "mae", "sign_accuracy"]


@dataclass
class Report:
    run_id: str
    summary: pd.DataFrame
    details: pd.DataFrame
    per_article: pd.DataFrame
    comparisons: pd.DataFrame
    anova: pd.DataFrame
    tukey: pd.DataFrame
    run_info: pd.DataFrame
    quant_quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: dict[str, str] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {"summary": self.summary, "model_details": self.details, "per_article": self.per_article,
               "comparisons": self.comparisons, "anova": self.anova, "tukey_hsd": self.tukey, "run_info": self.run_info}
        if len(self.quant_quality):
            out["quant_quality"] = self.quant_quality
        return out


def quant_quality(run, models_run: set[str]) -> pd.DataFrame:
    """KLD and same-top-token figures from the export manifests of the run's models (a model's
    ``manifest`` entry, else a manifest beside its GGUF); empty when none has one."""
    from ruamel.yaml import YAML

    from export.pipeline import quality_rows

    try:
        cfg = YAML(typ="safe").load(run["config_text"]) or {}
    except Exception:
        return pd.DataFrame()
    base = Path(run["config_path"]).parent if run["config_path"] else Path(".")
    models = []
    for m in cfg.get("models") or []:
        if not isinstance(m, dict) or m.get("name") not in models_run:
            continue
        m = dict(m)
        for key in ("path", "manifest"):
            if m.get(key) and not Path(m[key]).is_absolute():
                m[key] = str(base / m[key])
        models.append(m)
    return pd.DataFrame(quality_rows(models))


def _anova_table(calls: pd.DataFrame, mat: pd.DataFrame) -> pd.DataFrame:
    rows = [stats.rm_anova(calls, mat), stats.friedman(calls, mat)]
    df = pd.DataFrame(rows)
    fq = stats.family_quant_anova(calls, mat)
    if fq is not None:
        df = pd.concat([df, fq.rename(columns={"F": "F", "p": "p"})], ignore_index=True)
    else:
        df = pd.concat([df, pd.DataFrame([{"test": "two-way ANOVA family x quant",
                                          "note": "skipped: needs a complete grid of at least 2 families x 2 quants"}])],
                       ignore_index=True)
    return df


def build(store, run_id: str, pairs: list[tuple[str, str]] | None = None) -> Report:
    calls, arts, loads = stats.load_frames(store, run_id)
    if calls.empty:
        from core.errors import ShootoutError

        raise ShootoutError(f"run {run_id} has no stored calls", "run `shootout run` first")
    run = store.run(run_id)
    if pairs is None:
        settings = json.loads(run["settings_json"])
        pairs = [tuple(p) for p in settings.get("compare", [])]
    known = set(calls["model"])
    pairs = [p for p in pairs if p[0] in known and p[1] in known]
    details = stats.per_model(calls, arts, loads)
    summary = details[[c for c in SUMMARY_COLUMNS if c in details]]
    pa = stats.per_article(calls, arts)
    comparisons = stats.compare_pairs(calls, pairs)
    mat = stats.article_matrix(calls)  # articles x models, shared by the all-model tests
    versions, hardware = json.loads(run["versions_json"]), json.loads(run["hardware_json"])
    info = [("run id", run_id), ("created", run["created_at"]), ("finished", run["finished_at"] or "unfinished"),
            ("task", run["task"]), ("seed", run["seed"]), ("iterations", run["iterations"]),
            ("config file", run["config_path"])]
    info += [(f"hardware: {k}", ", ".join(v) if isinstance(v, list) else v) for k, v in hardware.items()]
    info += [(f"version: {k}", v) for k, v in versions.items()]
    info += [("config text", run["config_text"])]
    run_info = pd.DataFrame(info, columns=["key", "value"])
    return Report(run_id=run_id, summary=summary, details=details, per_article=pa, comparisons=comparisons,
                  anova=_anova_table(calls, mat), tukey=stats.tukey(calls, mat), run_info=run_info,
                  quant_quality=quant_quality(run, known))


# --------------------------------------------------------------------------- writing


def write_csvs(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in report.tables().items():
        p = out_dir / f"{name}.csv"
        df.to_csv(p, index=False)
        paths.append(p)
    return paths


def _fmt_for(col: str) -> str:
    if col.endswith("_rate") or col in ("valid_rate", "sign_accuracy"):
        return "0.0%"
    if col.endswith("_p") or col.endswith("_p_holm") or col in ("p", "p_adj"):
        return "0.0000"
    if col in ("calls", "articles", "iterations", "paired_calls", "df_model", "df_error", "models"):
        return "0"
    return "0.000"


def _write_sheet(wb, title: str, df: pd.DataFrame, *, note: str | None = None, best: bool = False,
                 color_cols: list[str] | None = None, sig_cols: list[str] | None = None):
    from openpyxl.formatting.rule import CellIsRule, ColorScaleRule
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    ws = wb.create_sheet(title)
    start = 1
    if note:
        ws.cell(row=1, column=1, value=note).font = Font(italic=True)
        start = 3
    cols = list(df.columns)
    for j, c in enumerate(cols, 1):
        cell = ws.cell(row=start, column=j, value=LABELS.get(c, c))
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    values = df.to_numpy(dtype=object)
    for i, row in enumerate(values, start + 1):
        for j, v in enumerate(row, 1):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            if isinstance(v, (np.floating, np.integer, np.bool_)):
                v = v.item()
            ws.cell(row=i, column=j, value=v)
    last = start + len(df)
    for j, c in enumerate(cols, 1):
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            fmt = _fmt_for(c)
            for i in range(start + 1, last + 1):
                ws.cell(row=i, column=j).number_format = fmt
    ws.freeze_panes = ws.cell(row=start + 1, column=2)
    if len(df):
        ws.auto_filter.ref = f"A{start}:{get_column_letter(len(cols))}{last}"
    # column widths fitted to the content (capped)
    for j, c in enumerate(cols, 1):
        sample = [len(str(LABELS.get(c, c)))] + [len(f"{v:.3f}" if isinstance(v, float) else str(v))
                                                 for v in df[c].head(200).tolist()]
        ws.column_dimensions[get_column_letter(j)].width = min(max(sample) + 2, 60 if c != "value" else 100)
    if len(df) >= 2:
        for c in color_cols or []:
            if c not in cols or c not in stats.HIGHER_IS_BETTER:
                continue
            j = cols.index(c) + 1
            good, bad = "63BE7B", "F8696B"
            lo, hi = (bad, good) if stats.HIGHER_IS_BETTER[c] else (good, bad)
            rng = f"{get_column_letter(j)}{start + 1}:{get_column_letter(j)}{last}"
            ws.conditional_formatting.add(rng, ColorScaleRule(start_type="min", start_color=lo, mid_type="percentile",
                                                              mid_value=50, mid_color="FFEB84", end_type="max",
                                                              end_color=hi))
    for c in sig_cols or []:
        if c in cols and len(df):
            j = cols.index(c) + 1
            rng = f"{get_column_letter(j)}{start + 1}:{get_column_letter(j)}{last}"
            ws.conditional_formatting.add(rng, CellIsRule(operator="lessThan", formula=[str(stats.ALPHA)],
                                                          fill=PatternFill("solid", fgColor="FFD966"),
                                                          font=Font(bold=True)))
    if best and len(df) >= 2:
        fill = PatternFill("solid", fgColor="C6EFCE")
        for c, higher in stats.HIGHER_IS_BETTER.items():
            if c not in cols or df[c].isna().all():
                continue
            target = df[c].max() if higher else df[c].min()
            j = cols.index(c) + 1
            for i, v in enumerate(df[c].tolist(), start + 1):
                if v == target:
                    ws.cell(row=i, column=j).fill = fill
                    ws.cell(row=i, column=j).font = Font(bold=True)
    return ws


def write_workbook(report: Report, path: Path) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment

    wb = Workbook()
    wb.remove(wb.active)
    metric_cols = list(stats.HIGHER_IS_BETTER)
    n_art = int(report.details["articles"].max())
    n_it = int(report.details["iterations"].max())
    _write_sheet(wb, "Summary", report.summary, best=True, color_cols=metric_cols,
                 note=f"Run {report.run_id}: {n_art} articles x {n_it} iterations per model. Best value per column "
                      "in green. Sentiment variance = variance across iterations of the same article, averaged over "
                      "articles (consistency; lower is better). Seconds per sample cover every call.")
    _write_sheet(wb, "Model Details", report.details, best=True, color_cols=metric_cols,
                 note="Validity and timings over all calls; sentiment figures over valid calls. 'Pooled' variance "
                      "mixes between-article differences with inconsistency: read it as pooled, not as consistency.")
    _write_sheet(wb, "Per Article", report.per_article, color_cols=["valid_rate", "sentiment_variance", "s_per_sample"],
                 note="One row per model and article, over its iterations; sentiment_variance is that article's "
                      "consistency (ddof=1).")
    _write_sheet(wb, "Comparisons", report.comparisons,
                 sig_cols=["paired_p_holm", "wilcoxon_p_holm", "welch_p_holm", "brown_forsythe_p_holm"],
                 note="Each configured pair [a, b], b minus a. Paired t-test and Wilcoxon signed-rank on per-article "
                      "means (articles both answered validly; assumes independent articles, t assumes roughly normal "
                      "differences). Welch's t on all valid calls is the unpaired view. Brown-Forsythe (Levene around "
                      "medians) compares within-article deviations (consistency). Mean difference with its 95% t "
                      "interval and Cohen's d_z. Holm-adjusted p across pairs, highlighted below 0.05. Sign flip "
                      "rate: share of (iteration, article) where b's sign differs from a's.")
    anova = report.anova
    ws = _write_sheet(wb, "ANOVA", anova, sig_cols=["p"],
                      note="All models: repeated-measures ANOVA on per-article means with the article as block, and "
                           "Friedman as the non-parametric check. Family x quant: two-way ANOVA where the grid is complete.")
    if len(report.tukey):
        startrow = ws.max_row + 3
        ws.cell(row=startrow - 1, column=1, value="Tukey HSD, all pairs of models on per-article means (unpaired view)")
        for j, c in enumerate(report.tukey.columns, 1):
            ws.cell(row=startrow, column=j, value=c)
        for i, row in enumerate(report.tukey.itertuples(index=False), startrow + 1):
            for j, v in enumerate(row, 1):
                cell = ws.cell(row=i, column=j, value=v.item() if hasattr(v, "item") else v)
                if isinstance(v, float):
                    cell.number_format = "0.0000"
    if len(report.quant_quality):
        _write_sheet(wb, "Quant Quality", report.quant_quality, best=True,
                     color_cols=["mean_kld", "p99_kld", "same_top_pct"],
                     note="From each model's export manifest: KL divergence of the level's next-token distribution "
                          "from the F16 GGUF's (nats, per position of the task's prompts) and the share of positions "
                          "with the same top token, as llama.cpp's perplexity tool reports them. F16 is the reference.")
    ws = _write_sheet(wb, "Run Info", report.run_info)
    for row in ws.iter_rows(min_row=2, min_col=2, max_col=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    wb.save(tmp)
    tmp.replace(path)
    return path
