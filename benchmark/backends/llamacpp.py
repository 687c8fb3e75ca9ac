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

The KV cache keeps the tokens of the previous call; a new call evaluates only what follows the
longest common prefix, so a few-shot prefix shared by every article is computed once per model.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from core import chat
from benchmark.backends.base import LabelScores, PromptTooLong, Reply
from core.errors import ShootoutError

TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05
PARTIAL_PASS = 256  # candidates the grammar sees first when the sampled token is rejected


@functools.lru_cache(maxsize=8)
def schema_to_gbnf(schema_json: str) -> str:
    from benchmark.backends.gbnf import schema_to_gbnf as convert

    return convert(json.loads(schema_json))


LOG_TAIL: list[str] = []  # llama.cpp's recent log lines, quoted in load errors


def _backend_ready() -> Any:
    import llama_cpp as L

    if not getattr(_backend_ready, "done", False):
        @L.llama_log_callback
        def _log(level, text, user_data):  # keep llama.cpp quiet; remember the tail for errors
            LOG_TAIL.append(text.decode("utf-8", "replace"))
            del LOG_TAIL[:-400]

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


class LlamaCppBackend:
    def __init__(self, path: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None,
                 n_gpu_layers: int | None = None, chat_template: str | None = None, name: str | None = None,
                 n_batch: int = 512, grammar_mode: str = "fast"):
        if grammar_mode not in ("fast", "full"):
            raise ValueError("grammar_mode must be 'fast' or 'full'")
        self.path = Path(path)
        self.name = name or self.path.stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_gpu_layers = n_gpu_layers
        self.template_override = chat_template
        self.n_batch = n_batch
        self.grammar_mode = grammar_mode
        self.model = self.ctx = None
        self._kv: list[int] = []  # tokens whose keys/values are in the context now (sequence 0)
        self._load_log: list[str] = []  # llama.cpp's log while loading (memory figures)
        self._grammars: dict[str, Any] = {}
        self.stats = {"grammar_checks": 0, "grammar_partial_passes": 0, "grammar_full_passes": 0}

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
        self._load_log = list(LOG_TAIL)
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
        self._part = (L.llama_token_data * (PARTIAL_PASS + len(self._eog)))()
        self._part_np = np.frombuffer(self._part, dtype=self._cand_np.dtype)
        self._one = (L.llama_token_data * 1)()
        self._tok1 = (L.llama_token * 1)()
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
            "chat_template": self.template_source,
            "grammar_mode": self.grammar_mode,
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
        rc = self.L.llama_decode(self.ctx, self.L.llama_batch_get_one(self._tok1, 1))
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc}")
        self._kv.append(token)

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
        self.L.llama_sampler_reset(g)
        return g

    def _grammar_allows(self, grammar, token: int) -> bool:
        L = self.L
        self.stats["grammar_checks"] += 1
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        arr = L.llama_token_data_array(self._one, 1, -1, False)
        L.llama_sampler_apply(grammar, ctypes.byref(arr))
        return not math.isinf(arr.data[0].logit)

    def _sample_partial(self, chain, grammar, logits, need: int) -> int | None:
        """The grammar on the PARTIAL_PASS most likely tokens (plus end-of-generation) only.

        Exact whenever at least ``need`` of them are allowed: every allowed token outside this set
        has a lower logit than all inside, so greedy (need 1) or top-k (need k) picks the same
        tokens as a pass over the whole vocabulary. Otherwise None, and the caller does the full pass."""
        L, np = self.L, self._np
        top = np.argpartition(logits, -PARTIAL_PASS)[-PARTIAL_PASS:].astype(np.int32)
        ids = np.union1d(top, self._eog) if len(self._eog) else top
        n = len(ids)
        c = self._part_np[:n]
        c["id"] = ids
        c["logit"] = logits[ids]
        c["p"] = 0.0
        arr = L.llama_token_data_array(self._part, n, -1, False)
        L.llama_sampler_apply(grammar, ctypes.byref(arr))
        allowed = int(np.count_nonzero(np.isfinite(c["logit"])))  # the grammar sets rejected logits to -inf
        if allowed < need:
            return None
        L.llama_sampler_apply(chain, ctypes.byref(arr))
        if arr.selected < 0:
            return None
        token = int(arr.data[arr.selected].id)
        L.llama_sampler_accept(chain, token)
        return token

    def _sample_full(self, chain, grammar) -> int:
        """Apply the grammar to every candidate, then the chain (llama.cpp's resampling step)."""
        L, np = self.L, self._np
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
        if self.grammar_mode == "fast" and self.n_vocab > 4 * PARTIAL_PASS:
            token = self._sample_partial(chain, grammar, logits, 1 if self._greedy else TOP_K)
            if token is not None:
                self.stats["grammar_partial_passes"] += 1
                return token
        self.stats["grammar_full_passes"] += 1
        c = self._cand_np
        c["id"] = self._ids
        c["logit"] = logits
        c["p"] = 0.0
        arr = L.llama_token_data_array(self._cand, self.n_vocab, -1, False)
        L.llama_sampler_apply(grammar, ctypes.byref(arr))
        L.llama_sampler_apply(chain, ctypes.byref(arr))
        if arr.selected < 0:
            raise RuntimeError("sampler chain selected no token")
        token = int(arr.data[arr.selected].id)
        L.llama_sampler_accept(chain, token)
        return token

    def _sample(self, chain, grammar) -> int:
        L = self.L
        if grammar is None:
            return int(L.llama_sampler_sample(chain, self.ctx, -1))
        if self.grammar_mode == "fast":
            token = int(L.llama_sampler_sample(chain, self.ctx, -1))
            if not self._grammar_allows(grammar, token):
                token = self._sample_full(chain, grammar)
        else:
            token = self._sample_full(chain, grammar)
        L.llama_sampler_accept(grammar, token)
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
                if L.llama_vocab_is_eog(self.vocab, token):
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
        import re

        from core import sysinfo

        kv = sum(float(m.group(1)) for line in self._load_log
                 if (m := re.search(r"llama_kv_cache: size =\s*([\d.]+) MiB", line)))
        compute = sum(float(m.group(1)) for line in self._load_log
                      if (m := re.search(r"compute buffer size =\s*([\d.]+) MiB", line)))
        weights = sum(float(m.group(1)) for line in self._load_log
                      if (m := re.search(r"model buffer size =\s*([\d.]+) MiB", line)))
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
