"""The embedded engine (llama.cpp through llama-cpp-python) on the real Gemma 3 270M GGUF."""

from __future__ import annotations

import json

import pytest

from formats import chat
from engine.llamacpp import LlamaCppBackend
from benchmark.tasks.sentiment.news import load_snapshot
from benchmark.tasks.sentiment import SENTIMENT
from core.errors import ShootoutError

ARTICLES = load_snapshot()[:5]


def _messages(art, style="few_shot"):
    return SENTIMENT.messages(art.to_item(), style)


def _prefix_len(engine) -> int:
    """Tokens shared by the prompts of two articles about different companies: the few-shot prefix."""
    assert ARTICLES[0].company != ARTICLES[2].company
    a = engine.prompt_tokens(_messages(ARTICLES[0]))
    b = engine.prompt_tokens(_messages(ARTICLES[2]))
    n = 0
    while a[n] == b[n]:
        n += 1
    return n


@pytest.mark.slow
def test_fast_and_full_grammar_paths_give_identical_text_at_temperature_0(engine):
    # zero-shot prompts: the grammar paths are under test, not the prompt (the few-shot prefix
    # would be evaluated afresh 2 x 3 times for the same tokens out)
    for art in ARTICLES[:3]:
        texts = {}
        for mode in ("fast", "full"):
            engine.grammar_mode = mode
            engine.clear_cache()  # the same cache state for both, so the logits are bit-identical
            before = dict(engine.stats)
            reply = engine.chat(_messages(art, "zero_shot"), schema=SENTIMENT.constraint().schema, temperature=0.0, seed=1, max_tokens=160)
            texts[mode] = reply.text
            assert reply.finish_reason == "stop"
            data = json.loads(reply.text)  # the grammar guarantees the shape of the object
            assert list(data) == ["reasoning", "sentiment", "confidence"]
            full_passes = engine.stats["grammar_full_passes"] - before["grammar_full_passes"]
            if mode == "fast":  # most tokens pass the single-token check; few need the full pass
                assert full_passes < reply.completion_tokens / 2
            else:
                assert full_passes == reply.completion_tokens + 1
        engine.grammar_mode = "fast"
        assert texts["fast"] == texts["full"], art.title


@pytest.mark.slow
def test_shared_few_shot_prefix_is_evaluated_once(engine):
    engine.clear_cache()
    prefix = _prefix_len(engine)
    assert prefix > 500  # system prompt + five worked examples
    # a few tokens each: what the prompt cache holds is under test, not the replies
    replies = [engine.chat(_messages(a), schema=SENTIMENT.constraint().schema, temperature=0.7, seed=i, max_tokens=8)
               for i, a in enumerate(ARTICLES[:3])]
    assert replies[0].cached_tokens == 0
    for r in replies[1:]:
        assert r.cached_tokens >= prefix
        assert r.prompt_tokens - r.cached_tokens < r.prompt_tokens - prefix + 8  # only the article is evaluated


@pytest.mark.slow
def test_reply_carries_counts_and_timings(engine):
    r = engine.chat(_messages(ARTICLES[2]), schema=SENTIMENT.constraint().schema, temperature=0.7, seed=3, max_tokens=160)
    assert r.prompt_tokens > 600 and r.completion_tokens > 5
    assert r.prompt_seconds > 0 and r.gen_seconds > 0
    assert r.wall_seconds >= r.prompt_seconds + r.gen_seconds


@pytest.mark.slow
def test_same_seed_gives_the_same_text(engine):
    outs = []
    for seed in (11, 11, 12):
        engine.clear_cache()
        # zero-shot: the seed is under test, not the prompt
        outs.append(engine.chat(_messages(ARTICLES[3], "zero_shot"), schema=SENTIMENT.constraint().schema,
                                temperature=1.0, seed=seed, max_tokens=120).text)
    assert outs[0] == outs[1] != outs[2]


@pytest.mark.slow
def test_token_limit_is_reported_as_length(engine):
    r = engine.chat(_messages(ARTICLES[0]), schema=None, temperature=0.0, seed=0, max_tokens=6)
    assert r.finish_reason == "length" and r.completion_tokens == 6


def test_truncated_gguf_is_a_clear_error(tmp_path, embedded_gguf):
    bad = tmp_path / "cut.gguf"
    with open(embedded_gguf, "rb") as f:
        bad.write_bytes(f.read(1_000_000))
    with pytest.raises(ShootoutError) as err:
        LlamaCppBackend(bad, name="cut").load()
    assert "could not load" in err.value.message and "cut.gguf" in err.value.message


def test_gemma_fallback_template_renders_turns(engine):
    text = engine.render([{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                          {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}])
    assert text == ("<bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n"
                    "<start_of_turn>user\nV<end_of_turn>\n<start_of_turn>model\n")


def test_missing_template_without_fallback_names_the_fix():
    with pytest.raises(chat.TemplateError) as err:
        chat.resolve(None, None, "some-new-arch")
    assert "options.chat_template" in str(err.value)
    src, origin = chat.resolve(None, None, "gemma3")
    assert "gemma" in origin
    assert chat.resolve("{{ x }}", "chatml")[1] == "built-in 'chatml'"


@pytest.mark.slow
def test_constrained_replies_are_always_json_objects(engine):
    """Even at a high temperature, a reply that ends by end-of-turn is a JSON object (no raw
    control characters inside strings: the grammar follows JSON, not llama-cpp-python's looser rule)."""
    arts = load_snapshot()[5:11]
    stopped = 0
    for i, art in enumerate(arts):
        r = engine.chat(_messages(art), schema=SENTIMENT.constraint().schema, temperature=1.3, seed=100 + i, max_tokens=200)
        if r.finish_reason == "stop":
            stopped += 1
            data = json.loads(r.text)
            assert set(data) == {"reasoning", "sentiment", "confidence"}
    assert stopped >= len(arts) // 2


# ------------------------------------------------------------------ sampling (issue 16)

def _chain_distribution(logits, temperature):
    """The distribution llama.cpp's chain samples from, computed independently in float64: top-k 40,
    then top-p 0.95 over the top-k softmax, then min-p 0.05 on the logits, then temperature."""
    import numpy as np

    from engine.llamacpp import MIN_P, TOP_K, TOP_P

    order = np.argsort(-logits, kind="stable")[:TOP_K]
    rel = logits[order].astype(np.float64) - logits[order[0]]
    cum = np.cumsum(np.exp(rel)) / np.exp(rel).sum()
    keep = min(int(np.searchsorted(cum, TOP_P)) + 1, int(np.count_nonzero(rel >= np.log(MIN_P))))
    margin = abs(cum[keep - 1] - TOP_P) if keep <= len(cum) else 1.0
    w = np.exp(rel[:keep] / temperature)
    return order[:keep], w / w.sum(), margin


def _test_logits(engine, kind):
    import numpy as np

    rng = np.random.default_rng({"spread": 1, "peaked": 2, "near40": 3, "uncertain": 4}[kind])
    x = rng.standard_normal(engine.n_vocab).astype(np.float32)
    top = rng.choice(engine.n_vocab, 60, replace=False)
    if kind == "spread":  # many candidates: top-k, top-p and min-p all cut
        x[top] = 9.0 - 0.25 * np.arange(60, dtype=np.float32)
    elif kind == "peaked":  # a few tokens far above the rest: fewer than 40 within the near-top width
        x[top[:5]] = [40.0, 38.5, 38.0, 37.2, 36.0]
    elif kind == "near40":  # 50 tokens far above the rest, all near the top: the 40 largest among them
        x[top[:50]] = 30.0 - 0.1 * np.arange(50, dtype=np.float32)
    else:  # two tokens: whether top-p keeps the second depends on the top 40's tail (min-p drops it anyway)
        x[top[:2]] = [30.0, 30.0 + np.log(0.045)]
    return x


@pytest.mark.parametrize("kind", ["spread", "peaked", "near40", "uncertain"])
@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_fast_sampler_draws_the_same_tokens_as_the_whole_vocabulary_chain(engine, kind, temperature):
    """The same seed gives the same sequence of tokens from the fast path (the chain over the near-top
    tokens, or over the 40 largest) as from the chain over all 262,144 tokens, draw for draw; each
    fixture takes the path it was made for."""
    logits = _test_logits(engine, kind)
    engine._greedy = False
    seqs = {}
    for mode in ("reference", "fast"):
        engine.sampling = mode
        before = dict(engine.stats)
        chain = engine._chain(temperature, seed=1234)
        try:
            seqs[mode] = [engine._sample_free(chain, logits) for _ in range(300)]
        finally:
            engine.L.llama_sampler_free(chain)
    engine.sampling = "fast"
    assert seqs["fast"] == seqs["reference"]
    assert len(set(seqs["fast"])) > {"spread": 3, "peaked": 1, "near40": 10, "uncertain": 0}[kind]
    near = engine.stats["near_top_draws"] - before["near_top_draws"]
    uncertain = engine.stats["top_p_uncertain"] - before["top_p_uncertain"]
    assert near == (300 if kind in ("peaked", "near40") else 0)
    assert uncertain == (300 if kind == "uncertain" else 0)


def test_fast_greedy_takes_the_first_maximum_like_llama_cpp(engine):

    x = _test_logits(engine, "spread")
    x[[70_000, 5, 200_000]] = 50.0  # a tie: llama.cpp's greedy sampler keeps the lowest id
    engine._greedy = True
    for mode in ("reference", "fast"):
        engine.sampling = mode
        chain = engine._chain(0.0, seed=0)
        try:
            assert engine._sample_free(chain, x) == 5
        finally:
            engine.L.llama_sampler_free(chain)
    engine.sampling = "fast"


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_fast_sampler_frequencies_match_the_chain_distribution(engine, temperature):
    """20,000 seeded draws from the fast path against the distribution computed independently in
    float64 (top-k, top-p, min-p, temperature): Pearson's chi-square over the kept tokens must not
    reject at alpha = 0.001, so the test fails by chance once in 1,000 runs at most (the seed is
    fixed, so in practice it either always passes or always fails); no token outside the kept set
    may ever be drawn."""
    import numpy as np
    from scipy import stats

    logits = _test_logits(engine, "spread")
    ids, probs, margin = _chain_distribution(logits, temperature)
    assert margin > 1e-4 and 3 <= len(ids) < 40  # the fixture is far from top-p's boundary, and cuts
    engine.sampling, engine._greedy = "fast", False
    chain = engine._chain(temperature, seed=20251130)
    try:
        draws = np.array([engine._sample_free(chain, logits) for _ in range(20_000)])
    finally:
        engine.L.llama_sampler_free(chain)
    assert set(draws.tolist()) <= set(ids.tolist())
    counts = np.array([(draws == t).sum() for t in ids])
    expected = probs * len(draws)
    assert expected.min() >= 5  # chi-square's usual validity condition
    chi2 = stats.chisquare(counts, expected)
    assert chi2.pvalue > 1e-3, (counts, expected)
    tv = 0.5 * np.abs(counts / len(draws) - probs).sum()
    assert tv < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_fast_sampling_writes_the_same_replies_as_the_reference_sampler(engine, temperature):
    """On real prompts, free and schema-constrained, the default sampling gives the text llama.cpp's
    sampler over the whole vocabulary gives: identical at temperature 0, and at 0.8 with the same
    seed (the same random draws). One article per temperature (each reply over the whole vocabulary
    under the grammar costs seconds), so both temperatures see a different prompt."""
    i = int(temperature > 0)
    art = ARTICLES[i]
    for schema in (None, SENTIMENT.constraint().schema):
        texts = {}
        for mode in ("reference", "fast"):
            engine.sampling = mode
            engine.clear_cache()  # the same cache state for both, so the logits are bit-identical
            # zero-shot: the sampler is under test, not the prompt (a few-shot prefix from an empty cache
            # costs ~700 tokens of evaluation per reply)
            texts[mode] = engine.chat(_messages(art, "zero_shot"), schema=schema, temperature=temperature,
                                      seed=40 + i, max_tokens=32).text
        engine.sampling = "fast"
        assert texts["fast"] == texts["reference"], (art.title, schema is not None)


@pytest.mark.slow
def test_first_character_groups_are_kept_per_vocabulary_and_a_damaged_cache_file_is_rebuilt(engine, tmp_path,
                                                                                             monkeypatch):
    """A second load of the vocabulary (another rung of a ladder, the next run) reads the groups
    from the cache instead of building them again; what it reads is what a build gives; a damaged
    or foreign cache file is never used but rebuilt; another vocabulary gets another entry."""
    import os
    import shutil

    import numpy as np

    from engine import chargroups
    from formats import gguf_meta

    monkeypatch.setenv("SHOOTOUT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(chargroups, "_CHAR_GROUPS", {})
    monkeypatch.setattr(chargroups, "_VOCAB_DIGESTS", {})
    built = engine._char_groups()
    copy = tmp_path / "rung.gguf"  # another file with the same vocabulary, as the rungs of a ladder
    try:
        os.link(engine.path, copy)  # another path is another file to the cache (no 241 MB copy)
    except OSError:
        shutil.copyfile(engine.path, copy)
    digest = chargroups.vocab_digest(copy, engine.n_vocab)
    assert digest == chargroups.vocab_digest(engine.path, engine.n_vocab)

    def load(path):
        chargroups._CHAR_GROUPS.clear()  # a new process: only the disk cache is left
        b = LlamaCppBackend(path, n_ctx=256, name="rung")
        b.load()
        try:
            return b._chars["group"], b._chars["probes"]
        finally:
            b.close()

    first = load(copy)
    assert chargroups.groups_file(digest).is_file()
    assert all(np.array_equal(a, b) for a, b in zip(first, built))
    # the next load reads them: building again would fail here
    with monkeypatch.context() as m:
        m.setattr(LlamaCppBackend, "_char_groups", lambda self: pytest.fail("the groups were built again"))
        again = load(copy)
    assert all(np.array_equal(a, b) for a, b in zip(again, built))
    # a damaged file, or a well-formed one that does not fit this vocabulary, is rebuilt and replaced
    for bad in (b"not an npz", None):
        if bad is None:
            with open(chargroups.groups_file(digest), "wb") as f:
                np.savez(f, group=np.zeros(engine.n_vocab, np.int32), probes=np.array([engine.n_vocab + 5], np.int32))
        else:
            chargroups.groups_file(digest).write_bytes(bad)
        assert chargroups.read_groups(digest, engine.n_vocab) is None
        assert all(np.array_equal(a, b) for a, b in zip(load(copy), built))
        assert all(np.array_equal(a, b) for a, b in zip(chargroups.read_groups(digest, engine.n_vocab), built))
    # one token changed in the header: another vocabulary, another digest
    real = gguf_meta.read

    def one_token_changed(path, **kw):
        info = real(path, **kw)
        info.metadata["tokenizer.ggml.tokens"][1000] += "x"
        return info

    monkeypatch.setattr(gguf_meta, "read", one_token_changed)
    other = tmp_path / "other.gguf"  # a path not seen before: its digest is computed, not remembered
    copy.rename(other)
    assert chargroups.vocab_digest(other, engine.n_vocab) != digest


@pytest.mark.slow
def test_first_character_filter_keeps_every_token_the_grammar_allows(engine):
    """At every step of a valid reply, the full grammar pass over the prefiltered candidates keeps
    exactly the tokens a pass over all 262,144 tokens keeps; at the JSON object's punctuation the
    filter leaves under a tenth of the vocabulary (about 20k tokens: those whose first character
    has no single-character token to probe with are always checked), and so it does after the
    object, where a space may follow."""
    import numpy as np

    reply = '{"reasoning": "Zahl é 中文 up 5%", "sentiment": -0.25, "confidence": 0.9}'
    tokens = engine.tokenize(reply, parse_special=False)
    L = engine.L
    engine.sampling, engine.grammar_mode = "fast", "fast"
    grammar = engine._grammar(SENTIMENT.constraint().schema)
    sizes = []
    for i, tok in enumerate(tokens + [None]):  # and after the last: only a space or the end
        ids = engine._grammar_prefilter(grammar)
        c = engine._cand_np
        c["id"], c["logit"], c["p"] = engine._ids, 0.0, 0.0
        arr = engine._cand_arr
        arr.size, arr.selected, arr.sorted = engine.n_vocab, -1, False
        L.llama_sampler_apply(grammar, engine._cand_ref)
        allowed = np.flatnonzero(np.isfinite(c["logit"]))
        assert tok is None or tok in set(allowed.tolist())
        if ids is not None:
            assert set(allowed.tolist()) <= set(ids.tolist()), i
            sizes.append(len(ids))
        if tok is not None:
            L.llama_sampler_accept(grammar, tok)
            engine._tail = (engine._tail + engine._piece_of(tok))[-4:]
    assert len(sizes) >= len(tokens) - 2
    assert min(sizes) < engine.n_vocab // 10
    # after the object the grammar allows a space and the end: the first two characters of " the",
    # " a", ... (the tens of thousands of tokens that start with a space) leave them out
    assert len(allowed) < 10 and sizes[-1] < engine.n_vocab // 10


def test_first_character_decoding_follows_llama_cpp():
    from engine.chargroups import first_char, utf8_unfinished

    for ch in ("a", "é", "中", "😀", "{"):
        data = (ch + "xyz").encode()
        assert first_char(data) == (ord(ch), len(ch.encode()))
    assert first_char("中".encode()[:2]) == (None, 0)  # ends inside the character
    assert first_char(b"\x80abc") == (None, 0)  # a continuation byte cannot lead
    assert not utf8_unfinished(b"") and not utf8_unfinished("ab中".encode())
    assert utf8_unfinished("ab中".encode()[:-1]) and utf8_unfinished(b"a\xf0\x9f")


def test_memory_facts_are_the_kv_cache_and_weights_the_model_needs(engine, embedded_gguf):
    """What a load stores in model_loads: the KV cache llama.cpp allocated equals n_ctx x layers x KV
    heads x head size x (K and V) x 2 bytes (f16) for Gemma 3 270M (18 layers, 1 KV head of 256), and the
    weights' buffers hold about the GGUF's size."""
    facts = engine.memory_facts()
    assert facts["kv_cache_mb"] == pytest.approx(engine.n_ctx * 18 * 1 * 256 * 2 * 2 / 2**20)
    assert facts["model_buffer_mb"] == pytest.approx(embedded_gguf.stat().st_size / 2**20, rel=0.1)
