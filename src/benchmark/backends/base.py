"""The backend protocol: chat messages in, a typed reply out."""

from __future__ import annotations

from typing import Any, Protocol

from core.errors import ShootoutError
from engine.types import LabelScores, PromptTooLong, Reply

__all__ = ["Backend", "BackendUnavailable", "LabelScores", "PromptTooLong", "Reply"]


class BackendUnavailable(ShootoutError):
    """The server stopped answering (after the backend's own retries): the call was not answered.
    With several endpoints the call goes to another one; with one, the run stops, resumable."""


class Backend(Protocol):
    name: str

    def load(self) -> float:
        """Load the model; returns the seconds it took (stored apart from per-call time)."""

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None, temperature: float,
             seed: int, max_tokens: int, grammar: str | None = None) -> Reply:
        """Answer one conversation; ``schema`` constrains the reply on every engine, ``grammar`` (GBNF)
        replaces it on engines that take one (llama.cpp)."""

    def engine_info(self) -> dict[str, Any]:
        """Facts about the engine and model to store beside the results."""

    def close(self) -> None:
        """Free the model (one model in memory at a time)."""
