"""The embedded engine: llama.cpp in process, through llama-cpp-python's low-level API.

Why not ``llama_cpp.Llama``: its grammar sampler checks all vocabulary entries at every step
(262k for Gemma 3), which made JSON-schema decoding four times slower than free decoding, and it
keeps a logits buffer of n_batch x n_vocab floats. This engine drives model, context, batch and a
sampler chain itself and decodes the way llama.cpp's own sampler does:

1. sample a token from the unconstrained chain (top-k, top-p, min-p, temperature, seeded dist;
   greedy at temperature 0);
2. ask the grammar about that single token;
3. only when the grammar rejects it, apply the grammar to the 256 most likely candidates (exact
   when enough of them are allowed: one for greedy, top-k for sampling), and only failing that to
   every candidate, then sample again.

At temperature 0 the result equals applying the grammar first (the greedy choice among allowed
tokens is the global argmax whenever that is allowed). ``grammar_mode="full"`` applies the
grammar first at every step, for comparison.

Sampling reads the logits in place with numpy (``sampling="fast"``, the default): the greedy
token is their argmax (the first maximum, as llama.cpp's greedy sampler picks), and for sampling
the 40 largest logits (found from the maxima of 64-token groups, exact up to ties) go through
the same llama.cpp sampler chain, whose top-k then keeps all of them: the same tokens, the same
seeded random draws, without building a 262,144-entry candidate array in C at every token.
When the grammar must see more than the sampled token, it sees the 256 most likely, then the
4,096 most likely, and only then the whole vocabulary less the tokens whose first character it
rejects (probed with one single-character token per first character). ``sampling="reference"``
keeps ``llama_sampler_sample`` over the whole vocabulary and the earlier grammar passes, for tests
and benchmarks.

The KV cache keeps the tokens of the previous call; a new call evaluates only what follows the
longest common prefix, so a few-shot prefix shared by every article is computed once per model.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from core import sysinfo
from formats import chat
from engine.types import LabelScores, PromptTooLong, Reply
from core.errors import ShootoutError

TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05
PARTIAL_PASS = 256  # candidates the grammar sees first when the sampled token is rejected
PARTIAL_SIZES = (PARTIAL_PASS, 4096)  # then these many, before the whole (prefiltered) vocabulary
SAMPLING_MODES = ("fast", "reference")


@functools.lru_cache(maxsize=8)
def schema_to_gbnf(schema_json: str) -> str:
    from formats.gbnf import schema_to_gbnf as convert

    return convert(json.loads(schema_json))


LOG_TAIL: list[str] = []  # llama.cpp's recent log lines, quoted in load errors
LOAD_FACTS: list[str] = []  # the lines of the last load that say where the weights went and what it took
_FACT_WORDS = ("offloaded", "using device", "model buffer size", "KV buffer size", "compute buffer size",
               "llama_kv_cache: size")


def _backend_ready() -> Any:
    import llama_cpp as L

    if not getattr(_backend_ready, "done", False):
        @L.llama_log_callback
        def _log(level, text, user_data):  # keep llama.cpp quiet; remember the tail for errors
            line = text.decode("utf-8", "replace")
            LOG_TAIL.append(line)
            del LOG_TAIL[:-40]
            if any(w in line for w in _FACT_WORDS):
                LOAD_FACTS.append(line.strip())

        _backend_ready.callback = _log  # a reference keeps the callback alive
        L.llama_log_set(_log, ctypes.c_void_p(0))
        L.llama_backend_init()
        _backend_ready.done = True
    return L


def _meta(L, model, key: str) -> str | None:
    buf = ctypes.create_string_buffer(256)
    n = L.llama_model_meta_val_str(model, key.encode(), buf, 256)
    return buf.value.decode("utf-8", "replace") if n >= 0 else None


ContextOverflow = PromptTooLong  # the name earlier versions used


def _offload_facts(L, model, n_gpu_layers: int, lines: list[str]) -> dict[str, Any]:
    """Where the weights went, as llama.cpp reported it while loading: whether this build can
    offload at all, the layers requested and offloaded, the devices and buffer sizes; plus a
    warning when a GPU is visible but the build is CPU-only."""
    supports = bool(L.llama_supports_gpu_offload())
    facts: dict[str, Any] = {"gpu_offload_supported": supports, "n_gpu_layers_requested": int(n_gpu_layers),
                             "n_layers": int(L.llama_model_n_layer(model))}
    offloaded = None
    for line in lines:
        m = re.search(r"offloaded (\d+)/(\d+) layers to GPU", line)
        if m:
            offloaded = (int(m.group(1)), int(m.group(2)))
    # the layer count llama.cpp reports includes the output layer (n_layers + 1)
    facts["layers_offloaded"] = offloaded[0] if offloaded else 0
    facts["layers_offloadable"] = offloaded[1] if offloaded else facts["n_layers"] + 1
    facts["devices"] = [re.sub(r"^\S+: ", "", x) for x in lines if "using device" in x]
    facts["buffers"] = [re.sub(r"^\S+:\s+", "", x) for x in lines if "buffer size" in x]
    warning = sysinfo.accelerator_warning(supports)
    if warning:
        facts["warning"] = warning
    return facts


_UTF8_LEN = (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4)  # by the lead byte's high 4 bits, as llama.cpp reads


def _first_char(piece: bytes) -> tuple[int | None, int]:
    """(code point, bytes) of the first character llama.cpp's grammar decodes from ``piece`` (with no
    unfinished character before it), or (None, 0) when the piece starts with a byte that cannot lead
    a character or ends inside it."""
    size = _UTF8_LEN[piece[0] >> 4]
    if size == 0 or len(piece) < size:
        return None, 0
    value = piece[0] & ((1 << (8 - size)) - 1) if size > 1 else piece[0]
    for b in piece[1:size]:
        if b == 0:
            return None, 0
        value = (value << 6) + (b & 0x3F)
    return value, size


def _utf8_unfinished(tail: bytes) -> bool:
    """Whether the bytes accepted so far end inside a character (the grammar is then mid-character)."""
    for i in range(1, min(4, len(tail)) + 1):
        b = tail[-i]
        if b >> 6 == 2:  # a continuation byte: look further back for the lead
            continue
        return _UTF8_LEN[b >> 4] > i
    return bool(tail)  # only continuation bytes: treat as unfinished


def _warn_once(message: str) -> None:
    if message not in _warn_once.seen:
        _warn_once.seen.add(message)
        sys.stderr.write(f"warning: {message}\n")


_warn_once.seen = set()


# First-character groups of a vocabulary take about a second to build for Gemma's 262,144 tokens on
# one core. They are kept in this process and on disk (``<cache>/char-groups/<digest>.npz``), keyed by
# a digest of what llama.cpp builds the pieces from: the GGUF's tokenizer metadata, the vocabulary
# size and the llama-cpp-python version. The rungs of a ladder share one entry, and so do later runs
# (benchmarks/char_groups.py measures it).
CHAR_GROUPS_FORMAT = 1
_CHAR_GROUPS: dict[str, tuple] = {}
_VOCAB_DIGESTS: dict[tuple, str | None] = {}  # (path, size, mtime, what builds the groups) -> digest


def _vocab_digest(path: Path, n_vocab: int) -> str | None:
    """The digest of a GGUF's vocabulary as llama.cpp reads it (None when its header cannot be read
    here: the groups are then built and kept for this file in this process only)."""
    import hashlib

    import numpy as np

    from formats import gguf_meta

    import llama_cpp

    st = path.stat()
    built_by = f"char-groups {CHAR_GROUPS_FORMAT} llama-cpp-python {llama_cpp.__version__} n_vocab {n_vocab}"
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, built_by)
    if memo in _VOCAB_DIGESTS:
        return _VOCAB_DIGESTS[memo]
    # reading the header takes a few tenths of a second for a 262k vocabulary: the digest of this very
    # file (path, size, modification time) is kept on disk too
    seen = _groups_file(hashlib.sha256(repr(memo).encode()).hexdigest(), "file")
    try:
        digest = seen.read_text().strip()
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            _VOCAB_DIGESTS[memo] = digest
            return digest
    except OSError:
        pass
    try:
        meta = gguf_meta.read(path, check_complete=False).metadata
    except (gguf_meta.GGUFError, OSError):
        digest = None
    else:
        h = hashlib.sha256(built_by.encode())
        for key in sorted(k for k in meta if k.startswith("tokenizer.") and "chat_template" not in k):
            value = meta[key]
            h.update(b"\0" + key.encode() + b"\0")
            if isinstance(value, list) and value and isinstance(value[0], str):
                h.update(np.fromiter(map(len, value), dtype=np.int64, count=len(value)).tobytes())
                h.update("".join(value).encode("utf-8", errors="surrogatepass"))
            elif isinstance(value, list):
                h.update(np.asarray(value, dtype=np.float64).tobytes())
            else:
                h.update(repr(value).encode())
        digest = h.hexdigest()
        _write_atomic(seen, digest.encode())
    _VOCAB_DIGESTS[memo] = digest
    return digest


def _groups_file(digest: str, kind: str = "npz") -> Path:
    from core.embedded import cache_dir

    return cache_dir() / "char-groups" / f"{digest}.{kind}"


def _read_groups(digest: str, n_vocab: int):
    """(group, probes) from the disk cache, or None when absent or not what a build gives (a damaged
    or foreign file is never used: it is rebuilt and replaced)."""
    import numpy as np

    try:
        with np.load(_groups_file(digest), allow_pickle=False) as z:
            group, probes = z["group"], z["probes"]
    except Exception:  # noqa: BLE001 - absent, truncated, not an npz: build instead
        return None
    if (group.dtype != np.int32 or group.shape != (n_vocab,) or probes.dtype != np.int32 or probes.ndim != 1
            or (n_vocab and not 0 <= group.min() <= group.max() <= len(probes))
            or (len(probes) and not 0 <= probes.min() <= probes.max() < n_vocab)):
        return None
    group.setflags(write=False)
    probes.setflags(write=False)
    return group, probes


def _write_groups(digest: str, groups) -> None:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, group=groups[0], probes=groups[1])
    _write_atomic(_groups_file(digest), buf.getvalue())


def _write_atomic(dest: Path, data: bytes) -> None:
    """Write a cache file whole, then rename it (parallel processes never see half a file); a cache
    folder that cannot be written only costs the next process the work again."""
    import os
    import tempfile

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except OSError:
        pass


class LlamaCppBackend:
    def __init__(self, path: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None,
                 n_gpu_layers: int | None = None, chat_template: str | None = None, name: str | None = None,
                 n_batch: int = 512, grammar_mode: str = "fast", sampling: str = "fast"):
        if grammar_mode not in ("fast", "full"):
            raise ValueError("grammar_mode must be 'fast' or 'full'")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}")
        self.path = Path(path)
        self.name = name or self.path.stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads or sysinfo.default_threads()
        self.n_gpu_layers = n_gpu_layers
        self.template_override = chat_template
        self.n_batch = n_batch
        self.grammar_mode = grammar_mode
        self.sampling = sampling
        self.model = self.ctx = None
        self.offload: dict[str, Any] = {}
        self._kv: list[int] = []  # tokens whose keys/values are in the context now (sequence 0)
        self._load_facts: list[str] = []  # llama.cpp's log lines of this load about devices and memory
        self._grammars: dict[str, Any] = {}
        self.stats = {"grammar_checks": 0, "grammar_partial_passes": 0, "grammar_full_passes": 0,
                      "grammar_filtered_passes": 0, "top_k_full_partitions": 0}
        self._chars = None  # the first-character index of the vocabulary (built at load)
        self._char_rules: dict[str, bool] = {}
        self._chars_ok = False
        self._tail = b""
        self._pieces: dict[int, bytes] = {}

    # ------------------------------------------------------------------ life cycle
    def load(self) -> float:
        L = _backend_ready()
        if not self.path.is_file():
            raise ShootoutError(f"model '{self.name}': GGUF not found: {self.path}",
                                "fix the path in config.yaml or build it with `shootout export`")
        t0 = time.perf_counter()
        mp = L.llama_model_default_params()
        if self.n_gpu_layers is not None:
            mp.n_gpu_layers = self.n_gpu_layers
        LOG_TAIL.clear()
        LOAD_FACTS.clear()
        model = L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not model:
            why = " ".join(line.strip() for line in LOG_TAIL if "error" in line.lower() or "fail" in line.lower())
            raise ShootoutError(f"model '{self.name}': llama.cpp could not load {self.path}"
                                + (f" ({why[-300:]})" if why else ""),
                                "the file may be truncated or not a GGUF; re-export it")
        cp = L.llama_context_default_params()
        cp.n_ctx = self.n_ctx
        cp.n_batch = cp.n_ubatch = self.n_batch
        cp.n_threads = cp.n_threads_batch = self.n_threads
        cp.no_perf = False
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            L.llama_model_free(model)
            raise ShootoutError(f"model '{self.name}': llama.cpp could not create a context of {self.n_ctx} tokens",
                                "lower run.num_ctx (or the model's options.num_ctx)")
        self.L, self.model, self.ctx = L, model, ctx
        self._load_facts = list(LOAD_FACTS)
        self.offload = _offload_facts(L, model, mp.n_gpu_layers, self._load_facts)
        if self.offload.get("warning"):
            _warn_once(self.offload["warning"])
        self.vocab = L.llama_model_get_vocab(model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.mem = L.llama_get_memory(ctx)
        self.bos = L.llama_vocab_bos(self.vocab)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.bos_text = self._piece(self.bos, special=True) if self.bos >= 0 else ""
        eos = L.llama_vocab_eos(self.vocab)
        self.eos_text = self._piece(eos, special=True) if eos >= 0 else ""
        raw = L.llama_model_chat_template(model, None)
        gguf_template = raw.decode("utf-8", "replace") if raw else None
        try:
            self.template, self.template_source = chat.resolve(
                gguf_template, self.template_override, _meta(L, model, "general.architecture"))
        except chat.TemplateError as exc:
            self.close()
            raise ShootoutError(f"model '{self.name}': {exc}") from None
        # candidate buffers: the full vocabulary (for grammar passes) and a single token (for checks)
        import numpy as np

        self._np = np
        self._cand = (L.llama_token_data * self.n_vocab)()
        self._cand_np = np.frombuffer(self._cand, dtype=np.dtype(
            [("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._eog = np.array(sorted({t for t in (L.llama_vocab_eos(self.vocab), L.llama_vocab_eot(self.vocab))
                                     if t >= 0 and L.llama_vocab_is_eog(self.vocab, t)}), dtype=np.int32)
        self._part = (L.llama_token_data * (max(PARTIAL_SIZES) + len(self._eog)))()
        self._part_np = np.frombuffer(self._part, dtype=self._cand_np.dtype)
        self._one = (L.llama_token_data * 1)()
        self._one_arr = L.llama_token_data_array(self._one, 1, -1, False)
        self._one_ref = ctypes.byref(self._one_arr)
        self._part_arr = L.llama_token_data_array(self._part, 0, -1, False)
        self._part_ref = ctypes.byref(self._part_arr)
        self._cand_arr = L.llama_token_data_array(self._cand, self.n_vocab, -1, False)
        self._cand_ref = ctypes.byref(self._cand_arr)
        # the per-token path allocates nothing: one token, one batch, the top-k candidates, a mask
        self._tok1 = (L.llama_token * 1)()
        self._batch1 = L.llama_batch_get_one(self._tok1, 1)
        self._topk = (L.llama_token_data * TOP_K)()
        self._topk_np = np.frombuffer(self._topk, dtype=self._cand_np.dtype)
        self._topk_arr = L.llama_token_data_array(self._topk, TOP_K, -1, False)
        self._topk_ref = ctypes.byref(self._topk_arr)
        n_groups = self.n_vocab // 64  # for _top: maxima of 64-token groups, in two passes of 8 rows
        self._group_max = np.empty(n_groups, dtype=np.float32) if n_groups >= 1024 else None
        self._group_max8 = np.empty(8 * n_groups, dtype=np.float32)
        from llama_cpp import llama_cpp as _raw

        get_logits = _raw._lib["llama_get_logits_ith"]  # a private handle: returns the address as an int
        get_logits.argtypes, get_logits.restype = [ctypes.c_void_p, ctypes.c_int32], ctypes.c_void_p
        self._get_logits = get_logits
        self._views: dict[int, Any] = {}
        self._is_eog: dict[int, bool] = {}
        self._chars = None
        if self.sampling == "fast" and self.n_vocab > 4 * max(PARTIAL_SIZES):
            self._char_index()  # for the full grammar pass; here, so that its cost counts as loading
        self._kv = []
        return time.perf_counter() - t0

    def close(self) -> None:
        if self.ctx is None and self.model is None:
            return
        L = self.L
        for g in self._grammars.values():
            L.llama_sampler_free(g)
        self._grammars.clear()
        if self.ctx:
            L.llama_free(self.ctx)
        if self.model:
            L.llama_model_free(self.model)
        self.ctx = self.model = None
        self._kv = []

    def __enter__(self) -> "LlamaCppBackend":
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def engine_info(self) -> dict[str, Any]:
        L = self.L
        buf = ctypes.create_string_buffer(256)
        L.llama_model_desc(self.model, buf, 256)
        import llama_cpp

        return {
            "engine": "llama.cpp (llama-cpp-python low-level API)",
            "llama_cpp_python": llama_cpp.__version__,
            "model_desc": buf.value.decode("utf-8", "replace"),
            "n_params": int(L.llama_model_n_params(self.model)),
            "model_bytes": int(L.llama_model_size(self.model)),
            "n_ctx": self.n_ctx, "n_threads": self.n_threads, "n_batch": self.n_batch,
            "n_gpu_layers": self.n_gpu_layers,
            **self.offload,
            "chat_template": self.template_source,
            "grammar_mode": self.grammar_mode,
            "sampling": self.sampling,
            "sampler": {"top_k": TOP_K, "top_p": TOP_P, "min_p": MIN_P},
            "system_info": L.llama_print_system_info().decode("utf-8", "replace").strip(),
        }

    # ------------------------------------------------------------------ tokens
    def _piece(self, token: int, special: bool = False) -> str:
        return self._piece_bytes(token, special).decode("utf-8", "replace")

    def _piece_bytes(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.L.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.L.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (self.L.llama_token * cap)()
        n = self.L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (self.L.llama_token * cap)()
            n = self.L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self._piece_bytes(t, special=True) for t in tokens).decode("utf-8", "replace")

    def render(self, messages: list[dict[str, str]]) -> str:
        try:
            return chat.render(self.template, messages, bos_token=self.bos_text, eos_token=self.eos_text)
        except chat.TemplateError:
            # Gemma 1/2 and Mistral v1 templates refuse a system role: fold it into the first user
            # turn the family's way (as Ollama does), else report the template's own complaint
            try:
                family, _ = chat.detect(self.template)
            except chat.TemplateError:
                family = None
            folded = chat.fold_system(family, messages) if family else None
            if folded is None:
                raise
            return chat.render(self.template, folded, bos_token=self.bos_text, eos_token=self.eos_text)

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        toks = self.tokenize(self.render(messages))
        if self.add_bos and self.bos >= 0 and (not toks or toks[0] != self.bos):
            toks.insert(0, self.bos)
        return toks

    # ------------------------------------------------------------------ evaluation
    def _decode(self, tokens: list[int]) -> None:
        L = self.L
        for i in range(0, len(tokens), self.n_batch):
            chunk = tokens[i:i + self.n_batch]
            arr = (L.llama_token * len(chunk))(*chunk)
            rc = L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(chunk)))
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            self._kv.extend(chunk)

    def _decode_one(self, token: int) -> None:
        self._tok1[0] = token
        rc = self.L.llama_decode(self.ctx, self._batch1)  # the batch points at _tok1: nothing to build
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc}")
        self._kv.append(token)

    def _logits(self):
        """The last position's logits as a float32 numpy view of llama.cpp's own buffer (no copy;
        valid until the next decode). Reading them waits for the device, as llama.cpp's getter does."""
        addr = self._get_logits(self.ctx, -1)
        if not addr:
            raise RuntimeError("llama.cpp returned no logits")
        view = self._views.get(addr)
        if view is None:
            if len(self._views) > 8:
                self._views.clear()
            view = self._np.frombuffer((ctypes.c_float * self.n_vocab).from_address(addr), dtype=self._np.float32)
            self._views[addr] = view
        return view

    def _is_end(self, token: int) -> bool:
        hit = self._is_eog.get(token)
        if hit is None:
            hit = self._is_eog[token] = bool(self.L.llama_vocab_is_eog(self.vocab, token))
        return hit

    def _top(self, logits, k: int):
        """Ids of the k largest logits (unordered; which of several equal logits at the k-th place is
        kept is unspecified, as in llama.cpp's partial sort). The vocabulary is cut into groups of
        64 tokens (token j with j + C, j + 2C, ...: one pass of elementwise maxima over 64 rows of
        C) and the k largest lie in the k groups with the largest maxima (were one of them in
        another group, k groups would each hold a larger logit); a partition of those 64 k logits
        picks them. A partition of the whole vocabulary when k is large next to the groups."""
        np = self._np
        groups = self._group_max
        if self.sampling == "reference" or groups is None or 4 * k > len(groups):
            self.stats["top_k_full_partitions"] += 1
            return np.argpartition(logits, -k)[-k:]
        n_main, c = 64 * len(groups), len(groups)
        np.fmax.reduce(logits[:n_main].reshape(8, -1), axis=0, out=self._group_max8)
        np.fmax.reduce(self._group_max8.reshape(8, -1), axis=0, out=groups)
        best = np.argpartition(groups, -k)[-k:]
        sub = logits[:n_main].reshape(64, c)[:, best].ravel()
        pick = np.argpartition(sub, -k)[-k:]
        ids = (pick // k) * c + best[pick % k]
        if n_main < self.n_vocab:  # the last n_vocab % 64 tokens, outside the groups
            ids = np.concatenate([ids, np.arange(n_main, self.n_vocab)])
            ids = ids[np.argpartition(logits[ids], -k)[-k:]]
        return ids

    def _sample_whole(self, chain, logits) -> int:
        """The chain over the whole vocabulary, as ``llama_sampler_sample`` applies it to the context's
        logits (every token a candidate, unsorted), then accepted."""
        return self._apply_chain(chain, self._cand_np, self._cand_arr, self._cand_ref, self._ids, logits)

    @staticmethod
    def _fill(cand, arr, ids, logits) -> None:
        """Write the candidates ``ids`` with their ``logits`` into the candidate array ``cand`` that
        ``arr`` describes to llama.cpp (unsorted, nothing selected)."""
        n = len(ids)
        cand["id"][:n] = ids
        cand["logit"][:n] = logits
        cand["p"][:n] = 0.0
        arr.size, arr.selected, arr.sorted = n, -1, False

    def _select(self, chain, cand, arr, ref) -> int | None:
        """The chain over the filled candidates; the token it selects, accepted (None if none)."""
        self.L.llama_sampler_apply(chain, ref)
        if arr.selected < 0:
            return None
        token = int(cand["id"][arr.selected])
        self.L.llama_sampler_accept(chain, token)
        return token

    def _apply_chain(self, chain, cand, arr, ref, ids, logits, grammar=None) -> int:
        """The chain (after the grammar, when given) over the candidates ``ids`` with their ``logits``."""
        self._fill(cand, arr, ids, logits)
        if grammar is not None:
            self.L.llama_sampler_apply(grammar, ref)
        token = self._select(chain, cand, arr, ref)
        if token is None:
            raise RuntimeError("sampler chain selected no token")
        return token

    def _sample_free(self, chain, logits=None) -> int:
        """One token from the unconstrained chain, as ``llama_sampler_sample(chain, ctx, -1)`` gives
        (``logits``: a vector to sample from instead of the context's, for tests)."""
        L = self.L
        if self.sampling == "reference":
            if logits is None:
                return int(L.llama_sampler_sample(chain, self.ctx, -1))
            return self._sample_whole(chain, logits)
        if logits is None:
            logits = self._logits()
        if self._greedy:
            return int(logits.argmax())  # the first maximum, as llama.cpp's greedy sampler takes
        # top-k is the chain's first step: the k largest logits are all it can keep, so the chain
        # applied to them (top-k, top-p, min-p, temperature, the seeded draw) picks as it would
        # from the whole vocabulary, drawing the same random number
        ids = self._top(logits, TOP_K)
        return self._apply_chain(chain, self._topk_np, self._topk_arr, self._topk_ref, ids, logits[ids])

    def logits_chunks(self, tokens: list[int]):
        """Yield ``(start, logits)`` with the next-token logits at every position of ``tokens``
        (float32, ``[chunk, n_vocab]``), n_batch positions at a time; the cache is cleared first."""
        self.clear_cache()
        try:
            for start in range(0, len(tokens), self.n_batch):
                yield start, self._decode_all(tokens[start:start + self.n_batch])
        finally:
            self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the prompt cache: the next call evaluates its whole prompt."""
        self.L.llama_memory_clear(self.mem, True)
        self._kv = []

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Keep the longest common prefix of the cache and ``tokens``; return its length."""
        n = 0
        for a, b in zip(self._kv, tokens):
            if a != b:
                break
            n += 1
        n = min(n, len(tokens) - 1)  # always evaluate at least one token to get fresh logits
        if n < len(self._kv):
            if not self.L.llama_memory_seq_rm(self.mem, 0, n, -1):
                self.L.llama_memory_clear(self.mem, True)
                n = 0
            del self._kv[n:]
        return n

    # ------------------------------------------------------------------ sampling
    def _chain(self, temperature: float, seed: int):
        L = self.L
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        if temperature <= 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        else:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(TOP_K))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(TOP_P, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(MIN_P, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(temperature))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _grammar(self, schema: dict[str, Any] | None, gbnf: str | None = None):
        key = gbnf or json.dumps(schema, sort_keys=True)
        g = self._grammars.get(key)
        if g is None:
            gbnf = gbnf or schema_to_gbnf(json.dumps(schema))
            g = self.L.llama_sampler_init_grammar(self.vocab, gbnf.encode("utf-8"), b"root")
            if not g:
                raise ShootoutError("llama.cpp rejected the task's grammar", gbnf[:300])
            self._grammars[key] = g
            # a grammar that names tokens (<...>) matches ids, not characters: no first-character filter
            self._char_rules[key] = "<" not in gbnf
        self.L.llama_sampler_reset(g)
        self._chars_ok = self._char_rules[key]
        self._tail = b""
        return g

    def _char_index(self):
        """Tokens grouped by the first character llama.cpp's grammar reads from them (decoded as its
        decode_utf8 does), with one single-character probe token per large group; built once per
        vocabulary (about a second for 262,144 tokens on one core; kept, see ``_CHAR_GROUPS``). Group 0 holds the tokens always checked: end of
        generation, pieces that do not start with a whole character, and small or probe-less groups."""
        if self._chars is not None:
            return self._chars
        np, L = self._np, self.L
        digest = _vocab_digest(self.path, self.n_vocab)
        key = digest or f"file:{self.path.resolve()}:{self.path.stat().st_mtime_ns}"
        if key not in _CHAR_GROUPS:  # another rung of the ladder, another arm: the same vocabulary
            groups = _read_groups(digest, self.n_vocab) if digest else None
            if groups is None:
                groups = self._char_groups()
                if digest:
                    _write_groups(digest, groups)
            _CHAR_GROUPS[key] = groups
            while len(_CHAR_GROUPS) > 4:
                _CHAR_GROUPS.pop(next(iter(_CHAR_GROUPS)))
        group, probes = _CHAR_GROUPS[key]
        probe_arr = (L.llama_token_data * max(1, len(probes)))()
        probe_np = np.frombuffer(probe_arr, dtype=self._cand_np.dtype)
        probe_struct = L.llama_token_data_array(probe_arr, len(probes), -1, False)
        self._chars = {"group": group, "probes": probes, "arr": probe_arr, "np": probe_np,
                       "struct": probe_struct, "ref": ctypes.byref(probe_struct),
                       "allowed": np.zeros(len(probes) + 1, dtype=np.bool_)}
        return self._chars

    def _char_groups(self):
        """(group of each token, probe token of each group) read from the loaded vocabulary."""
        np, L = self._np, self.L
        buf = ctypes.create_string_buffer(256)
        first = np.full(self.n_vocab, -1, dtype=np.int64)
        exact: dict[int, int] = {}
        for t in range(self.n_vocab):
            if L.llama_vocab_is_eog(self.vocab, t):
                continue
            n = L.llama_token_to_piece(self.vocab, t, buf, 256, 0, True)
            if n <= 0:
                continue
            cp, size = _first_char(buf.raw[:n])
            if cp is not None:
                first[t] = cp
                if size == n:
                    exact.setdefault(cp, t)
        cps, inverse, counts = np.unique(first, return_inverse=True, return_counts=True)
        group_of_cp = np.zeros(len(cps), dtype=np.int32)
        probes = []
        for i, (cp, count) in enumerate(zip(cps.tolist(), counts.tolist())):
            if cp >= 0 and count >= 4 and cp in exact:
                probes.append(exact[cp])
                group_of_cp[i] = len(probes)
        group = group_of_cp[inverse.reshape(-1)]
        group.setflags(write=False)
        probes = np.array(probes, dtype=np.int32)
        probes.setflags(write=False)
        return group, probes

    def _grammar_prefilter(self, grammar):
        """The tokens the grammar can allow now, found from the next characters it allows: a token is
        allowed only if its first character is (the grammar reads a piece character by character), so
        the probes (one single-character token per first character) are checked first, and the full
        pass then sees only the tokens whose first character passed, plus group 0. None when the
        filter does not apply: a grammar that names tokens, or a character left unfinished by the
        last token (the next piece's first bytes then complete it)."""
        if not self._chars_ok or _utf8_unfinished(self._tail):
            return None
        np, L = self._np, self.L
        ix = self._char_index()
        k = len(ix["probes"])
        if k == 0:
            return None
        c = ix["np"]
        c["id"] = ix["probes"]
        c["logit"] = 0.0
        c["p"] = 0.0
        arr = ix["struct"]
        arr.size, arr.selected, arr.sorted = k, -1, False
        L.llama_sampler_apply(grammar, ix["ref"])
        allowed = ix["allowed"]
        allowed[0] = True
        np.isfinite(c["logit"], out=allowed[1:])
        return np.flatnonzero(allowed[ix["group"]])

    def _piece_of(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece_bytes(token, special=True)
        return piece

    def _grammar_allows(self, grammar, token: int) -> bool:
        self.stats["grammar_checks"] += 1
        one = self._one[0]
        one.id, one.logit, one.p = token, 0.0, 0.0
        arr = self._one_arr
        arr.size, arr.selected, arr.sorted = 1, -1, False
        self.L.llama_sampler_apply(grammar, self._one_ref)
        return not math.isinf(one.logit)

    def _sample_partial(self, chain, grammar, logits, need: int, size: int = PARTIAL_PASS) -> int | None:
        """The grammar on the ``size`` most likely tokens (plus end-of-generation) only.

        Exact whenever at least ``need`` of them are allowed: every allowed token outside this set
        has a lower logit than all inside, so greedy (need 1) or top-k (need k) picks the same
        tokens as a pass over the whole vocabulary. Otherwise None, and the caller goes on."""
        np = self._np
        top = self._top(logits, size).astype(np.int32)
        ids = np.union1d(top, self._eog) if len(self._eog) else top
        c, arr = self._part_np, self._part_arr
        self._fill(c, arr, ids, logits[ids])
        self.L.llama_sampler_apply(grammar, self._part_ref)
        allowed = int(np.count_nonzero(np.isfinite(c["logit"][:len(ids)])))  # rejected logits become -inf
        if allowed < need:
            return None
        return self._select(chain, c, arr, self._part_ref)

    def _sample_full(self, chain, grammar) -> int:
        """Apply the grammar to every candidate, then the chain (llama.cpp's resampling step)."""
        logits = self._logits()
        if self.grammar_mode == "fast" and self.n_vocab > 4 * PARTIAL_PASS:
            # sampling needs TOP_K allowed tokens in the set; a second, wider set before the whole vocabulary
            sizes = (PARTIAL_PASS,) if self.sampling == "reference" else PARTIAL_SIZES
            for size in sizes:
                if self.n_vocab <= 4 * size:
                    break
                token = self._sample_partial(chain, grammar, logits, 1 if self._greedy else TOP_K, size)
                if token is not None:
                    self.stats["grammar_partial_passes"] += 1
                    return token
        self.stats["grammar_full_passes"] += 1
        ids = self._grammar_prefilter(grammar) if self.sampling == "fast" and self.grammar_mode == "fast" else None
        if ids is None:
            ids = self._ids
        else:  # the same candidates in the same (id) order, less those the grammar must reject
            self.stats["grammar_filtered_passes"] += 1
            logits = logits[ids]
        return self._apply_chain(chain, self._cand_np, self._cand_arr, self._cand_ref, ids, logits, grammar)

    def _sample(self, chain, grammar) -> int:
        L = self.L
        if grammar is None:
            return self._sample_free(chain)
        if self.grammar_mode == "fast":
            token = self._sample_free(chain)
            if not self._grammar_allows(grammar, token):
                token = self._sample_full(chain, grammar)
        else:
            token = self._sample_full(chain, grammar)
        L.llama_sampler_accept(grammar, token)
        self._tail = (self._tail + self._piece_of(token))[-4:]
        return token

    # ------------------------------------------------------------------ the call
    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.0, seed: int = 0, max_tokens: int = 256, grammar: str | None = None) -> Reply:
        if self.ctx is None:
            raise RuntimeError("load() the backend before chat()")
        L = self.L
        t_start = time.perf_counter()
        prompt = self.prompt_tokens(messages)
        self._check_fits(prompt)
        cached = self._reuse_prefix(prompt)
        t0 = time.perf_counter()
        self._decode(prompt[cached:])
        L.llama_synchronize(self.ctx)  # a GPU computes asynchronously: the prompt's time is its own
        prompt_s = time.perf_counter() - t0

        chain = self._chain(temperature, seed)
        self._greedy = temperature <= 0
        grammar = self._grammar(schema, grammar) if (schema or grammar) else None
        out: list[int] = []
        finish = "length"
        t1 = time.perf_counter()
        try:
            for _ in range(max_tokens):
                token = self._sample(chain, grammar)
                if self._is_end(token):
                    finish = "stop"
                    break
                out.append(token)
                if len(self._kv) >= self.n_ctx:
                    break
                self._decode_one(token)
        finally:
            L.llama_sampler_free(chain)
        gen_s = time.perf_counter() - t1
        text = self.detokenize(out)
        return Reply(text=text, finish_reason=finish, prompt_tokens=len(prompt), cached_tokens=cached,
                     completion_tokens=len(out), prompt_seconds=prompt_s, gen_seconds=gen_s,
                     wall_seconds=time.perf_counter() - t_start)

    def memory_facts(self) -> dict[str, float]:
        """The KV cache, compute and model buffers llama.cpp reported when it loaded this model (MiB),
        and the GPU memory this process holds (NVML, where present)."""
        def total(pattern: str) -> float:
            return sum(float(m.group(1)) for line in self._load_facts
                       if (m := re.search(pattern + r"\s*=\s*([\d.]+) MiB", line)))

        kv, compute, weights = total("llama_kv_cache: size"), total("compute buffer size"), total("model buffer size")
        out = {"kv_cache_mb": kv or None, "compute_buffer_mb": compute or None, "model_buffer_mb": weights or None,
               "vram_mb": sysinfo.vram_used_mb()}
        return {k: v for k, v in out.items() if v is not None}

    def _check_fits(self, tokens: list[int]) -> None:
        if len(tokens) >= self.n_ctx:
            raise PromptTooLong(self.name, len(tokens), self.n_ctx)

    # ------------------------------------------------------------------ label scoring
    def score_choices(self, messages: list[dict[str, str]], choices) -> LabelScores:
        """Every continuation's log-probability after the prompt and ``choices.prefix``, from one
        evaluation of the prompt: the KV cache keeps the shared part and each continuation is
        decoded on top of it, its logits read at every position. Nothing is sampled."""
        if self.ctx is None:
            raise RuntimeError("load() the backend before score_choices()")
        np, L = self._np, self.L
        t_start = time.perf_counter()
        text = self.render(messages) + choices.prefix
        eog = int(self._eog[0]) if (choices.terminal and len(self._eog)) else None
        seqs = {}
        for label, cont in choices.continuations.items():
            toks = self.tokenize(text + cont)
            if self.add_bos and self.bos >= 0 and (not toks or toks[0] != self.bos):
                toks.insert(0, self.bos)
            seqs[label] = toks + ([eog] if eog is not None else [])
        # the part every continuation shares is evaluated once; scoring starts where they part
        shared = min(len(t) for t in seqs.values())
        first = next(iter(seqs.values()))
        for toks in seqs.values():
            shared = next((i for i, (a, b) in enumerate(zip(first, toks)) if a != b), shared)
        shared = max(1, min(shared, min(len(t) for t in seqs.values()) - 1))
        self._check_fits(max(seqs.values(), key=len))
        cached = self._reuse_prefix(first[:shared])
        t0 = time.perf_counter()
        self._decode(first[cached:shared - 1])
        prompt_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        logprobs: dict[str, float] = {}
        evaluated = 0
        base = shared - 1  # the last shared token is re-decoded with each continuation, for its logits
        for label, toks in seqs.items():
            if not L.llama_memory_seq_rm(self.mem, 0, base, -1):
                raise RuntimeError("llama.cpp could not trim its cache")
            del self._kv[base:]
            tail = toks[base:]
            logits = self._decode_all(tail).astype(np.float64)
            lp = logits - logits.max(axis=1, keepdims=True)
            lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
            targets = np.asarray(tail[1:], dtype=np.int64)
            logprobs[label] = float(lp[np.arange(len(targets)), targets].sum())
            evaluated += len(tail)
        gen_s = time.perf_counter() - t1
        values = np.array(list(logprobs.values()))
        norm = np.exp(values - values.max())
        norm /= norm.sum()
        probs = dict(zip(logprobs, (float(x) for x in norm)))
        best = max(probs, key=probs.get)
        reply = Reply(text=choices.prefix + choices.continuations[best], finish_reason="stop",
                      prompt_tokens=shared, cached_tokens=cached, completion_tokens=evaluated,
                      prompt_seconds=prompt_s, gen_seconds=gen_s, wall_seconds=time.perf_counter() - t_start)
        return LabelScores(logprobs=logprobs, probs=probs, reply=reply)

    def _decode_all(self, tokens: list[int]):
        """Decode ``tokens`` after the cache (at most n_batch of them), returning the logits at every
        one of their positions (float32, ``[len(tokens), n_vocab]``, a copy)."""
        L, np = self.L, self._np
        n = len(tokens)
        batch = L.llama_batch_init(n, 0, 1)
        try:
            start = len(self._kv)
            batch.n_tokens = n
            for i, t in enumerate(tokens):
                batch.token[i] = t
                batch.pos[i] = start + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1
            rc = L.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            self._kv.extend(tokens)
            return np.ctypeslib.as_array(L.llama_get_logits(self.ctx), shape=(n, self.n_vocab)).copy()
        finally:
            L.llama_batch_free(batch)
