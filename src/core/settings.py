"""The base of every model that reads a settings block of config.yaml (run, report, models, a task's
block, a backend's options): unknown keys refused, defaults validated, a YAML truth value refused
where a number is asked for, and no whole number beyond what SQLite stores (64 bits).

Why the last: pydantic's lax mode reads ``true`` as 1 for an int (and 1.0 for a float), so
``iterations: yes`` or ``concurrency: true`` would pass as a one. A field whose type admits a bool
(``speed_bench: bool | int``) keeps taking one."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


_INT64 = 2**63 - 1  # what SQLite stores (run settings are kept with the run)


def _wants_number_not_bool(annotation) -> bool:
    """Whether a field of this type takes an int or a float but never a bool (a bool anywhere in it, or
    in what it holds, leaves it alone)."""
    seen: set = set()

    def walk(t):
        if t in seen:
            return
        seen.add(t)
        yield t
        for arg in typing.get_args(t):
            yield from walk(arg)

    kinds = list(walk(annotation))
    return bool not in kinds and any(k in (int, float) for k in kinds)


class SettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_truth_value_for_a_number(cls, value, info: ValidationInfo):
        if isinstance(value, bool) and info.field_name in cls.model_fields and \
                _wants_number_not_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not a yes/no")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT64:
            raise ValueError(f"is too large ({value:.3g}); no setting takes a number beyond {_INT64:,}")
        return value
