"""The report written out: a formatted workbook (openpyxl), one sheet per table with its note above
it, number formats and headers from the metric table, the honest colours of
``benchmark.report.colours``, the Decision chart drawn into the Decision sheet; and one CSV per table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.report import plots
from benchmark.report.colours import GREY, VERDICT_FILLS, cell_colour
from benchmark.report.model import ALIASES, Report, Sheet

ID_LABELS = {
    "model": "Model", "family": "Family", "quant": "Quant", "backend": "Backend", "prompt_style": "Prompt style",
    "variant": "Prompt variant", "items": "Items (n)", "iterations": "Iterations", "calls": "Calls",
    "baseline": "Baseline",
    # the Decision sheet
    "role": "Role", "reference": "Reference", "verdict": "Verdict", "quality_ci95_low": "95% CI low",
    "quality_ci95_high": "95% CI high", "diff": "Difference vs reference", "ci90_low": "90% CI low",
    "ci90_high": "90% CI high", "margin": "Margin", "p_noninferior": "p non-inferiority",
    "p_equivalence": "p equivalence (TOST)", "mde80": "Smallest difference found 80% of the time",
    "items_to_decide": "Items that would decide (largest over the metrics; any true difference)",
    "p_worse_holm": "p worse (one-sided, Holm across the family)", "baseline": "Against the trivial baselines", "s_per_sample_ci95_low": "s/sample 95% CI low",
    "s_per_sample_ci95_high": "s/sample 95% CI high", "speedup_vs_ref": "Speed vs reference (x)",
    "size_vs_ref": "Size vs reference", "pareto": "Pareto-optimal", "what_it_means": "What it means",
}


def write_csvs(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in report.tables().items():
        p = out_dir / f"{name}.csv"
        df.to_csv(p, index=False)
        paths.append(p)
    if len(report.decision):
        p = plots.decision_png(report, out_dir / "decision_pareto.png")
        if p:
            paths.append(p)
    return paths


def number_format(report: Report, col: str) -> str:
    if col.endswith("_p") or col.endswith("_p_holm") or col in ("p", "p_adj", "p_holm") or col.startswith("p_"):
        return "0.0000"
    if col in ("calls", "items", "iterations", "paired_calls", "df_model", "df_error", "models", "support",
               "items_to_decide", "more_items", "matched_calls"):
        return "0"
    if M.known(col):
        return report.metric(col).fmt
    if col.endswith("_rate"):
        return "0.0%"
    return "0.000"


def column_header(report: Report, col: str) -> str:
    if col in ID_LABELS:
        return ID_LABELS[col]
    if M.known(col):
        return report.metric(col).label
    return col


def _write_table(report: Report, ws, df: pd.DataFrame, start: int, *, best: bool, colour: bool,
                 sig_cols=(), formats: dict | None = None) -> int:
    """Write ``df`` with its header at row ``start``; returns the last row written."""
    from openpyxl.formatting.rule import CellIsRule
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    cols = list(df.columns)
    for j, c in enumerate(cols, 1):
        cell = ws.cell(row=start, column=j, value=column_header(report, c))
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
            fmt = (formats or {}).get(c) or number_format(report, c)
            for i in range(start + 1, last + 1):
                ws.cell(row=i, column=j).number_format = fmt
    for j, c in enumerate(cols, 1):
        sample = [len(str(column_header(report, c)))] + [len(f"{v:.3f}" if isinstance(v, float) else str(v))
                                                   for v in df[c].head(200).tolist()]
        width = min(max(sample) + 2, 60 if c not in ("value", "what_it_means") else 100)
        ws.column_dimensions[get_column_letter(j)].width = max(ws.column_dimensions[get_column_letter(j)].width or 0,
                                                               width)
    models = set(report.details["model"])
    metric_cols = [c for c in cols if M.known(c)
                   and report.metric(c).higher_is_better is not None and pd.api.types.is_numeric_dtype(df[c])]
    if colour and "model" in df:
        grey = PatternFill(fill_type="lightUp", fgColor=GREY, bgColor="F2F2F2")
        for c in [c for c in cols if M.known(c) and pd.api.types.is_numeric_dtype(df[c])]:
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
            winner = report.best.get(ALIASES.get(c, c))
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
        png = plots.decision_png(report, chart_dir / "decision_pareto.png")
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
