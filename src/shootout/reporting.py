"""Reporting from the command line: where a run's results live (--config, --db, --run-id), what
the export stage says about its models (quant quality), and what `report`, `heatmaps`, `plan`,
`export-json` and `runs` make of a results database. The report itself (``benchmark.report``)
reads the results database only (model sizes and checkpoints included) and never export's files:
the quant-quality rows are handed to it from here."""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import ShootoutError


def store_for(config: Path | None, db: Path | None):
    """The results database named by --db, else by the config (--config, default config.yaml)."""
    from benchmark.store import Store

    if db is not None:
        return Store(db, create=False)
    from benchmark.config import load_config

    path = config or Path("config.yaml")
    if not path.is_file():
        raise ShootoutError(f"config not found: {path}", "pass --config PATH, or --db RESULTS.sqlite")
    cfg = load_config(path, check_files=False)
    return Store(cfg.resolve(cfg.run.database), create=False)


def database_of(config: Path | None, db: Path | None) -> Path:
    """The results file named by --db, else by the config, without opening it (the viewer must not
    write: opening a Store migrates and switches on WAL)."""
    if db is not None:
        return db
    from benchmark.config import load_config

    path = config or Path("config.yaml")
    if not path.is_file():
        raise ShootoutError(f"config not found: {path}", "pass --config PATH, or --db RESULTS.sqlite")
    cfg = load_config(path, check_files=False)
    return cfg.resolve(cfg.run.database)


def output_dirs(config: Path | None, db: Path | None) -> tuple[Path, Path]:
    """(reports folder, heatmaps folder): the config's when there is one, else reports/ and heatmaps/."""
    if config is not None and not config.is_file():
        raise ShootoutError(f"config not found: {config}", "pass an existing --config, or leave it out and give --db")
    path = config or Path("config.yaml")
    if db is not None and not path.is_file():
        return Path("reports"), Path("heatmaps")
    from benchmark.config import load_config

    cfg = load_config(path, check_files=False)
    return cfg.resolve(cfg.output.reports_dir), cfg.resolve(cfg.output.heatmaps_dir)


def pick_run(store, run_id: str | None) -> str:
    if run_id:
        if store.run(run_id) is None:
            raise ShootoutError(f"no run '{run_id}' in {store.path}", f"runs there: {', '.join(store.run_ids()) or 'none'}")
        return run_id
    latest = store.latest_run_id(with_calls=True)
    if latest is None:
        if store.run_ids():
            raise ShootoutError(f"{store.path} holds only runs that stored no call (they stopped before their first)",
                                "see `shootout runs`; run `shootout run` again")
        raise ShootoutError(f"{store.path} holds no runs", "run `shootout run` first")
    return latest


def check_pairs(store, run_id: str, pairs) -> None:
    """--compare must name models of the run."""
    if not pairs:
        return
    known = list(store.arm_facts(run_id)["model"])
    unknown = sorted({m for pair in pairs for m in pair} - set(known))
    if unknown:
        raise ShootoutError(f"--compare names {', '.join(repr(m) for m in unknown)}, not a model of run {run_id}",
                            f"the run's models: {', '.join(known)}")


def stored_models(run) -> list[dict]:
    """The model entries of the config a run stored, paths resolved from that config's folder, one
    per arm (a model under a prompt variant keeps its entry, named as the arm)."""
    from ruamel.yaml import YAML

    try:
        cfg = YAML(typ="safe").load(run["config_text"]) or {}
    except Exception:
        return []
    base = Path(run["config_path"]).parent if run["config_path"] else Path(".")
    task = json.loads(run["task_json"] or "{}")
    variants = [v for v in task.get("variants") or [None]] or [None]
    out = []
    for m in cfg.get("models") or []:
        if not isinstance(m, dict) or not m.get("name"):
            continue
        m = dict(m)
        for key in ("path", "manifest"):
            if m.get(key) and m[key] != "embedded" and not Path(m[key]).is_absolute():
                m[key] = str(base / m[key])
        for v in variants:
            out.append({**m, "name": m["name"] if v is None else f"{m['name']}@{v}"})
    return out


def quant_quality_rows(run) -> list[dict]:
    from export.pipeline import quality_rows

    return quality_rows([m for m in stored_models(run) if m.get("path") != "embedded"])


def build(store, run_id: str, pairs=None):
    """The report of a run, from the results database, with the quant quality export manifests give.
    Pairs and report settings: the run's stored ones unless ``pairs`` is given. Model sizes and
    checkpoints are the run's stored facts, never read from the model files."""
    from benchmark import report as rpt

    return rpt.build(store, run_id, pairs, quant_quality=quant_quality_rows(store.run(run_id)))


def write(store, run_id: str | None, reports_dir: Path, heatmaps_dir: Path | None, console, pairs=None) -> str:
    """Workbook + CSVs (+ heatmaps) of a run; returns its id."""
    from benchmark import report as rpt

    rid = pick_run(store, run_id)
    check_pairs(store, rid, pairs)
    with console.status(f"statistics for run {rid}"):
        rep = build(store, rid, pairs)
    files = rpt.write_csvs(rep, reports_dir / rid)  # first: the workbook takes its Decision chart from there
    xlsx = rpt.write_workbook(rep, reports_dir / f"{rid}.xlsx")
    csvs = [p for p in files if p.suffix == ".csv"]
    chart = " and the Decision chart (decision_pareto.png)" if len(files) > len(csvs) else ""
    console.print(f"report: {xlsx} and {len(csvs)} CSV files{chart} in {reports_dir / rid}/", markup=False)
    from benchmark.report.console import verdict_lines

    for line in verdict_lines(rep):
        console.print(line, markup=False, highlight=False)
    if heatmaps_dir is not None:
        from benchmark.report.charts import write_heatmaps

        with console.status("heatmaps"):
            pngs = write_heatmaps(rep, heatmaps_dir / rid)
        console.print(f"heatmaps: {len(pngs)} PNG files in {heatmaps_dir / rid}/")
    from benchmark.report.html import inputs_from_report, write_html

    with console.status("HTML report"):
        page = write_html(inputs_from_report(rep, store, pngs if heatmaps_dir is not None else None),
                          reports_dir / f"{rid}.html")
    console.print(f"HTML report: {page} (one file, opens offline)", markup=False)
    return rid


def report(config: Path | None, db: Path | None, run_id: str | None, out: Path | None, heatmaps: bool, console,
           pairs=None) -> str:
    """`shootout report`: the workbook and CSVs (and heatmaps) of a run; returns its id."""
    reports_dir, heatmaps_dir = output_dirs(config, db)
    with store_for(config, db) as store:
        return write(store, run_id, out or reports_dir, heatmaps_dir if heatmaps else None, console, pairs)


def heatmaps(config: Path | None, db: Path | None, run_id: str | None, out: Path | None) -> tuple[list[Path], Path]:
    """`shootout heatmaps`: (the PNG files, their folder) of a run."""
    from benchmark.report.charts import write_heatmaps

    _, heatmaps_dir = output_dirs(config, db)
    with store_for(config, db) as store:
        rid = pick_run(store, run_id)
        rep = build(store, rid)
    folder = (out or heatmaps_dir) / rid
    return write_heatmaps(rep, folder), folder


def plan(config: Path | None, db: Path | None, run_id: str | None, **how):
    """`shootout plan`: the design (items and iterations per comparison) from a pilot run
    (``benchmark.report.plan.make_plan``; ``how``: its metric, effect, goal, alpha, power...)."""
    from benchmark.report.plan import make_plan

    with store_for(config, db) as store:
        return make_plan(store, pick_run(store, run_id), **how)


def seed_json(config: Path | None, db: Path | None, run_id: str | None, out: Path) -> tuple[list[Path], str]:
    """`shootout export-json`: (the files written in the older tool's layout, the run id)."""
    from benchmark.report.seed_json import export_seed_format

    with store_for(config, db) as store:
        rid = pick_run(store, run_id)
        return export_seed_format(store, rid, out), rid


def runs(config: Path | None, db: Path | None) -> list:
    """`shootout runs`: every run of a results database with its start, calls and state (finished,
    unfinished, or no calls stored)."""
    with store_for(config, db) as store:
        return store.run_summaries()
