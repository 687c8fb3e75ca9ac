"""The report as one HTML file that opens offline: the Decision first (verdicts in words, the Decision
chart), the Summary table, the run's charts, and an item explorer (every item with its text, gold and
each arm's replies per iteration; filters for disagreement with the reference, invalid replies, flips
and per-class errors; paged).

Everything is inline: styles, the explorer's script (``html_explorer.js``), PNG charts as data URIs and
the data as one JSON blob (``html_data``). A Content-Security-Policy in the page allows no network
access at all and only the page's own script (by its hash), so a reply or article holding markup
cannot run even if it ever reached the page as markup: the explorer writes every text with
``textContent`` and the tables here are escaped.

The writer takes :class:`HtmlInputs`, a small explicit description of the page; ``inputs_from_report``
is the one adapter from the report model (``benchmark.report.build``) and the results store.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import math
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import html_data


@dataclass
class Table:
    """A table as shown: its frame, column headers, number formats (Python format specs such as ".3f",
    ".1%"), cell fills ((row, column) -> "#RRGGBB", or "grey" for 'not distinguishable'), a note, and the cells of a
    model significantly best on their metric."""

    frame: pd.DataFrame
    labels: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    fills: dict[tuple[int, str], str] = field(default_factory=dict)
    note: str = ""
    best: set[tuple[int, str]] = field(default_factory=set)    # cells shown bold and boxed


@dataclass
class HtmlInputs:
    """What the page shows. ``items``: item_id, text, target_label / target_value, and title and split
    where known, in the run's order. ``calls``: model, iteration, item_id, raw_text, valid, error, label,
    value, confidence. ``references``: arm -> the arm it is compared with. Charts are PNG bytes."""

    title: str
    run_id: str
    kind: str                                   # "label" (classification) or "value"
    item_noun: str
    value_name: str
    labels: list[str]
    arms: list[str]                             # report order
    references: dict[str, str]
    items: pd.DataFrame
    calls: pd.DataFrame
    summary: Table
    decision_lines: list[str] = field(default_factory=list)
    decision_table: Table | None = None
    decision_chart: bytes | None = None
    charts: list[tuple[str, bytes]] = field(default_factory=list)   # (caption, PNG)
    chart_note: str = ""                                            # e.g. which charts were left out and why
    facts: list[tuple[str, str]] = field(default_factory=list)      # run facts, key -> text
    config_text: str = ""
    neutral_band: float = 0.1


def _asset(name: str) -> str:
    return resources.files("benchmark.report").joinpath(name).read_text(encoding="utf-8")


def _fmt(v, spec: str | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, float, np.integer, np.floating)) and spec:
        try:
            return format(float(v) if "%" in spec or "f" in spec else v, spec)
        except (TypeError, ValueError):
            return str(v)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _table(t: Table, css: str = "", note: bool = True) -> str:
    """An escaped HTML table; numeric columns right-aligned, fills as classes or inline colours."""
    df = t.frame
    out = [f'<div class="tablewrap"><table class="data {css}"><thead><tr>']
    out += [f"<th>{html.escape(str(t.labels.get(c, c)))}</th>" for c in df.columns]
    out.append("</tr></thead><tbody>")
    numeric = {c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])}
    for i, row in enumerate(df.itertuples(index=False)):
        out.append("<tr>")
        for c, v in zip(df.columns, row):
            cls, style = [], ""
            if c in numeric:
                cls.append("num")
            if (i, c) in t.best:
                cls.append("best")
            fill = t.fills.get((i, c))
            if fill == "grey":
                cls.append("nd")
            elif fill:
                style = f' style="background:#{html.escape(fill.lstrip("#"))}"'
            if c == "verdict" and isinstance(v, str):
                cls.append("verdict v-" + "".join(ch for ch in v.lower() if ch.isalnum() or ch == "-"))
            attr = f' class="{" ".join(cls)}"' if cls else ""
            out.append(f"<td{attr}{style}>{html.escape(_fmt(v, t.formats.get(c)))}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    if t.note and note:
        out.insert(0, f'<p class="note">{html.escape(t.note)}</p>')
    return "".join(out)


def _png(data: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">')


def page(inputs: HtmlInputs) -> str:
    """The whole HTML document."""
    script = _asset("html_explorer.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
           "base-uri 'none'; form-action 'none'")
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(inputs.title)}</title><style>{_asset('html_report.css')}</style></head><body>",
        f"<header><h1>{e(inputs.title)}</h1><nav><a href=\"#decision\">Decision</a> <a href=\"#summary\">Summary</a> "
        f"<a href=\"#charts\">Charts</a> <a href=\"#explorer\">{e(inputs.item_noun.title())}s</a> "
        f"<a href=\"#run\">Run</a></nav></header>",
        '<section id="decision"><h2>Decision</h2>',
    ]
    if inputs.decision_lines:
        parts.append('<ul class="verdicts">' + "".join(f"<li>{e(line)}</li>" for line in inputs.decision_lines)
                     + "</ul>")
    else:
        parts.append('<p class="verdicts">No decision: the run has no candidate with a reference to compare '
                     "against.</p>")
    if inputs.decision_chart:
        parts.append(f'<figure class="decision-chart">{_png(inputs.decision_chart, "Decision chart")}'
                     "<figcaption>Quality against seconds per sample (and file size): Pareto-optimal rungs as "
                     "stars, the verdict against the family's reference as colour and label.</figcaption></figure>")
    if inputs.decision_table is not None and len(inputs.decision_table.frame):
        if inputs.decision_table.note:
            parts.append(f'<p class="note">{e(inputs.decision_table.note)}</p>')
        parts.append("<details><summary>The Decision table</summary>"
                     + _table(inputs.decision_table, "decision", note=False) + "</details>")
    parts.append("</section>")
    parts.append(f'<section id="summary"><h2>Summary</h2>{_table(inputs.summary, "summary")}'
                 '<p class="legend"><span class="nd swatch"></span> hatched: not distinguishable from the '
                 'reference; <span class="best">bold and boxed</span>: significantly best of all models</p></section>')
    parts.append('<section id="charts"><h2>Charts</h2>')
    if inputs.chart_note:
        parts.append(f'<p class="note">{e(inputs.chart_note)}</p>')
    parts += [f"<figure>{_png(png, cap)}<figcaption>{e(cap)}</figcaption></figure>" for cap, png in inputs.charts]
    if not inputs.charts:
        parts.append("<p>No charts for this run.</p>")
    parts.append("</section>")
    parts.append(f'<section id="explorer"><h2>{e(inputs.item_noun.title())}s</h2>'
                 '<noscript>The explorer needs JavaScript.</noscript><div id="explorer-root"></div></section>')
    parts.append('<section id="run"><h2>Run</h2><table class="facts"><tbody>')
    parts += [f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in inputs.facts]
    parts.append("</tbody></table>")
    if inputs.config_text:
        parts.append(f"<details><summary>The run's config</summary><pre>{e(inputs.config_text)}</pre></details>")
    parts.append("</section>")
    data = html_data.to_script_json(html_data.explorer_data(inputs))
    parts.append(f'<script type="application/json" id="explorer-data">{data}</script>')
    parts.append(f"<script>{script}</script></body></html>")
    return "\n".join(parts)


def write_html(inputs: HtmlInputs, path: Path) -> Path:
    """Write the page to ``path`` (through a temporary file beside it, so a reader never sees half a page)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(page(inputs), encoding="utf-8")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- the adapter

ITEM_CHART_LIMIT = 100  # items x models heatmaps of more items than this stay out of the page (the explorer shows them)


def _per_item_chart(path: Path) -> bool:
    """An items x models heatmap (``charts.item_heatmap``, ``charts.correctness_heatmap``)."""
    return path.name.endswith("_heatmap.png") or path.name == "correct_by_item.png"



def py_format(excel: str | None) -> str | None:
    """A Python format spec for an Excel number format of the report ("0.000" -> ".3f", "0.0%" -> ".1%")."""
    if not excel:
        return None
    pct = excel.endswith("%")
    body = excel.rstrip("%")
    decimals = len(body.split(".", 1)[1]) if "." in body else 0
    return f".{decimals}{'%' if pct else 'f'}"


def _sheet_table(report, sheet, *, colour: bool) -> Table:
    from benchmark import metrics as M
    from benchmark.report.colours import cell_colour
    from benchmark.report.model import ALIASES
    from benchmark.report.workbook import column_header, number_format

    df = sheet.table
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    formats = {c: py_format(sheet.formats.get(c) or number_format(report, c)) for c in numeric}
    fills = {}
    if colour and "model" in df:
        models = set(report.details["model"])
        metric_cols = [c for c in numeric if c in M.METRICS or c.startswith("f_beta_")]
        for i, model in enumerate(df["model"].tolist()):
            if model not in models:
                continue
            for c in metric_cols:
                table = report.details if c in report.details else df
                fill = cell_colour(report, model, c, df[c].iloc[i], table)
                if fill:
                    fills[(i, c)] = fill
    best = set()
    if sheet.best and "model" in df:
        for c in numeric:
            winner = report.best.get("s_per_sample" if c == "cost_per_1k" else ALIASES.get(c, c))
            best |= {(i, c) for i, model in enumerate(df["model"].tolist()) if winner is not None and model == winner}
    return Table(df, {c: column_header(report, c) for c in df.columns}, formats, fills, sheet.note, best)


def inputs_from_report(report, store, charts: list[Path] | None = None) -> HtmlInputs:
    """The page of a report built by ``benchmark.report.build`` over ``store``: its Decision and Summary
    sheets, its charts (``charts``: PNG files already drawn, e.g. those ``charts.write_heatmaps`` wrote for
    the heatmaps folder; drawn here into a temporary folder when None; items x models heatmaps of runs over
    ``ITEM_CHART_LIMIT`` items left out), the run's items and calls from the store."""
    from benchmark.report.charts import write_heatmaps
    from benchmark.report.plots import decision_png

    run_id = report.run_id
    task = report.task
    noun = task.item_noun or "item"
    items = pd.read_sql_query("SELECT item_id, position, split, text, target_label, target_value, fields_json "
                              "FROM items WHERE run_id=? ORDER BY position", store.db, params=(run_id,))
    fields = [json.loads(f or "{}") for f in items.pop("fields_json")]
    items["title"] = [f.get("title") for f in fields]
    calls = pd.read_sql_query("SELECT model, iteration, item_id, raw_text, valid, error, label, value, confidence "
                              "FROM calls WHERE run_id=? ORDER BY id", store.db, params=(run_id,))
    with tempfile.TemporaryDirectory() as tmp:
        decision = decision_png(report, Path(tmp) / "decision_pareto.png") if len(report.decision) else None
        chart_bytes = decision.read_bytes() if decision else None
        n_items = report.per_item["item_id"].nunique() if "item_id" in report.per_item else 0
        if charts is None:  # drawn here; without the per-item table the items x models heatmaps are not drawn
            drawn = report if n_items <= ITEM_CHART_LIMIT else dataclasses.replace(report, per_item=pd.DataFrame())
            charts = write_heatmaps(drawn, Path(tmp) / "charts")
            left_undrawn = n_items > ITEM_CHART_LIMIT
        else:
            left_undrawn = False
        paths = [Path(p) for p in charts]
        paths = [p for p in paths if p.suffix == ".png" and p.name != "decision_pareto.png"]
        left = [p.name for p in paths if n_items > ITEM_CHART_LIMIT and _per_item_chart(p)]
        pngs = [(p.stem.replace("_", " "), p.read_bytes()) for p in paths if p.name not in left]
    chart_note = (f"Left out of this page: the {noun}s x models heatmaps ({', '.join(left) or 'not drawn'}), as the "
                  f"run has {n_items} {noun}s (more than {ITEM_CHART_LIMIT}); `shootout report` draws them into the "
                  f"heatmaps folder, and the explorer below shows every {noun}." if left or left_undrawn else "")
    info = report.sheet("Run Info").table
    facts = [(k, "" if v is None else v) for k, v in zip(info["key"], info["value"]) if k != "config text"]
    config = next((v for k, v in zip(info["key"], info["value"]) if k == "config text"), "") or ""
    dec = report.sheet("Decision")
    return HtmlInputs(
        title=f"gguf-shootout report: run {run_id} ({task.name or 'task'})", run_id=run_id,
        kind=report.kind, item_noun=noun, value_name=task.value_name or "value",
        labels=[str(x) for x in task.labels or []], arms=list(report.details["model"]),
        references=dict(report.refs), items=items, calls=calls,
        summary=_sheet_table(report, report.sheet("Summary"), colour=True),
        decision_lines=list(dec.lines), decision_table=_sheet_table(report, dec, colour=False),
        decision_chart=chart_bytes, charts=pngs, chart_note=chart_note, facts=facts, config_text=str(config),
        neutral_band=float(report.settings.neutral_band))
