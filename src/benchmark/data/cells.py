"""What every reader shares: a file's text decoded (a problem names the file, the line and the
encoding option), a cell read as a string, and a stable id made from a key."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from core.errors import ShootoutError


# characters that show nothing: a text made only of them (and whitespace) is empty
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def is_blank(text: str) -> bool:
    """Whether a text shows nothing: whitespace and zero-width characters only."""
    return not text.translate(_INVISIBLE).strip()


def regular_file(p: Path) -> None:
    """Refuse what is not a plain file (a pipe or a device would block the reader or never end)."""
    if p.exists() and not p.is_file() and not p.is_dir():
        raise ShootoutError(f"{p} is not a regular file (a pipe, a socket or a device)",
                            "point the dataset at a file or a folder of files")


def decode_file(p: Path, encoding: str) -> str:
    """The file's text; a decoding problem names the file, the line and the encoding option; a NUL
    character is refused (a binary or damaged file: no text of a dataset holds one)."""
    regular_file(p)
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
    nul = s.find("\x00")
    if nul >= 0:
        raise ShootoutError(f"{p} holds a NUL character on line {s.count(chr(10), 0, nul) + 1} (a binary or damaged "
                            "file?)", "remove it, or re-export the dataset as plain text")
    return s[1:] if s.startswith("\ufeff") else s



def cell_text(v: Any, p: Path, where: str, column: str) -> str | None:
    """A cell as a string: None for missing/NaN, integral floats without '.0', no lists or objects."""
    if v is None:
        return None
    if isinstance(v, str):
        if "\x00" in v:
            raise ShootoutError(f"{p}, {where}: column '{column}' holds a NUL character",
                                "remove it from the data (no text of a dataset holds one)")
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

