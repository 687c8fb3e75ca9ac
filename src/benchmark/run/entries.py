"""`shootout register`: add models to config.yaml with a round-trip edit that keeps the user's
comments, key order and formatting. Only new entries are added; nothing else changes."""

from __future__ import annotations

import difflib
import io
from pathlib import Path

from benchmark.backends import BACKENDS
from benchmark.config import ConfigError, parse_config
from core.errors import ShootoutError
from core.naming import family_from_filename, quant_from_filename, relpath


def _yaml():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def entries_for(target: str, *, config_dir: Path, backend: str, name: str | None, family: str | None,
                quant: str | None, prompt_style: str, chat_template: str | None, system_prompt: str | None,
                base_url: str | None) -> list[dict]:
    """The model entries to add: one model, or every GGUF of a folder (a quant ladder)."""
    def entry(n, q, **where):
        e = {"name": n, "backend": backend, **where, "family": family, "quant": q, "prompt_style": prompt_style}
        if system_prompt:
            e["system_prompt"] = system_prompt
        if chat_template:
            e["options"] = {"chat_template": chat_template}
        return e

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
            e = entry(n, q, path=relpath(f, config_dir))
            e["family"] = fam
            out.append(e)
        return out
    if not (family and quant):
        raise ShootoutError(f"{backend} models need --family and --quant")
    if where == "tag":
        return [entry(name or target, quant, tag=target)]
    if where is None:
        return [entry(name or target, quant)]
    if not base_url:
        raise ShootoutError(f"{backend} models need --base-url (e.g. http://127.0.0.1:8000/v1)")
    return [entry(name or target, quant, base_url=base_url, model=target)]


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
