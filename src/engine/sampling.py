"""Sampling: llama.cpp's sampler chain (top-k, top-p, min-p, temperature, seeded draw; greedy at
temperature 0) and the fast way of applying it.

Sampling reads the logits in place with numpy (``sampling="fast"``, the default): the greedy
token is their argmax (the first maximum, as llama.cpp's greedy sampler picks). For sampling, one
pass of elementwise maxima over 64-token groups (a third dearer than the argmax) finds the tokens
within 8 nats of the maximum (``_near_top``): when there are 40 or more, the 40 largest are among
them; when fewer, they are all the chain could draw from, and when top-p's cut among them is
certain (below) they alone go through the same llama.cpp sampler chain. Otherwise the 40 largest
logits (exact up to ties, from the same group maxima: ``_top``) go through it, whose top-k then
keeps all of them. Either way: the same tokens, the same seeded random draws, without building a
262,144-entry candidate array in C at every token.

Why fewer than 40 near-top tokens suffice. The chain is top-k 40, top-p 0.95, min-p 0.05,
temperature, draw. Min-p keeps a prefix (by logit) of what top-p keeps and nothing below
max + log 0.05 (3 nats down): every token it can keep is near the top. Top-p cuts the sorted top 40
where their running probability first reaches 0.95; the chain over the near-top tokens alone
normalizes by their sum, a lower bound of the top 40's, whose other tokens (40 - n at most) weigh
under exp(-8) each (the upper bound). When both bounds give the same cut (float margins included),
the chain cuts there from either set, keeps the same tokens and draws the same one with the same
random number (``tests/test_engine.py`` holds it draw for draw against the whole vocabulary).
``sampling="reference"`` keeps ``llama_sampler_sample`` over the whole vocabulary, for tests and
benchmarks.

``Sampling`` is one part of ``engine.llamacpp.LlamaCppBackend``: it works on the loaded model and
context the session part holds (``self.L``, ``self.ctx``, ``self.vocab``, ``self.n_vocab``)."""

from __future__ import annotations

import ctypes
import math

from engine.device_sampling import DeviceSampling

TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05
_WIDE = 8.0  # nats below the maximum: the near-top tokens gathered (min-p keeps none below log 0.05 = -3.0)
_WIDE_SHARE = math.exp(-_WIDE)  # the largest weight (the maximum's being 1) a token outside them has
_MARGIN = 1e-4  # relative, on top-p's running sums: llama.cpp sums floats, this sums doubles
SAMPLING_MODES = ("auto", "fast", "device", "reference")


def top_p_cut_certain(desc: list[float], n_more: int, weight: float) -> bool:
    """Whether top-p cuts the tokens of logits ``desc`` (descending) at the same place as it cuts them
    with ``n_more`` more tokens below them in the top 40, each of weight at most ``weight`` (the first
    token's being 1): the first place where the running sum reaches TOP_P of the total, for the total
    without them and with all of them at that weight, float margins included. Plain Python: a few
    tokens, each numpy call would cost more than the arithmetic."""
    top = desc[0]
    cum, run = [], 0.0
    for x in desc:
        run += math.exp(x - top)
        cum.append(run)
    low_at, high_at = TOP_P * run * (1 - _MARGIN), TOP_P * (run + n_more * weight) * (1 + _MARGIN)
    return next((i for i, c in enumerate(cum) if c >= low_at), len(cum)) == \
        next((i for i, c in enumerate(cum) if c >= high_at), len(cum))


class Sampling(DeviceSampling):
    _top_k = TOP_K

    def _prepare_sampling(self) -> None:
        """The candidate buffers, allocated once per load: the whole vocabulary (the reference sampler,
        the grammar's full pass) and the top-k candidates (the fast sampler); the per-token path
        allocates nothing."""
        import numpy as np

        L = self.L
        self._np = np
        self._cand = (L.llama_token_data * self.n_vocab)()
        self._cand_np = np.frombuffer(self._cand, dtype=np.dtype(
            [("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._eog = np.array(sorted({t for t in (L.llama_vocab_eos(self.vocab), L.llama_vocab_eot(self.vocab))
                                     if t >= 0 and L.llama_vocab_is_eog(self.vocab, t)}), dtype=np.int32)
        self._cand_arr = L.llama_token_data_array(self._cand, self.n_vocab, -1, False)
        self._cand_ref = ctypes.byref(self._cand_arr)
        self._topk = (L.llama_token_data * TOP_K)()
        self._topk_np = np.frombuffer(self._topk, dtype=self._cand_np.dtype)
        self._topk_arr = L.llama_token_data_array(self._topk, TOP_K, -1, False)
        self._topk_ref = ctypes.byref(self._topk_arr)
        n_groups = self.n_vocab // 64  # for _near_top and _top: the maxima of 64-token groups
        self._group_max = np.empty(n_groups, dtype=np.float32) if n_groups >= 1024 else None
        self._grouped = None
        self._prepare_device()

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
        self._group_maxima(logits)
        best = np.argpartition(groups, -k)[-k:]
        sub = logits[:n_main].reshape(64, c)[:, best].ravel()
        pick = np.argpartition(sub, -k)[-k:]
        ids = (pick // k) * c + best[pick % k]
        if n_main < self.n_vocab:  # the last n_vocab % 64 tokens, outside the groups
            ids = np.concatenate([ids, np.arange(n_main, self.n_vocab)])
            ids = ids[np.argpartition(logits[ids], -k)[-k:]]
        return ids

    def _group_maxima(self, logits):
        """The maxima of the 64-token groups (token j with j + C, j + 2C, ...) into ``_group_max``: one
        pass of elementwise maxima over 64 rows of C (a third dearer than an argmax), once per step
        (``_grouped`` names the logits they are of until the next decode)."""
        if self._grouped is logits:
            return self._group_max
        n_main = 64 * len(self._group_max)
        self._np.maximum.reduce(logits[:n_main].reshape(64, -1), axis=0, out=self._group_max)
        self._grouped = logits
        return self._group_max

    def _near_top(self, logits):
        """Ids of the tokens the sampler chain can draw from: the 40 largest when at least 40 lie within ``_WIDE`` of the maximum, else all of those
        when top-p's cut among them is certain (the module's text says why that is exact); None
        otherwise (the caller then takes the 40 largest logits from the group maxima)."""
        np, groups = self._np, self._group_maxima(logits)
        c = len(groups)
        n_main = 64 * c
        tail = logits[n_main:]
        top = float(groups.max()) if not len(tail) else max(float(groups.max()), float(tail.max()))
        thr = top - _WIDE
        hot = np.flatnonzero(groups >= thr)
        if len(hot) > 64:
            return None
        sub = logits[:n_main].reshape(64, c)[:, hot]
        rows, cols = np.nonzero(sub >= thr)
        ids = rows * c + hot[cols]
        if len(tail):
            ids = np.concatenate([ids, n_main + np.flatnonzero(tail >= thr)])
        n = len(ids)
        if n >= TOP_K:  # the 40 largest logits are among them: the chain's own top-k, exactly
            return ids[np.argpartition(logits[ids], -TOP_K)[-TOP_K:]] if n > TOP_K else ids
        if n <= 1:
            return ids if n else None
        # fewer than 40: the other top-40 tokens lie below the maximum by _WIDE at least
        if not top_p_cut_certain(sorted(logits[ids].tolist(), reverse=True), TOP_K - n, _WIDE_SHARE):
            self.stats["top_p_uncertain"] += 1
            return None
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
        if self._dev_chain is not None and logits is None:
            return self._device_sample(chain)
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
        # from the whole vocabulary, drawing the same random number; the tokens within min-p's
        # reach are all it can draw from, when top-p's cut among them is certain
        ids = self._near_top(logits) if self._group_max is not None else None
        if ids is None:
            ids = self._top(logits, TOP_K)
        else:
            self.stats["near_top_draws"] += 1
        return self._apply_chain(chain, self._topk_np, self._topk_arr, self._topk_ref, ids, logits[ids])
