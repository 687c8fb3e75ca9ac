"""Running a config from the command line: the run (``benchmark.run.launch``) followed by its
console table and notes, and the run-then-report of `demo`, `finetune-demo` and `learning-curve`."""

from __future__ import annotations

from pathlib import Path


def run(cfg, *, run_id: str | None = None, resume: bool = False, models: list[str] | None = None,
        shard: tuple[int, int, str] | None = None, progress: bool = True, console) -> str:
    """Run (or resume) ``cfg``, print the table of the run and what was not sent; returns the run id.
    A run stopped by Ctrl-C ends in ``Stopped`` (exit code 130) after its table."""
    from benchmark.report.console import model_summary, render_table
    from benchmark.run.launch import Stopped, resume_hint, run_config
    from benchmark.store import Store

    result = run_config(cfg, run_id=run_id, resume=resume, models=models, shard=shard, progress=progress,
                        console=console)
    db = cfg.resolve(cfg.run.database)
    with Store(db) as store:
        task, rows = model_summary(store, result.run_id)
        console.print(render_table(task, rows, f"run {result.run_id} ({store.count_calls(result.run_id)} calls in {db})"))
    if result.too_long:
        worst = max(t for _, _, t, _ in result.too_long)
        console.print(f"{len(result.too_long)} call(s) not sent: the prompt did not fit the context (up to {worst} "
                      f"tokens); they are stored as failed calls. Raise the context (run.num_ctx, or the server's own context "
                      f"for an OpenAI-compatible server) to ask them.")
    if result.stopped:
        raise Stopped(f"stopped after the call in flight: {result.stored} calls stored this time; resume with "
                      f"`{resume_hint(cfg, result.run_id)}`")
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
