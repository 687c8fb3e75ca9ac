"""The in-process llama-bench figures (``speed_bench``) on the embedded Gemma 3 270M: what they hold and
that measuring leaves the engine as it was. No timed assertion: what is checked is the arithmetic
and the bookkeeping, never a speed."""

from __future__ import annotations

import statistics

import pytest

from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot


@pytest.mark.slow
def test_speed_bench_reports_llama_bench_figures_and_leaves_the_engine_as_it_was(engine):
    msgs = SENTIMENT.messages(load_snapshot()[0].to_item(), "zero_shot")
    before = engine.chat(msgs, temperature=0.0, max_tokens=6).text
    out = engine.speed_bench(depth=100, n_prompt=64, n_gen=8, reps=3)
    names = [t["test"] for t in out["tests"]]
    assert names == ["pp64", "tg8", "tg8 @ d100"] and out["depth"] == 100
    for t in out["tests"]:
        assert len(t["samples_ts"]) == 3 and all(x > 0 for x in t["samples_ts"])
        assert t["avg_ts"] == pytest.approx(statistics.fmean(t["samples_ts"]))
        assert t["stddev_ts"] == pytest.approx(statistics.stdev(t["samples_ts"]))  # llama-bench's n - 1
    assert [t["n_depth"] for t in out["tests"]] == [0, 0, 100]
    # Gemma 3 multiplies by its embedding table to get logits: a token reads every weight
    assert out["weights_bytes_per_token"] == out["tensor_bytes"] == out["model_bytes"]
    # the KV cache read at depth 100: 18 layers x 1 KV head x 256 x (K and V) x 2 bytes a cell
    assert out["kv_bytes_per_token_at_depth"] == 100 * 18 * 256 * 2 * 2
    # the prompt cache was emptied and the engine answers as before
    again = engine.chat(msgs, temperature=0.0, max_tokens=6)
    assert again.cached_tokens == 0 and again.text == before


@pytest.mark.slow
def test_a_depth_beyond_the_context_is_lowered_to_what_fits(engine):
    out = engine.speed_bench(depth=10_000, n_prompt=16, n_gen=4, reps=2)
    assert out["depth_requested"] == 10_000 and out["depth"] == engine.n_ctx - 4 - 1
    assert out["tests"][-1]["test"] == f"tg4 @ d{out['depth']}"


def test_weights_read_per_token_count_one_embedding_row_when_the_model_has_an_output_matrix(tiny_gguf):
    """A model with its own output matrix reads one row of the embedding table per token, not the table."""
    import gguf

    from engine.speed import weights_read_per_token

    reader = gguf.GGUFReader(str(tiny_gguf))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    assert "output.weight" in sizes
    rows = next(t for t in reader.tensors if t.name == "token_embd.weight").shape[-1]
    got = weights_read_per_token(tiny_gguf)
    assert got["tensor_bytes"] == sum(sizes.values())
    assert got["weights_bytes_per_token"] == sum(sizes.values()) - sizes["token_embd.weight"] + \
        sizes["token_embd.weight"] // rows
