"""Reading GGUF files for the export checks, side by side in one run on the embedded Gemma 3 270M.

1. The header (metadata with the 262,144-token vocabulary, tensor table):
   formats.gguf_meta.read (string arrays in one loop) against the same reader taking one string at a
   time (its previous way), and against gguf-py's GGUFReader (an object per field part).
2. Weight parity of an F16 GGUF with its source (every tensor dequantized and compared):
   export.verify.parity_weights (tables from gguf_meta, data memory-mapped) against the same
   comparison over gguf-py's GGUFReader tensors (its previous way).
3. With --hf: GGUF -> Hugging Face folder through transformers, with one gguf-py reader for the
   three parses transformers makes (config, tokenizer, weights) against a new reader each time.

Each variant runs --repeat times (default 3), alternating, and the best time is kept.
Usage: python benchmarks/gguf_reading.py [--repeat N] [--hf]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from core import gguf_meta  # noqa: E402
from core.embedded import embedded_gguf  # noqa: E402


def header_one_string_at_a_time(path: Path) -> gguf_meta.GGUFInfo:
    """gguf_meta.read with its string arrays read through _Reader.string, one call per string."""
    original = gguf_meta._Reader.strings

    def per_string(self, n):
        return [self.string() for _ in range(n)]

    gguf_meta._Reader.strings = per_string
    try:
        return gguf_meta.read(path)
    finally:
        gguf_meta._Reader.strings = original


def header_gguf_py(path: Path):
    from gguf import GGUFReader

    return GGUFReader(str(path))


def parity_gguf_py(source: Path, f16: Path) -> float:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    a, b = GGUFReader(str(source)), GGUFReader(str(f16))
    theirs = {t.name: t for t in b.tensors}
    worst = 0.0
    for t in a.tensors:
        x = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        u = theirs[t.name]
        y = dequantize(u.data, u.tensor_type).astype(np.float32).reshape(-1)
        worst = max(worst, float(np.abs(x - y).max() / max(float(np.abs(x).max()), 1e-12)))
    return worst


def best_of(variants: dict, repeat: int) -> dict[str, float]:
    times = {k: [] for k in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def show(title: str, times: dict[str, float], base: str) -> None:
    print(title)
    for name, t in times.items():
        print(f"  {name:<44} {t:8.2f} s   {times[base] / t:5.2f}x as fast" if name != base
              else f"  {name:<44} {t:8.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hf", action="store_true", help="also time GGUF -> Hugging Face folder (about 2 minutes)")
    args = ap.parse_args()
    src = embedded_gguf()
    print(f"source: {src.name} ({src.stat().st_size / 2**20:.0f} MiB)")

    times = best_of({"gguf-py GGUFReader": lambda: header_gguf_py(src),
                     "gguf_meta, one string at a time": lambda: header_one_string_at_a_time(src),
                     "gguf_meta.read": lambda: gguf_meta.read(src)}, args.repeat)
    show("1. header and vocabulary", times, "gguf-py GGUFReader")

    from export.quantize import quantize
    from export.verify import parity_weights

    with tempfile.TemporaryDirectory() as tmp:
        f16 = Path(tmp) / "f16.gguf"
        quantize(src, f16, "F16")
        assert abs(parity_gguf_py(src, f16) - parity_weights(src, f16)["max_rel_weight_diff"]) < 1e-12
        times = best_of({"over gguf-py GGUFReader tensors": lambda: parity_gguf_py(src, f16),
                         "export.verify.parity_weights": lambda: parity_weights(src, f16)}, args.repeat)
        show("2. weight parity, F16 against its Q4_K_M source", times, "over gguf-py GGUFReader tensors")

        if args.hf:
            import gguf

            from finetune import gguf_to_hf

            def fresh_readers():
                saved = gguf_to_hf._one_reader_per_file
                gguf_to_hf._one_reader_per_file = False
                try:
                    gguf_to_hf.gguf_to_hf_folder(src, Path(tmp) / "hf-a")
                finally:
                    gguf_to_hf._one_reader_per_file = saved

            times = best_of({"a new gguf-py reader per parse": fresh_readers,
                             "one reader per file": lambda: gguf_to_hf.gguf_to_hf_folder(src, Path(tmp) / "hf-b")},
                            max(1, args.repeat - 2))
            show("3. GGUF -> Hugging Face folder", times, "a new gguf-py reader per parse")
            assert gguf.GGUFReader.__name__ == "GGUFReader"  # the reader is restored after each conversion


if __name__ == "__main__":
    main()
