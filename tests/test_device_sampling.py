"""Sampling on the device (llama.cpp's backend top-k; engine/device_sampling.py), run here on the CPU
backend, which executes the same sampler graph: the replies are those of the fast sampler, draw for
draw, free and under a grammar, including the positions a grammar sends back for whole logits;
label scoring and llama-bench's tests still read whole logits; ``auto`` stays ``fast`` without a
GPU."""

from __future__ import annotations


import pytest

from benchmark.tasks import task_for
from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot
from benchmark.config import load_config
from engine.device_sampling import DEVICE_TOP_K
from tests.conftest import ROOT, loaded_engine

EXAMPLES = ROOT / "examples"
ARTICLES = load_snapshot()[:4]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dev(embedded_gguf):
    with loaded_engine(embedded_gguf, n_ctx=2048, chat_template="gemma", sampling="device") as b:
        yield b


def _calls(eng, after=lambda: None) -> list[str]:
    """Every article free and schema-constrained, greedy and at T=0.8, from an empty cache (the same
    state in every mode: bit-identical logits); ``after()`` runs after each call."""
    out = []
    for i, art in enumerate(ARTICLES):
        msgs = SENTIMENT.messages(art.to_item(), "zero_shot")
        for schema in (None, SENTIMENT.constraint().schema):
            for temperature in (0.0, 0.8):
                eng.clear_cache()
                out.append(eng.chat(msgs, schema=schema, temperature=temperature, seed=7 + i, max_tokens=40).text)
                after()
    return out


def _replies(eng, mode: str, top_k: int = DEVICE_TOP_K) -> list[str]:
    eng.device_top_k = top_k
    eng.set_sampling(mode)
    assert eng.sampling == mode
    return _calls(eng)


def test_auto_is_fast_without_a_gpu_and_says_what_was_asked(engine):
    info = engine.engine_info()
    assert info["sampling"] == "fast" and info["sampling_requested"] == "auto"
    assert info["layers_offloaded"] in (0, None) or not info.get("gpu_offload_supported")


def test_device_sampling_writes_the_fast_samplers_replies(dev):
    """Free and schema-constrained, greedy and at T=0.8 with the same seeds: the same text. With 40
    candidates (the fewest the chain allows) the grammar's passes over them fail more often, so the
    positions evaluated again for whole logits are exercised too."""
    fast = _replies(dev, "fast")
    before = dev.stats["device_redecodes"]
    assert _replies(dev, "device") == fast
    assert _replies(dev, "device", top_k=40) == fast
    assert dev.stats["device_redecodes"] > before  # some positions went back for whole logits
    assert dev.engine_info()["sampling"] == "device"
    assert sum(a.startswith("{") for a in fast) >= len(ARTICLES) * 2  # the constrained replies are JSON


def test_label_scoring_and_generation_alternate_on_one_load(dev):
    """Label scoring needs whole logits: it takes the device sampler off, the next call puts it back,
    and both give what the fast mode gives."""
    task = task_for(load_config(EXAMPLES / "sst2" / "config.yaml", check_files=True))
    items = task.load_items()[:3]
    got = {}
    for mode in ("fast", "device"):
        dev.device_top_k = DEVICE_TOP_K
        dev.set_sampling(mode)
        rows = []
        for item in items:
            msgs = task.messages(item, "few_shot")
            dev.clear_cache()
            reply = dev.chat(msgs, temperature=0.0, max_tokens=12).text
            scores = dev.score_choices(msgs, task.choices()).probs
            dev.clear_cache()
            rows.append((reply, scores, dev.chat(msgs, temperature=0.0, max_tokens=12).text))
        got[mode] = rows
    for (r_f, s_f, again_f), (r_d, s_d, again_d) in zip(got["fast"], got["device"]):
        assert r_d == r_f == again_d == again_f
        assert s_d.keys() == s_f.keys()
        assert all(s_d[k] == pytest.approx(s_f[k], abs=1e-9) for k in s_f)


def test_a_device_that_refuses_the_sampler_falls_back_to_fast(embedded_gguf, monkeypatch):
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_set_sampler", lambda ctx, seq, smpl: False)
    with loaded_engine(embedded_gguf, n_ctx=512, chat_template="gemma", sampling="device") as b:
        info = b.engine_info()
        assert info["sampling"] == "fast" and info["sampling_requested"] == "device"
        assert "device" in info["sampling_note"]
        assert b.chat([{"role": "user", "content": "Say hi."}], max_tokens=4).completion_tokens > 0


def test_auto_on_a_gpu_samples_free_calls_on_the_device_and_constrained_ones_on_the_host(dev):
    """What ``auto`` resolves to on a GPU (device sampling for unconstrained calls only), emulated on
    the CPU backend: a constrained call takes the sampler off (no position goes back for whole
    logits), the next free call puts it back, and every reply is the fast sampler's."""
    fast = _replies(dev, "fast")
    dev.device_top_k = DEVICE_TOP_K
    dev.set_sampling("device")
    dev.device_constrained = False
    before = dev.stats["device_redecodes"]
    attached = []
    got = _calls(dev, lambda: attached.append(dev._dev_chain is not None))
    assert got == fast
    assert attached == [True, True, False, False] * len(ARTICLES)
    assert dev.stats["device_redecodes"] == before


def test_auto_with_constrained_calls_on_the_device_as_a_gpu_load_resolves_it(dev):
    """``auto_constrained`` (what benchmarks/gpu_ceiling.py tries as ``auto:device``): on a load that
    reports every layer on a GPU, ``auto`` samples constrained calls on the device too; emulated on
    the CPU backend with those offload facts, the replies are the fast sampler's."""
    fast = _replies(dev, "fast")
    facts = dict(dev.offload)
    dev.offload.update(gpu_offload_supported=True, layers_offloadable=19, layers_offloaded=19)
    try:
        for constrained_too in (False, True):
            dev.auto_constrained = constrained_too
            dev.set_sampling("auto")
            assert (dev.sampling, dev.device_constrained) == ("device", constrained_too)
        attached = []
        got = _calls(dev, lambda: attached.append(dev._dev_chain is not None))
        assert all(attached)  # constrained calls keep the device sampler
        assert got == fast
    finally:
        dev.auto_constrained = False
        dev.offload.clear()
        dev.offload.update(facts)
        dev.set_sampling("device")
