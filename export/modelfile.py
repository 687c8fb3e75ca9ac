"""Write an Ollama Modelfile beside a GGUF: FROM, TEMPLATE, PARAMETER stop/temperature/num_ctx, SYSTEM.

The TEMPLATE is the Go template of the GGUF's chat family (see :mod:`core.chat`); when
the GGUF carries its own Jinja template, the two are rendered for a probe conversation and the
result of that comparison is returned (and recorded by the export manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import chat
from core.errors import ShootoutError
from core import gguf_meta

DEFAULT_TEMPERATURE = 0.0
DEFAULT_NUM_CTX = 4096


@dataclass
class ModelfileSpec:
    path: Path            # the Modelfile
    gguf: Path
    family: str
    family_source: str
    template: str
    stop: tuple[str, ...]
    parameters: dict
    system: str | None
    template_check: str   # "equal", "differs at char N", ... (Go TEMPLATE vs the Jinja template)


def _quote(text: str, what: str) -> str:
    if '"""' in text:
        raise ShootoutError(f'the {what} contains """, which a Modelfile cannot quote',
                            "remove the triple quote from it")
    return f'"""{text}"""'


def render(spec: ModelfileSpec) -> str:
    rel = Path(spec.gguf).name if Path(spec.gguf).parent == Path(spec.path).parent else str(spec.gguf)
    lines = [f"# written by gguf-shootout; chat format: {spec.family} ({spec.family_source})",
             f"FROM ./{rel}" if "/" not in rel else f"FROM {rel}",
             f"TEMPLATE {_quote(spec.template, 'template')}"]
    for s in spec.stop:
        lines.append(f'PARAMETER stop "{s}"')
    for k, v in spec.parameters.items():
        lines.append(f"PARAMETER {k} {v}")
    if spec.system:
        lines.append(f"SYSTEM {_quote(spec.system, 'system prompt')}")
    return "\n".join(lines) + "\n"


def plan(gguf: str | Path, *, chat_format: str | None = None, system: str | None = None,
         temperature: float | None = DEFAULT_TEMPERATURE, num_ctx: int | None = DEFAULT_NUM_CTX,
         info: gguf_meta.GGUFInfo | None = None) -> ModelfileSpec:
    gguf = Path(gguf)
    try:
        info = info or gguf_meta.read(gguf)
    except gguf_meta.GGUFError as exc:
        raise ShootoutError(str(exc)) from None
    try:
        family, source = chat.detect(info.chat_template, info.architecture, chat_format)
    except chat.TemplateError as exc:
        raise ShootoutError(f"{gguf.name}: {exc}") from None
    fmt = chat.FAMILIES[family]
    # compare with the GGUF's own template, else with the built-in Jinja template of the family
    reference = info.chat_template or fmt.jinja
    eos = info.token_text("tokenizer.ggml.eos_token_id") or ""
    bos = info.token_text("tokenizer.ggml.bos_token_id") or ""
    try:
        equal, go, jj = chat.check(family, reference, bos=bos, eos=eos)
    except Exception as exc:  # a template our Jinja sandbox cannot render
        check = f"not compared ({type(exc).__name__}: {exc})"
    else:
        if equal:
            check = "equal" if info.chat_template else f"equal to the built-in {family} Jinja template"
        else:
            at = next((i for i, (a, b) in enumerate(zip(go, jj)) if a != b), min(len(go), len(jj)))
            check = f"differs at char {at}"
    params = {}
    if temperature is not None:
        params["temperature"] = temperature
    if num_ctx is not None:
        params["num_ctx"] = num_ctx
    stem = gguf.name[:-5] if gguf.name.endswith(".gguf") else gguf.name
    path = gguf.with_name(stem + ".Modelfile")
    return ModelfileSpec(path=path, gguf=gguf, family=family, family_source=source, template=fmt.go,
                         stop=fmt.stops, parameters=params, system=system, template_check=check)


def write(gguf: str | Path, **kw) -> ModelfileSpec:
    """Write ``<name>.<QUANT>.Modelfile`` beside ``gguf``; returns what was written."""
    spec = plan(gguf, **kw)
    spec.path.write_text(render(spec), encoding="utf-8")
    return spec
