"""The comparison report of a run, as a package of one job per module:

- ``model``: what a report holds (sheets, per-model figures, references, tests against them);
- ``settings``: the run's stored ``report`` block, with overrides and the task's default margins;
- ``references``: the one reference resolver every sheet, chart, console line and plan uses;
- ``kinds``: the task kinds, declared (builder, end-of-run table, planner scores, charts);
- ``value`` / ``label``: the builders per kind; ``common``, ``decision``: what they share (the
  Decision sheet first in every report);
- ``build``: reading a run and building its report;
- ``colours``: the honest colour policy; ``workbook``: the xlsx and CSVs; ``draw``, ``charts``,
  ``plots``: the charts; ``console``: the end-of-run table and the verdict lines;
- ``plan``: the sample size of a study from a pilot run; ``seed_json``: the older tool's layout.

Every table says n, the test and what it assumes, which reference it compares with and the sign of
its differences; labels, number formats and colour scales come from the metric table
(``benchmark.metrics``); the columns from the task's scorer (``benchmark.tasks.base``).
"""

from __future__ import annotations

from benchmark.report.build import build, details
from benchmark.report.model import Report, Sheet
from benchmark.report.workbook import write_csvs, write_workbook

__all__ = ["Report", "Sheet", "build", "details", "write_csvs", "write_workbook"]
