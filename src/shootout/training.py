"""Fine-tuning from the command line: `shootout finetune` (a LoRA fine-tune, then optionally its
export to a GGUF ladder) and `shootout learning-curve`.

`learning-curve`: fine-tune on a classification task's training split, keep a
checkpoint every N steps (or epochs), export each to a GGUF, benchmark every checkpoint on the
training and validation splits, and report the metric per checkpoint for both: the curve that
shows when a fine-tune starts to overfit.

Everything lands in one folder: ``data/`` (the training conversations), ``train/`` (the
fine-tune and its checkpoints), ``gguf/<checkpoint>/`` (exports), ``config.yaml`` (one model per
checkpoint, ``checkpoint:`` set), ``results.sqlite``, ``reports/`` and ``heatmaps/``.
"""

from __future__ import annotations

import math
from pathlib import Path

from core.errors import ShootoutError


def _data_paths_absolute(task_block: dict, base: Path) -> dict:
    data = dict(task_block["data"])
    if data.get("path"):
        data["path"] = str((base / data["path"]).resolve())
    if data.get("files"):
        data["files"] = {k: str((base / v).resolve()) for k, v in data["files"].items()}
    return {**task_block, "data": data}


def prepare_learning_curve(config: Path, base: str, out: Path, *, every: int, unit: str, total: int, quant: str,
                           lr: float, batch_size: int, lora_r: int, seed: int, chat_format: str | None,
                           iterations: int, splits: tuple[str, ...], console) -> Path:
    """Train, export every checkpoint, write the config that benchmarks them; returns its path."""
    import io
    import json

    from ruamel.yaml import YAML

    from benchmark.config import load_config
    from benchmark.run.entries import model_entry
    from benchmark.tasks import task_for
    from export.pipeline import ExportOptions, run_export
    from finetune import data
    from finetune.train import FinetuneOptions, finetune

    cfg = load_config(config, check_files=False)
    task = task_for(cfg)
    if not hasattr(task, "all_items"):
        raise ShootoutError(f"task '{task.name}' is not a classification task", "learning curves need a task block "
                                                                               "with labelled data and splits")
    records = data.from_task_data(task)
    if "train" not in records or not any(s in records for s in splits if s != "train"):
        raise ShootoutError(f"task '{task.name}' needs a 'train' split and one of {[s for s in splits if s != 'train']}",
                            f"its splits: {sorted(records)}; set task.data.splits or task.data.files")
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "data" / "train.jsonl"
    data.write_records(records["train"], raw)
    convs = out / "data" / "train.sharegpt.jsonl"
    data.export(raw, convs, "sharegpt", task)
    steps_per_epoch = math.ceil(len(records["train"]) / batch_size)
    save_every = every * steps_per_epoch if unit == "epochs" else every
    max_steps = total * steps_per_epoch if unit == "epochs" else total
    console.print(f"{len(records['train'])} training records; a checkpoint every {save_every} steps up to "
                  f"{max_steps} ({steps_per_epoch} steps per epoch)")
    rep = finetune(FinetuneOptions(base=base, dataset=str(convs), out=str(out / "train"), max_steps=max_steps,
                                   save_every=save_every, learning_rate=lr, batch_size=batch_size, lora_r=lora_r,
                                   lora_alpha=2 * lora_r, eval_fraction=0.0, seed=seed, chat_format=chat_format),
                   console=console)
    models = []
    for ck in rep["checkpoints"]:
        point = round(ck["step"] / steps_per_epoch, 3) if unit == "epochs" else ck["step"]
        name = f"ckpt-{ck['step']}"
        res = run_export(Path(ck["merged"]), ExportOptions(name=name, out=out / "gguf" / name,
                                                           quants=(quant,) if quant != "F16" else (), verify=False),
                         console=console)
        gguf = res.out / f"{name}.{quant}.gguf"
        models.append(model_entry(name, "llamacpp", path=str(gguf.relative_to(out)), family="fine-tune", quant=quant,
                                  prompt_style="zero_shot", checkpoint=point, chat_template=res.engine_template))
    y = YAML(typ="safe")
    source = y.load(config.read_text(encoding="utf-8"))
    block = _data_paths_absolute(source["task"], config.parent)
    block["data"]["evaluate"] = list(splits)
    block.pop("variants", None)
    new = {"task": block,
           "run": {**(source.get("run") or {}), "iterations": iterations, "temperature": 0.0,
                   "database": "results.sqlite"},
           "models": models, "output": {"reports_dir": "reports", "heatmaps_dir": "heatmaps"}}
    rt = YAML(typ="rt")
    rt.width = 4096
    buf = io.StringIO()
    buf.write(f"# Written by `shootout learning-curve`: {len(models)} checkpoints of a fine-tune of {base} on the "
              f"'{task.name}' training split, asked about the splits {', '.join(splits)}.\n")
    rt.dump(json.loads(json.dumps(new)), buf)
    path = out / "config.yaml"
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def learning_curve(config: Path, base: str, out: Path, *, progress: bool, console, **how) -> tuple[Path, str]:
    """`shootout learning-curve`: the checkpoints trained and exported (``prepare_learning_curve``,
    ``how``: its options), then run and reported; returns (their config, the run id)."""
    from shootout.running import run_and_report

    if how.get("unit") not in ("steps", "epochs"):
        raise ShootoutError(f"--unit '{how.get('unit')}'", "use steps or epochs")
    path = prepare_learning_curve(config, base, out, console=console, **how)
    console.print(f"learning-curve config: {path}")
    return path, run_and_report(path, progress, console)


def finetune_and_export(opts, console, *, export: bool = False, name: str | None = None, quants: tuple[str, ...] = ()) -> dict:
    """`shootout finetune`: the LoRA fine-tune of ``opts`` (``finetune.train.FinetuneOptions``), its
    losses printed; with ``export``, the merged model exported to a GGUF ladder of ``quants``
    (files named ``name``, default the output folder's name). Returns the training report."""
    from finetune.train import finetune as train

    rep = train(opts, console=console)
    first = rep["train_loss_per_step"][0]["loss"] if rep["train_loss_per_step"] else float("nan")
    last = rep["train_loss_per_step"][-1]["loss"] if rep["train_loss_per_step"] else float("nan")
    evals = rep["eval_loss"]
    out = Path(opts.out)
    console.print(f"{rep['global_steps']} steps in {rep['train_seconds']} s ({rep['seconds_per_step']} s/step, "
                  f"{rep['engine']}); train loss {first:.4f} -> {last:.4f}"
                  + (f"; eval loss {evals[0]['eval_loss']:.4f} -> {rep['final_eval_loss']:.4f}" if evals else ""))
    console.print(f"merged model: {rep['outputs']['merged']}; report: {out / 'training_report.json'}")
    if export:
        from export.pipeline import ExportOptions, print_summary, run_export

        res = run_export(Path(rep["outputs"]["merged"]), ExportOptions(name=name or out.name, out=out / "gguf",
                                                                      quants=quants), console=console)
        print_summary(console, res)
    return rep
