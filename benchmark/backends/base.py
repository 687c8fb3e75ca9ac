"""The backend protocol: chat messages in, a typed reply out."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, Field


class Reply(BaseModel):
    """One model call as the engine saw it. Seconds exclude model load time."""

    text: str
    finish_reason: str = Field(description="'stop' (end of turn / EOS) or 'length' (hit the token limit)")
    prompt_tokens: int
    cached_tokens: int = Field(0, description="prompt tokens served from the engine's cache")
    completion_tokens: int
    prompt_seconds: float | None = Field(description="evaluating the prompt tokens not served from cache "
                                         "(None when the engine does not report it)")
    gen_seconds: float | None = Field(description="generating the completion (decode + sampling; None when the "
                                      "engine does not report it)")
    wall_seconds: float = Field(description="wall clock around the whole call")


class Backend(Protocol):
    name: str

    def load(self) -> float:
        """Load the model; returns the seconds it took (stored apart from per-call time)."""

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None, temperature: float,
             seed: int, max_tokens: int) -> Reply:
        """Answer one conversation."""

    def engine_info(self) -> dict[str, Any]:
        """Facts about the engine and model to store beside the results."""

    def close(self) -> None:
        """Free the model (one model in memory at a time)."""
