"""Sampling on the device: llama.cpp's backend sampling picks the K most likely tokens inside the
model's own graph, on the GPU, so a step copies K logits and ids to the host instead of the whole
vocabulary (262,144 floats for Gemma 3) and the host never scans it.

``sampling="device"`` attaches one sampler chain holding only top-k (K = 256, the grammar's first
partial pass; ``DEVICE_TOP_K``) to sequence 0 for as long as calls generate. Everything else runs on
the host over those K candidates, exactly as the fast sampler does over its own: the call's chain
(top-k 40, top-p, min-p, temperature, the seeded draw) keeps the 40 largest of them, which are the
40 largest of the vocabulary, so the same seed draws the same token in every mode; greedy takes
their first maximum. A grammar checks the drawn token, then the K candidates as the fast passes
check the most likely tokens (all K, and the tokens within min-p's reach of the best allowed one
when they all lie among the K: exact on the same conditions,
``GrammarPasses._device_passes``); only when none settles it is the position evaluated again
on a second sequence that has no device sampler, for its whole logits, and the fast passes run on
those (``stats["device_redecodes"]``; the context then holds two sequences, as a label-scoring
context does, only where constrained calls sample on the device).

Why K candidates and not the whole chain on the device: the draws stay those of the other modes
(one seeded chain per call, no device sampler to attach per call, which would make llama.cpp
reserve its graphs again), and the grammar's first pass needs the candidates anyway. What needs the
whole logits (label scoring, ``logits_chunks``, ``speed_bench``, which measures what llama-bench
does) detaches the sampler first; the next call attaches it again.

``sampling="auto"`` (the default) is ``device`` for unconstrained calls where every layer, the
output included, runs on a GPU and llama.cpp accepts the sampler, and ``fast`` otherwise: on a CPU
the same top-k is a sort in ggml that costs more than numpy's pass, and under a grammar the
positions sent back for whole logits (the end of a JSON object, where the end-of-turn token is far
down the list) cost more than the device saves. On an H200 with Gemma 3 270M (benchmarks/results/
2026-12-04-h200-device-sampling): unconstrained at T=0.7 +8% tokens/s over ``fast``, at T=0 +1.5%;
constrained at T=0.7 -11%, at T=0 -5% (hence ``auto``); ``device`` keeps it for every call.

``DeviceSampling`` is one part of ``engine.llamacpp.LlamaCppBackend`` (through ``Sampling``)."""

from __future__ import annotations

import ctypes

DEVICE_TOP_K = 256  # the grammar's first partial pass (engine.grammar.PARTIAL_PASS)


class DeviceSampling:
    _top_k: int  # the chain's top-k (engine.sampling.TOP_K, set by Sampling)
    _dev_chain = None  # the attached top-k chain (None: nothing attached)
    device_top_k = DEVICE_TOP_K  # candidates the device keeps (set before load to try another)
    device_constrained = True  # constrained calls sample on the device too
    auto_constrained = False  # ``auto`` samples constrained calls on the device too (benchmarks try it)

    def set_sampling(self, mode: str) -> None:
        """Switch the loaded engine's sampling mode (``auto`` resolved again), for benchmarks that
        compare modes on one load."""
        if mode == self.sampling_requested and mode == self.sampling:
            return
        self._device_detach()
        self.sampling = self.sampling_requested = mode
        self._resolve_sampling()
        self._prepare_device()

    def _resolve_sampling(self) -> None:
        """``auto`` becomes ``device`` or ``fast`` once the load's offload facts are known (before the
        sampling buffers are prepared)."""
        wanted = self.sampling_requested
        self.sampling_note = ""
        self.device_constrained = wanted == "device" or (wanted == "auto" and self.auto_constrained)
        if wanted == "auto":
            off = self.offload
            on_gpu = bool(off.get("gpu_offload_supported")) and bool(off.get("layers_offloadable")) and \
                off.get("layers_offloaded") == off.get("layers_offloadable")
            wanted = "device" if on_gpu else "fast"
        if wanted == "device" and not hasattr(self.L, "llama_set_sampler"):
            wanted, self.sampling_note = "fast", "this llama-cpp-python has no backend sampling"
        self.sampling = wanted

    def _prepare_device(self) -> None:
        """The device mode's buffers, and its sampler attached; ``fast`` (with the reason kept) where
        llama.cpp refuses it."""
        if self.sampling == "device":
            L = self.L
            if self.device_constrained:  # sequence 1: where a position is evaluated again for whole logits
                self._ensure_sequences(2)
                if getattr(self, "_batch_s1", None) is None:
                    self._batch_s1 = L.llama_batch_init(1, 0, 1)
            from llama_cpp import llama_cpp as raw

            # private handles returning addresses as ints (no ctypes pointer objects per step)
            self._get_cand_logits = raw._lib["llama_get_sampled_logits_ith"]
            self._get_cand_ids = raw._lib["llama_get_sampled_candidates_ith"]
            for f in (self._get_cand_logits, self._get_cand_ids):
                f.argtypes, f.restype = [ctypes.c_void_p, ctypes.c_int32], ctypes.c_void_p
            # at least the chain's top-k: its 40 largest must be among the candidates
            self._dev_k = min(max(self.device_top_k, self._top_k), self.n_vocab)
            self._dev = (L.llama_token_data * self._dev_k)()
            self._dev_np = self._np.frombuffer(self._dev, dtype=self._cand_np.dtype)
            self._dev_arr = L.llama_token_data_array(self._dev, self._dev_k, -1, False)
            self._dev_ref = ctypes.byref(self._dev_arr)
            if not self._device_attach():
                self.sampling, self.sampling_note = "fast", "llama.cpp could not run top-k on the device"

    def _device_attach(self) -> bool:
        """Attach a new top-k chain to sequence 0 (llama.cpp initializes a chain for one context once)."""
        if self._dev_chain is not None:
            return True
        L = self.L
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(self._dev_k))
        if not L.llama_set_sampler(self.ctx, 0, chain):
            L.llama_sampler_free(chain)
            return False
        self._dev_chain = chain
        return True

    def _device_detach(self) -> None:
        """Take the device sampler off (before anything that reads whole logits, or frees the context)."""
        chain = self._dev_chain
        if chain is None:
            return
        self.L.llama_set_sampler(self.ctx, 0, None)
        self.L.llama_sampler_free(chain)
        self._dev_chain = None

    def _device_close(self) -> None:
        self._device_detach()
        if getattr(self, "_batch_s1", None) is not None:
            self.L.llama_batch_free(self._batch_s1)
            self._batch_s1 = None

    def _device_ready(self, constrained: bool) -> None:
        """Before a call generates: the device sampler attached when this call samples on the device
        (label scoring may have taken it off), taken off when it does not (a constrained call under
        ``auto``). A run's calls are alike, so the sampler changes hands once, not per call."""
        if self.sampling != "device":
            return
        if constrained and not self.device_constrained:
            self._device_detach()
        elif self._dev_chain is None and not self._device_attach():
            raise RuntimeError("llama.cpp refused the device sampler it accepted at load")

    def _device_candidates(self):
        """(ids, logits) of the K most likely tokens at the last position, as the device picked them
        (unordered; views valid until the next decode). Reading them waits for the device."""
        lg = self._get_cand_logits(self.ctx, -1)
        ids = self._get_cand_ids(self.ctx, -1)
        if not lg or not ids:
            raise RuntimeError("llama.cpp returned no device-sampled candidates")
        return self._view(ids, self._dev_k, ctypes.c_int32), self._view(lg, self._dev_k, ctypes.c_float)

    def _device_sample(self, chain) -> int:
        """One token from the K candidates: greedy's first maximum, or the call's chain over their 40
        largest (its top-k keeps those of the whole vocabulary; ties at the 40th place as in
        ``Sampling._top``)."""
        np = self._np
        ids, vals = self._device_candidates()
        if self._greedy:
            best = vals.max()
            return int(ids[vals == best].min())  # the first maximum of the vocabulary, as greedy takes
        if len(vals) > 1024:  # llama.cpp's partial sort of a few hundred costs less than numpy's calls
            keep = np.argpartition(vals, -self._top_k)[-self._top_k:]
            ids, vals = ids[keep], vals[keep]
        return self._apply_chain(chain, self._dev_np, self._dev_arr, self._dev_ref, ids, vals)

    def _dev_scratch(self):
        """A vocabulary-long vector of -inf that holds the K candidates' logits during a grammar pass
        over them (a token outside reads -inf: seen as rejected, never as allowed)."""
        s = getattr(self, "_dev_scratch_v", None)
        if s is None:
            s = self._dev_scratch_v = self._np.full(self.n_vocab, -self._np.inf, dtype=self._np.float32)
        return s

    def _device_whole_logits(self) -> None:
        """Evaluate the last position again, for its whole logits, on sequence 1 (which has no device
        sampler, so llama.cpp copies them out) over a copy of sequence 0's cache before it: no
        sampler detached, no graph reserved again. ``_device_drop_copy`` removes the copy."""
        L = self.L
        if self.n_seq < 2:
            raise RuntimeError("a constrained call sampled on the device in a context of one sequence")
        n, last = len(self._kv), self._kv[-1]
        L.llama_memory_seq_rm(self.mem, 1, -1, -1)
        L.llama_memory_seq_cp(self.mem, 0, 1, 0, n - 1)
        b = self._batch_s1
        b.n_tokens = 1
        b.token[0], b.pos[0], b.n_seq_id[0], b.seq_id[0][0], b.logits[0] = last, n - 1, 1, 1, 1
        self._grouped = None
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc}")
        self.stats["device_redecodes"] += 1

    def _device_drop_copy(self) -> None:
        self.L.llama_memory_seq_rm(self.mem, 1, -1, -1)
