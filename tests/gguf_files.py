"""Small GGUF files written byte by byte (the published layout, version 3): a complete one with a
single F32 tensor, and the same cut short, for the header checks."""

from __future__ import annotations

import struct
from pathlib import Path


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_bytes(n_floats: int = 16) -> bytes:
    """A complete GGUF v3: general.architecture = llama, one F32 tensor of ``n_floats`` values."""
    kv = _string("general.architecture") + struct.pack("<I", 8) + _string("llama")
    tensor = _string("w") + struct.pack("<I", 1) + struct.pack("<Q", n_floats) + struct.pack("<I", 0) + \
        struct.pack("<Q", 0)
    head = b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", 1) + struct.pack("<Q", 1) + kv + tensor
    pad = (-len(head)) % 32
    return head + b"\0" * pad + struct.pack(f"<{n_floats}f", *range(n_floats))


def write_gguf(path: Path, *, truncate_to: int | None = None) -> Path:
    data = gguf_bytes()
    path.write_bytes(data if truncate_to is None else data[:truncate_to])
    return path
