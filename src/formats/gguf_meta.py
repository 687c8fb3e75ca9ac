"""Read a GGUF file's header without loading the model: metadata, tensor table, completeness.

Pure Python (no llama.cpp, no gguf-py), so the Modelfile writer and the export checks work
anywhere. ``read()`` raises :class:`GGUFError` with one clear sentence for a file that is not a
GGUF, is cut short, or has a tensor table pointing past its end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

# ggml tensor type id -> (elements per block, bytes per block); published in ggml's type traits
_BLOCK = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class GGUFError(ValueError):
    pass


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def n_bytes(self) -> int | None:
        if self.type_id not in _BLOCK:
            return None
        per, size = _BLOCK[self.type_id]
        return self.n_elements // per * size


@dataclass
class GGUFInfo:
    path: Path
    version: int
    metadata: dict = field(default_factory=dict)
    tensors: list[Tensor] = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def token_text(self, key: str) -> str | None:
        """Text of a special token by metadata key, e.g. ``tokenizer.ggml.eos_token_id``."""
        tid = self.metadata.get(key)
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if tid is None or not tokens or not 0 <= tid < len(tokens):
            return None
        return tokens[tid]

    @property
    def n_parameters(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def bits_per_weight(self) -> float | None:
        sizes = [t.n_bytes for t in self.tensors]
        if not sizes or None in sizes:
            return None
        return 8.0 * sum(sizes) / max(1, self.n_parameters)


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.b, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.b):
            raise GGUFError(f"{self.path}: the GGUF header is cut short at byte {self.pos} "
                            "(the file is truncated; download or export it again)")
        out = self.b[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        return self.take(n).decode("utf-8", errors="replace")

    def strings(self, n: int) -> list[str]:
        """An array of ``n`` strings (a vocabulary: 262k for Gemma), read in one tight loop."""
        b, pos, end, out = self.b, self.pos, len(self.b), []
        length = struct.Struct("<Q").unpack_from
        append = out.append
        for _ in range(n):
            if pos + 8 > end:
                self.pos = pos
                self.take(8)  # raises: cut short
            k = length(b, pos)[0]
            pos += 8
            if pos + k > end:
                self.pos = pos
                self.take(k)
            append(b[pos:pos + k].decode("utf-8", errors="replace"))
            pos += k
        self.pos = pos
        return out

    def value(self, vtype: int):
        if vtype in _SCALAR:
            return self.scalar(_SCALAR[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            itype, n = self.scalar("<I"), self.scalar("<Q")
            if itype in _SCALAR:
                fmt = _SCALAR[itype]
                size = struct.calcsize(fmt)
                raw = self.take(size * n)
                return list(struct.unpack(f"<{n}{fmt[1]}", raw))
            if itype == 8:
                return self.strings(n)
            return [self.value(itype) for _ in range(n)]
        raise GGUFError(f"{self.path}: unknown metadata value type {vtype} (not a GGUF this tool can read)")


def read(path: str | Path, *, check_complete: bool = True) -> GGUFInfo:
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if head != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file (it starts with {head!r}, a GGUF starts with b'GGUF')")
        # the header is small next to the tensor data; read generously, then more if needed
        want = min(size, 64 << 20)
        f.seek(0)
        data = f.read(want)
    try:
        info = _parse(data, path, size)
    except GGUFError as exc:
        if len(data) < size and "cut short" in str(exc):
            info = _parse(path.read_bytes(), path, size)
        else:
            raise
    if check_complete:
        _check_complete(info)
    return info


def _parse(data: bytes, path: Path, size: int) -> GGUFInfo:
    r = _Reader(data, path)
    r.take(4)
    version = r.scalar("<I")
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or 3 expected)")
    n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
    info = GGUFInfo(path=path, version=version, file_size=size)
    for _ in range(n_kv):
        key = r.string()
        info.metadata[key] = r.value(r.scalar("<I"))
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.scalar("<I")
        shape = tuple(r.scalar("<Q") for _ in range(n_dims))
        info.tensors.append(Tensor(name, shape, r.scalar("<I"), r.scalar("<Q")))
    align = int(info.metadata.get("general.alignment", 32))
    info.data_offset = (r.pos + align - 1) // align * align
    return info


def _check_complete(info: GGUFInfo) -> None:
    end = info.data_offset
    for t in info.tensors:
        nb = t.n_bytes
        if nb is not None:
            end = max(end, info.data_offset + t.offset + nb)
    if end > info.file_size:
        raise GGUFError(f"{info.path}: the file is truncated ({info.file_size:,} bytes, its tensor table needs "
                        f"{end:,}); download or export it again")
