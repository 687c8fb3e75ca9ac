"""How a report compares and decides: config.yaml's ``report`` block as the run stored it, with the
caller's overrides, and the Decision's margins resolved for the run's task."""

from __future__ import annotations

import json
from dataclasses import dataclass

from benchmark import metrics as M
from core.errors import ShootoutError


@dataclass
class Settings:
    """The ``report`` block (``benchmark.config.ReportSettings``) of one report. ``margins``: the task's
    decision metrics at their default margins, the stored ones overriding and adding (``for_task``)."""

    reference: str = "highest_precision"
    margins: dict | None = None
    neutral_band: float = 0.1
    alpha: float = 0.05
    power: float = 0.8
    calibration_bins: int = 10
    price_per_hour: float | None = None
    latency: str = "alone"
    min_items: int = 20
    memory_bandwidth_gbs: float | None = None
    drift_tolerance: float = 0.1

    @classmethod
    def of(cls, stored: dict | None, override: dict | None = None) -> "Settings":
        """From a run's stored ``report`` settings (validated by the config schema), then ``override``."""
        from benchmark.config import ReportSettings

        merged = {**(stored or {}), **{k: v for k, v in (override or {}).items() if v is not None}}
        try:
            rs = ReportSettings(**merged)
        except Exception as exc:
            raise ShootoutError(f"report settings: {exc}", "fix the report block of config.yaml") from None
        return cls(reference=rs.reference, margins=None if rs.margins is None else dict(rs.margins),
                   neutral_band=rs.neutral_band, alpha=rs.alpha, power=rs.power,
                   calibration_bins=rs.calibration_bins, price_per_hour=rs.price_per_hour, latency=rs.latency,
                   min_items=rs.min_items, memory_bandwidth_gbs=rs.memory_bandwidth_gbs,
                   drift_tolerance=rs.drift_tolerance)

    def for_task(self, declared, value_range: tuple[float, float]) -> "Settings":
        """These settings with the margins filled in: the declared decision metrics at their defaults for
        the task's range, with the stored ones overriding and adding (a bias or consistency margin is never
        dropped by listing another metric's)."""
        self.margins = {**M.default_margins(declared, value_range), **(self.margins or {})}
        return self


def stored_settings(run) -> dict:
    settings = json.loads(run["settings_json"] or "{}")
    return settings.get("report") or {}


def stored_pairs(run) -> list[tuple[str, str]]:
    settings = json.loads(run["settings_json"] or "{}")
    return [tuple(p) for p in settings.get("compare", [])]
