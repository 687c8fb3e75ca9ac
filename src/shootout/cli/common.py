"""What the command groups share: the console, the common options, small parsers of option values,
and help texts completed from the tables they describe.

A help text names a table with a placeholder (``{chat_families}``, ``{backends}``, ``{quant_types}``,
``{demo_tasks}``); ``TableHelp`` fills it in from the table (``formats.chat.FAMILIES``,
``benchmark.backends.BACKENDS``, the quantizer's file types, the examples) when that command's help
is shown, so `shootout --help` loads none of them."""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperCommand

from core.errors import ShootoutError

CONFIG_OPT = typer.Option(Path("config.yaml"), "--config", "-c", help="the registry of models and settings")
REPORT_CONFIG_OPT = typer.Option(None, "--config", "-c", help="the config whose results database and output folders "
                                                              "to use (default: config.yaml)")
TASK_CONFIG_OPT = typer.Option(None, "--config", "-c", help="the config whose task the records answer "
                                                            "(default: financial sentiment)")
COMPARE_OPT = typer.Option(None, "--compare", help="a pair REFERENCE,CANDIDATE to compare (repeatable; default: "
                                                   "the pairs the run was started with)")
OLLAMA_HOSTS_OPT = typer.Option(None, "--ollama-host", help="with --ollama-create: the Ollama host(s) (repeatable; "
                                                           "default: OLLAMA_HOST)")


def console():
    """stderr console; when stderr is not a terminal, wide enough that tables do not wrap. Strings
    are printed as they are (no markup: they quote URLs, server errors and model output); style
    goes in rich Text (core.console.styled)."""
    from core.console import make_console

    return make_console(width=None if sys.stderr.isatty() else 160)


def pairs(compare: Optional[List[str]]):
    """--compare REFERENCE,CANDIDATE (repeatable) as pairs; None when not given."""
    if not compare:
        return None
    out = []
    for c in compare:
        parts = [p.strip() for p in c.split(",")]
        if len(parts) != 2 or not all(parts):
            raise ShootoutError(f"--compare '{c}' is not a pair", "write it as REFERENCE,CANDIDATE")
        out.append(tuple(parts))
    return out


def names(text: str) -> tuple[str, ...]:
    """A comma-separated option value (--quants Q8_0,Q4_K_M) as its non-empty names."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


# ----------------------------------------------------------------------------- help from the tables


def _chat_families() -> str:
    from formats.chat import FAMILIES

    return ", ".join(FAMILIES)


def _backends() -> str:
    from benchmark.backends import BACKENDS

    return "; ".join(f"{name}: {spec.description}" for name, spec in BACKENDS.items())


def _quant_types() -> str:
    from export.quantize import quant_types

    return ", ".join(quant_types())


def _demo_tasks() -> str:
    from shootout.demo import examples

    return ", ".join(examples())


HELP_TABLES = {"chat_families": _chat_families, "backends": _backends, "quant_types": _quant_types,
               "demo_tasks": _demo_tasks}
_PLACEHOLDER = re.compile(r"\{(" + "|".join(HELP_TABLES) + r")\}")


@functools.lru_cache(maxsize=None)
def table_text(name: str) -> str:
    return HELP_TABLES[name]()


def fill_help(text: str | None) -> str | None:
    """``text`` with each table placeholder replaced by the table's entries."""
    return _PLACEHOLDER.sub(lambda m: table_text(m.group(1)), text) if text else text


class TableHelp(TyperCommand):
    """A command whose option help texts are completed from their tables when its help is shown."""

    def format_help(self, ctx, formatter):
        for param in self.params:
            param.help = fill_help(getattr(param, "help", None))
        self.help = fill_help(self.help)
        return super().format_help(ctx, formatter)


def commands(app: typer.Typer, panel: str):
    """``app.command`` for one group: its commands under ``panel`` in `shootout --help`, with table help."""
    return functools.partial(app.command, cls=TableHelp, rich_help_panel=panel)
