"""Grammar passes: JSON schema or GBNF constraints applied the way llama.cpp's own sampler does.

1. sample a token from the unconstrained chain;
2. ask the grammar about that single token;
3. only when the grammar rejects it, apply the grammar to the 256 most likely candidates (exact
   when enough of them are allowed: one for greedy, top-k for sampling), then to the 4,096 most
   likely, and only failing that to the whole vocabulary less the tokens whose first character it
   rejects (probed with one single-character token per first character: ``engine.chargroups``);
   then sample again.

At temperature 0 the result equals applying the grammar first (the greedy choice among allowed
tokens is the global argmax whenever that is allowed). ``grammar_mode="full"`` applies the
grammar first at every step, for comparison; ``sampling="reference"`` keeps the earlier passes
(256 candidates, then the whole vocabulary unfiltered).

``GrammarPasses`` is one part of ``engine.llamacpp.LlamaCppBackend``, over its ``Sampling`` part."""

from __future__ import annotations

import ctypes
import functools
import json
import math
from typing import Any

from core.errors import ShootoutError
from engine import chargroups
from engine.sampling import TOP_K, Sampling

PARTIAL_PASS = 256  # candidates the grammar sees first when the sampled token is rejected
PARTIAL_SIZES = (PARTIAL_PASS, 4096)  # then these many, before the whole (prefiltered) vocabulary


@functools.lru_cache(maxsize=8)
def schema_to_gbnf(schema_json: str) -> str:
    from formats.gbnf import schema_to_gbnf as convert

    return convert(json.loads(schema_json))


class GrammarPasses(Sampling):
    def _prepare_sampling(self) -> None:
        """The sampler's buffers, then the grammar's: the partial-pass candidates, a single token (for
        checks), and the first-character index (built here, so that its cost counts as loading)."""
        super()._prepare_sampling()
        L, np = self.L, self._np
        self._part = (L.llama_token_data * (max(PARTIAL_SIZES) + len(self._eog)))()
        self._part_np = np.frombuffer(self._part, dtype=self._cand_np.dtype)
        self._part_arr = L.llama_token_data_array(self._part, 0, -1, False)
        self._part_ref = ctypes.byref(self._part_arr)
        self._one = (L.llama_token_data * 1)()
        self._one_arr = L.llama_token_data_array(self._one, 1, -1, False)
        self._one_ref = ctypes.byref(self._one_arr)
        self._chars = None
        if self.sampling == "fast" and self.n_vocab > 4 * max(PARTIAL_SIZES):
            self._char_index()  # for the full grammar pass

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
        """Tokens grouped by the first character llama.cpp's grammar reads from them, with one
        single-character probe token per large group (``engine.chargroups``: built once per
        vocabulary, kept). Group 0 holds the tokens always checked: end of generation, pieces that do
        not start with a whole character, and small or probe-less groups."""
        if self._chars is not None:
            return self._chars
        np, L = self._np, self.L
        group, probes = chargroups.groups_for(self.path, self.n_vocab, self._char_groups)
        probe_arr = (L.llama_token_data * max(1, len(probes)))()
        probe_np = np.frombuffer(probe_arr, dtype=self._cand_np.dtype)
        probe_struct = L.llama_token_data_array(probe_arr, len(probes), -1, False)
        self._chars = {"group": group, "probes": probes, "arr": probe_arr, "np": probe_np,
                       "struct": probe_struct, "ref": ctypes.byref(probe_struct),
                       "allowed": np.zeros(len(probes) + 1, dtype=np.bool_)}
        return self._chars

    def _char_groups(self):
        """(group of each token, probe token of each group) read from the loaded vocabulary."""
        return chargroups.build_groups(self.L, self.vocab, self.n_vocab)

    def _grammar_prefilter(self, grammar):
        """The tokens the grammar can allow now, found from the next characters it allows: a token is
        allowed only if its first character is (the grammar reads a piece character by character), so
        the probes (one single-character token per first character) are checked first, and the full
        pass then sees only the tokens whose first character passed, plus group 0. None when the
        filter does not apply: a grammar that names tokens, or a character left unfinished by the
        last token (the next piece's first bytes then complete it)."""
        if not self._chars_ok or chargroups.utf8_unfinished(self._tail):
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

