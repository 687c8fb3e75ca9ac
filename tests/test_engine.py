"""The embedded engine (llama.cpp through llama-cpp-python) on the real Gemma 3 270M GGUF."""

from __future__ import annotations

import json

import pytest

from core import chat
from benchmark.backends.llamacpp import LlamaCppBackend
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


def test_fast_and_full_grammar_paths_give_identical_text_at_temperature_0(engine):
    for art in ARTICLES:
        texts = {}
        for mode in ("fast", "full"):
            engine.grammar_mode = mode
            engine.clear_cache()  # the same cache state for both, so the logits are bit-identical
            before = dict(engine.stats)
            reply = engine.chat(_messages(art), schema=SENTIMENT.constraint().schema, temperature=0.0, seed=1, max_tokens=160)
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


def test_shared_few_shot_prefix_is_evaluated_once(engine):
    engine.clear_cache()
    prefix = _prefix_len(engine)
    assert prefix > 500  # system prompt + five worked examples
    replies = [engine.chat(_messages(a), schema=SENTIMENT.constraint().schema, temperature=0.7, seed=i, max_tokens=120)
               for i, a in enumerate(ARTICLES[:3])]
    assert replies[0].cached_tokens == 0
    for r in replies[1:]:
        assert r.cached_tokens >= prefix
        assert r.prompt_tokens - r.cached_tokens < r.prompt_tokens - prefix + 8  # only the article is evaluated


def test_reply_carries_counts_and_timings(engine):
    r = engine.chat(_messages(ARTICLES[2]), schema=SENTIMENT.constraint().schema, temperature=0.7, seed=3, max_tokens=160)
    assert r.prompt_tokens > 600 and r.completion_tokens > 5
    assert r.prompt_seconds > 0 and r.gen_seconds > 0
    assert r.wall_seconds >= r.prompt_seconds + r.gen_seconds


def test_same_seed_gives_the_same_text(engine):
    outs = []
    for seed in (11, 11):
        engine.clear_cache()
        outs.append(engine.chat(_messages(ARTICLES[3]), schema=SENTIMENT.constraint().schema, temperature=1.0, seed=seed,
                                max_tokens=120).text)
    assert outs[0] == outs[1]


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


def test_constrained_replies_are_always_json_objects(engine):
    """Even at a high temperature, a reply that ends by end-of-turn is a JSON object (no raw
    control characters inside strings: the grammar follows JSON, not llama-cpp-python's looser rule)."""
    arts = load_snapshot()[5:13]
    stopped = 0
    for i, art in enumerate(arts):
        r = engine.chat(_messages(art), schema=SENTIMENT.constraint().schema, temperature=1.3, seed=100 + i, max_tokens=200)
        if r.finish_reason == "stop":
            stopped += 1
            data = json.loads(r.text)
            assert set(data) == {"reasoning", "sentiment", "confidence"}
    assert stopped >= len(arts) // 2
