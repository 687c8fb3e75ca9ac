"""`shootout doctor`: check an Ollama host end to end before a long run.

For each model (an Ollama entry of config.yaml, or ``--tag``): the server's version (0.12.6 or later,
or prompts could be truncated silently), the model, the template Ollama really renders with and the
parameters it holds against the Modelfile written for it, the context it allocates, the share of the
model in GPU memory, and one smoke call with the config's task (its schema, its few-shot prompt, its
parser). Every check is one row: ok, warn or FAIL with what to do; any FAIL exits 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import ShootoutError


@dataclass
class Check:
    model: str
    name: str
    status: str   # "ok" | "warn" | "FAIL"
    detail: str


@dataclass
class Target:
    name: str
    tag: str
    num_ctx: int
    keep_alive: str | None
    modelfile: Path | None


def _parameters(text: str | None) -> dict[str, list]:
    """/api/show ``parameters``: one "name value" line per value, values as Go's %#v prints them."""
    out: dict[str, list] = {}
    for line in (text or "").splitlines():
        name, _, value = line.strip().partition(" ")
        value = value.strip()
        if not name:
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(name, []).append(parsed)
    return out


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def compare_parameters(shown: dict[str, list], written: dict[str, list]) -> list[str]:
    """What differs between the server's parameters and the Modelfile's (stop order kept)."""
    problems = []
    for name, values in written.items():
        have = shown.get(name)
        if have is None:
            problems.append(f"{name} is missing (Modelfile: {', '.join(map(str, values))})")
        elif len(have) != len(values) or not all(_same(x, y) for x, y in zip(have, values)):
            problems.append(f"{name} is {', '.join(map(str, have))} (Modelfile: {', '.join(map(str, values))})")
    return problems


def _modelfile_of(entry, cfg) -> Path | None:
    """The Modelfile an export recorded for this model (its manifest's file entry of the quant)."""
    if not entry.manifest:
        return None
    path = cfg.resolve(entry.manifest)
    try:
        files = json.loads(Path(path).read_text()).get("files", {})
    except (OSError, ValueError):
        return None
    name = (files.get(entry.quant) or {}).get("modelfile")
    return Path(path).parent / name if name else None


def targets(config: Path, models: list[str] | None, tag: str | None, modelfile: Path | None,
            num_ctx: int | None) -> tuple[list[Target], object]:
    """The models to check, and the task whose smoke call to make."""
    from benchmark.tasks.sentiment import SENTIMENT

    cfg = None
    if config.is_file():
        from benchmark.config import load_config
        from benchmark.tasks import task_for

        cfg = load_config(config, check_files=False)
        task = task_for(cfg)
    elif tag is None:
        raise ShootoutError(f"config not found: {config}", "pass --config PATH, or --tag TAG to check one Ollama model")
    else:
        task = SENTIMENT
    if tag:
        ctx = num_ctx or (cfg.run.num_ctx if cfg else 2048)
        return [Target(tag, tag, ctx, None, modelfile)], task
    from benchmark.backends import ollama_backend, spec_of

    entries = [m for m in cfg.models if spec_of(m) is ollama_backend.SPEC]
    if models:
        unknown = set(models) - {m.name for m in cfg.models}
        if unknown:
            raise ShootoutError(f"--model names models not in {config}: {', '.join(sorted(unknown))}",
                                f"models there: {', '.join(m.name for m in cfg.models)}")
        not_ollama = [m.name for m in cfg.models if m.name in models and spec_of(m) is not ollama_backend.SPEC]
        if not_ollama:
            raise ShootoutError(f"{', '.join(not_ollama)}: not an Ollama model (backend is not ollama)",
                                "doctor checks Ollama models; name one with backend: ollama, or pass --tag")
        entries = [m for m in entries if m.name in models]
    if not entries:
        if _in_process(cfg):
            return [], task  # only the in-process engine to check
        raise ShootoutError(f"{config} has no Ollama model to check",
                            "add one with backend: ollama (or `shootout register TAG --backend ollama`), or pass --tag")
    return [Target(m.name, m.tag, num_ctx or cfg.setting(m, "num_ctx"), m.options.keep_alive,
                   modelfile if len(entries) == 1 and modelfile else _modelfile_of(m, cfg)) for m in entries], task


def check_model(t: Target, task, host: str | None) -> list[Check]:
    from benchmark.backends.base import PromptTooLong
    from benchmark.backends.ollama_backend import OllamaBackend
    from formats import chat
    from export import modelfile as mf

    out: list[Check] = []

    def add(name, status, detail):
        out.append(Check(t.name, name, status, detail))

    b = OllamaBackend(t.tag, name=t.name, host=host, num_ctx=t.num_ctx, keep_alive=t.keep_alive)
    try:
        try:
            version = b.server_version()
        except ShootoutError as exc:
            if "no Ollama server answers" in exc.message:
                raise
            add("server", "FAIL", f"{exc.message}; {exc.hint}")
            return out
        add("server", "ok", f"Ollama {version} at {b.host}")
        try:
            show = b.show_model()
        except ShootoutError as exc:
            add("model", "FAIL", f"{exc.message}; {exc.hint}" if exc.hint else exc.message)
            return out
        d = show.details
        add("model", "ok", f"{t.tag}: {d.family} {d.parameter_size} {d.quantization_level}; "
                           f"capabilities {', '.join(show.capabilities or []) or 'none listed'}")

        # template and parameters against the Modelfile written for it
        if t.modelfile is None:
            fam = next((f.name for f in chat.FAMILIES.values() if f.go == show.template), None)
            add("template", "ok" if fam else "warn",
                f"gguf-shootout's {fam} TEMPLATE" if fam else
                "not a TEMPLATE gguf-shootout writes; pass --modelfile to compare with the one it was created from")
        else:
            try:
                written = mf.parse(t.modelfile.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ShootoutError(f"cannot read the Modelfile {t.modelfile} ({exc.strerror})",
                                    "pass --modelfile PATH of the Modelfile the model was created from") from None
            if written.template is not None and show.template == written.template:
                add("template", "ok", f"the server renders with the TEMPLATE of {t.modelfile.name}")
            elif written.template is not None and "{%" in (show.template or ""):  # Jinja, not Go
                add("template", "FAIL", f"the server renders with the GGUF's own Jinja template, not the TEMPLATE of "
                                        f"{t.modelfile.name} (the GGUF's template mentions tools or thinking): "
                                        "start the server with OLLAMA_GO_TEMPLATE=1 to use the TEMPLATE")
            else:
                a, w = show.template or "", written.template or ""
                at = next((i for i, (x, y) in enumerate(zip(a, w)) if x != y), min(len(a), len(w)))
                add("template", "FAIL", f"the server's template differs from {t.modelfile.name}'s at char {at}: "
                                        f"re-create the model (`shootout modelfile {t.modelfile.with_suffix('.gguf').name}"
                                        " --ollama-create`)")
            problems = compare_parameters(_parameters(show.parameters), written.parameters)
            same = ", ".join(f"{k} {' '.join(map(str, v))}" for k, v in written.parameters.items())
            add("parameters", "FAIL" if problems else "ok",
                "; ".join(problems) if problems else
                f"{same} as in {t.modelfile.name}" if same else f"{t.modelfile.name} sets no parameters")

        # load at the context the run uses: what is allocated, and where
        try:
            seconds = b.load()
        except ShootoutError as exc:
            add("load", "FAIL", f"{exc.message}; {exc.hint}" if exc.hint else exc.message)
            return out
        ps = b.ps
        if ps is None:
            add("context", "warn", f"loaded in {seconds:.1f} s, but /api/ps does not list {t.tag}")
        elif ps.context_length == t.num_ctx:
            add("context", "ok", f"{ps.context_length} tokens allocated, as asked (loaded in {seconds:.1f} s)")
        else:
            add("context", "FAIL", f"{ps.context_length} tokens allocated, not the {t.num_ctx} asked (the model's "
                                   "training context caps it): lower run.num_ctx or this model's options.num_ctx")
        if ps is not None and ps.size:
            share = ps.size_vram / ps.size
            gb = ps.size / 1e9
            if share >= 0.999:
                add("VRAM", "ok", f"all of {gb:.2f} GB in GPU memory")
            elif share == 0:
                add("VRAM", "warn", f"{gb:.2f} GB, none in GPU memory: the model runs on the CPU")
            else:
                add("VRAM", "warn", f"{share:.0%} of {gb:.2f} GB in GPU memory: the rest runs on the CPU and slows "
                                    "every call; free GPU memory or lower num_ctx")

        # one call as the run makes it
        messages = task.messages(task.warmup_item(), "few_shot")
        constraint = task.constraint()
        try:
            reply = b.chat(messages, schema=constraint.schema if constraint else None, temperature=0.0, seed=0,
                           max_tokens=256)
        except PromptTooLong as exc:
            add("smoke call", "FAIL", f"{exc.message}; {exc.hint}")
            return out
        answer = task.parse(reply.text)
        evaluated = reply.prompt_tokens - reply.cached_tokens
        timing = (f"{reply.wall_seconds:.2f} s; {reply.prompt_tokens} prompt tokens ({evaluated} evaluated), "
                  f"{reply.completion_tokens} generated")
        if reply.finish_reason != "stop":
            add("smoke call", "FAIL", f"the reply ended by '{reply.finish_reason}', not at its end of turn ({timing}); "
                                      "check the stop parameters and the template")
        elif not answer.valid:
            add("smoke call", "FAIL", f"the reply does not fit the task's schema ({answer.error}): "
                                      f"{reply.text[:120]!r}")
        else:
            add("smoke call", "ok", f"a valid {task.name} reply in {timing}")
    finally:
        b.close()
    return out


def _in_process(cfg) -> bool:
    """Whether the config (or the file at that path) has a model run in this process."""
    from benchmark.backends import spec_of

    if isinstance(cfg, Path):
        from benchmark.config import load_config

        cfg = load_config(cfg, check_files=False)
    return any(spec_of(m).capabilities.in_process for m in cfg.models)


def engine_checks() -> list[Check]:
    """The in-process engine: whether its build can load a model in a process that also uses pandas
    (``core.cxx_runtime``: an exported copy of the C++ runtime crashes it)."""
    from core import cxx_runtime

    lib = cxx_runtime.engine_library_dir()
    if lib is None:
        return [Check("llama.cpp (in process)", "engine", "warn", "llama-cpp-python is not installed")]
    found = cxx_runtime.problem(lib)
    if found:
        what, fix = found
        return [Check("llama.cpp (in process)", "C++ runtime", "FAIL", f"{what}. Fix: {fix}.")]
    return [Check("llama.cpp (in process)", "C++ runtime", "ok", f"{lib}: no exported copy of the C++ runtime (safe "
                  "beside pandas and pyarrow)")]


def main(config: Path, models: list[str] | None, tag: str | None, modelfile: Path | None, host: str | None,
         num_ctx: int | None, console) -> int:
    """Run every check, print one table; 2 when any check failed."""
    from rich.table import Table
    from rich.text import Text

    if modelfile is not None and not modelfile.is_file():
        raise ShootoutError(f"Modelfile not found: {modelfile}", "pass --modelfile PATH of an existing Modelfile")
    todo, task = targets(config, models, tag, modelfile, num_ctx)
    rows: list[Check] = engine_checks() if tag is None and config.is_file() and _in_process(config) else []
    for t in todo:
        rows += check_model(t, task, host)
    table = Table(title="shootout doctor")
    for col in ("model", "check", "", "detail"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}
    for c in rows:
        table.add_row(c.model, c.name, Text(c.status, style=style[c.status]), Text(c.detail))
    console.print(table)
    failed = [c for c in rows if c.status == "FAIL"]
    if failed:
        console.print(Text(f"{len(failed)} check(s) failed: "
                           + "; ".join(f"{c.model} {c.name}" for c in failed), style="bold red"))
        return 2
    return 0
