"""Facts of a run's arms for runs that stored none (written before layout 4, or by a tool that stores
calls only): rebuilt from what the database holds. Identity (backend, family, quant, prompt style,
variant) from the arm's first call; the model's size from its loads' engine facts (llama.cpp's
``model_bytes``, Ollama's file size where stored); location and checkpoint from the stored config's
model entry, paths resolved from that config's folder as the run resolved them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import PurePath

from benchmark.store.rows import ArmFacts

_SIZE_KEYS = ("model_file_bytes", "model_bytes")  # engine facts that give the model's size, best first
_LOCATION_KEYS = ("path", "tag", "base_url")


def _entries(run: sqlite3.Row | tuple | None) -> tuple[dict[str, dict], PurePath | None]:
    """The stored config's model entries by name, and the folder of that config."""
    if run is None:
        return {}, None
    settings_json, config_path = run
    try:
        models = json.loads(settings_json or "{}").get("models") or []
    except (ValueError, AttributeError):
        models = []
    base = PurePath(config_path).parent if config_path else None
    return {m["name"]: m for m in models if isinstance(m, dict) and m.get("name")}, base


def _location(entry: dict, base: PurePath | None) -> str | None:
    for key in _LOCATION_KEYS:
        value = entry.get(key)
        if value:
            if key == "path" and str(value).split(":", 1)[0] != "embedded" and base is not None and not PurePath(value).is_absolute():
                return str(base / value)
            return str(value)
    if entry.get("endpoints"):
        return ", ".join(map(str, entry["endpoints"]))
    return None


def _size(engine_json: str | None) -> int | None:
    try:
        engine = json.loads(engine_json or "{}")
    except ValueError:
        return None
    for key in _SIZE_KEYS:
        value = engine.get(key) if isinstance(engine, dict) else None
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    return None


def derive_arms(db: sqlite3.Connection, run_id: str, skip: set[str] | frozenset = frozenset()) -> list[ArmFacts]:
    """One ArmFacts per arm that stored calls or loads in ``run_id`` (except those in ``skip``), in
    the order they first appear."""
    entries, base = _entries(db.execute("SELECT settings_json, config_path FROM runs WHERE run_id=?",
                                        (run_id,)).fetchone())
    seen: dict[str, dict] = {}
    for model, family, quant, backend, style, variant in db.execute(
            "SELECT model, family, quant, backend, prompt_style, variant FROM calls WHERE id IN "
            "(SELECT MIN(id) FROM calls WHERE run_id=? GROUP BY model) ORDER BY id", (run_id,)):
        seen[model] = {"family": family, "quant": quant, "backend": backend, "prompt_style": style,
                       "variant": variant}
    sizes: dict[str, int] = {}
    for model, backend, engine_json in db.execute(
            "SELECT model, backend, engine_json FROM model_loads WHERE run_id=? ORDER BY id", (run_id,)):
        seen.setdefault(model, {"backend": backend})
        size = _size(engine_json)
        if size is not None:
            sizes[model] = max(size, sizes.get(model, 0))
    out = []
    for model, known in seen.items():
        if model in skip:
            continue
        variant = known.get("variant")
        name = model[: -len(variant) - 1] if variant and model.endswith(f"@{variant}") else model
        entry = entries.get(name) or entries.get(model) or {}
        out.append(ArmFacts(
            run_id=run_id, model=model, entry=name, variant=variant,
            backend=known.get("backend") or entry.get("backend"),
            family=known.get("family") or entry.get("family"), quant=known.get("quant") or entry.get("quant"),
            prompt_style=known.get("prompt_style") or entry.get("prompt_style"),
            model_bytes=sizes.get(model), location=_location(entry, base) if entry else None,
            checkpoint=float(entry["checkpoint"]) if entry.get("checkpoint") is not None else None))
    return out
