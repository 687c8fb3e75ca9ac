"""Names shared by every stage: quant levels from file names, their bit widths, file-safe slugs."""

from __future__ import annotations

import os
import re
from pathlib import Path

QUANT_IN_NAME = re.compile(r"[.-](F16|BF16|F32|I?Q\d[A-Z0-9_]*)\.gguf$", re.IGNORECASE)


def quant_from_filename(path: str | Path) -> str | None:
    """``Q4_K_M`` from ``model.Q4_K_M.gguf`` (None when the name carries no quant level)."""
    m = QUANT_IN_NAME.search(Path(path).name)
    return m.group(1).upper() if m else None


def family_from_filename(path: str | Path) -> str:
    """``model`` from ``model.Q4_K_M.gguf``."""
    return QUANT_IN_NAME.sub("", Path(path).name).rstrip(".-")


def quant_bits(quant: str) -> float:
    """Rough bits per weight of a llama.cpp type name, for ordering (F16 before Q8_0 before Q4_K_M)."""
    q = str(quant).upper()
    if q in ("F32", "FP32"):
        return 32.0
    if q in ("F16", "FP16", "BF16"):
        return 16.0
    m = re.search(r"(\d+)", q)
    if not m:
        return 0.0
    bits = float(m.group(1))
    return bits + {"_L": 0.3, "_M": 0.2, "_S": 0.1}.get(q[-2:], 0.25 if "_0" in q or "_1" in q else 0.0)


def slug(name: str) -> str:
    """A file-system-safe version of a name (for folders and file names)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def relpath(path: str | Path, base: str | Path) -> str:
    """``path`` relative to the folder ``base`` (a config's folder), in POSIX form."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def series(items, word: str = "and") -> str:
    """Names as a sentence lists them: "a", "a and b", "a, b and c" (``word``: and / or)."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} " + items[-1] if items else ""
