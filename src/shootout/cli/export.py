"""Commands that make and register models: export, modelfile, register."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from shootout.cli.common import CONFIG_OPT, OLLAMA_HOSTS_OPT, commands, console, names

app = typer.Typer()
command = commands(app, "Models")


@command("export")
def export_cmd(src: Path = typer.Argument(..., help="a Hugging Face model folder or a GGUF file"),
               name: Optional[str] = typer.Option(None, "--name", help="file prefix (default: from the source)"),
               out: Optional[Path] = typer.Option(None, "--out", help="output folder (default: exports/<name>)"),
               quants: str = typer.Option(",".join(("Q8_0", "Q5_K_M", "Q4_K_M")), "--quants",
                                          help="comma-separated llama.cpp types below F16, of: {quant_types}"),
               imatrix: Optional[Path] = typer.Option(None, "--imatrix", help="importance-matrix file"),
               chat_format: Optional[str] = typer.Option(None, "--chat-format",
                                                         help="a chat family: {chat_families} (default: from the GGUF)"),
               system: Optional[str] = typer.Option(None, "--system", help="SYSTEM prompt for the Modelfiles"),
               num_ctx: int = typer.Option(4096, "--num-ctx"),
               verify: bool = typer.Option(True, "--verify/--no-verify", help="parity, KLD and smoke checks"),
               kld_prompts: int = typer.Option(6, "--kld-prompts", min=0, help="task prompts for the KLD check"),
               parity_prompts: int = typer.Option(3, "--parity-prompts", min=1,
                                                  help="task prompts for the parity check of a Hugging Face "
                                                       "source (every position of each is compared)"),
               parity_max_diff: float = typer.Option(0.01, "--parity-max-diff",
                                                     help="parity: largest logit difference allowed, as a share "
                                                          "of the largest logit"),
               parity_min_top1: float = typer.Option(0.99, "--parity-min-top1",
                                                     help="parity: smallest share of positions with the same top "
                                                          "token"),
               ollama_create: bool = typer.Option(False, "--ollama-create", help="create every level in Ollama"),
               ollama_host: Optional[List[str]] = OLLAMA_HOSTS_OPT,
               register_: bool = typer.Option(False, "--register", help="add the ladder to config.yaml"),
               config: Path = CONFIG_OPT,
               prompt_style: str = typer.Option("few_shot", "--prompt-style", help="for --register")):
    """Export a model to an F16 GGUF and a verified quant ladder with Modelfiles and a manifest."""
    from export.pipeline import ExportOptions

    from shootout import exporting

    opts = ExportOptions(name=name, out=out, quants=names(quants), imatrix=imatrix, chat_format=chat_format,
                         system=system, num_ctx=num_ctx, verify=verify, kld_prompts=kld_prompts,
                         parity_prompts=parity_prompts, max_rel_logit_diff=parity_max_diff, min_top1=parity_min_top1)
    exporting.export(src, opts, config=config, register=register_, prompt_style=prompt_style,
                     ollama_create=ollama_create, ollama_hosts=ollama_host, console=console(), echo=typer.echo)


@command("modelfile")
def modelfile_cmd(ggufs: List[Path] = typer.Argument(..., help="GGUF files (a Modelfile is written beside each)"),
                  chat_format: Optional[str] = typer.Option(None, "--chat-format",
                                                            help="a chat family: {chat_families} (default: from the "
                                                                 "GGUF)"),
                  system: Optional[str] = typer.Option(None, "--system", help="SYSTEM prompt (zero-shot fine-tunes)"),
                  temperature: float = typer.Option(0.0, "--temperature"),
                  num_ctx: int = typer.Option(4096, "--num-ctx"),
                  ollama_create: bool = typer.Option(False, "--ollama-create",
                                                     help="also create each model in Ollama (OLLAMA_HOST)"),
                  ollama_host: Optional[List[str]] = OLLAMA_HOSTS_OPT,
                  ollama_name: Optional[str] = typer.Option(None, "--ollama-name",
                                                            help="model name before ':<quant>' (default: from the file)"),
                  config: Path = typer.Option(Path("config.yaml"), "--config", "-c",
                                              help="a model registered here with options.chat_template set to a "
                                                   "family name takes that family")):
    """Write an Ollama Modelfile for each GGUF (TEMPLATE, stop tokens, parameters), optionally create them."""
    from shootout import exporting

    exporting.modelfiles(ggufs, chat_format=chat_format, system=system, temperature=temperature, num_ctx=num_ctx,
                         config=config, ollama_create=ollama_create, ollama_hosts=ollama_host,
                         ollama_prefix=ollama_name, console=console(), echo=typer.echo)


@command()
def register(target: str = typer.Argument(..., help="a GGUF file, a folder of GGUFs (a quant ladder), an Ollama "
                                                    "tag, or a served model name"),
             config: Path = CONFIG_OPT,
             backend: str = typer.Option("llamacpp", help="{backends}"),
             name: Optional[str] = typer.Option(None, help="model name (default: <family>-<quant>)"),
             family: Optional[str] = typer.Option(None, help="model family (default: from the file name)"),
             quant: Optional[str] = typer.Option(None, help="quant level (default: from the file name)"),
             prompt_style: str = typer.Option("few_shot", help="few_shot | zero_shot"),
             chat_template: Optional[str] = typer.Option(None, help="for GGUFs without a chat template: a chat family "
                                                                    "({chat_families}) or a Jinja template"),
             system_prompt: Optional[str] = typer.Option(None, help="zero_shot: the fine-tune's system prompt"),
             base_url: Optional[str] = typer.Option(None, help="openai: the server's base URL"),
             dry_run: bool = typer.Option(False, "--dry-run", help="print the change, write nothing")):
    """Add a model, or a whole quant ladder found in a folder, to config.yaml (comments kept)."""
    from benchmark.run.entries import register_target

    diff, entries = register_target(config, target, backend=backend, dry_run=dry_run, name=name, family=family,
                                    quant=quant, prompt_style=prompt_style, chat_template=chat_template,
                                    system_prompt=system_prompt, base_url=base_url)
    typer.echo(diff, nl=False)
    typer.echo(f"{'would add' if dry_run else 'added'} {len(entries)} model(s): {', '.join(e['name'] for e in entries)}")
