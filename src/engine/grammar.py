"""Grammar passes: JSON schema or GBNF constraints applied the way llama.cpp's own sampler does.

1. sample a token from the unconstrained chain;
2. ask the grammar about that single token;
3. only when the grammar rejects it, apply the grammar to the 256 most likely candidates (exact
   when enough of them are allowed: one for greedy, top-k for sampling; or, for sampling, when
   the tokens outside lie too far below the best allowed one ever to be drawn and top-p's cut is
   certain: ``_cut_certain``), then to the 4,096 most likely, and only failing that to the whole vocabulary less the tokens whose first character it
   rejects (probed with one single-character token per first character: ``engine.chargroups``);
   then sample again.

After the last character of a schema's JSON value (the object or array that is the root, closed)
the grammar's state no longer depends on the reply: only its trailing ``ws`` and the end of the turn
can follow. The tokens it allows there are found once per grammar and accepted suffix, by the exact
pass (the first-character filter, then the grammar over what it leaves), and reused on every later
reply that gets there (``_end_allowed``): the chain over exactly those tokens is the chain over the
whole vocabulary under the grammar. That position is where a model most often wants a token the
grammar forbids (a newline, a word, a code fence), and at temperature > 0 the end of the turn lies
far below the best tokens, so no partial pass settles it.

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
from engine.json_end import JsonEnd
from engine.sampling import MIN_P, TOP_K, Sampling, top_p_cut_certain

PARTIAL_PASS = 256  # candidates the grammar sees first when the sampled token is rejected
PARTIAL_SIZES = (PARTIAL_PASS, 4096)  # then these many, before the whole (prefiltered) vocabulary
_MIN_P_REACH = math.log(MIN_P) - 1e-3  # below the best allowed logit: min-p's threshold, with a margin
_REACH_WIDTHS = (-_MIN_P_REACH + 0.01, 8.0)  # nats below the best allowed logit checked in a reach pass
REACH_PASS = 32768  # at most these many candidates in a reach pass (the grammar checks ~2 per microsecond)


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
        self._part = (L.llama_token_data * (max(max(PARTIAL_SIZES), REACH_PASS) + len(self._eog)))()
        self._part_np = np.frombuffer(self._part, dtype=self._cand_np.dtype)
        self._part_arr = L.llama_token_data_array(self._part, 0, -1, False)
        self._part_ref = ctypes.byref(self._part_arr)
        self._one = (L.llama_token_data * 1)()
        self._one_arr = L.llama_token_data_array(self._one, 1, -1, False)
        self._one_ref = ctypes.byref(self._one_arr)
        self._chars = None
        if self.sampling != "reference" and self.n_vocab > 4 * max(PARTIAL_SIZES):
            self._char_index()  # for the full grammar pass

    _memo_ends = True  # reuse the allowed tokens after a schema's JSON value ends (tests turn it off)

    def _grammar(self, schema: dict[str, Any] | None, gbnf: str | None = None):
        from_schema = gbnf is None
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
        # a schema's grammar is ``root ::= root-value ws`` (formats.gbnf): its end can be followed
        self._json_end = JsonEnd() if from_schema and self._memo_ends else None
        self._end_memo = self._end_memos.setdefault(key, {})
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

    def _sample_partial(self, chain, grammar, logits, need: int, ids, bound: float, outside=None) -> int | None:
        """The grammar on the candidates ``ids`` (plus end-of-generation) only, every other token's logit
        being at most ``bound``; the best allowed logit is kept in ``_allowed_best`` (None: none).

        Exact whenever at least ``need`` of them are allowed with a logit of at least ``bound``: every
        allowed token outside this set is below them, so greedy (need 1) or top-k (need k) picks
        the same tokens as a pass over the whole vocabulary (end-of-generation tokens added from
        below the bound do not count towards ``need``). For sampling, also when fewer are allowed but
        the tokens outside lie below min-p's threshold under the best allowed one (they can never
        be drawn) and top-p's cut among the allowed ones is certain whatever up to 40 - n of them
        would add to the top 40's sum (``_cut_certain``, as in ``engine.sampling``; ``outside()``:
        the largest logits outside, which bound that sum better). Otherwise None, and the caller
        goes on."""
        np = self._np
        missing = [e for e in self._eog.tolist() if not (ids == e).any()]
        if missing:
            ids = np.concatenate([ids, np.array(missing, dtype=ids.dtype)])
        c, arr = self._part_np, self._part_arr
        self._fill(c, arr, ids, logits[ids])
        self.L.llama_sampler_apply(grammar, self._part_ref)
        after = c["logit"][:len(ids)]
        ok = np.isfinite(after)  # rejected logits become -inf
        allowed = int(np.count_nonzero(ok))
        self._allowed_best = float(after[ok].max()) if allowed else None
        # only allowed tokens at or above the bound outrank every token outside: the end-of-generation
        # tokens added from below it do not count (the best allowed token outside may lie between)
        ranked = int(np.count_nonzero(after >= bound))
        if ranked >= need or (need == TOP_K and allowed and self.sampling != "reference"
                              and self._cut_certain(after[ok], bound, outside)):
            return self._select(chain, c, arr, self._part_ref)
        return None

    def _cut_certain(self, allowed, bound: float, outside=None) -> bool:
        """Whether the chain over the ``allowed`` logits alone keeps what it would keep over the whole
        vocabulary under the grammar, when every other allowed token's logit is at most ``bound``:
        none of those reaches min-p's threshold, and top-p cuts the allowed ones at the same place
        with and without the 40 - n largest other tokens added to their sum (of weight
        exp(bound - max) each; failing that, as ``outside()`` gives them: the largest logits of the
        tokens not checked, in descending order)."""
        best = float(allowed.max())
        if bound >= best + _MIN_P_REACH:
            return False
        if len(allowed) == 1:
            return True
        desc = sorted(allowed.tolist(), reverse=True)
        more = TOP_K - len(allowed)
        if top_p_cut_certain(desc, more, math.exp(bound - best)):
            return True
        if outside is None or more <= 0:
            return False
        # each of the 40 - n largest left out at its own weight: their mean bounds them as well as all
        rest = outside()[:more].astype(float)
        return top_p_cut_certain(desc, len(rest), float(sum(math.exp(x - best) for x in rest)) / max(1, len(rest)))

    def _partial_passes(self, chain, grammar, logits, need: int, pool=None) -> int | None:
        """The grammar on part of ``pool`` (None: the vocabulary; else a set holding every token it can
        allow now): the 256 most likely; for sampling, once it allowed a token, then on every token
        within min-p's reach below the best allowed one (failing top-p's certainty, within 8 nats);
        then the 4,096 most likely. The token, or None when no part settles it."""
        np = self._np
        n = self.n_vocab if pool is None else len(pool)
        vals = logits if pool is None else logits[pool]
        for size in (PARTIAL_PASS,) if self.sampling == "reference" else PARTIAL_SIZES:
            if n <= 2 * size:
                break
            top = (self._top(logits, size).astype(np.int32) if pool is None
                   else pool[np.argpartition(vals, -size)[-size:]])
            token = self._sample_partial(chain, grammar, logits, need, top, float(logits[top].min()))
            if token is not None:
                return token
            if self._allowed_best is None or self.sampling == "reference":
                continue
            token = self._reach_passes(chain, grammar, logits, need, vals, pool,
                                       limit=REACH_PASS if pool is not None else max(PARTIAL_SIZES))
            if token is not None:
                return token
            return None  # a wider top pass settles nothing the passes within reach could not
        return None

    def _reach_passes(self, chain, grammar, logits, need: int, vals, ids=None, *, limit: int | None = None,
                      floor: float | None = None) -> int | None:
        """The grammar on every token within reach of the best allowed one (``_REACH_WIDTHS`` below
        it), where the drawn token must lie: ``vals`` the logits of ``ids`` (None: of the whole
        vocabulary, ``logits`` itself); more than ``limit`` such tokens, and the pass is left to the
        first-character filter. ``floor``: every token outside ``ids`` is at most this (the device's
        candidates); then a reach that goes below it, or leaves fewer than 40 candidates out to bound
        what top-p could add, settles nothing."""
        np = self._np
        for width in _REACH_WIDTHS:
            reach = self._allowed_best - width
            if floor is not None and floor >= reach:
                break  # tokens outside the candidates could be within reach
            inside = vals >= reach
            near = np.flatnonzero(inside)
            if limit is not None and len(near) > limit:
                break  # too many to check: the first-character filter first
            if floor is not None and len(vals) - len(near) < TOP_K:
                break

            def outside(inside=inside):  # the largest logits left out bound what top-p could add
                rest = vals[~inside]
                return -np.sort(-(np.partition(rest, -TOP_K)[-TOP_K:] if len(rest) > TOP_K else rest))

            token = self._sample_partial(chain, grammar, logits, need, near if ids is None else ids[near], reach,
                                         outside)
            if token is not None:
                self.stats["grammar_reach_passes"] += 1
                return token
        return None

    def _device_passes(self, chain, grammar, need: int) -> int | None:
        """The partial passes over the device's K candidates (the K most likely tokens; every other
        token's logit is at most their least, the floor): the 256 most likely when K is larger, then
        all K; for sampling, the tokens within reach of the best allowed one (``_reach_passes``, when
        they all are candidates). None when no pass settles it."""
        np = self._np
        ids, vals = self._device_candidates()
        ids, vals = ids.copy(), vals.copy()
        k = len(ids)
        scratch = self._dev_scratch()  # the candidates' logits at their ids, -inf elsewhere
        scratch[ids] = vals
        try:
            for size in ((PARTIAL_PASS,) if k > 2 * PARTIAL_PASS else ()) + (k,):
                top = ids if size == k else ids[np.argpartition(vals, -size)[-size:]]
                token = self._sample_partial(chain, grammar, scratch, need, top, float(scratch[top].min()))
                if token is None and self._allowed_best is not None:
                    token = self._reach_passes(chain, grammar, scratch, need, vals, ids, floor=float(vals.min()))
                if token is not None:
                    return token
            return None
        finally:
            scratch[ids] = -np.inf

    def _sample_full(self, chain, grammar) -> int:
        """Apply the grammar to every candidate, then the chain (llama.cpp's resampling step): in the
        fast mode, to parts of the vocabulary first (``_partial_passes``), then to parts of what the
        first-character filter leaves, and only then to all of that. In the device mode, to the
        device's candidates first; failing that, the position is evaluated again for its whole
        logits and the fast passes follow."""
        need = 1 if self._greedy else TOP_K
        if self._dev_chain is not None:
            token = self._device_passes(chain, grammar, need)
            if token is not None:
                self.stats["grammar_partial_passes"] += 1
                return token
            self._device_whole_logits()
            try:
                return self._sample_full_logits(chain, grammar, need)
            finally:
                self._device_drop_copy()
        return self._sample_full_logits(chain, grammar, need)

    def _end_allowed(self, grammar):
        """The tokens the grammar allows once the schema's JSON value has ended (and the bytes accepted
        since), found the first time by the exact pass: the first-character filter, then the grammar
        over every token it leaves (over the whole vocabulary where the filter does not apply). None
        before the end, or where more than a partial pass's worth are allowed."""
        end = self._json_end
        if end is None or end.after is None:
            return None
        ids = self._end_memo.get(end.after)
        if ids is None:  # the first time: the exact pass
            pool = self._grammar_prefilter(grammar)
            ids = self._end_memo[end.after] = self._allowed_among(grammar, self._ids if pool is None else pool)
        return ids if 0 < len(ids) <= REACH_PASS else None

    def _allowed_among(self, grammar, ids):
        """Those of the tokens ``ids`` the grammar allows now, in their order (llama.cpp's grammar on
        them, in the whole-vocabulary buffer)."""
        np = self._np
        ids = ids.astype(np.int32, copy=False)
        c = self._cand_np
        self._fill(c, self._cand_arr, ids, 0.0)
        self.L.llama_sampler_apply(grammar, self._cand_ref)
        return ids[np.isfinite(c["logit"][:len(ids)])]

    def _sample_full_logits(self, chain, grammar, need: int) -> int:
        logits = self._logits()
        ids = None
        if self.grammar_mode == "fast" and self.sampling != "reference":
            ends = self._end_allowed(grammar)
            if ends is not None:  # every token the grammar allows here, and only those
                self.stats["grammar_end_passes"] += 1
                return self._apply_chain(chain, self._part_np, self._part_arr, self._part_ref, ends, logits[ends],
                                         grammar)
        if self.grammar_mode == "fast" and self.n_vocab > 4 * PARTIAL_PASS:
            token = self._partial_passes(chain, grammar, logits, need)
            if token is not None:
                self.stats["grammar_partial_passes"] += 1
                return token
            if self.sampling != "reference":
                ids = self._grammar_prefilter(grammar)
                if ids is not None:  # the tokens the filter leaves hold every allowed one
                    token = self._partial_passes(chain, grammar, logits, need, pool=ids)
                    if token is not None:
                        self.stats["grammar_filtered_partial_passes"] += 1
                        return token
        self.stats["grammar_full_passes"] += 1
        if ids is None:
            ids = self._ids
        else:  # the same candidates in the same (id) order, less those the grammar must reject
            self.stats["grammar_filtered_passes"] += 1
            logits = logits[ids]
        return self._apply_chain(chain, self._cand_np, self._cand_arr, self._cand_ref, ids, logits, grammar)

    def _sample(self, chain, grammar) -> int:
        """The next token, drawn and taken by the grammar (``_draw``, then ``_accept``)."""
        token = self._draw(chain, grammar)
        if grammar is not None:
            self._accept(grammar, token)
        return token

    def _draw(self, chain, grammar) -> int:
        """The next token as the chain under the grammar draws it; the grammar has not taken it yet
        (``chat`` has it take the token while the device computes the next logits)."""
        if grammar is None:
            return self._sample_free(chain)
        if self.grammar_mode == "fast":
            token = self._sample_free(chain)
            if not self._grammar_allows(grammar, token):
                token = self._sample_full(chain, grammar)
        else:
            token = self._sample_full(chain, grammar)
        return token

    def _accept(self, grammar, token: int) -> None:
        """The grammar takes ``token``; the bytes it read so far are followed (the last few, for the
        first-character filter; where a schema's JSON value ends)."""
        self.L.llama_sampler_accept(grammar, token)
        piece = self._piece_of(token)
        self._tail = (self._tail + piece)[-4:]
        if self._json_end is not None:
            self._json_end.feed(piece)

