"""The `shootout` command: one module per command group, each command parsing its options, calling
one library function and printing what it returns. Heavy libraries are imported inside the
commands that need them (`shootout --help` loads none).

- ``run``: run, merge, validate, runs
- ``report``: report, heatmaps, plan, export-json
- ``export``: export, modelfile, register; ``doctor``: doctor
- ``finetune``: finetune, learning-curve; ``data``: data tweets | phrasebank | build | label | join | export
- ``demo``: demo, finetune-demo
- ``common``: the console, shared options, help texts completed from the tables they describe
"""

from __future__ import annotations

import sys

import typer

from core.errors import ShootoutError
from shootout.cli import data, demo, doctor, export, finetune, report, run

app = typer.Typer(help="Fine-tune, export to a GGUF quant ladder, and benchmark local models with sound statistics.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
for group in (run, report, export, doctor, finetune, demo):
    app.add_typer(group.app)
app.add_typer(data.app, name="data", rich_help_panel="Fine-tune")

# OS errors a user causes (a full disk, a file where a folder belongs, no permission): one message
_USER_ERRNOS = {"ENOSPC": "free some space on that disk", "EDQUOT": "free some space within your quota",
                "EEXIST": "a file stands where a folder is needed: move it, or name another folder",
                "ENOTDIR": "a file stands where a folder is needed: move it, or name another folder",
                "EISDIR": "a folder stands where a file is needed: name a file",
                "EACCES": "fix the permissions: this user must read the inputs and write where the outputs go",
                "EPERM": "fix the permissions: this user must read the inputs and write where the outputs go",
                "EROFS": "that disk is read-only: choose another place"}


def _print_error(message: str, hint: str | None, label: tuple[str, str] = ("error:", "bold red")) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True, highlight=False, markup=False, emoji=False)
    # the message may quote URLs, server replies or model output: never read as markup
    console.print(Text.assemble(label, " ", message), soft_wrap=True)
    if hint:
        console.print(Text.assemble("  ", ("hint:", "bold"), " ", hint), soft_wrap=True)


def main() -> None:
    import errno

    try:
        app()
    except ShootoutError as exc:
        from benchmark.run.launch import Stopped

        if isinstance(exc, Stopped):  # Ctrl-C: a notice ("stopped ..." with how to resume), not an error
            _print_error(exc.message.removeprefix("stopped "), exc.hint, ("stopped", "yellow"))
        else:
            _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "")
        if name not in _USER_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _print_error(f"{where}{exc.strerror or exc}", _USER_ERRNOS[name])
        sys.exit(2)


if __name__ == "__main__":
    main()
