"""Chat families: one table, used by the engine (Jinja), the Modelfile writer (Go) and fine-tuning.

Each family has:
- ``jinja``: a Hugging Face-style Jinja chat template, the engine's fallback for GGUFs that carry
  none and the template a fine-tune gets when its base has none;
- ``go``: the Ollama ``TEMPLATE`` (Go text/template) that renders the same prompt minus the
  leading BOS, which llama.cpp adds itself when it tokenizes;
- ``stops``: the Modelfile's ``PARAMETER stop`` lines;
- ``markers``: strings that all occur in a Jinja template of this family (detection);
- ``architectures``: GGUF ``general.architecture`` values whose models use it by default;
- ``fold_system``: for families whose own templates refuse a system message (Gemma 1/2, Mistral
  v1), the text that joins a system prompt to the first user turn, as the Go template does;
- ``ollama``: the name of Ollama's official template for the family (its repository's
  ``template/<name>.gotmpl``); the tests hold that template's prompts for their conversations
  (tests/fixtures/ollama_prompts) and compare ours with them.

Families that changed between model versions are separate entries sharing their markers:
``gemma2`` (Gemma 1 and 2: no system role; the system prompt goes inside the first user turn,
``{system}\n{content}``, as Ollama's gemma-instruct does) and ``gemma3`` (Gemma 3's own template:
``{system}\n\n{content}``); ``mistral-v1`` (``[INST] u [/INST]a</s>``, spaces inside the brackets)
and ``mistral-v3`` (``[INST] u[/INST] a</s>``, the system prompt before the last user message, as
Mistral's v3 template puts it). Among families that share markers, detection keeps the one whose Go
template reproduces the GGUF template's own prompt, then the architecture's default. The names
``gemma`` and ``mistral`` of earlier versions still work: they mean ``gemma3`` and ``mistral-v1``.
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
    fold_system: str | None = None
    ollama: str | None = None


# names of earlier versions -> the family they meant
ALIASES = {"gemma": "gemma3", "mistral": "mistral-v1"}


class FamilyTable(dict):
    """name -> ChatFamily. Iterating gives the families; an earlier name (``gemma``, ``mistral``)
    still finds its family."""

    def __contains__(self, name) -> bool:
        return dict.__contains__(self, ALIASES.get(name, name))

    def __getitem__(self, name) -> ChatFamily:
        return dict.__getitem__(self, ALIASES.get(name, name))

    def get(self, name, default=None):
        return self[name] if name in self else default


# Go templates. Ollama passes .Messages (consecutive same-role messages merged; system messages
# stay in the list) and .System (every system message, joined): template/template.go, Execute.
def _gemma_jinja(sep: str) -> str:
    """Gemma's Jinja template: the system prompt folded into the first user turn, then ``sep``
    (Gemma 3 two newlines, Gemma 2 one)."""
    return ("{{ bos_token }}{% set sys = '' %}{% if messages[0]['role'] == 'system' %}"
            "{% set sys = messages[0]['content'] | trim + '" + sep + "' %}{% set messages = messages[1:] %}{% endif %}"
            "{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
            "<start_of_turn>{{ role }}\n{% if loop.first %}{{ sys }}{% endif %}{{ m['content'] | trim }}"
            "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def _gemma_go(sep: str) -> str:
    """The same in Go's text/template (Ollama's TEMPLATE): ``sep`` after the system prompt."""
    return ("{{- $first := true }}\n"
            "{{- range .Messages }}\n"
            "{{- if eq .Role \"user\" }}<start_of_turn>user\n"
            "{{ if and $first $.System }}{{ $.System }}" + sep + "{{ end }}{{ .Content }}<end_of_turn>\n"
            "{{ else if eq .Role \"assistant\" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n{{ end }}\n"
            "{{- if ne .Role \"system\" }}{{ $first = false }}{{ end }}\n"
            "{{- end }}<start_of_turn>model\n")


FAMILIES: FamilyTable = FamilyTable({f.name: f for f in (
    ChatFamily(
        "llama3",
        jinja=("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
               "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
        go=("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
            "{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
        stops=("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"),
        markers=("<|start_header_id|>", "<|eot_id|>"),
        architectures=("llama3",),
        ollama="llama3-instruct"),
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
        markers=("[INST]", "<<SYS>>"),
        ollama="llama2-chat"),
    ChatFamily(
        "gemma3",
        jinja=_gemma_jinja("\n\n"),
        go=_gemma_go("\n\n"),
        stops=("<end_of_turn>", "<start_of_turn>"),
        markers=("<start_of_turn>", "<end_of_turn>"),
        architectures=("gemma3", "gemma3n"),
        ollama="gemma3-instruct"),
    ChatFamily(
        "gemma2",
        jinja=_gemma_jinja("\n"),
        go=_gemma_go("\n"),
        stops=("<end_of_turn>", "<start_of_turn>"),
        markers=("<start_of_turn>", "<end_of_turn>"),
        architectures=("gemma", "gemma2"),
        fold_system="\n",
        ollama="gemma-instruct"),
    ChatFamily(
        "chatml",
        jinja=("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
        go=("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
            "{{ end }}<|im_start|>assistant\n"),
        stops=("<|im_end|>", "<|im_start|>"),
        markers=("<|im_start|>", "<|im_end|>"),
        architectures=("qwen2", "qwen3"),
        ollama="chatml"),
    ChatFamily(
        "phi3",
        jinja=("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"),
        go="{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
        stops=("<|end|>", "<|user|>", "<|assistant|>"),
        markers=("<|assistant|>", "<|end|>"),
        architectures=("phi3",),
        ollama="phi-3"),
    ChatFamily(
        "mistral-v1",
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
        markers=("[INST]", "[/INST]"),
        fold_system="\n\n",
        ollama="mistral-instruct"),
    ChatFamily(
        "mistral-v3",
        jinja=("{{ bos_token }}{% set sys = none %}{% if messages[0]['role'] == 'system' %}"
               "{% set sys = messages[0]['content'] %}{% set messages = messages[1:] %}{% endif %}"
               "{% for m in messages %}{% if m['role'] == 'user' %}[INST] "
               "{% if loop.last and sys is not none %}{{ sys }}\n\n{% endif %}{{ m['content'] }}[/INST]"
               "{% elif m['role'] == 'assistant' %} {{ m['content'] | trim }}{{ eos_token }}{% endif %}{% endfor %}"),
        go=("{{- range $i, $m := .Messages }}\n"
            "{{- if eq .Role \"user\" }}[INST] "
            "{{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}\n\n{{ end }}{{ .Content }}[/INST]\n"
            "{{- else if eq .Role \"assistant\" }} {{ .Content }}</s>\n"
            "{{- end }}\n"
            "{{- end }}"),
        stops=("[INST]", "[/INST]", "</s>"),
        markers=("[INST]", "[/INST]"),
        ollama="mistral-instruct"),
)})

# detection order: marker groups, the more specific first; within a group, the default version first
DETECT_ORDER = ("llama3", "llama2", "gemma3", "gemma2", "chatml", "phi3", "mistral-v1", "mistral-v3")
BY_ARCHITECTURE = {arch: f.name for f in FAMILIES.values() for arch in f.architectures}


class TemplateError(ValueError):
    """An unknown chat family, or a GGUF whose template cannot be told."""


def canonical(name: str) -> str:
    """The family a name means (``gemma`` -> ``gemma3``)."""
    return FAMILIES[name].name


@functools.lru_cache(maxsize=64)  # a pure function of its strings; engines ask per prompt when they fold
def detect(chat_template: str | None, architecture: str | None = None, override: str | None = None, *,
           bos: str = "", eos: str = "") -> tuple[str, str]:
    """(family, how it was decided) from a named override, the GGUF's Jinja template, or its architecture.
    Families that share markers (gemma2/gemma3, mistral-v1/mistral-v3) are told apart by rendering a
    few-shot conversation with the GGUF's template and each family's Go template, then by architecture."""
    if override:
        if override not in FAMILIES:
            raise TemplateError(f"unknown chat format '{override}'; use one of {', '.join(FAMILIES)}")
        return canonical(override), "named"
    if chat_template:
        group = next(([n for n in DETECT_ORDER if FAMILIES[n].markers == FAMILIES[name].markers]
                      for name in DETECT_ORDER if all(m in chat_template for m in FAMILIES[name].markers)), None)
        if group is None:
            raise TemplateError(
                "the GGUF's chat template is none of the known families "
                f"({', '.join(FAMILIES)}); name the family with --chat-format (or chat_template in config.yaml)")
        if len(group) == 1:
            return group[0], "GGUF tokenizer.chat_template"
        same = []
        for name in group:
            try:
                if check(name, chat_template, bos=bos, eos=eos, messages=FEW_SHOT_PROBE)[0]:
                    same.append(name)
            except Exception:  # noqa: BLE001 - a template our sandbox cannot render tells nothing
                pass
        if len(same) == 1:
            return same[0], "GGUF tokenizer.chat_template"
        if BY_ARCHITECTURE.get(architecture or "") in group:
            return BY_ARCHITECTURE[architecture], f"GGUF tokenizer.chat_template, architecture {architecture}"
        return group[0], "GGUF tokenizer.chat_template (version not told apart: the first of " + \
            ", ".join(group) + ")"
    if architecture in BY_ARCHITECTURE:
        return BY_ARCHITECTURE[architecture], f"architecture {architecture} (GGUF has no template)"
    raise TemplateError(
        f"the GGUF has no chat template and its architecture ({architecture}) names no default; "
        f"name the family with --chat-format ({', '.join(FAMILIES)})")


def ollama_prefers_gguf_template(chat_template: str | None) -> str | None:
    """Why Ollama will render the GGUF's own Jinja template instead of a Modelfile TEMPLATE of ours,
    or None. server/images.go (GetModel, shouldPreferChatTemplate, chatTemplateCapabilities): when
    the GGUF template shows more capabilities than the Go template (tools: it mentions "tools" or
    "tool_call"; thinking: <think> and </think>) and OLLAMA_GO_TEMPLATE is not set on the server,
    the GGUF template wins. Our Go templates have neither capability."""
    if not chat_template:
        return None
    caps = []
    if "tools" in chat_template or "tool_call" in chat_template:
        caps.append("tools")
    thinking = ("<think>" in chat_template and "</think>" in chat_template) or (
        ("content.split('</think>')" in chat_template or 'content.split("</think>")' in chat_template)
        and "reasoning_content" not in chat_template and "<SPECIAL_12>" not in chat_template)
    if thinking:
        caps.append("thinking")
    if not caps:
        return None
    return (f"Ollama ignores this TEMPLATE and renders the GGUF's own template (it mentions "
            f"{' and '.join(caps)}) unless the server runs with OLLAMA_GO_TEMPLATE=1")


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
            return FAMILIES[override].jinja, f"built-in '{canonical(override)}'"
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
    from formats import gotemplate

    return gotemplate.render(FAMILIES[family].go, gotemplate.ollama_values(messages))


PROBE = [
    {"role": "system", "content": "You grade financial news."},
    {"role": "user", "content": "Shares of Acme rose 5% after earnings."},
    {"role": "assistant", "content": "{\"score\": 0.6}"},
    {"role": "user", "content": "Acme cut its dividend."},
]

# the shape of a benchmark prompt: a system prompt, five few-shot turns, the item
FEW_SHOT_PROBE = [{"role": "system", "content": "Rate the sentiment of financial news as JSON."}] + [
    m for user, reply in (
        ("Acme beat estimates and raised guidance.", '{"sentiment": 0.7}'),
        ("Globex missed revenue forecasts by 12%.", '{"sentiment": -0.6}'),
        ("Initech kept its dividend unchanged.", '{"sentiment": 0.0}'),
        ("Umbrella Corp faces a recall of 2 million units.", '{"sentiment": -0.8}'),
        ("Hooli signed a ten-year cloud contract.", '{"sentiment": 0.5}'))
    for m in ({"role": "user", "content": user}, {"role": "assistant", "content": reply})
] + [{"role": "user", "content": "Acme warned on margins for the second half."}]


def fold_system(family: str, messages: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """The conversation with a leading system message joined to the first user turn the family's
    way (Gemma 1/2 and Mistral v1 templates refuse a system role), or None when the family has no
    such rule or the conversation does not start system, user."""
    sep = FAMILIES[family].fold_system
    if sep is None or len(messages) < 2 or messages[0]["role"] != "system" or messages[1]["role"] != "user":
        return None
    return [{"role": "user", "content": messages[0]["content"] + sep + messages[1]["content"]}, *messages[2:]]


@dataclass
class Comparison:
    equal: bool
    go: str               # the Go TEMPLATE's prompt, as Ollama renders it
    reference: str        # the Jinja template's prompt (without the BOS llama.cpp adds)
    folded: bool          # the Jinja template refused the system role: rendered with it folded in

    @property
    def first_difference(self) -> int | None:
        if self.equal:
            return None
        return next((i for i, (a, b) in enumerate(zip(self.go, self.reference)) if a != b),
                    min(len(self.go), len(self.reference)))


def compare(family: str, jinja_source: str, *, bos: str = "", eos: str = "", messages=None) -> Comparison:
    """Render a conversation (default: the few-shot probe) with the family's Go TEMPLATE and with a
    Jinja template. When the Jinja template refuses a system role (Gemma 2's raises 'System role not
    supported'), the system prompt is folded into the first user turn the family's way first."""
    messages = messages or FEW_SHOT_PROBE
    go = render_go(family, messages)
    folded = False
    try:
        jj = render_without_bos(jinja_source, messages, bos=bos, eos=eos)
    except TemplateError:
        alt = fold_system(family, messages)
        if alt is None:
            raise
        jj = render_without_bos(jinja_source, alt, bos=bos, eos=eos)
        folded = True
    return Comparison(go == jj, go, jj, folded)


def check(family: str, jinja_source: str, *, bos: str = "", eos: str = "", messages=None) -> tuple[bool, str, str]:
    """(equal, Go rendering, Jinja rendering) for a conversation (default: the few-shot probe)."""
    c = compare(family, jinja_source, bos=bos, eos=eos, messages=messages)
    return c.equal, c.go, c.reference
