"""The demos: demo, finetune-demo (the whole loop offline on the embedded model)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from shootout.cli.common import commands, console

app = typer.Typer()
command = commands(app, "Demos")


@command()
def demo(out: Optional[Path] = typer.Option(None, "--out", help="folder for the ladder, config and results "
                                                               "(default: demo, or demo-<task>)"),
         task: str = typer.Option("sentiment", "--task", help="sentiment (the news ladder), or an example of "
                                                            "examples/: {demo_tasks}"),
         iterations: Optional[int] = typer.Option(None, min=1, help="iterations per model (default: 3, or the "
                                                                    "example's)"),
         articles: Optional[int] = typer.Option(None, "--articles", "--items", min=1,
                                                help="use only N items (the first N snapshot articles)"),
         progress: bool = typer.Option(True, "--progress/--no-progress")):
    """The whole loop offline on the embedded Gemma 3 270M: the sentiment ladder (F16/Q8_0/Q5_K_M/Q4_K_M),
    or one of the classification examples; run, table, workbook and heatmaps."""
    from shootout import demo as demos
    from shootout.running import run_and_report

    log = console()
    if task == "sentiment":
        out = out or Path("demo")
        out.mkdir(parents=True, exist_ok=True)
        config_path = demos.prepare(out, iterations or 3, articles, log=log.print)
    else:
        out = out or Path(f"demo-{task}")
        config_path = demos.prepare_example(task, out, iterations, articles)
    log.print(f"demo config: {config_path}")
    run_id = run_and_report(config_path, progress, log)
    tail = f"; seed-format JSON: `shootout export-json --config {config_path}`" if task == "sentiment" else ""
    log.print(f"results: {out / 'results.sqlite'} (run {run_id}){tail}")


@command("finetune-demo")
def finetune_demo(out: Path = typer.Option(Path("finetune-demo"), "--out"),
                  steps: int = typer.Option(30, "--steps", help="LoRA training steps"),
                  iterations: int = typer.Option(2, "--iterations", min=1),
                  progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Fine-tune the embedded Gemma 3 270M on the news snapshot, export it, benchmark base vs fine-tune."""
    from shootout.finetune_demo import prepare
    from shootout.running import run_and_report

    log = console()
    config_path = prepare(out, steps, iterations, log)
    log.print(f"finetune-demo config: {config_path}")
    run_and_report(config_path, progress, log)
