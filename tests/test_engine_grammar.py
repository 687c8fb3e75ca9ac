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
    original = engine._draw

    def recording(chain, grammar):
        steps.append(engine._logits().copy())
        token = original(chain, grammar)
        tokens.append(token)
        return token

    engine._draw = recording
    try:
        engine.chat(messages, schema=SENTIMENT.constraint().schema, temperature=temperature, seed=seed,
                    max_tokens=max_tokens)
    finally:
        del engine._draw
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
        engine._memo_ends = False  # the passes alone, also where the JSON value has ended
        try:
            assert _replay(engine, steps, 0.9, 300 + i, "fast") == tokens
        finally:
            del engine._memo_ends
        assert _replay(engine, steps, 0.9, 300 + i, "reference") == tokens
        fast_steps += len(steps)
    used = {k: engine.stats[k] - before[k] for k in engine.stats}
    assert used["grammar_reach_passes"] >= 1 and used["grammar_partial_passes"] >= 1
    assert used["grammar_end_passes"] >= 1  # after the JSON object: the tokens found there once
    # the reference's whole-vocabulary passes are the only ones: the fast mode never needed one
    assert used["grammar_filtered_passes"] == 0


@pytest.mark.slow
def test_tokens_allowed_after_the_json_value_are_what_the_grammar_allows_over_the_whole_vocabulary(engine):
    """Where the schema's JSON value has ended (and after the one space the grammar allows there) the
    kept set of allowed tokens is exactly the set llama.cpp's grammar leaves of all 262,144 tokens,
    reply after reply: the end of the turn (every end-of-generation token) and the space, then the
    end of the turn alone."""
    schema = SENTIMENT.constraint().schema
    seen = {}
    original = engine._draw

    def checking(chain, grammar):
        end = engine._json_end
        if end is not None and end.after is not None:
            whole = engine._allowed_among(grammar, engine._ids)  # the grammar over all 262,144 tokens
            kept = engine._end_allowed(grammar)
            assert kept is not None and sorted(kept.tolist()) == whole.tolist()
            seen[end.after] = [engine._piece_of(int(t)) for t in whole]
        return original(chain, grammar)

    engine._draw = checking
    try:
        for i, art in enumerate(load_snapshot()[:4]):
            r = engine.chat(SENTIMENT.messages(art.to_item(), "few_shot"), schema=schema, temperature=0.9,
                            seed=40 + i, max_tokens=160)
            assert r.text.rstrip().endswith("}")
    finally:
        del engine._draw
    assert b"" in seen
    eog = {engine._piece_of(int(t)) for t in engine._eog}
    assert eog <= set(seen[b""]) and b" " in seen[b""]
    if b" " in seen:
        assert set(seen[b" "]) >= eog and b" " not in seen[b" "]


def test_the_end_of_a_json_value_is_found_past_strings_escapes_and_nesting():
    """The root value ends at the brace or bracket that closes it, not at one inside a string (escaped
    quotes included) or a nested value; the bytes after it are kept up to a few, then no longer."""
    from engine.json_end import JsonEnd

    end = JsonEnd()
    for piece in (b'{"a": "x}', b'\\"', b'}\\\"}', b'", "b": [1, {"c": ', b'"]"}', b"]"):
        end.feed(piece)
        assert end.after is None
    end.feed(b"} ")
    assert end.after == b" "
    end.feed(b"\n")
    assert end.after == b" \n"
    end.feed(b"1234567")
    assert end.after is None  # past the kept suffix: no key
    array = JsonEnd()
    array.feed(b'[["]", "[" ], {}]')
    assert array.after == b""
    string = JsonEnd()  # a root that is not an object or array never closes here
    string.feed(b'"{}" ')
    assert string.after is None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast, kept end set", "fast, passes only", "reference"])
def test_greedy_pick_after_the_json_value_is_the_best_allowed_token_of_the_whole_vocabulary(engine, mode):
    """After the JSON object the grammar allows one space or the end of the turn. Logits set so that the
    256 most likely tokens are all forbidden there, the space lies just below them and the end of the
    turn far below: greedy decoding must pick the space, as llama.cpp's grammar over the whole
    vocabulary does; an end-of-turn token added to a partial pass from below its least logit must
    not settle the pick."""
    import numpy as np

    schema = SENTIMENT.constraint().schema
    space = engine.tokenize(" ")
    assert len(space) == 1
    space = space[0]
    rng = np.random.default_rng(7)
    logits = np.full(engine.n_vocab, -30.0, dtype=np.float32)
    words = [t for t in rng.choice(engine.n_vocab, 2000, replace=False).tolist()
             if engine._piece_of(t)[:1].isalpha()][:300]
    logits[words] = rng.uniform(10.0, 12.0, len(words)).astype(np.float32)
    logits[space] = 9.0
    logits[engine._eog] = 0.0
    engine._memo_ends = mode != "fast, passes only"
    engine.sampling = "reference" if mode == "reference" else "fast"
    engine._logits = lambda: logits
    try:
        for temperature, seed in ((0.0, 0), (0.8, 3)):
            grammar = engine._grammar(schema)
            for t in engine.tokenize('{"reasoning": "ok", "sentiment": 0.5, "confidence": 0.5}'):
                engine._accept(grammar, t)
            engine._greedy = temperature <= 0
            chain = engine._chain(temperature, seed)
            try:
                assert engine._sample_full(chain, grammar) == space
            finally:
                engine.L.llama_sampler_free(chain)
    finally:
        del engine._logits, engine._memo_ends
        engine.sampling = "fast"
