"""`shootout doctor`: check an Ollama host end to end before a long run."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from shootout.cli.common import CONFIG_OPT, commands, console

app = typer.Typer()
command = commands(app, "Models")


@command()
def doctor(config: Path = CONFIG_OPT,
           model: Optional[List[str]] = typer.Option(None, "--model", "-m",
                                                     help="an Ollama model of config.yaml (repeatable; default: all)"),
           tag: Optional[str] = typer.Option(None, "--tag", help="check this Ollama tag instead of the config's models"),
           modelfile: Optional[Path] = typer.Option(None, "--modelfile",
                                                    help="the Modelfile the model was created from (default: the one "
                                                         "its export manifest names)"),
           host: Optional[str] = typer.Option(None, "--host", help="the Ollama server (default: OLLAMA_HOST)"),
           num_ctx: Optional[int] = typer.Option(None, "--num-ctx", min=256, help="context to load with (default: "
                                                                                  "the config's)")):
    """Check an Ollama host end to end: version, template and parameters against the Modelfile, context
    allocated, share in GPU memory, one smoke call with the task's schema (exit code 2 if a check fails)."""
    from shootout.doctor import main as doctor_main

    raise typer.Exit(doctor_main(config, model, tag, modelfile, host, num_ctx, console()))
