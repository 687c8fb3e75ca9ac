"""`shootout data ...`: build a training set from public sets, labels from a larger model, join, export."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from core.errors import ShootoutError
from shootout.cli.common import CONFIG_OPT, TASK_CONFIG_OPT, commands, console

app = typer.Typer(help="Build a training set: public sets, labels from a larger model, join, export.",
                  no_args_is_help=True)
command = commands(app, "Commands")


def _scores(label_scores: Optional[str]) -> dict | None:
    if not label_scores:
        return None
    try:
        out = {k.strip().lower(): float(v) for k, v in (p.split("=") for p in label_scores.split(","))}
    except ValueError:
        raise ShootoutError(f"cannot read --label-scores '{label_scores}'",
                            "write it as positive=0.6,neutral=0,negative=-0.6") from None
    return out


@command("tweets")
def data_tweets(csv_file: Path = typer.Argument(..., help="the airline tweets CSV (Tweets.csv)"),
                out: Path = typer.Option(Path("data/tweets.jsonl"), "--out"),
                label_scores: Optional[str] = typer.Option(None, "--label-scores",
                                                           help="e.g. positive=0.6,neutral=0,negative=-0.6")):
    """Airline tweets (text, label, label confidence) to records."""
    from finetune import data

    n = data.write_records(data.from_airline_csv(csv_file, _scores(label_scores)), out)
    typer.echo(f"wrote {n} records to {out}")


@command("phrasebank")
def data_phrasebank(txt_file: Path = typer.Argument(..., help="a Financial PhraseBank Sentences_*Agree.txt"),
                    out: Path = typer.Option(Path("data/phrasebank.jsonl"), "--out"),
                    agreement: Optional[float] = typer.Option(None, "--agreement",
                                                              help="annotator agreement (default: from the file name)"),
                    label_scores: Optional[str] = typer.Option(None, "--label-scores")):
    """Financial PhraseBank sentences to records (annotator agreement -> confidence)."""
    from finetune import data

    n = data.write_records(data.from_phrasebank(txt_file, agreement, _scores(label_scores)), out)
    typer.echo(f"wrote {n} records to {out}")


@command("build")
def data_build(config: Path = CONFIG_OPT,
               out: Path = typer.Option(Path("data"), "--out", help="folder for <task>.<split>.jsonl")):
    """A classification task's labelled data (merge map applied, split with its recorded seed) as records."""
    from shootout import datasets

    for path, n, counts in datasets.build(config, out):
        typer.echo(f"{path}: {n} records ({', '.join(f'{k} {v}' for k, v in counts.items())})")


@command("label")
def data_label(config: Path = CONFIG_OPT,
               model: str = typer.Option(..., "--model", "-m", help="the labelling model: a name in config.yaml"),
               out: Path = typer.Option(Path("data/labelled.jsonl"), "--out"),
               retries: int = typer.Option(2, "--retries", help="retries of an invalid reply"),
               progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Label the config's items with a larger model (any backend), for the config's task; resumable."""
    from shootout import datasets

    stats = datasets.label(config, model, out, retries=retries, progress=progress, console=console())
    typer.echo(f"{out}: {stats['labelled']} labelled now, {stats['already']} already there, "
               f"{stats['rejected']} rejected after retries ({stats['calls']} calls)")


@command("join")
def data_join(inputs: List[Path] = typer.Argument(..., help="record JSONL files"),
              out: Path = typer.Option(Path("data/train.jsonl"), "--out"),
              config: Optional[Path] = TASK_CONFIG_OPT):
    """Sanitize, validate (against the task's reply) and de-duplicate records from several files into one."""
    from shootout import datasets

    r = datasets.join(inputs, out, config)
    typer.echo(f"{out}: kept {r['kept']} of {r['read']} ({r['invalid']} invalid, {r['duplicates']} duplicates)")
    for p in r["problems"]:
        typer.echo(f"  invalid: {p}")


@command("export")
def data_export(records: Path = typer.Argument(..., help="joined records (JSONL)"),
                out: Path = typer.Option(..., "--out"),
                fmt: str = typer.Option("sharegpt", "--format", help="sharegpt | alpaca"),
                system: Optional[str] = typer.Option(None, "--system", help="system prompt (default: the task's)"),
                config: Optional[Path] = TASK_CONFIG_OPT):
    """Write records as ShareGPT or Alpaca JSONL: the task's zero-shot prompt -> its reply."""
    from shootout import datasets

    n = datasets.export(records, out, fmt, system, config)
    typer.echo(f"wrote {n} {fmt} records to {out}")
