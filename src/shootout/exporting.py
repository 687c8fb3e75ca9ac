"""Exporting from the command line: Modelfiles for GGUFs (with the chat family a config declares for
them), models created in Ollama on one or several hosts, and `shootout export` with its Ollama
models and its entries registered in config.yaml (``benchmark.run.entries``)."""

from __future__ import annotations

from pathlib import Path

from core.errors import ShootoutError


def _print(text: str, nl: bool = True) -> None:
    print(text, end="\n" if nl else "")


def declared_formats(config: Path) -> dict:
    """GGUF path -> chat family, from config entries whose options.chat_template names a family."""
    if not config.is_file():
        return {}
    from benchmark.backends import BACKENDS
    from benchmark.config import load_config
    from formats.chat import FAMILIES

    cfg = load_config(config, check_files=False)
    return {Path(cfg.resolve(m.path)).resolve(): m.options.chat_template for m in cfg.models
            if BACKENDS[m.backend].where == "path" and m.path and m.options.chat_template in FAMILIES}


def ollama_name(spec, prefix: str | None) -> str:
    """Ollama model name for a ladder rung: ``<family>:<quant>`` in lower case."""
    from core.naming import family_from_filename, quant_from_filename

    fam = prefix or family_from_filename(spec.gguf)
    quant = quant_from_filename(spec.gguf) or "latest"
    return f"{fam}:{quant}".lower()


def create_on_hosts(items, hosts: list[str] | None, console, echo=None) -> None:
    """Create the models (name, Modelfile spec, sha256) on every host; each blob is uploaded once per
    host (a host that has it is skipped); ``echo`` gets one line per host."""
    from export.ollama_create import create_all

    echo = echo or _print
    for host in hosts or [None]:
        done = create_all(items, host=host, console=console)
        echo(f"created {', '.join(n for n, _, _ in items)} in Ollama at {done['host']} "
             f"({len(done['uploaded'])} uploaded, {len(done['skipped'])} already there)")


def modelfiles(ggufs: list[Path], *, chat_format: str | None, system: str | None, temperature: float, num_ctx: int,
               config: Path, ollama_create: bool = False, ollama_hosts: list[str] | None = None,
               ollama_prefix: str | None = None, console=None, echo=None) -> list:
    """`shootout modelfile`: a Modelfile beside each GGUF (the chat family given, declared in
    ``config``, or read from the GGUF; ``echo`` gets a line per file), then the models created in
    Ollama when asked. Returns the Modelfile specs."""
    from export import modelfile
    from export.ollama_create import sha256_file

    echo = echo or _print
    declared = declared_formats(config) if chat_format is None else {}
    specs = [modelfile.write(g, chat_format=chat_format or declared.get(g.resolve()), system=system,
                             temperature=temperature, num_ctx=num_ctx)
             for g in ggufs]
    for spec in specs:
        echo(f"{spec.path}  chat format {spec.family} ({spec.family_source}); template check: {spec.template_check}")
    if ollama_create:
        create_on_hosts([(ollama_name(s, ollama_prefix), s, sha256_file(s.gguf)) for s in specs], ollama_hosts,
                        console, echo)
    return specs


def export(src: Path, opts, *, config: Path, register: bool, prompt_style: str, ollama_create: bool,
           ollama_hosts: list[str] | None, console, echo=None):
    """`shootout export`: the ladder (``export.pipeline.run_export``, its summary printed), checked with
    the config's task where there is a config, created in Ollama and registered in the config when
    asked (``echo`` gets the lines of both: hosts, the config's diff). Returns the export result."""
    from export.pipeline import print_summary, run_export

    echo = echo or _print
    if register and not config.is_file():
        raise ShootoutError(f"config not found: {config}", "pass --config PATH (or leave out --register)")
    if opts.out is not None:
        writable_folder(opts.out, "--out")
    if opts.verify and config.is_file():  # the checks ask the config's task (financial sentiment otherwise)
        from shootout.datasets import task_of

        task, cfg = task_of(config)
        opts.task, opts.items = task, task.load_items(cfg) if cfg is not None else []
    res = run_export(src, opts, console=console)
    m = res.manifest
    print_summary(console, res)
    tags = {q: f"{res.name}:{q}".lower() for q in res.specs}
    if ollama_create:
        create_on_hosts([(tags[q], spec, m["files"][q]["sha256"]) for q, spec in res.specs.items()], ollama_hosts,
                        console, echo)
    if register:
        from benchmark.run import entries as registry

        entries = registry.ladder_entries(res.name, {q: spec.gguf for q, spec in res.specs.items()},
                                          config_dir=config.parent, prompt_style=prompt_style,
                                          system_prompt=opts.system, chat_template=res.engine_template,
                                          manifest=res.manifest_path, ollama_tags=tags if ollama_create else None,
                                          ollama_hosts=ollama_hosts)
        echo(registry.register(config, entries), nl=False)
        echo(f"registered {len(entries)} model(s) in {config}: {', '.join(e['name'] for e in entries)}")
    return res


def writable_folder(path: Path, option: str) -> None:
    """A folder option names a folder, or a place where one can be made: not a file."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == path else f" ({p} is a file)"
                raise ShootoutError(f"{option} {path} is not a folder{where}",
                                    f"name a folder for {option} (it is created if missing)")
            return
