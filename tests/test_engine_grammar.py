"""The grammar's passes at temperature > 0 on the embedded Gemma 3 270M: the passes over part of the
vocabulary (the most likely tokens, the tokens within min-p's reach of the best allowed one, what the
first-character filter leaves) choose what the pass over the whole vocabulary chooses, draw for draw."""

from __future__ import annotations

import pytest

from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot


def _capture(engine, messages, temperature, seed, max_tokens):
    """A constrained reply with the logits of every step (copies) and the tokens chosen."""
    steps, tokens = [], []
    original = engine._sample

    def recording(chain, grammar):
        steps.append(engine._logits().copy())
        token = original(chain, grammar)
        tokens.append(token)
        return token

    engine._sample = recording
    try:
        engine.chat(messages, schema=SENTIMENT.constraint().schema, temperature=temperature, seed=seed,
                    max_tokens=max_tokens)
    finally:
        del engine._sample
    return steps, tokens


def _replay(engine, steps, temperature, seed, sampling):
    """The tokens the grammar's step chooses from the captured logits, in the given sampling mode."""
    current = [None]
    engine._logits = lambda: current[0]
    if sampling == "reference":  # llama_sampler_sample over these logits, not the context's
        engine._sample_free = lambda chain, logits=None: type(engine)._sample_free(engine, chain, current[0])
    engine.sampling = sampling
    chain = engine._chain(temperature, seed)
    grammar = engine._grammar(SENTIMENT.constraint().schema)
    engine._greedy = False
    try:
        out = []
        for logits in steps:
            current[0] = logits
            out.append(engine._sample(chain, grammar))
        return out
    finally:
        engine.L.llama_sampler_free(chain)
        del engine._logits
        engine.__dict__.pop("_sample_free", None)
        engine.sampling = "fast"


@pytest.mark.slow
def test_partial_grammar_passes_choose_what_the_whole_vocabulary_pass_chooses_at_temperature(engine):
    """Replies at temperature 0.9 from few-shot prompts (the model rarely ends its turn: after the JSON
    object it wants a word, and the grammar allows only a space or the end, ten nats below): the fast
    passes and the reference (the grammar over all 262,144 tokens whenever the sampled token is
    rejected) choose the same tokens from the same logits with the same seed, and the fast passes
    over parts of the vocabulary are the ones taken."""
    arts = load_snapshot()[:3]
    before = dict(engine.stats)
    fast_steps = 0
    for i, art in enumerate(arts):
        msgs = SENTIMENT.messages(art.to_item(), "few_shot")
        steps, tokens = _capture(engine, msgs, 0.9, 300 + i, 96)
        assert _replay(engine, steps, 0.9, 300 + i, "fast") == tokens
        assert _replay(engine, steps, 0.9, 300 + i, "reference") == tokens
        fast_steps += len(steps)
    used = {k: engine.stats[k] - before[k] for k in engine.stats}
    assert used["grammar_reach_passes"] >= 1 and used["grammar_partial_passes"] >= 1
    # the reference's whole-vocabulary passes are the only ones: the fast mode never needed one
    assert used["grammar_filtered_passes"] == 0
