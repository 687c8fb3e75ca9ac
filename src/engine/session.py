"""The session: one GGUF loaded into llama.cpp (model, context, vocabulary, chat template), its
tokens and prompt rendering, and evaluation with prefix reuse.

The KV cache keeps the tokens of the previous call; a new call evaluates only what follows the
longest common prefix, so a few-shot prefix shared by every article is computed once per model.

``Session`` is the base part of ``engine.llamacpp.LlamaCppBackend``: loading calls
``_prepare_sampling()``, which the sampling and grammar parts define (their buffers)."""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import Any

from core import sysinfo
from core.errors import ShootoutError
from engine import memory
from engine.runtime import LOAD_FACTS, LOG_TAIL, llama_cpp_ready, model_meta, warn_once
from engine.sampling import MIN_P, SAMPLING_MODES, TOP_K, TOP_P
from engine.types import PromptTooLong
from formats import chat


class Session:
    def __init__(self, path: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None,
                 n_gpu_layers: int | None = None, chat_template: str | None = None, name: str | None = None,
                 n_batch: int = 512, grammar_mode: str = "fast", sampling: str = "auto"):
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
        self.sampling = self.sampling_requested = sampling  # "auto" is resolved at load
        self.model = self.ctx = None
        self.offload: dict[str, Any] = {}
        self._kv: list[int] = []  # tokens whose keys/values are in the context now (sequence 0)
        # where the cache holds a prompt evaluated the exact way (``_evaluate_exactly``): the boundary it
        # was split at, its first tokens unchanged since (None: nothing there was evaluated that way)
        self._exact: int | None = None
        self._heads: dict = {}  # conversation before its last message -> that head's tokens
        self._grouped = None  # the logits the sampler's group maxima were taken from (until a decode)
        self.n_seq = 1
        self._load_facts: list[str] = []  # llama.cpp's log lines of this load about devices and memory
        self._grammars: dict[str, Any] = {}
        self.stats = {"grammar_checks": 0, "grammar_partial_passes": 0, "grammar_full_passes": 0,
                      "grammar_filtered_passes": 0, "grammar_filtered_partial_passes": 0, "grammar_reach_passes": 0,
                      "top_k_full_partitions": 0, "near_top_draws": 0, "top_p_uncertain": 0,
                      "device_redecodes": 0, "grammar_end_passes": 0}
        self._chars = None  # the first-character index of the vocabulary (built at load)
        self._char_rules: dict[str, bool] = {}
        self._chars_ok = False
        self._tail = b""
        self._json_end = None  # where a schema's JSON value ends (engine.grammar.JsonEnd)
        self._end_memos: dict[str, dict] = {}  # per grammar: accepted suffix after that end -> allowed ids
        self._end_memo: dict = {}
        self._pieces: dict[int, bytes] = {}

    # ------------------------------------------------------------------ life cycle
    def load(self) -> float:
        L = llama_cpp_ready()
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
        self.L, self.model = L, model
        ctx = self._new_context(1)
        if not ctx:
            L.llama_model_free(model)
            self.model = None
            raise ShootoutError(f"model '{self.name}': llama.cpp could not create a context of {self.n_ctx} tokens",
                                "lower run.num_ctx (or the model's options.num_ctx)")
        self.ctx = ctx
        self._load_facts = list(LOAD_FACTS)
        self.offload = memory.offload_facts(L, model, mp.n_gpu_layers, self._load_facts)
        if self.offload.get("warning"):
            warn_once(self.offload["warning"])
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
                gguf_template, self.template_override, model_meta(L, model, "general.architecture"))
        except chat.TemplateError as exc:
            self.close()
            raise ShootoutError(f"model '{self.name}': {exc}") from None
        # the per-token path allocates nothing: one token, one batch, a view of the logits
        self._tok1 = (L.llama_token * 1)()
        self._batch1 = L.llama_batch_get_one(self._tok1, 1)
        from llama_cpp import llama_cpp as _raw

        get_logits = _raw._lib["llama_get_logits_ith"]  # a private handle: returns the address as an int
        get_logits.argtypes, get_logits.restype = [ctypes.c_void_p, ctypes.c_int32], ctypes.c_void_p
        self._get_logits = get_logits
        self._views: dict[tuple, Any] = {}
        self._is_eog: dict[int, bool] = {}
        self._resolve_sampling()
        self._prepare_sampling()  # the candidate buffers and the grammar's index: their cost counts as loading
        self._kv = []
        self._exact = None
        return time.perf_counter() - t0

    def _new_context(self, n_seq: int):
        """A llama.cpp context for this model: ``n_seq`` sequences sharing one KV cache of n_ctx cells
        (one for generation, as llama-bench measures; label scoring asks for more when labels part
        after their first token: their continuations are decoded side by side, one batch)."""
        L = self.L
        cp = L.llama_context_default_params()
        cp.n_ctx = self.n_ctx
        cp.n_batch = cp.n_ubatch = self.n_batch
        cp.n_threads = cp.n_threads_batch = self.n_threads
        cp.no_perf = False
        if n_seq > 1:
            cp.n_seq_max = n_seq
            cp.kv_unified = True  # every sequence sees the whole context (not n_ctx / n_seq cells each)
        self.n_seq = n_seq
        ctx = L.llama_init_from_model(self.model, cp)
        if ctx:
            # llama.cpp lowers n_batch to n_ctx for a causal model: decode in the chunks it accepts
            self.n_batch = int(L.llama_n_batch(ctx))
        return ctx

    def _ensure_sequences(self, n: int) -> None:
        """A context with at least ``n`` sequences: made anew, once, when this one has fewer (the
        prompt cache is lost with it)."""
        if n <= self.n_seq:
            return
        n = min(256, 1 << (n - 1).bit_length())
        ctx = self._new_context(n)
        if not ctx:
            raise ShootoutError(f"model '{self.name}': llama.cpp could not create a context of {n} sequences "
                                f"for label scoring", "use fewer labels, or decoding: generate")
        self._device_detach()
        self.L.llama_free(self.ctx)
        self.ctx, self.mem = ctx, self.L.llama_get_memory(ctx)
        self._views.clear()
        self._kv, self._exact = [], None

    def _prepare_sampling(self) -> None:
        """Buffers the sampling parts need per load (defined by them)."""

    def close(self) -> None:
        if self.ctx is None and self.model is None:
            return
        L = self.L
        for g in self._grammars.values():
            L.llama_sampler_free(g)
        self._grammars.clear()
        self._end_memos.clear()
        if self.ctx:
            self._device_close()
            L.llama_free(self.ctx)
        if self.model:
            L.llama_model_free(self.model)
        self.ctx = self.model = None
        self._kv = []

    def __enter__(self):
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
            **({"sampling_requested": self.sampling_requested} if self.sampling_requested != self.sampling else {}),
            **({"sampling_note": self.sampling_note} if getattr(self, "sampling_note", "") else {}),
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
        self._grouped = None
        for i in range(0, len(tokens), self.n_batch):
            chunk = tokens[i:i + self.n_batch]
            arr = (L.llama_token * len(chunk))(*chunk)
            rc = L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(chunk)))
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            self._kv.extend(chunk)

    def _decode_one(self, token: int) -> None:
        self._grouped = None  # the logits change: the sampler's group maxima are of the last ones
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
        return self._view(addr, self.n_vocab, ctypes.c_float)

    def _view(self, addr: int, n: int, ctype):
        """A numpy view of ``n`` values of ``ctype`` in llama.cpp's memory at ``addr`` (no copy), kept
        per address: llama.cpp hands out the same few buffers step after step."""
        key = (addr, n, ctype)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 8:
                self._views.clear()
            view = self._np.frombuffer((ctype * n).from_address(addr), dtype=self._np.dtype(ctype))
            self._views[key] = view
        return view

    def _is_end(self, token: int) -> bool:
        hit = self._is_eog.get(token)
        if hit is None:
            hit = self._is_eog[token] = bool(self.L.llama_vocab_is_eog(self.vocab, token))
        return hit

    def logits_chunks(self, tokens: list[int]):
        """Yield ``(start, logits)`` with the next-token logits at every position of ``tokens``
        (float32, ``[chunk, n_vocab]``), n_batch positions at a time; the cache is cleared first."""
        self._device_detach()  # whole logits: no device sampler
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
        self._exact = None

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
        if self._exact is not None and n < self._exact:
            self._exact = None
        return n

    def _decode_all(self, tokens: list[int]):
        """Decode ``tokens`` after the cache (at most n_batch of them), returning the logits at every
        one of their positions (float32, ``[len(tokens), n_vocab]``, a copy)."""
        L, np = self.L, self._np
        n = len(tokens)
        self._grouped = None
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

    def memory_facts(self) -> dict[str, float]:
        """The KV cache, compute and model buffers llama.cpp reported when it loaded this model (MiB),
        and the GPU memory this process holds (NVML, where present)."""
        return memory.memory_facts(self._load_facts)

    def _check_fits(self, tokens: list[int]) -> None:
        if len(tokens) >= self.n_ctx:
            raise PromptTooLong(self.name, len(tokens), self.n_ctx)
