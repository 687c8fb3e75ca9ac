"""Chat formats for Ollama: a Go TEMPLATE and the end-of-turn stop strings per model family.

The family is read from the GGUF's own ``tokenizer.chat_template`` (its marker tokens), else from
its architecture, else it must be named (``--chat-format`` / ``chat_format`` in config.yaml).
Each TEMPLATE here renders, for a conversation, the same text as the family's Jinja chat template
minus the leading BOS, which llama.cpp adds itself when it tokenizes; ``check()`` verifies that
against the GGUF's own template for a probe conversation.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.backends import templates as jinja_templates


@dataclass(frozen=True)
class ChatFormat:
    name: str
    template: str          # Ollama Go template
    stop: tuple[str, ...]  # PARAMETER stop lines
    markers: tuple[str, ...]  # all present in a Jinja template of this family


# Go templates. Ollama passes .Messages (consecutive same-role messages merged; system messages
# stay in the list) and .System (every system message, joined).
_LLAMA3 = """\
{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

"""

_GEMMA = """\
{{- $first := true }}
{{- range .Messages }}
{{- if eq .Role "user" }}<start_of_turn>user
{{ if and $first $.System }}{{ $.System }}

{{ end }}{{ .Content }}<end_of_turn>
{{ else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}<end_of_turn>
{{ end }}
{{- if ne .Role "system" }}{{ $first = false }}{{ end }}
{{- end }}<start_of_turn>model
"""

_MISTRAL = """\
{{- $first := true }}
{{- range .Messages }}
{{- if eq .Role "user" }}[INST] {{ if and $first $.System }}{{ $.System }}

{{ end }}{{ .Content }} [/INST]
{{- else if eq .Role "assistant" }}{{ .Content }}</s>
{{- end }}
{{- if ne .Role "system" }}{{ $first = false }}{{ end }}
{{- end }}"""

_PHI3 = """\
{{- range .Messages }}<|{{ .Role }}|>
{{ .Content }}<|end|>
{{ end }}<|assistant|>
"""

_CHATML = """\
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

FORMATS: dict[str, ChatFormat] = {f.name: f for f in (
    ChatFormat("llama3", _LLAMA3, ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"),
               ("<|start_header_id|>", "<|eot_id|>")),
    ChatFormat("gemma", _GEMMA, ("<end_of_turn>", "<start_of_turn>"), ("<start_of_turn>", "<end_of_turn>")),
    ChatFormat("chatml", _CHATML, ("<|im_end|>", "<|im_start|>"), ("<|im_start|>", "<|im_end|>")),
    ChatFormat("phi3", _PHI3, ("<|end|>", "<|user|>", "<|assistant|>"), ("<|assistant|>", "<|end|>")),
    ChatFormat("mistral", _MISTRAL, ("[INST]", "[/INST]", "</s>"), ("[INST]", "[/INST]")),
)}


class UnknownChatFormat(ValueError):
    pass


def detect(chat_template: str | None, architecture: str | None = None, override: str | None = None) -> tuple[str, str]:
    """(family, how it was decided)."""
    if override:
        if override not in FORMATS:
            raise UnknownChatFormat(f"unknown chat format '{override}'; use one of {', '.join(FORMATS)}")
        return override, "named"
    if chat_template:
        for fmt in FORMATS.values():
            if all(m in chat_template for m in fmt.markers):
                return fmt.name, "GGUF tokenizer.chat_template"
        raise UnknownChatFormat(
            "the GGUF's chat template is none of the known families "
            f"({', '.join(FORMATS)}); name the family with --chat-format (or chat_format in config.yaml)")
    if architecture in jinja_templates.BY_ARCHITECTURE:
        return jinja_templates.BY_ARCHITECTURE[architecture], f"architecture {architecture} (GGUF has no template)"
    raise UnknownChatFormat(
        f"the GGUF has no chat template and its architecture ({architecture}) names no default; "
        f"name the family with --chat-format ({', '.join(FORMATS)})")


PROBE = [
    {"role": "system", "content": "You grade financial news."},
    {"role": "user", "content": "Shares of Acme rose 5% after earnings."},
    {"role": "assistant", "content": "{\"score\": 0.6}"},
    {"role": "user", "content": "Acme cut its dividend."},
]


def render_go(family: str, messages: list[dict[str, str]]) -> str:
    from export import gotemplate

    return gotemplate.render(FORMATS[family].template, gotemplate.ollama_values(messages))


def render_jinja(source: str, messages: list[dict[str, str]], *, bos: str = "", eos: str = "") -> str:
    """The Jinja template's prompt with generation prompt, without a leading BOS (llama.cpp adds it)."""
    sentinel = "\x00BOS\x00"
    text = jinja_templates.render(source, messages, bos_token=sentinel, eos_token=eos,
                                  add_generation_prompt=True)
    if text.startswith(sentinel):
        text = text[len(sentinel):]
    return text.replace(sentinel, bos)


def check(family: str, jinja_source: str, *, eos: str = "", messages=None) -> tuple[bool, str, str]:
    """(equal, Go rendering, Jinja rendering) for the probe conversation."""
    messages = messages or PROBE
    go = render_go(family, messages)
    jj = render_jinja(jinja_source, messages, eos=eos)
    return go == jj, go, jj
