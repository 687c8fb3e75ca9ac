"""Label scoring (log-probability mode): every label's continuation scored after one evaluation of
the prompt, nothing sampled. ``LabelScoring`` is one part of ``engine.llamacpp.LlamaCppBackend``,
over its session part (tokens, prefix reuse, ``_decode_all``)."""

from __future__ import annotations

import time

from engine.types import LabelScores, Reply


class LabelScoring:
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
