"""The embedded engine: llama.cpp in process, through llama-cpp-python's low-level API.

Why not ``llama_cpp.Llama``: its grammar sampler checks all vocabulary entries at every step
(262k for Gemma 3), which made JSON-schema decoding four times slower than free decoding, and it
keeps a logits buffer of n_batch x n_vocab floats. This engine drives model, context, batch and a
sampler chain itself and decodes the way llama.cpp's own sampler does. ``LlamaCppBackend`` is made
of parts, one job each:

- ``engine.session``: load (model, context, template), tokens, evaluation with prefix reuse;
- ``engine.sampling``: the sampler chain, and the fast sampler that reads the logits in place;
- ``engine.device_sampling``: llama.cpp's top-k on the GPU, the chain over its candidates;
- ``engine.grammar``: the grammar passes (the sampled token first, then the most likely
  candidates, then the whole vocabulary less what the first-character filter rejects);
- ``engine.chargroups``: the first-character groups of a vocabulary, kept per vocabulary on disk;
- ``engine.scoring``: label scoring from one prompt evaluation;
- ``engine.speed``: llama-bench's pp512 / tg128 / tg128 at a depth, measured in process;
- ``engine.memory`` and ``engine.runtime``: offload and memory facts of a load, llama.cpp's
  library, log and warnings.

This module joins them and holds the call itself, ``chat``.
"""

from __future__ import annotations

import time
from typing import Any

from engine.grammar import PARTIAL_PASS, PARTIAL_SIZES, GrammarPasses, schema_to_gbnf
from engine.runtime import LOAD_FACTS, LOG_TAIL, llama_cpp_ready
from engine.sampling import MIN_P, SAMPLING_MODES, TOP_K, TOP_P
from engine.scoring import LabelScoring
from engine.session import Session
from engine.speed import SpeedBench
from engine.types import LabelScores, PromptTooLong, Reply

__all__ = ["LlamaCppBackend", "ContextOverflow", "LabelScores", "PromptTooLong", "Reply", "llama_cpp_ready",
           "schema_to_gbnf", "TOP_K", "TOP_P", "MIN_P", "SAMPLING_MODES", "PARTIAL_PASS", "PARTIAL_SIZES",
           "LOG_TAIL", "LOAD_FACTS"]

ContextOverflow = PromptTooLong  # the name earlier versions used


class LlamaCppBackend(LabelScoring, SpeedBench, GrammarPasses, Session):
    """One GGUF in llama.cpp: ``load()``, then ``chat()``, ``score_choices()`` and ``speed_bench()``;
    ``close()``."""

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.0, seed: int = 0, max_tokens: int = 256, grammar: str | None = None) -> Reply:
        if self.ctx is None:
            raise RuntimeError("load() the backend before chat()")
        L = self.L
        t_start = time.perf_counter()
        prompt = self.prompt_tokens(messages)
        self._check_fits(prompt)
        cached = self._reuse_prefix(prompt)
        self._device_ready(bool(schema or grammar))  # the prompt's last position is sampled there too
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
                token = self._draw(chain, grammar)
                if self._is_end(token):
                    finish = "stop"
                    break
                out.append(token)
                if len(self._kv) >= self.n_ctx:
                    break
                self._decode_one(token)
                if grammar is not None:  # a GPU computes the next logits meanwhile (llama_decode returns first)
                    self._accept(grammar, token)
        finally:
            L.llama_sampler_free(chain)
        gen_s = time.perf_counter() - t1
        text = self.detokenize(out)
        return Reply(text=text, finish_reason=finish, prompt_tokens=len(prompt), cached_tokens=cached,
                     completion_tokens=len(out), prompt_seconds=prompt_s, gen_seconds=gen_s,
                     wall_seconds=time.perf_counter() - t_start)
