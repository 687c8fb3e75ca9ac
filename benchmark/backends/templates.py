"""Chat templates: render a GGUF's own Jinja template, or a declared fallback.

The fallbacks cover the common chat formats for GGUFs that carry no ``tokenizer.chat_template``.
They are written here in the Hugging Face Jinja dialect so the same renderer serves both.
"""

from __future__ import annotations

import functools
from datetime import datetime

FALLBACKS: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "gemma": (
        "{{ bos_token }}{% set sys = '' %}{% if messages[0]['role'] == 'system' %}"
        "{% set sys = messages[0]['content'] | trim + '\n\n' %}{% set messages = messages[1:] %}{% endif %}"
        "{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
        "<start_of_turn>{{ role }}\n{% if loop.first %}{{ sys }}{% endif %}{{ m['content'] | trim }}"
        "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "mistral": (
        "{{ bos_token }}{% set sys = '' %}{% if messages[0]['role'] == 'system' %}"
        "{% set sys = messages[0]['content'] + '\n\n' %}{% set messages = messages[1:] %}{% endif %}"
        "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {% if loop.first %}{{ sys }}{% endif %}"
        "{{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    ),
    "phi3": (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
}


class TemplateError(ValueError):
    pass


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


# chat format by GGUF ``general.architecture``, for GGUFs without a template of their own
BY_ARCHITECTURE = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "phi3": "phi3",
                   "qwen2": "chatml", "qwen3": "chatml"}


def resolve(gguf_template: str | None, override: str | None, architecture: str | None = None) -> tuple[str, str]:
    """(template source, where it came from): the config's override, else the GGUF's own template,
    else the declared fallback for the GGUF's architecture, else an error."""
    if override:
        if override in FALLBACKS:
            return FALLBACKS[override], f"built-in '{override}'"
        if "{%" in override or "{{" in override:
            return override, "config (Jinja)"
        raise TemplateError(f"unknown chat template '{override}'; use one of {', '.join(FALLBACKS)} "
                            "or a Jinja template string")
    if gguf_template:
        return gguf_template, "GGUF tokenizer.chat_template"
    if architecture in BY_ARCHITECTURE:
        name = BY_ARCHITECTURE[architecture]
        return FALLBACKS[name], f"built-in '{name}' (GGUF has no template; architecture {architecture})"
    raise TemplateError("the GGUF has no chat template; set options.chat_template to one of "
                        f"{', '.join(FALLBACKS)} (or a Jinja template) for this model in config.yaml")


def render(source: str, messages: list[dict[str, str]], *, bos_token: str = "", eos_token: str = "",
           add_generation_prompt: bool = True) -> str:
    return _compile(source).render(messages=messages, bos_token=bos_token, eos_token=eos_token,
                                   add_generation_prompt=add_generation_prompt)
