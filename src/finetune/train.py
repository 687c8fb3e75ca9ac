"""`shootout finetune`: LoRA SFT of a base model on a ShareGPT set, then a merged 16-bit folder.

Unsloth's FastLanguageModel where CUDA is present (and Unsloth is installed); transformers + PEFT
+ TRL's SFTTrainer everywhere else (CPU, Apple MPS). Both paths get the same pre-tokenized data:

- each example is the chat template applied to its conversation; the loss is on the answer only;
- every example ends with EOS (appended after the end-of-turn marker when the template does not
  put it there), and the pad token is not EOS: a model that never sees EOS, or learns to ignore it
  because padding is EOS, never stops;
- examples longer than the maximum length are dropped (cutting them would cut off their EOS).

Seeds for Python, NumPy and torch are set and recorded. Outputs in ``<out>/``: ``adapter/``,
``merged/`` (16-bit, with the tokenizer and its chat template) and ``training_report.json``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from core.errors import ShootoutError
from finetune.examples import (check_examples, ensure_chat_template, ensure_pad, split,
                               tokenize_conversations)

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class FinetuneOptions:
    base: str
    dataset: str
    out: str = "finetuned"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_len: int = 1024
    eval_fraction: float = 0.1
    eval_steps: int = 10
    seed: int = 42
    engine: str = "auto"          # auto | unsloth | transformers
    load_in_4bit: bool = False
    chat_format: str | None = None  # when the base has no chat template
    warmup_ratio: float = 0.05
    save_every: int = 0            # learning curves: keep the adapter every N steps (and at the end)
    extra: dict = field(default_factory=dict)


def set_seeds(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_engine(requested: str) -> str:
    import importlib.util

    import torch

    if requested not in ("auto", "unsloth", "transformers"):
        raise ShootoutError(f"unknown engine '{requested}'", "use auto, unsloth or transformers")
    cuda = torch.cuda.is_available()
    if requested == "unsloth" and not cuda:
        raise ShootoutError("Unsloth needs a CUDA GPU and none is visible", "use --engine transformers")
    if requested == "unsloth" and importlib.util.find_spec("unsloth") is None:
        raise ShootoutError("Unsloth is not installed", "pip install 'gguf-shootout[unsloth]' on the CUDA machine")
    if requested == "auto":
        return "unsloth" if cuda and importlib.util.find_spec("unsloth") is not None else "transformers"
    return requested


# ------------------------------------------------------------------ loading

def load_base(base: str, opts: FinetuneOptions, engine: str):
    """(model, tokenizer, architecture, how it was loaded). A GGUF goes through transformers' GGUF
    loading (to an HF folder first for Unsloth)."""
    import torch

    p = Path(base).expanduser()
    arch = None
    if p.is_file() and p.suffix == ".gguf":
        from formats import gguf_meta

        arch = gguf_meta.read(p).architecture
        if engine == "unsloth":
            from finetune.gguf_to_hf import gguf_to_hf_folder

            p = gguf_to_hf_folder(p, Path(opts.out) / "base-hf")
        else:
            from finetune.gguf_to_hf import load_gguf

            model, tok = load_gguf(p, dtype=torch.float32)
            return model, tok, arch, "GGUF via transformers"
    if not p.is_dir() or not (p / "config.json").is_file():
        raise ShootoutError(f"base model not found: {base}", "pass a Hugging Face model folder or a .gguf file")
    if engine == "unsloth":
        from unsloth import FastLanguageModel

        model, tok = FastLanguageModel.from_pretrained(model_name=str(p), max_seq_length=opts.max_seq_len,
                                                       load_in_4bit=opts.load_in_4bit, dtype=None)
        return model, tok, getattr(model.config, "model_type", None), "Unsloth FastLanguageModel"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(p)
    if opts.load_in_4bit:  # QLoRA as Unsloth does it: NF4 weights, double quantization, bf16 compute
        if not torch.cuda.is_available():
            raise ShootoutError("--load-in-4bit needs a CUDA GPU (bitsandbytes)", "leave it out on this machine")
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(p, quantization_config=q, dtype=torch.bfloat16,
                                                     device_map={"": 0})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        return model, tok, getattr(model.config, "model_type", None), "transformers + bitsandbytes 4-bit (QLoRA)"
    model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)
    return model, tok, getattr(model.config, "model_type", None), "transformers"


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for d in ("gguf-shootout", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "unsloth"):
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            pass
    return out


# ------------------------------------------------------------------ training

def finetune(opts: FinetuneOptions, console=None) -> dict:
    from rich.console import Console

    from finetune.data import load_conversations

    console = console or Console(stderr=True)
    t_start = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # bases are local folders or GGUFs: no hub lookups
    engine = pick_engine(opts.engine)
    set_seeds(opts.seed)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    conversations = load_conversations(opts.dataset)
    with console.status(f"loading {opts.base} ({engine})"):
        model, tok, arch, how = load_base(opts.base, opts, engine)
    template = ensure_chat_template(tok, arch, opts.chat_format)
    pad = ensure_pad(tok, model)
    examples, counts = tokenize_conversations(tok, conversations, opts.max_seq_len)
    if not examples:
        raise ShootoutError(f"every example is longer than --max-seq-len {opts.max_seq_len}", "raise --max-seq-len")
    checks = check_examples(examples, tok)
    train_ex, eval_ex = split(examples, opts.eval_fraction, opts.seed)
    console.print(f"{len(train_ex)} training and {len(eval_ex)} eval examples ({counts['dropped_too_long']} too long, "
                  f"dropped); EOS {tok.eos_token!r} ends every example; pad {tok.pad_token!r} ({pad}); "
                  f"chat template: {template}; engine: {engine}")

    log: list[dict] = []
    trainer, model = _trainer(model, tok, train_ex, eval_ex, opts, engine, out, log, console)
    initial_eval = trainer.evaluate().get("eval_loss") if eval_ex else None
    if initial_eval is not None:
        console.print(f"eval loss before training: {initial_eval:.4f}")
    t0 = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - t0
    final_eval = trainer.evaluate() if eval_ex else {}

    adapter_dir, merged_dir = out / "adapter", out / "merged"
    trainer.model.save_pretrained(adapter_dir)
    tok.save_pretrained(adapter_dir)
    checkpoints = []
    if opts.save_every:
        with console.status("merging each checkpoint into a 16-bit model"):
            checkpoints = _merge_checkpoints(trainer.model, tok, out, engine)
    with console.status("merging the adapter into a 16-bit model"):
        _merge_and_save(trainer.model, tok, merged_dir, engine)
    steps = [e for e in log if "loss" in e]
    ticks = [e["t"] for e in log if "t" in e]
    step_s = [b - a for a, b in zip(ticks, ticks[1:])]
    evals = [e for e in log if "eval_loss" in e]
    report = {
        "base": str(opts.base), "loaded_with": how, "engine": engine, "dataset": str(opts.dataset),
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
        "seeds": {"python": opts.seed, "numpy": opts.seed, "torch": opts.seed},
        "chat_template": template, "pad": pad, "data": {**counts, "train": len(train_ex), "eval": len(eval_ex)},
        "checks": checks, "train_loss_per_step": [{"step": e["step"], "loss": e["loss"]} for e in steps],
        "eval_loss": [{"step": e["step"], "eval_loss": e["eval_loss"]} for e in evals],
        "initial_eval_loss": initial_eval, "final_eval_loss": final_eval.get("eval_loss"), "global_steps": result.global_step,
        "train_seconds": round(train_s, 1), "seconds_per_step": round(train_s / max(1, result.global_step), 3),
        "median_step_seconds_after_5": round(statistics.median(step_s[5:]), 4) if len(step_s) > 5 else None,
        "total_seconds": round(time.perf_counter() - t_start, 1), "versions": _versions(),
        "outputs": {"adapter": str(adapter_dir), "merged": str(merged_dir)},
        "checkpoints": checkpoints,
    }
    (out / "training_report.json").write_text(json.dumps(report, indent=2))
    return report


def _trainer(model, tok, train_ex, eval_ex, opts: FinetuneOptions, engine: str, out: Path, log: list, console):
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    if engine == "unsloth":
        from unsloth import FastLanguageModel

        model = FastLanguageModel.get_peft_model(
            model, r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
            target_modules=list(opts.target_modules), bias="none", use_gradient_checkpointing="unsloth",
            random_state=opts.seed)
        peft_config = None
    else:
        from peft import LoraConfig

        present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        targets = [t for t in opts.target_modules if t in present]
        if not targets:
            raise ShootoutError(f"none of the LoRA target modules {list(opts.target_modules)} is in this model",
                                f"pass --target-modules with names from: {', '.join(sorted(present)[:20])}")
        peft_config = LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                                 target_modules=targets, bias="none", task_type="CAUSAL_LM")

    class Log(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            log.append({"step": state.global_step, "t": time.perf_counter()})
            if opts.save_every and (state.global_step % opts.save_every == 0 or state.global_step == state.max_steps):
                _keep_adapter(kw["model"], out, state.global_step, state.epoch)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                entry = {"step": state.global_step, **logs}
                log.append(entry)
                if "loss" in logs:
                    console.print(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}"
                                  + (f"  lr {logs['learning_rate']:.2e}" if "learning_rate" in logs else ""))
                if "eval_loss" in logs:
                    from core.console import styled

                    console.print(styled(f"step {state.global_step}  ", (f"eval loss {logs['eval_loss']:.4f}", "bold")))

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    import math

    total = opts.max_steps if opts.max_steps > 0 else \
        math.ceil(len(train_ex) / (opts.batch_size * opts.grad_accum)) * opts.epochs
    warmup = int(round(opts.warmup_ratio * total))
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), num_train_epochs=opts.epochs, max_steps=opts.max_steps,
        learning_rate=opts.learning_rate, per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size, gradient_accumulation_steps=opts.grad_accum,
        warmup_steps=warmup, lr_scheduler_type="linear", logging_steps=1,
        eval_strategy="steps" if eval_ex else "no", eval_steps=opts.eval_steps, save_strategy="no",
        report_to=[], seed=opts.seed, data_seed=opts.seed, max_length=opts.max_seq_len, bf16=bf16,
        fp16=cuda and not bf16, use_cpu=not cuda and not torch.backends.mps.is_available(),
        dataloader_num_workers=0, disable_tqdm=False, dataset_num_proc=None, packing=False,
        gradient_checkpointing=False, remove_unused_columns=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_ex),
                         eval_dataset=Dataset.from_list(eval_ex) if eval_ex else None, processing_class=tok,
                         peft_config=peft_config, callbacks=[Log()])
    return trainer, model


def _keep_adapter(model, out: Path, step: int, epoch: float | None) -> None:
    """The LoRA weights at this step (small), merged into full models after training."""
    from peft import get_peft_model_state_dict

    import torch

    d = out / "checkpoints" / f"step-{step}"
    d.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}, d / "adapter.pt")
    (d / "state.json").write_text(json.dumps({"step": step, "epoch": epoch}))


def _merge_checkpoints(model, tok, out: Path, engine: str) -> list[dict]:
    """Each kept adapter merged into a copy of the base: ``checkpoints/step-N/merged``."""
    import copy

    import torch
    from peft import set_peft_model_state_dict

    final = {k: v.detach().cpu().clone() for k, v in __import__("peft").get_peft_model_state_dict(model).items()}
    done = []
    for d in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1])):
        if not (d / "adapter.pt").is_file():
            continue
        set_peft_model_state_dict(model, torch.load(d / "adapter.pt"))
        _merge_and_save(copy.deepcopy(model), tok, d / "merged", engine)
        state = json.loads((d / "state.json").read_text())
        done.append({**state, "merged": str(d / "merged")})
    set_peft_model_state_dict(model, final)  # the trained weights again, for the final merge
    return done


def _merge_and_save(model, tok, merged_dir: Path, engine: str) -> None:
    import torch

    merged_dir.mkdir(parents=True, exist_ok=True)
    if engine == "unsloth":
        model.save_pretrained_merged(str(merged_dir), tok, save_method="merged_16bit")
        return
    merged = model.merge_and_unload()
    dtype = torch.bfloat16 if getattr(merged.config, "model_type", "").startswith("gemma") else torch.float16
    merged = merged.to(dtype)
    merged.save_pretrained(merged_dir, safe_serialization=True)
    tok.save_pretrained(merged_dir)
