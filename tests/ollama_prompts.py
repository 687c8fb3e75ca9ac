"""Our test conversations and the prompts Ollama's official chat templates give for them.

The conversations are slices of ``formats.chat.FEW_SHOT_PROBE`` (written for gguf-shootout). For each
official template a family maps to (``ChatFamily.ollama``), tests/fixtures/ollama_prompts/<name>/
holds one file per conversation: the exact prompt that template rendered (see the README there for
the Ollama commit; tests/fixtures/ollama_prompts/regenerate.py writes them from an Ollama checkout).
"""

from __future__ import annotations

from pathlib import Path

from formats import chat

PROMPTS = Path(__file__).resolve().parent / "fixtures" / "ollama_prompts"

_PROBE = chat.FEW_SHOT_PROBE  # system, five user/assistant pairs, the item
CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "few-shot": _PROBE,                           # system + five few-shot turns + a user turn
    "few-shot-no-system": _PROBE[1:],             # the same without the system prompt
    "user": _PROBE[1:2],                          # one user turn
    "user-assistant-user": _PROBE[1:4],
    "system-user": _PROBE[:2],
    "system-user-assistant-user": _PROBE[:4],
}

# Ollama's template names the families map to, in a stable order
TEMPLATE_NAMES = tuple(sorted({f.ollama for f in chat.FAMILIES.values() if f.ollama}))


def path(name: str, case: str) -> Path:
    return PROMPTS / name / f"{case}.txt"


def expected(name: str, case: str) -> str:
    """The stored prompt of Ollama's template ``name`` for the conversation ``case``."""
    return path(name, case).read_bytes().decode("utf-8")
