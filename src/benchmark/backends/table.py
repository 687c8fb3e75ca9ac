"""The table of backends: name -> spec, and building a model entry's backend from it. The backend
modules fill it (``benchmark.backends`` registers the shipped ones); nothing here imports them."""

from __future__ import annotations

from benchmark.backends.base import Backend, BackendSpec

BACKENDS: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    """Add a backend to the table (a name already there is replaced)."""
    BACKENDS[spec.name] = spec
    return spec


def spec_of(entry_or_name) -> BackendSpec:
    """The spec of a model entry's backend (or of a backend name)."""
    return BACKENDS[entry_or_name if isinstance(entry_or_name, str) else entry_or_name.backend]


def make_backend(entry, cfg, endpoint: str | None = None) -> Backend:
    """The engine for a model entry of config.yaml (at one of its endpoints, for servers)."""
    factory = spec_of(entry).factory
    return factory(entry, cfg) if endpoint is None else factory(entry, cfg, endpoint=endpoint)
