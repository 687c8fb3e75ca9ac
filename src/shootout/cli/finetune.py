"""Fine-tuning commands: finetune, learning-curve."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from shootout.cli.common import CONFIG_OPT, commands, console, names

app = typer.Typer()
command = commands(app, "Fine-tune")
CHAT_FORMAT_HELP = "the chat family when the base has no chat template: {chat_families}"


@command("finetune")
def finetune_cmd(base: str = typer.Argument(..., help="base model: a Hugging Face folder or a GGUF"),
                 dataset: Path = typer.Argument(..., help="ShareGPT JSONL (`shootout data export`)"),
                 out: Path = typer.Option(Path("finetuned"), "--out"),
                 lora_r: int = typer.Option(16, "--lora-r"), lora_alpha: int = typer.Option(32, "--lora-alpha"),
                 lora_dropout: float = typer.Option(0.05, "--lora-dropout"),
                 target_modules: str = typer.Option(",".join(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                              "up_proj", "down_proj")), "--target-modules"),
                 epochs: float = typer.Option(1.0, "--epochs"),
                 max_steps: int = typer.Option(-1, "--max-steps", help="overrides --epochs when > 0"),
                 learning_rate: float = typer.Option(2e-4, "--lr"),
                 batch_size: int = typer.Option(4, "--batch-size"), grad_accum: int = typer.Option(1, "--grad-accum"),
                 max_seq_len: int = typer.Option(1024, "--max-seq-len"),
                 eval_fraction: float = typer.Option(0.1, "--eval-fraction"),
                 eval_steps: int = typer.Option(10, "--eval-steps"),
                 seed: int = typer.Option(42, "--seed"),
                 engine: str = typer.Option("auto", "--engine", help="auto | unsloth | transformers"),
                 load_in_4bit: bool = typer.Option(False, "--load-in-4bit", help="Unsloth: QLoRA"),
                 chat_format: Optional[str] = typer.Option(None, "--chat-format", help=CHAT_FORMAT_HELP),
                 export: bool = typer.Option(False, "--export", help="export the merged model to a GGUF ladder"),
                 quants: str = typer.Option("Q8_0,Q5_K_M,Q4_K_M", "--quants",
                                            help="with --export: comma-separated llama.cpp types, of: {quant_types}"),
                 name: Optional[str] = typer.Option(None, "--name", help="with --export: file prefix")):
    """LoRA fine-tune (Unsloth on CUDA, transformers + PEFT + TRL elsewhere) and save a merged model."""
    from finetune.train import FinetuneOptions

    from shootout import training

    opts = FinetuneOptions(base=base, dataset=str(dataset), out=str(out), lora_r=lora_r, lora_alpha=lora_alpha,
                           lora_dropout=lora_dropout, target_modules=names(target_modules),
                           epochs=epochs, max_steps=max_steps, learning_rate=learning_rate, batch_size=batch_size,
                           grad_accum=grad_accum, max_seq_len=max_seq_len, eval_fraction=eval_fraction,
                           eval_steps=eval_steps, seed=seed, engine=engine, load_in_4bit=load_in_4bit,
                           chat_format=chat_format)
    training.finetune_and_export(opts, console(), export=export, name=name, quants=names(quants))


@command("learning-curve")
def learning_curve_cmd(base: str = typer.Argument(..., help="base model: a Hugging Face folder or a GGUF"),
                       config: Path = CONFIG_OPT,
                       out: Path = typer.Option(Path("learning-curve"), "--out"),
                       every: int = typer.Option(10, "--every", min=1, help="a checkpoint every N steps or epochs"),
                       total: int = typer.Option(50, "--total", min=1, help="train for this many steps or epochs"),
                       unit: str = typer.Option("steps", "--unit", help="steps | epochs"),
                       quant: str = typer.Option("Q8_0", "--quant", help="the GGUF each checkpoint is benchmarked "
                                                                         "as, one of: {quant_types}"),
                       lr: float = typer.Option(2e-4, "--lr"), batch_size: int = typer.Option(4, "--batch-size"),
                       lora_r: int = typer.Option(16, "--lora-r"), seed: int = typer.Option(42, "--seed"),
                       chat_format: Optional[str] = typer.Option(None, "--chat-format", help=CHAT_FORMAT_HELP),
                       iterations: int = typer.Option(1, "--iterations", min=1),
                       splits: str = typer.Option("train,validation", "--splits",
                                                  help="the splits every checkpoint is asked about"),
                       progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Fine-tune with a checkpoint every N steps/epochs, benchmark each on train and validation, plot the curve."""
    from shootout import training

    training.learning_curve(config, base, out, every=every, unit=unit, total=total, quant=quant.upper(), lr=lr,
                            batch_size=batch_size, lora_r=lora_r, seed=seed, chat_format=chat_format,
                            iterations=iterations, splits=names(splits), progress=progress, console=console())
