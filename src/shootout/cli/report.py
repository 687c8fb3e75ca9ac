"""Commands over a results database: report, heatmaps, plan, export-json."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from core.errors import ShootoutError
from shootout.cli.common import COMPARE_OPT, CONFIG_OPT, REPORT_CONFIG_OPT, commands, console, pairs

app = typer.Typer()
command = commands(app, "Results")
DB_OPT = typer.Option(None, "--db", help="results database (default: the config's)")
RUN_ID_OPT = typer.Option(None, "--run-id", help="default: the latest run")


@command()
def report(config: Optional[Path] = REPORT_CONFIG_OPT, db: Optional[Path] = DB_OPT,
           run_id: Optional[str] = RUN_ID_OPT,
           out: Optional[Path] = typer.Option(None, "--out", help="folder for the workbook and CSVs"),
           heatmaps: bool = typer.Option(False, "--heatmaps", help="also draw the heatmaps"),
           compare: Optional[List[str]] = COMPARE_OPT):
    """Metrics, paired tests and the verdicts: reports/<run>.xlsx plus one CSV per table."""
    from shootout import reporting

    reporting.report(config, db, run_id, out, heatmaps, console(), pairs(compare))


@command("heatmaps")
def heatmaps_cmd(config: Optional[Path] = REPORT_CONFIG_OPT, db: Optional[Path] = DB_OPT,
                 run_id: Optional[str] = RUN_ID_OPT,
                 out: Optional[Path] = typer.Option(None, "--out", help="folder for the PNG files")):
    """PNG heatmaps by task kind: items x models and family x quant grids; confusion matrices for labels."""
    from shootout import reporting

    pngs, folder = reporting.heatmaps(config, db, run_id, out)
    typer.echo(f"wrote {len(pngs)} heatmaps to {folder}/")


@command()
def plan(config: Optional[Path] = REPORT_CONFIG_OPT,
         db: Optional[Path] = typer.Option(None, "--db", help="the pilot run's results database (default: the "
                                                                "config's)"),
         run_id: Optional[str] = RUN_ID_OPT,
         effect: Optional[float] = typer.Option(None, "--effect", help="the difference to detect, or the margin, in "
                                                                       "the metric's units (0.05 MAE; 0.02 = 2 "
                                                                       "accuracy points); default: the run's margin"),
         metric: Optional[str] = typer.Option(None, "--metric", help="mae (default for value tasks), sign_accuracy, "
                                                                     "mean_value, valid_rate; accuracy (label tasks)"),
         goal: str = typer.Option("difference", "--goal", help="difference | non-inferiority | equivalence"),
         assume: float = typer.Option(0.0, "--assume-diff", help="non-inferiority/equivalence: the true difference "
                                                                 "you expect (positive = candidate worse)"),
         alpha: Optional[float] = typer.Option(None, "--alpha", help="default: the run's report.alpha (0.05)"),
         power: Optional[float] = typer.Option(None, "--power", help="default: the run's report.power (0.8)"),
         iterations: str = typer.Option("1,2,3,5,10", "--iterations", help="iterations per item to consider"),
         compare: Optional[List[str]] = COMPARE_OPT):
    """How many items and iterations to run: from a pilot run's variance, per comparison."""
    from rich.markup import escape
    from rich.table import Table

    from shootout import reporting

    compared = pairs(compare)
    try:
        its = tuple(int(x) for x in iterations.split(",") if x.strip())
    except ValueError:
        raise ShootoutError(f"--iterations '{iterations}' is not a list of whole numbers", "write e.g. 1,2,3,5,10")
    if not its or min(its) < 1:
        raise ShootoutError("--iterations needs whole numbers of at least 1", "write e.g. 1,2,3,5,10")
    p = reporting.plan(config, db, run_id, metric=metric, effect=effect, goal=goal, assume=assume, alpha=alpha,
                       power=power, iterations=its, pairs=compared)
    out = console()
    for line in p.lines:
        out.print(escape(line))
    for (ref, cand), g in p.designs.groupby(["reference", "candidate"], sort=False):
        table = Table(title=escape(f"{cand} vs {ref}: {p.goal}, {p.metric}, effect {p.effect:g}"))
        for col in ("iterations", "sd of per-item diff", "items", "calls per model", "hours (all models)"):
            table.add_column(col, justify="right")
        for r in g.itertuples(index=False):
            finite = r.items == r.items and r.items != float("inf")
            table.add_row(str(r.iterations), f"{r.sd_diff:.3f}", f"{int(r.items):,}" if finite else "never",
                          f"{int(r.calls_per_model):,}" if finite else "-",
                          f"{r.hours_all_models:.1f}" if finite else "-")
        out.print(table)


@command("export-json")
def export_json(config: Path = CONFIG_OPT, db: Optional[Path] = DB_OPT, run_id: Optional[str] = RUN_ID_OPT,
                out: Path = typer.Option(Path("sentiments"), "--out")):
    """Write results in the older tool's layout: sentiments/<model>/<TICKER>_<i>.json."""
    from shootout import reporting

    files, rid = reporting.seed_json(config, db, run_id, out)
    typer.echo(f"wrote {len(files)} files under {out}/ (run {rid})")


@command()
def view(config: Optional[Path] = REPORT_CONFIG_OPT, db: Optional[Path] = DB_OPT,
         port: int = typer.Option(8001, "--port", min=0, max=65535, help="port on 127.0.0.1 (0: any free one)"),
         open_browser: bool = typer.Option(False, "--open", help="open it in the browser")):
    """A read-only browser view of the results database (Datasette, on 127.0.0.1): runs, arms, flips
    against the reference, invalid replies, one item across every arm and iteration. It never writes."""
    from benchmark.report.view import serve
    from shootout import reporting

    serve(reporting.database_of(config, db), port, open_browser=open_browser, announce=console().print)
