"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def embedded_model() -> Path:
    from core.embedded import embedded_gguf

    return embedded_gguf()


def machine() -> str:
    from core.sysinfo import hardware

    hw = hardware()
    gpus = ", ".join(hw["gpus"]) or "no GPU"
    return f"{hw['cpu']} ({os.cpu_count()} cores), {hw['ram_gib']} GiB, {gpus}, {platform.system()}"


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
