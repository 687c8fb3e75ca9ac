"""Loading the embedded Gemma 3 270M (262,144 tokens) into the llama.cpp backend, side by side in one
run, each load in a new process as a benchmark run or a test command makes it:

1. no cache: the first-character groups built from the vocabulary (the way before the cache);
2. empty cache: built, plus the vocabulary's digest and writing both to the cache (a first load);
3. same file again: the groups and the file's vocabulary digest read from the cache;
4. another file, same vocabulary (a rung of a ladder, a copy): the header read for the digest, the
   groups read from the cache.

Each variant runs --repeat times (default 3), alternating, one thread, and the best load time is kept.
Usage: python benchmarks/char_groups.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from core.embedded import embedded_gguf  # noqa: E402

CHILD = """
import sys, time
from engine import chargroups
from engine.llamacpp import LlamaCppBackend
if sys.argv[2] == "off":
    chargroups.vocab_digest = lambda path, n_vocab: None  # no digest: built, kept in this process only
t = time.perf_counter()
b = LlamaCppBackend(sys.argv[1], n_ctx=512, n_threads=1, name="m")
b.load()
print(time.perf_counter() - t)
"""


def _load_seconds(path: Path, cache: Path, mode: str = "on") -> float:
    env = {**os.environ, "SHOOTOUT_CACHE": str(cache), "SHOOTOUT_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    src = embedded_gguf()
    names = ("no cache", "empty cache", "same file again", "another file, same vocabulary")
    best = dict.fromkeys(names, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.repeat):
            cache = tmp / f"cache{i}"
            model = tmp / f"model{i}.gguf"
            shutil.copyfile(src, model)
            rung = tmp / f"rung{i}.gguf"
            shutil.copyfile(src, rung)
            for name, path, mode in zip(names, (model, model, model, rung), ("off", "on", "on", "on")):
                best[name] = min(best[name], _load_seconds(path, cache, mode))
            model.unlink()
            rung.unlink()
    for name, secs in best.items():
        print(f"{name:32s} load {secs:6.2f} s   ({best['no cache'] / secs:4.2f}x as fast as no cache)")


if __name__ == "__main__":
    main()
