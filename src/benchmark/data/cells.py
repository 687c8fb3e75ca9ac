"""What every reader shares: a file's text decoded (a problem names the file, the line and the
encoding option), a cell read as a string, and a stable id made from a key."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from core.errors import ShootoutError


def decode_file(p: Path, encoding: str) -> str:
    """The file's text; a decoding problem names the file, the line and the encoding option."""
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ShootoutError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        s = raw.decode(encoding)
    except LookupError:
        raise ShootoutError(f"{p}: unknown encoding '{encoding}'",
                            "use a Python codec name such as utf-8, cp1252, shift_jis or latin-1") from None
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ShootoutError(
            f"{p} is not valid {encoding}: byte {raw[exc.start:exc.start + 1]!r} on line {line} cannot be decoded",
            "save the file as UTF-8, or set the dataset's encoding option to the file's encoding "
            "(e.g. cp1252, latin-1, shift_jis)") from None
    return s[1:] if s.startswith("\ufeff") else s



def cell_text(v: Any, p: Path, where: str, column: str) -> str | None:
    """A cell as a string: None for missing/NaN, integral floats without '.0', no lists or objects."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return str(int(v)) if v.is_integer() else str(v)
    if isinstance(v, (list, dict, tuple)):
        what = "an object" if isinstance(v, dict) else "a list"
        raise ShootoutError(f"{p}, {where}: column '{column}' holds {what}, not a single value",
                            "point the column mapping at a column of plain values")
    try:  # numpy scalars, decimals, dates from Parquet
        f = float(v)
        return str(int(f)) if f.is_integer() else str(v)
    except (TypeError, ValueError, OverflowError):
        return str(v)


def hash_id(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]

