"""Backends: one protocol (``base.Backend``), one table of engines.

``BACKENDS`` maps the name config.yaml writes after ``backend:`` to the backend's spec
(``base.BackendSpec``): a one-line description, the options model its ``options:`` mapping is
validated with, its capabilities (label scoring, grammar, JSON schema, endpoints, memory facts, in
process), and the factory that builds it, importing the engine only then. Config validation, the
runner, `shootout register` and the help texts read this table; nothing asks a backend its name.

Adding a backend is one module that declares a ``SPEC`` (its class, options model, capabilities and
factory), named in the import and the loop below (or ``register(SPEC)`` from anywhere).
"""

from __future__ import annotations

from benchmark.backends import fake, llamacpp, mlx_server, ollama_backend, openai_compat
from benchmark.backends.base import (CAPABILITY_TEXT, Backend, BackendOptions, BackendSpec, Capabilities,
                                     LabelScores, Reply)
from benchmark.backends.table import BACKENDS, make_backend, register, spec_of
from core.naming import series

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Backend", "BackendOptions", "BackendSpec", "Capabilities", "LabelScores",
           "Reply", "capable", "describe", "make_backend", "owners", "register", "spec_of", "validate_options"]

DEFAULT_BACKEND = llamacpp.SPEC.name


for _module in (llamacpp, ollama_backend, openai_compat, mlx_server, fake):
    register(_module.SPEC)


def capable(capability: str, *, scripted: bool = True) -> list[str]:
    """The backends that have ``capability`` (a field of :class:`Capabilities`); ``scripted=False``
    leaves out those that answer from a script (the ones to suggest to a user)."""
    return [name for name, spec in BACKENDS.items()
            if getattr(spec.capabilities, capability) and (scripted or not spec.scripted)]


def owners(option: str) -> list[str]:
    """The backends whose options include ``option``."""
    return [name for name, spec in BACKENDS.items() if option in spec.options.model_fields]


def describe(spec: BackendSpec) -> str:
    """The spec's description and capabilities, one line (help texts)."""
    caps = ", ".join(CAPABILITY_TEXT[c] for c in spec.capabilities.names())
    return f"{spec.description} [{caps}]" if caps else spec.description


def validate_options(backend: str, value) -> BackendOptions:
    """A model's ``options:`` validated with its backend's options model. A key that another backend
    owns is named with that backend; any other unknown key with the options allowed here."""
    from pydantic import BaseModel, ValidationError

    spec = BACKENDS[backend]
    if isinstance(value, spec.options):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    try:
        return spec.options.model_validate(value)
    except ValidationError as exc:
        errors = [_option_error(spec, e) if e["type"] == "extra_forbidden" and len(e["loc"]) == 1 else e
                  for e in exc.errors()]
        raise ValidationError.from_exception_data(exc.title, errors) from None


def _option_error(spec: BackendSpec, e: dict) -> dict:
    """The error of an option ``spec``'s backend does not take (config.py prints its message as it is)."""
    from pydantic_core import PydanticCustomError

    key = str(e["loc"][0])
    allowed = ", ".join(spec.options.model_fields)
    others = [b for b in owners(key) if b != spec.name]
    if others:
        text = (f"'{key}' is an option of the {series(others)} backend{'s' if len(others) > 1 else ''}, not of "
                f"{spec.name} (this model's backend). Options allowed here: {allowed}. Remove it, or set backend: "
                f"{series(others, 'or')}.")
        return {**e, "type": PydanticCustomError("foreign_option", text)}
    text = f"unknown key '{key}'. Allowed keys here ({spec.name} options): {allowed}. Check the spelling or remove it."
    return {**e, "type": PydanticCustomError("unknown_option", text)}
