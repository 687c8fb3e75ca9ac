"""Training sets from the command line (`shootout data ...`): the task the records answer (a
config's, or financial sentiment), a classification task's labelled data as records, labels from a
larger model, and joining and exporting records (``finetune.data``)."""

from __future__ import annotations

from pathlib import Path

from core.errors import ShootoutError


def task_of(config: Path | None):
    """(task, config) of a config file, or (financial sentiment, None) when none is given."""
    if config is None:
        from benchmark.tasks.sentiment import SENTIMENT

        return SENTIMENT, None
    from benchmark.config import load_config
    from benchmark.tasks import task_for

    cfg = load_config(config, check_files=False)
    return task_for(cfg), cfg


def build(config: Path, out: Path):
    """`data build`: a classification task's labelled data (merge map applied, split with its recorded
    seed) as records, one file per split; yields (file, records, count per label) as each is written."""
    from benchmark import data as bdata
    from finetune import data

    task, _ = task_of(config)
    if not hasattr(task, "all_items"):
        raise ShootoutError(f"task '{task.name}' has no labelled data block",
                            "`data build` is for classification tasks; for sentiment use tweets, phrasebank or label")
    for split, recs in data.from_task_data(task).items():
        path = out / f"{task.name}.{split}.jsonl"
        n = data.write_records(recs, path)
        yield path, n, bdata.summarize([r.item().model_copy(update={"label": r.answer["label"]}) for r in recs])["labels"]


def label(config: Path, model: str, out: Path, *, retries: int, progress: bool, console) -> dict:
    """`data label`: the config's items labelled by one of its models (any backend), for its task;
    resumable. Returns the counts (labelled, already, rejected, calls)."""
    from rich.progress import Progress

    from benchmark.backends import make_backend
    from finetune import data

    task, cfg = task_of(config)
    entry = next((m for m in cfg.models if m.name == model), None)
    if entry is None:
        raise ShootoutError(f"no model '{model}' in {config}", f"models there: {', '.join(m.name for m in cfg.models)}")
    items = task.load_items(cfg)
    backend = make_backend(entry, cfg)
    backend.load()
    try:
        with Progress(console=console, disable=not progress) as prog:
            bar = prog.add_task(f"labelling with {model}", total=None)
            return data.label_items(task, items, backend, out, retries=retries, seed=cfg.run.seed,
                                    progress=lambda k, n: prog.update(bar, completed=k, total=n))
    finally:
        backend.close()


def join(inputs: list[Path], out: Path, config: Path | None) -> dict:
    """`data join`: records of several files sanitized, validated against the task's reply and de-duplicated."""
    from finetune import data

    task, _ = task_of(config)
    return data.join(inputs, out, task)


def export(records: Path, out: Path, fmt: str, system: str | None, config: Path | None) -> int:
    """`data export`: records as ShareGPT or Alpaca conversations (the task's zero-shot prompt -> its reply)."""
    from finetune import data

    task, _ = task_of(config)
    return data.export(records, out, fmt, task, system)
