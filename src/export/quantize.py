"""Quantization with llama.cpp's own quantizer (in process, through llama-cpp-python).

Any llama.cpp file type by name (F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, IQ4_XS, ...). With
``allow_requantize`` a quantized GGUF can be turned back into F16 and walked down a ladder.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

from core import sysinfo
from core.errors import ShootoutError

DEFAULT_LADDER = ("Q8_0", "Q5_K_M", "Q4_K_M")


def _ftypes() -> dict[str, int]:
    import llama_cpp as L

    out = {}
    for attr in dir(L):
        if attr.startswith("LLAMA_FTYPE_MOSTLY_"):
            out[attr[len("LLAMA_FTYPE_MOSTLY_"):]] = getattr(L, attr)
    out["F32"] = L.LLAMA_FTYPE_ALL_F32
    return out


def quant_types() -> list[str]:
    """The llama.cpp file types the quantizer writes, by name (the table ``ftype`` reads)."""
    return sorted(_ftypes())


def ftype(name: str) -> int:
    types = _ftypes()
    key = name.strip().upper()
    if key not in types:
        raise ShootoutError(f"unknown quantization type '{name}'",
                            f"use one of: {', '.join(sorted(types))}")
    return types[key]


def quantize(src: str | Path, dst: str | Path, qtype: str, *, allow_requantize: bool = True,
             nthread: int | None = None, imatrix: dict | None = None) -> float:
    """Write ``dst`` as ``qtype`` from ``src``; returns seconds. The file appears only when complete.
    ``imatrix``: {tensor name: importance values} (see export.imatrix) to weight the rounding."""
    import llama_cpp as L

    from engine import llama_cpp_ready

    llama_cpp_ready()
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ShootoutError(f"cannot quantize: {src} not found")
    params = L.llama_model_quantize_default_params()
    params.ftype = ftype(qtype)
    params.allow_requantize = allow_requantize
    params.nthread = nthread or sysinfo.default_threads()
    keep = None
    if imatrix and qtype.upper() not in ("F16", "BF16", "F32"):
        from export.imatrix import to_ctypes

        arr, keep = to_ctypes(imatrix)
        params.imatrix = ctypes.cast(arr, type(params.imatrix))
        keep.append(arr)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    t0 = time.perf_counter()
    rc = L.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ShootoutError(f"llama.cpp failed to quantize {src} to {qtype} (code {rc})",
                            "check that the source is a complete GGUF; quantizing an already-quantized file "
                            "needs allow_requantize")
    del keep
    tmp.replace(dst)
    return time.perf_counter() - t0


def ladder_paths(out_dir: Path, name: str, types=DEFAULT_LADDER) -> dict[str, Path]:
    """``{type: path}`` for the F16 GGUF and each rung, named ``<name>.<TYPE>.gguf``."""
    return {t: Path(out_dir) / f"{name}.{t.upper()}.gguf" for t in ("F16", *types)}


def build_ladder(src: str | Path, out_dir: str | Path, name: str, types=DEFAULT_LADDER,
                 progress=None) -> dict[str, Path]:
    """F16 from ``src`` (requantized when it is quantized), then each rung from the F16.

    Rungs whose file already exists are kept (files appear only when complete)."""
    for t in types:
        ftype(t)  # fail on an unknown type before any work
    paths = ladder_paths(Path(out_dir), name, types)
    order = list(paths.items())
    for qtype, path in order:
        if path.is_file():
            if progress:
                progress(qtype, path, None)
            continue
        source = src if qtype == "F16" else paths["F16"]
        secs = quantize(source, path, qtype)
        if progress:
            progress(qtype, path, secs)
    return paths
