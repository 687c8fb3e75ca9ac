"""Write an Ollama Modelfile beside a GGUF: FROM, TEMPLATE, PARAMETER stop/temperature/num_ctx, SYSTEM.

The TEMPLATE is the Go template of the GGUF's chat family (see :mod:`formats.chat`); when
the GGUF carries its own Jinja template, the two are rendered for a few-shot conversation (a system
prompt, five example turns, the item) and the result of that comparison is returned (and recorded
by the export manifest). When Ollama will not use the TEMPLATE at all (the GGUF's template mentions
tools or thinking: server/images.go prefers it unless OLLAMA_GO_TEMPLATE is set), the check says so
and the Modelfile carries the same note as a comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from formats import chat
from core.errors import ShootoutError
from formats import gguf_meta

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
    ollama_note: str | None = None  # Ollama will render the GGUF's own template instead (see formats.chat)


def _quote(text: str, what: str) -> str:
    if '"""' in text:
        raise ShootoutError(f'the {what} contains """, which a Modelfile cannot quote',
                            "remove the triple quote from it")
    return f'"""{text}"""'


def render(spec: ModelfileSpec) -> str:
    rel = Path(spec.gguf).name if Path(spec.gguf).parent == Path(spec.path).parent else str(spec.gguf)
    lines = [f"# written by gguf-shootout; chat format: {spec.family} ({spec.family_source})"]
    if spec.ollama_note:
        lines.append(f"# note: {spec.ollama_note}")
    lines += [f"FROM ./{rel}" if "/" not in rel else f"FROM {rel}",
              f"TEMPLATE {_quote(spec.template, 'template')}"]
    for s in spec.stop:
        lines.append(f'PARAMETER stop "{s}"')
    for k, v in spec.parameters.items():
        lines.append(f"PARAMETER {k} {v}")
    if spec.system:
        lines.append(f"SYSTEM {_quote(spec.system, 'system prompt')}")
    return "\n".join(lines) + "\n"


@dataclass
class ParsedModelfile:
    """What a Modelfile says (the commands gguf-shootout writes; others are kept as text)."""

    from_: str | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict = field(default_factory=dict)  # name -> [values] (stop repeats)


def _value(text: str):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse(text: str) -> ParsedModelfile:
    """Read a Modelfile: FROM, TEMPLATE and SYSTEM (\"\"\"-quoted or one line), PARAMETER lines."""
    out = ParsedModelfile()
    i, lines = 0, text.splitlines(keepends=True)
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        word = word.upper()
        if word in ("TEMPLATE", "SYSTEM"):
            rest = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
            if rest.startswith('"""'):
                body = rest[3:]
                while '"""' not in body and i < len(lines):
                    body += lines[i]
                    i += 1
                value = body[:body.index('"""')] if '"""' in body else body
            else:
                value = _value(rest.rstrip("\n"))
            setattr(out, word.lower(), value)
        elif word == "FROM":
            out.from_ = rest.strip()
        elif word == "PARAMETER":
            name, _, value = rest.strip().partition(" ")
            out.parameters.setdefault(name, []).append(_value(value))
    return out


def plan(gguf: str | Path, *, chat_format: str | None = None, system: str | None = None,
         temperature: float | None = DEFAULT_TEMPERATURE, num_ctx: int | None = DEFAULT_NUM_CTX,
         info: gguf_meta.GGUFInfo | None = None) -> ModelfileSpec:
    gguf = Path(gguf)
    try:
        info = info or gguf_meta.read(gguf)
    except gguf_meta.GGUFError as exc:
        raise ShootoutError(str(exc)) from None
    eos = info.token_text("tokenizer.ggml.eos_token_id") or ""
    bos = info.token_text("tokenizer.ggml.bos_token_id") or ""
    try:
        family, source = chat.detect(info.chat_template, info.architecture, chat_format, bos=bos, eos=eos)
    except chat.TemplateError as exc:
        raise ShootoutError(f"{gguf.name}: {exc}") from None
    fmt = chat.FAMILIES[family]
    # compare with the GGUF's own template, else with the built-in Jinja template of the family
    reference = info.chat_template or fmt.jinja
    try:
        c = chat.compare(family, reference, bos=bos, eos=eos)
    except Exception as exc:  # a template our Jinja sandbox cannot render
        check = f"not compared ({type(exc).__name__}: {exc})"
    else:
        if c.equal:
            check = "equal" if info.chat_template else f"equal to the built-in {family} Jinja template"
            if c.folded:
                check += " (the GGUF's template refuses a system role: compared with the system prompt " \
                         "in the first user turn)"
        else:
            check = f"differs at char {c.first_difference}"
    note = chat.ollama_prefers_gguf_template(info.chat_template)
    if note:
        check += f"; {note}"
    params = {}
    if temperature is not None:
        params["temperature"] = temperature
    if num_ctx is not None:
        params["num_ctx"] = num_ctx
    stem = gguf.name[:-5] if gguf.name.endswith(".gguf") else gguf.name
    path = gguf.with_name(stem + ".Modelfile")
    return ModelfileSpec(path=path, gguf=gguf, family=family, family_source=source, template=fmt.go,
                         stop=fmt.stops, parameters=params, system=system, template_check=check, ollama_note=note)


def write(gguf: str | Path, **kw) -> ModelfileSpec:
    """Write ``<name>.<QUANT>.Modelfile`` beside ``gguf``; returns what was written."""
    spec = plan(gguf, **kw)
    spec.path.write_text(render(spec), encoding="utf-8")
    return spec
