"""Commands of the benchmark itself: run, merge, validate, runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from core.errors import ShootoutError
from shootout.cli.common import CONFIG_OPT, commands, console

app = typer.Typer()
command = commands(app, "Benchmark")


@command()
def run(config: Path = CONFIG_OPT,
        run_id: Optional[str] = typer.Option(None, "--run-id", help="name the run, or resume the run of this id"),
        resume: bool = typer.Option(False, "--resume", help="resume the latest unfinished run of this config"),
        model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="only these models (repeatable)"),
        shard: Optional[str] = typer.Option(None, "--shard", help="i/n: this box runs its share of the grid "
                                                                 "(combine the shards with `shootout merge`)"),
        shard_by: str = typer.Option("model", "--shard-by", help="model | item"),
        progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Run N iterations of the task over every registered model and store every call."""
    from benchmark.config import load_config
    from shootout import running

    running.run(load_config(config), run_id=run_id, resume=resume, models=model, shard=_shard(shard, shard_by),
                progress=progress, console=console())


def _shard(text: Optional[str], by: str):
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
        assert 1 <= i <= n
    except (ValueError, AssertionError):
        raise ShootoutError(f"--shard '{text}' is not i/n", "e.g. --shard 1/2 on one box and --shard 2/2 on the other"
                            ) from None
    if by not in ("model", "item"):
        raise ShootoutError(f"--shard-by '{by}'", "use model or item")
    return i, n, by


@command()
def merge(sources: List[str] = typer.Argument(..., help="results files of the shards (FILE or FILE:RUN_ID)"),
          out: Path = typer.Option(..., "--out", help="the merged results file (new)"),
          run_id: Optional[str] = typer.Option(None, "--run-id", help="the merged run's id (default: the first's)")):
    """Combine the shards of one grid, run on several boxes, into one run that reports like any other."""
    from benchmark.run.merge import merge as do_merge

    res = do_merge(sources, out, run_id)
    typer.echo(f"{out}: run {res.run_id}, {res.calls} calls from {len(res.sources)} files"
               + ("" if res.finished else " (not every call of the grid yet: resume a shard, then merge again)"))


@command()
def validate(config: Path = CONFIG_OPT):
    """Check config.yaml and report every problem found (exit code 2 if any)."""
    from benchmark.run.launch import check_config

    cfg, splits = check_config(config)
    extra = "; items " + ", ".join(f"{s} {n}" for s, n in splits.items()) if splits is not None else ""
    typer.echo(f"{config}: ok ({len(cfg.models)} models, {len(cfg.compare)} comparison pairs{extra})")


@command()
def runs(config: Path = CONFIG_OPT, db: Optional[Path] = typer.Option(None, "--db")):
    """List the runs in a results database."""
    from shootout import reporting

    for r in reporting.runs(config, db):
        typer.echo(f"{r['run_id']}  {r['created_at']}  {r['calls']:>6} calls  "
                   f"{'finished' if r['finished'] else 'unfinished'}")
