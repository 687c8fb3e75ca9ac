"""What a backend is: the call protocol (chat messages in, a typed reply out), the options every
backend takes, the capability flags, and the spec a backend registers (``benchmark.backends``).

A backend module declares one :class:`BackendSpec`: its name, the options model config.yaml's
``options:`` mapping is validated with (a subclass of :class:`BackendOptions`), its capabilities,
and a factory that builds the backend for a model entry, importing the heavy engine only then.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Protocol

from pydantic import Field

from core.errors import ShootoutError
from core.settings import SettingsModel
from engine.types import LabelScores, PromptTooLong, Reply

__all__ = ["Backend", "BackendOptions", "BackendSpec", "BackendUnavailable", "CallFailed", "Capabilities",
           "LabelScores", "PromptTooLong", "Reply"]


class BackendUnavailable(ShootoutError):
    """The server stopped answering (after the backend's own retries): the call was not answered.
    With several endpoints the call goes to another one; with one, the run stops, resumable."""


class CallFailed(ShootoutError):
    """One call got no usable answer (an HTTP error, a body that is not JSON or of the wrong shape, a
    timeout, a cut connection, an oversized body), after the backend's own retries where a retry can
    help. The runner stores it as a failed call (valid 0, finish_reason "failed", ``kind``: what went
    wrong) and goes on; an endpoint whose calls keep failing is retired (``benchmark.run.scheduler``)."""

    def __init__(self, message: str, kind: str, attempts: int = 1, hint: str | None = None):
        super().__init__(message, hint)
        self.kind, self.attempts = kind, attempts


class Backend(Protocol):
    name: str

    def load(self) -> float:
        """Load the model; returns the seconds it took (stored apart from per-call time)."""

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None, temperature: float,
             seed: int, max_tokens: int, grammar: str | None = None) -> Reply:
        """Answer one conversation; ``schema`` constrains the reply on engines with the ``json_schema``
        capability, ``grammar`` (GBNF) replaces it on engines with the ``grammar`` capability."""

    def engine_info(self) -> dict[str, Any]:
        """Facts about the engine and model to store beside the results."""

    def close(self) -> None:
        """Free the model (one model in memory at a time)."""

    # only with the capability of the same name:
    # def score_choices(self, messages, choices) -> LabelScores      (label_scores)
    # def memory_facts(self) -> dict[str, float]                     (memory_facts)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the runner and config validation ask these, never the backend's name
    or its attributes. Turning one on for a backend is one line in its spec."""

    label_scores: bool = False  # score every label from one prompt evaluation (task.decoding: logprob)
    grammar: bool = False       # a GBNF grammar constrains the reply
    json_schema: bool = False   # a JSON schema constrains the reply
    endpoints: bool = False     # several servers can host one model (models[].endpoints, run.concurrency)
    memory_facts: bool = False  # reports the memory its model took (``memory_facts()``)
    in_process: bool = False    # the model loads in this process: this process's memory growth is its size

    def names(self) -> list[str]:
        """The capabilities that are on."""
        return [f.name for f in fields(self) if getattr(self, f.name)]


CAPABILITY_TEXT = {
    "label_scores": "label scoring (task.decoding: logprob)",
    "grammar": "GBNF grammar",
    "json_schema": "JSON-schema constraint",
    "endpoints": "several endpoints",
    "memory_facts": "memory facts",
    "in_process": "in process",
}


class BackendOptions(SettingsModel):
    """Per-model overrides of the run settings, taken by every backend. A backend's own options
    model subclasses this one and adds its engine knobs."""

    temperature: float | None = Field(None, ge=0, le=2)
    num_ctx: int | None = Field(None, ge=256, le=2**21)
    num_predict: int | None = Field(None, ge=1, le=2**21)


@dataclass(frozen=True)
class BackendSpec:
    """One row of the backend registry."""

    name: str                     # what config.yaml writes after ``backend:``
    description: str              # one line, for help texts and the docs
    options: type[BackendOptions]
    capabilities: Capabilities
    factory: Callable[..., Backend]    # (entry, cfg, endpoint=None) -> Backend
    where: str | None = None      # the model-entry field that says where the model is (None: nothing needed)
    where_is_endpoint: bool = False  # ``where`` is the server's address: models[].endpoints may replace it
    address: Callable[[Any], str] = lambda backend: "local"  # a built backend's endpoint, named in results
    scripted: bool = False        # answers from a script, not a model (tests, dry runs): never suggested to users

    def own_options(self) -> list[str]:
        """The options this backend adds to the shared run overrides."""
        return [k for k in self.options.model_fields if k not in BackendOptions.model_fields]
