"""Chat families: one table, used by the engine (Jinja), the Modelfile writer (Go) and fine-tuning.

Each family has:
- ``jinja``: a Hugging Face-style Jinja chat template, the engine's fallback for GGUFs that carry
  none and the template a fine-tune gets when its base has none;
- ``go``: the Ollama ``TEMPLATE`` (Go text/template) that renders the same prompt minus the
  leading BOS, which llama.cpp adds itself when it tokenizes;
- ``stops``: the Modelfile's ``PARAMETER stop`` lines;
- ``markers``: strings that all occur in a Jinja template of this family (detection);
- ``architectures``: GGUF ``general.architecture`` values whose models use it by default.

Families that changed between model versions are separate entries; detection tries the more
specific ones first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ChatFamily:
    name: str
    jinja: str
    go: str
    stops: tuple[str, ...]
    markers: tuple[str, ...]
    architectures: tuple[str, ...] = ()


# Go templates. Ollama passes .Messages (consecutive same-role messages merged; system messages
# stay in the list) and .System (every system message, joined).
FAMILIES: dict[str, ChatFamily] = {f.name: f for f in (
    ChatFamily(
        "llama3",
        jinja=("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
               "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
        go=("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
            "{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
        stops=("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"),
        markers=("<|start_header_id|>", "<|eot_id|>"),
        architectures=("llama3",)),
    ChatFamily(
        "llama2",
        jinja=("{% set sys = '' %}{% if messages[0]['role'] == 'system' %}"
               "{% set sys = '<<SYS>>\n' + messages[0]['content'] | trim + '\n<</SYS>>\n\n' %}"
               "{% set messages = messages[1:] %}{% endif %}"
               "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] "
               "{% if loop.first %}{{ sys }}{% endif %}{{ m['content'] | trim }} [/INST]"
               "{% else %} {{ m['content'] | trim }} {{ eos_token }}{% endif %}{% endfor %}"),
        go=("{{- $first := true }}\n"
            "{{- range $i, $m := .Messages }}\n"
            "{{- if eq .Role \"user\" }}{{ if not $first }}<s>{{ end }}[INST] "
            "{{ if and $first $.System }}<<SYS>>\n{{ $.System }}\n<</SYS>>\n\n{{ end }}{{ .Content }} [/INST]\n"
            "{{- else if eq .Role \"assistant\" }} {{ .Content }} </s>\n"
            "{{- end }}\n"
            "{{- if ne .Role \"system\" }}{{ $first = false }}{{ end }}\n"
            "{{- end }}"),
        stops=("[INST]", "[/INST]", "</s>", "<<SYS>>"),
        markers=("[INST]", "<<SYS>>")),
    ChatFamily(
        "gemma",
        jinja=("{{ bos_token }}{% set sys = '' %}{% if messages[0]['role'] == 'system' %}"
               "{% set sys = messages[0]['content'] | trim + '\n\n' %}{% set messages = messages[1:] %}{% endif %}"
               "{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
               "<start_of_turn>{{ role }}\n{% if loop.first %}{{ sys }}{% endif %}{{ m['content'] | trim }}"
               "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"),
        go=("{{- $first := true }}\n"
            "{{- range .Messages }}\n"
            "{{- if eq .Role \"user\" }}<start_of_turn>user\n"
            "{{ if and $first $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n"
            "{{ else if eq .Role \"assistant\" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n{{ end }}\n"
            "{{- if ne .Role \"system\" }}{{ $first = false }}{{ end }}\n"
            "{{- end }}<start_of_turn>model\n"),
        stops=("<end_of_turn>", "<start_of_turn>"),
        markers=("<start_of_turn>", "<end_of_turn>"),
        architectures=("gemma", "gemma2", "gemma3")),
    ChatFamily(
        "chatml",
        jinja=("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
        go=("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
            "{{ end }}<|im_start|>assistant\n"),
        stops=("<|im_end|>", "<|im_start|>"),
        markers=("<|im_start|>", "<|im_end|>"),
        architectures=("qwen2", "qwen3")),
    ChatFamily(
        "phi3",
        jinja=("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"),
        go="{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
        stops=("<|end|>", "<|user|>", "<|assistant|>"),
        markers=("<|assistant|>", "<|end|>"),
        architectures=("phi3",)),
    ChatFamily(
        "mistral",
        jinja=("{{ bos_token }}{% set sys = '' %}{% if messages[0]['role'] == 'system' %}"
               "{% set sys = messages[0]['content'] + '\n\n' %}{% set messages = messages[1:] %}{% endif %}"
               "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {% if loop.first %}{{ sys }}{% endif %}"
               "{{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"),
        go=("{{- $first := true }}\n"
            "{{- range .Messages }}\n"
            "{{- if eq .Role \"user\" }}[INST] {{ if and $first $.System }}{{ $.System }}\n\n"
            "{{ end }}{{ .Content }} [/INST]\n"
            "{{- else if eq .Role \"assistant\" }}{{ .Content }}</s>\n"
            "{{- end }}\n"
            "{{- if ne .Role \"system\" }}{{ $first = false }}{{ end }}\n"
            "{{- end }}"),
        stops=("[INST]", "[/INST]", "</s>"),
        markers=("[INST]", "[/INST]")),
)}

# detection order: families whose markers are a superset of another's come first
DETECT_ORDER = ("llama3", "llama2", "gemma", "chatml", "phi3", "mistral")
BY_ARCHITECTURE = {arch: f.name for f in FAMILIES.values() for arch in f.architectures}


class TemplateError(ValueError):
    """An unknown chat family, or a GGUF whose template cannot be told."""


def detect(chat_template: str | None, architecture: str | None = None, override: str | None = None) -> tuple[str, str]:
    """(family, how it was decided) from a named override, the GGUF's Jinja template, or its architecture."""
    if override:
        if override not in FAMILIES:
            raise TemplateError(f"unknown chat format '{override}'; use one of {', '.join(FAMILIES)}")
        return override, "named"
    if chat_template:
        for name in DETECT_ORDER:
            if all(m in chat_template for m in FAMILIES[name].markers):
                return name, "GGUF tokenizer.chat_template"
        raise TemplateError(
            "the GGUF's chat template is none of the known families "
            f"({', '.join(FAMILIES)}); name the family with --chat-format (or chat_template in config.yaml)")
    if architecture in BY_ARCHITECTURE:
        return BY_ARCHITECTURE[architecture], f"architecture {architecture} (GGUF has no template)"
    raise TemplateError(
        f"the GGUF has no chat template and its architecture ({architecture}) names no default; "
        f"name the family with --chat-format ({', '.join(FAMILIES)})")


# --------------------------------------------------------------------------- Jinja (the engine's side)


def _raise(msg: str):
    raise TemplateError(msg)


@functools.lru_cache(maxsize=32)
def _compile(source: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def resolve(gguf_template: str | None, override: str | None, architecture: str | None = None) -> tuple[str, str]:
    """(Jinja source, where it came from): the config's override, else the GGUF's own template,
    else the family of the GGUF's architecture, else an error."""
    if override:
        if override in FAMILIES:
            return FAMILIES[override].jinja, f"built-in '{override}'"
        if "{%" in override or "{{" in override:
            return override, "config (Jinja)"
        raise TemplateError(f"unknown chat template '{override}'; use one of {', '.join(FAMILIES)} "
                            "or a Jinja template string")
    if gguf_template:
        return gguf_template, "GGUF tokenizer.chat_template"
    if architecture in BY_ARCHITECTURE:
        name = BY_ARCHITECTURE[architecture]
        return FAMILIES[name].jinja, f"built-in '{name}' (GGUF has no template; architecture {architecture})"
    raise TemplateError("the GGUF has no chat template; set options.chat_template to one of "
                        f"{', '.join(FAMILIES)} (or a Jinja template) for this model in config.yaml")


def render(source: str, messages: list[dict[str, str]], *, bos_token: str = "", eos_token: str = "",
           add_generation_prompt: bool = True) -> str:
    return _compile(source).render(messages=messages, bos_token=bos_token, eos_token=eos_token,
                                   add_generation_prompt=add_generation_prompt)


def render_without_bos(source: str, messages: list[dict[str, str]], *, bos: str = "", eos: str = "") -> str:
    """The Jinja template's prompt with generation prompt, minus a leading BOS (llama.cpp adds it);
    a BOS inside the prompt (llama2 puts one before every user turn) is written as ``bos``."""
    sentinel = "\x00BOS\x00"
    text = render(source, messages, bos_token=sentinel, eos_token=eos, add_generation_prompt=True)
    if text.startswith(sentinel):
        text = text[len(sentinel):]
    return text.replace(sentinel, bos)


# --------------------------------------------------------------------------- Go (Ollama's side)


def render_go(family: str, messages: list[dict[str, str]]) -> str:
    from core import gotemplate

    return gotemplate.render(FAMILIES[family].go, gotemplate.ollama_values(messages))


PROBE = [
    {"role": "system", "content": "You grade financial news."},
    {"role": "user", "content": "Shares of Acme rose 5% after earnings."},
    {"role": "assistant", "content": "{\"score\": 0.6}"},
    {"role": "user", "content": "Acme cut its dividend."},
]


def check(family: str, jinja_source: str, *, bos: str = "", eos: str = "", messages=None) -> tuple[bool, str, str]:
    """(equal, Go rendering, Jinja rendering) for a conversation (default: a probe)."""
    messages = messages or PROBE
    go = render_go(family, messages)
    jj = render_without_bos(jinja_source, messages, bos=bos, eos=eos)
    return go == jj, go, jj
