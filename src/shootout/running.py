"""Running a config from the command line: the run (``benchmark.run.launch``) followed by its
console table and notes, and the run-then-report of `demo`, `finetune-demo` and `learning-curve`."""

from __future__ import annotations

from pathlib import Path


def run(cfg, *, run_id: str | None = None, resume: bool = False, models: list[str] | None = None,
        shard=None, executor: str | None = None, shard_by: str = "model", shard_count: int | None = None,
        progress: bool = True, console, retry_failed: bool = False) -> str:
    """Run (or resume) ``cfg``, print the table of the run and what was not sent; returns the run id.
    ``shard`` (``benchmark.run.shards.Shard``): this box's share, into its own results file;
    ``executor`` ("ray" or "ray:ADDRESS"): one task per shard on a cluster, stored into run.database.
    A run stopped by Ctrl-C ends in ``Stopped`` (exit code 130) after its table."""
    from benchmark.report.console import model_summary, render_table
    from benchmark.run.launch import ShardsFailed, Stopped, resume_hint, run_config
    from benchmark.run.shards import database_for
    from benchmark.store import Store
    from core.errors import ShootoutError

    if executor:
        if retry_failed:
            raise ShootoutError("--retry-failed with --executor is not supported", "ask the failed calls again on one "
                                "box: `shootout run --config ... --run-id RUN --retry-failed`")
        if shard is not None:
            raise ShootoutError("--executor and --shard together", "an executor makes its own shards: use "
                                "--shard-by and --shard-count with it, and leave --shard out")
        from benchmark.run.executors import run_with_executor

        result = run_with_executor(cfg, executor, run_id=run_id, resume=resume, by=shard_by, count=shard_count,
                                   models=models, console=console, progress=progress)
        db = result.database
    else:
        if shard is not None:
            console.print(f"shard {shard.label()} (from {shard.source}) into {database_for(cfg, shard)}", markup=False)
        result = run_config(cfg, run_id=run_id, resume=resume, models=models, shard=shard, progress=progress,
                            console=console, retry_failed=retry_failed)
        db = database_for(cfg, shard)
    with Store(db) as store:
        task, rows = model_summary(store, result.run_id)
        console.print(render_table(task, rows, f"run {result.run_id} ({store.count_calls(result.run_id)} calls in {db})"))
    if result.too_long:
        worst = max(t for _, _, t, _ in result.too_long)
        console.print(f"{len(result.too_long)} call(s) not sent: the prompt did not fit the context (up to {worst} "
                      f"tokens); they are stored as failed calls. Raise the context (run.num_ctx, or the server's own context "
                      f"for an OpenAI-compatible server) to ask them.")
    failed = getattr(result, "failed_calls", 0)
    if failed:
        console.print(f"{failed} call(s) got no usable answer from the server (errors, garbled or cut answers, "
                      f"timeouts) and are stored as failed calls with their reason; `shootout run --config "
                      f"{cfg.source} --run-id {result.run_id} --retry-failed` asks them again.", markup=False)
    if result.stopped:
        raise Stopped(f"stopped after the call in flight: {result.stored} calls stored this time; resume with "
                      f"`{resume_hint(cfg, result.run_id)}`")
    if executor and result.failed:  # the executor has said which shard failed and why
        raise ShardsFailed(f"{len(result.failed)} shard(s) of run {result.run_id} did not finish; what they stored "
                           "is kept", f"resume with `shootout run --config {cfg.source} --executor {executor} "
                           f"--run-id {result.run_id}`")
    return result.run_id


def run_and_report(config_path: Path, progress: bool, console) -> str:
    """Run (resuming an unfinished run of the same config), then the workbook and heatmaps; returns the run id."""
    from benchmark.config import load_config
    from benchmark.store import Store
    from shootout import reporting

    cfg = load_config(config_path)
    run_id = run(cfg, resume=True, progress=progress, console=console)
    with Store(cfg.resolve(cfg.run.database)) as store:
        reporting.write(store, run_id, cfg.resolve(cfg.output.reports_dir), cfg.resolve(cfg.output.heatmaps_dir),
                        console)
    return run_id
