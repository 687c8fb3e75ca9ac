"""Importance matrices for llama.cpp's quantizer, read from the files llama.cpp's imatrix tool writes.

Two formats: the GGUF one (tensors ``<weight>.in_sum2`` and ``<weight>.counts``, F32; the value
for a weight is in_sum2 / count per expert, 1 where a count is 0) and the legacy ``.dat`` one
(per entry: name, call count, values; the value is values / calls). The result is what
``llama_model_quantize_params.imatrix`` takes: a NULL-terminated array of (name, data, size).
"""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import numpy as np

from core.errors import ShootoutError


def load(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ShootoutError(f"importance-matrix file not found: {path}",
                            "make one with llama.cpp's llama-imatrix, or leave out --imatrix")
    head = path.read_bytes()[:4]
    try:
        return _load_gguf(path) if head == b"GGUF" else _load_legacy(path)
    except (struct.error, ValueError, IndexError) as exc:
        raise ShootoutError(f"{path} is not an importance matrix llama.cpp wrote ({exc})",
                            "pass the .gguf or .dat file from llama-imatrix") from None


def _load_gguf(path: Path) -> dict[str, np.ndarray]:
    from formats import gguf_meta

    info = gguf_meta.read(path)
    raw = path.read_bytes()
    tensors = {t.name: t for t in info.tensors}

    def arr(t) -> np.ndarray:
        if t.type_id != 0:
            raise ValueError(f"{t.name} is not F32")
        start = info.data_offset + t.offset
        return np.frombuffer(raw, dtype=np.float32, count=t.n_elements, offset=start)

    out = {}
    for name, t in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name[:-len(".in_sum2")]
        counts_t = tensors.get(base + ".counts")
        if counts_t is None:
            raise ValueError(f"{base} has sums but no counts")
        sums, counts = arr(t).astype(np.float32), arr(counts_t).astype(np.float32)
        per = sums.reshape(len(counts), -1)
        safe = np.where(counts > 0, counts, 1.0)[:, None]
        vals = np.where(counts[:, None] > 0, per / safe, 1.0)
        out[base] = np.ascontiguousarray(vals.reshape(-1), dtype=np.float32)
    if not out:
        raise ValueError("no .in_sum2 tensors")
    return out


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    b = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    n = take("<i")
    if n < 1:
        raise ValueError("no entries")
    out = {}
    for _ in range(n):
        ln = take("<i")
        name = b[pos:pos + ln].decode("utf-8")
        pos += ln
        ncall, nval = take("<i"), take("<i")
        if nval < 1:
            raise ValueError(f"entry {name} has no values")
        vals = np.frombuffer(b, dtype=np.float32, count=nval, offset=pos).copy()
        pos += 4 * nval
        out[name] = (vals / ncall if ncall > 0 else vals).astype(np.float32)
    return out


def write_legacy(path: str | Path, entries: dict[str, np.ndarray], ncall: int = 1) -> Path:
    """Write the legacy format (values are stored multiplied by the call count, as llama.cpp does)."""
    path = Path(path)
    parts = [struct.pack("<i", len(entries))]
    for name, vals in entries.items():
        nb = name.encode()
        v = (np.asarray(vals, dtype=np.float32) * ncall).astype(np.float32)
        parts += [struct.pack("<i", len(nb)), nb, struct.pack("<ii", ncall, v.size), v.tobytes()]
    path.write_bytes(b"".join(parts))
    return path


def to_ctypes(entries: dict[str, np.ndarray]):
    """(array for params.imatrix, objects to keep alive while quantizing)."""
    import llama_cpp as L

    keep = []
    arr = (L.llama_model_imatrix_data * (len(entries) + 1))()
    for i, (name, vals) in enumerate(entries.items()):
        nb = ctypes.create_string_buffer(name.encode())
        data = np.ascontiguousarray(vals, dtype=np.float32)
        keep += [nb, data]
        arr[i].name = ctypes.cast(nb, ctypes.c_char_p)
        arr[i].data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[i].size = data.size
    arr[len(entries)].name = None
    arr[len(entries)].size = 0
    return arr, keep
