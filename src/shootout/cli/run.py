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
        shard: Optional[str] = typer.Option(None, "--shard", help="i/n, or auto (from SLURM_ARRAY_TASK_ID, Kubernetes' "
                                                                 "JOB_COMPLETION_INDEX or SHOOTOUT_SHARD_INDEX): this box "
                                                                 "runs its share of the grid into its own results file "
                                                                 "(combine them with `shootout merge`)"),
        shard_by: str = typer.Option("model", "--shard-by", help="model | item"),
        shard_count: Optional[int] = typer.Option(None, "--shard-count", min=1,
                                                  help="shards in all, where the scheduler does not say (Kubernetes); "
                                                       "with --executor: how many shards to make"),
        executor: Optional[str] = typer.Option(None, "--executor", help="ray or ray:ADDRESS: one task per shard on a "
                                                                       "Ray cluster (pip install 'gguf-shootout[ray]')"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="ask again the calls stored as failed (no "
                                                                         "usable answer from the server)"),
        progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Run N iterations of the task over every registered model and store every call."""
    from benchmark.config import load_config
    from benchmark.run.shards import resolve_shard
    from shootout import running

    cfg = load_config(config)
    the_shard = None if executor else resolve_shard(shard, shard_by, shard_count)
    if executor and shard:
        raise ShootoutError("--executor and --shard together", "an executor makes its own shards: use --shard-by and "
                            "--shard-count with it, and leave --shard out")
    running.run(cfg, run_id=run_id, resume=resume, models=model, shard=the_shard, executor=executor,
                shard_by=shard_by, shard_count=shard_count, progress=progress, console=console(),
                retry_failed=retry_failed)


@command()
def merge(sources: List[str] = typer.Argument(..., help="the shards' results files (FILE or FILE:RUN_ID), their "
                                                          "folder, or a quoted glob"),
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

    cfg, splits, warnings = check_config(config)
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    extra = "; items " + ", ".join(f"{s} {n}" for s, n in splits.items()) if splits is not None else ""
    typer.echo(f"{config}: ok ({len(cfg.models)} models, {len(cfg.compare)} comparison pairs{extra})")


@command()
def runs(config: Path = CONFIG_OPT, db: Optional[Path] = typer.Option(None, "--db")):
    """List the runs in a results database."""
    from shootout import reporting

    for r in reporting.runs(config, db):
        typer.echo(f"{r.run_id}  {r.created_at}  {r.calls:>6} calls  {r.state}")


@command()
def recover(src: Path = typer.Argument(..., help="a damaged results file"),
            dst: Path = typer.Argument(..., help="a new file for what can be read")):
    """Copy the readable runs of a damaged results file (runs, items, calls, model loads) into a new file."""
    from benchmark.store.recover import recover as do_recover

    got = do_recover(src, dst)
    runs = ", ".join(f"{rid} ({n} calls)" for rid, n in got.runs.items()) or "none"
    lost = sum(got.damaged.values())
    typer.echo(f"{dst}: {len(got.runs)} run(s) recovered: {runs}"
               + (f"; {lost} damaged stretch(es) of rows skipped ({', '.join(f'{t} {n}' for t, n in got.damaged.items() if n)})"
                  if lost else "") + f". {src} is left as it was.")
