"""Model entries of config.yaml: the one builder every command that writes entries uses
(`shootout register`, `export --register`, `learning-curve`), and the round-trip edit that adds them
to a config keeping the user's comments, key order and formatting. Only new entries are added;
nothing else changes."""

from __future__ import annotations

import difflib
import io
from pathlib import Path

from benchmark.config import ConfigError, parse_config
from core.errors import ShootoutError
from core.naming import family_from_filename, quant_from_filename, relpath


def model_entry(name: str, backend: str, *, family: str | None, quant: str | None, prompt_style: str = "few_shot",
                path: str | None = None, tag: str | None = None, endpoints: list[str] | None = None,
                base_url: str | None = None, model: str | None = None, system_prompt: str | None = None,
                checkpoint: float | None = None, chat_template: str | None = None,
                manifest: str | None = None) -> dict:
    """One model entry, its keys in the order config.yaml shows them: name, backend, where the model
    is (path; tag and endpoints; base_url and model), family, quant, prompt style, then what is set
    (system prompt, checkpoint, options.chat_template, manifest)."""
    e: dict = {"name": name, "backend": backend}
    for key, value in (("path", path), ("tag", tag), ("endpoints", endpoints), ("base_url", base_url),
                       ("model", model)):
        if value is not None:
            e[key] = value
    e.update({"family": family, "quant": quant, "prompt_style": prompt_style})
    if system_prompt:
        e["system_prompt"] = system_prompt
    if checkpoint is not None:
        e["checkpoint"] = checkpoint
    if chat_template:
        e["options"] = {"chat_template": chat_template}
    if manifest:
        e["manifest"] = manifest
    return e


def entries_for(target: str, *, config_dir: Path, backend: str, name: str | None, family: str | None,
                quant: str | None, prompt_style: str, chat_template: str | None, system_prompt: str | None,
                base_url: str | None) -> list[dict]:
    """The model entries to add: one model, or every GGUF of a folder (a quant ladder)."""
    from benchmark.backends import BACKENDS

    common = {"prompt_style": prompt_style, "system_prompt": system_prompt, "chat_template": chat_template}
    where = BACKENDS[backend].where  # the field that says where the model is: a GGUF path, a tag, a server
    if where == "path":
        p = Path(target).expanduser()
        files = sorted(p.glob("*.gguf")) if p.is_dir() else [p]
        if p.is_dir() and not files:
            raise ShootoutError(f"no .gguf files in {p}", "point register at a GGUF or a folder of them")
        if not p.exists():
            raise ShootoutError(f"GGUF not found: {p}", "build it with `shootout export`, or fix the path")
        out = []
        for f in files:
            q = quant if (quant and len(files) == 1) else quant_from_filename(f)
            if not q:
                raise ShootoutError(f"cannot tell the quant level of {f.name}", "pass --quant (e.g. --quant Q4_K_M)")
            fam = family or family_from_filename(f)
            n = name if (name and len(files) == 1) else f"{fam}-{q.lower()}"
            out.append(model_entry(n, backend, path=relpath(f, config_dir), family=fam, quant=q, **common))
        return out
    if not (family and quant):
        raise ShootoutError(f"{backend} models need --family and --quant")
    if where == "tag":
        return [model_entry(name or target, backend, tag=target, family=family, quant=quant, **common)]
    if where is None:  # a backend that needs no place (the scripted fake)
        return [model_entry(name or target, backend, family=family, quant=quant, **common)]
    if not base_url:
        raise ShootoutError(f"{backend} models need --base-url (e.g. http://127.0.0.1:8000/v1)")
    return [model_entry(name or target, backend, base_url=base_url, model=target, family=family, quant=quant,
                        **common)]


def ladder_entries(name: str, ggufs: dict[str, Path], *, config_dir: Path, prompt_style: str,
                   system_prompt: str | None = None, chat_template: str | None = None, manifest: Path | None = None,
                   ollama_tags: dict[str, str] | None = None, ollama_hosts: list[str] | None = None) -> list[dict]:
    """One entry per rung of an exported ladder (``ggufs``: quant -> GGUF), named ``<name>-<quant>``:
    the GGUF in process, or with ``ollama_tags`` (quant -> tag) the model created in Ollama, served by
    every host of ``ollama_hosts`` when there are several. ``chat_template``: the family the GGUFs
    need declared (they carry no template; Ollama's models carry the Modelfile's)."""
    out = []
    for q, gguf in ggufs.items():
        if ollama_tags:
            where = {"tag": ollama_tags[q]}
            if ollama_hosts and len(ollama_hosts) > 1:  # served by every host: its calls are spread over them
                where["endpoints"] = list(ollama_hosts)
        else:
            where = {"path": relpath(gguf, config_dir)}
        out.append(model_entry(f"{name}-{q.lower()}", "ollama" if ollama_tags else "llamacpp", **where, family=name,
                               quant=q, prompt_style=prompt_style, system_prompt=system_prompt,
                               chat_template=None if ollama_tags else chat_template,
                               manifest=relpath(manifest, config_dir) if manifest else None))
    return out


def register_target(config_path: Path, target: str, *, backend: str, dry_run: bool = False, **how) -> tuple[str, list]:
    """`shootout register`: the entries for ``target`` (``entries_for``) added to the config; returns
    (the unified diff, the entries)."""
    from benchmark.backends import BACKENDS

    if backend not in BACKENDS:
        raise ShootoutError(f"unknown backend '{backend}'", f"use one of {', '.join(BACKENDS)}")
    if not config_path.is_file():
        raise ShootoutError(f"config not found: {config_path}", "pass --config PATH")
    entries = entries_for(target, config_dir=config_path.parent, backend=backend, **how)
    return register(config_path, entries, dry_run=dry_run), entries


def _yaml():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def register(config_path: Path, entries: list[dict], dry_run: bool = False) -> str:
    """Add ``entries`` to the config; returns the unified diff. Refuses duplicate names."""
    from ruamel.yaml.comments import CommentedMap

    text = config_path.read_text(encoding="utf-8")
    y = _yaml()
    data = y.load(text)
    models = data.get("models")
    if models is None:
        raise ShootoutError(f"{config_path} has no 'models:' list", "add `models:` to the file first")
    taken = {m.get("name") for m in models}
    dup = [e["name"] for e in entries if e["name"] in taken]
    if dup:
        raise ShootoutError(f"{config_path}: a model named {', '.join(repr(d) for d in dup)} is already registered",
                            "pass --name with a new name, or remove the old entry first")
    for e in entries:
        m = CommentedMap()
        for k, v in e.items():
            m[k] = CommentedMap(v) if isinstance(v, dict) else v
        models.append(m)
    out = io.StringIO()
    y.dump(data, out)
    new = out.getvalue()
    try:  # the result must still be a valid config (files of other entries may not be built yet)
        parse_config(new, source=str(config_path), base_dir=config_path.parent, check_files=False)
    except ConfigError as exc:
        raise ShootoutError(f"the entry would make {config_path} invalid:\n" + "\n".join(exc.problems)) from None
    diff = "".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True), str(config_path),
                                        str(config_path) + " (registered)"))
    if not dry_run:
        tmp = config_path.with_name(config_path.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(config_path)
    return diff
