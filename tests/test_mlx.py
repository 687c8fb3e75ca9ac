"""A real ``mlx_lm.server`` (MLX's CPU wheels for Linux) on 127.0.0.1, serving the tiny HF model the
tests build, converted with ``mlx_lm.convert`` (full precision and 4-bit): chat completions with
log-probabilities, and what the server does with each field a benchmark sends
(benchmarks/mlx_probe.py, the capability table)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cached_build
from tests.mlx_server import MlxServer, convert, make_adapter, mlx_versions, post, require_mlx

pytestmark = pytest.mark.slow

PROMPT = [{"role": "system", "content": "You rate news."},
          {"role": "user", "content": "Acme shares rose after strong orders. Positive or negative?"}]


@pytest.fixture(scope="module")
def mlx_models(tiny_hf_model):
    """{full, q4, adapter}: the tiny model converted once (kept in .cache/test-models)."""
    require_mlx()
    key = str(tiny_hf_model) + mlx_versions() + (ROOT / "tests" / "mlx_server.py").read_text()

    def build(folder):
        convert(tiny_hf_model, folder / "full")
        convert(tiny_hf_model, folder / "q4", quantize=True)
        make_adapter(folder / "full", folder / "adapter")

    folder = cached_build("tiny-mlx", key, build)
    return {name: folder / name for name in ("full", "q4", "adapter")}


@pytest.fixture(scope="module")
def mlx_server(mlx_models, tmp_path_factory):
    srv = MlxServer(mlx_models["full"], tmp_path_factory.mktemp("mlx-full"))
    yield srv
    srv.stop()


def _chat(srv, **fields):
    status, body = post(srv.base_url + "/chat/completions", {"messages": PROMPT, "max_tokens": 6, "temperature": 0,
                                                             **fields})
    assert status == 200, body
    return body


def test_a_chat_completion_with_logprobs_answers_on_the_real_server(mlx_server):
    plain = _chat(mlx_server, logprobs=True)
    choice = plain["choices"][0]
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    entries = choice["logprobs"]["content"]
    # one entry per generated token: its id and its natural-log probability
    assert len(entries) == plain["usage"]["completion_tokens"] == 6
    assert all(isinstance(e["id"], int) and e["logprob"] <= 0 for e in entries)
    assert plain["usage"]["prompt_tokens"] > 10

    top = _chat(mlx_server, logprobs=True, top_logprobs=5)
    alternatives = [e["top_logprobs"] for e in top["choices"][0]["logprobs"]["content"]]
    assert [len(a) for a in alternatives] == [5] * 6
    assert all({"id", "token", "logprob"} <= set(t) for a in alternatives for t in a)
    # a distribution over the whole vocabulary: five alternatives hold at most all of it
    assert all(sum(math.exp(t["logprob"]) for t in a) <= 1 + 1e-4 for a in alternatives)
    # greedy: the most probable alternative at each position is the token generated there, with the
    # same log-probability the plain request reported for it
    best = [max(a, key=lambda t: t["logprob"]) for a in alternatives]
    assert [t["id"] for t in best] == [e["id"] for e in entries]
    assert [t["logprob"] for t in best] == pytest.approx([e["logprob"] for e in entries], abs=1e-4)
    assert top["choices"][0]["message"]["content"] == choice["message"]["content"]


def test_the_4bit_conversion_serves_other_probabilities(mlx_models, mlx_server, tmp_path):
    q4 = MlxServer(mlx_models["q4"], tmp_path)
    try:
        low = _chat(q4, logprobs=True, top_logprobs=3)
    finally:
        q4.stop()
    full = _chat(mlx_server, logprobs=True, top_logprobs=3)
    config = json.loads((mlx_models["q4"] / "config.json").read_text())
    assert config["quantization"]["bits"] == 4
    first_low = {t["id"]: t["logprob"] for t in low["choices"][0]["logprobs"]["content"][0]["top_logprobs"]}
    first_full = {t["id"]: t["logprob"] for t in full["choices"][0]["logprobs"]["content"][0]["top_logprobs"]}
    shared = set(first_low) & set(first_full)
    assert shared  # the same model: its likeliest first tokens overlap
    assert max(abs(first_low[i] - first_full[i]) for i in shared) > 1e-3  # 4-bit weights: not the same numbers


def test_capability_table_from_the_live_server(mlx_models, mlx_server):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mlx_probe.py"), "--base-url", mlx_server.base_url,
                        "--adapter", str(mlx_models["adapter"]), "--json"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    rows = {row["capability"]: row for row in json.loads(r.stdout)}
    yes = {name for name, row in rows.items() if row["supported"] is True}
    no = {name for name, row in rows.items() if row["supported"] is False}
    assert {"GET /health", "GET /v1/models", "chat completion", "usage fields", "model names", "streaming",
            "logprobs", "top_logprobs", "logprob scale", "stop sequences", "seed", "logit_bias",
            "label scoring by logit_bias", "/v1/completions", "LoRA adapter per request"} <= yes, rows
    # what mlx_lm.server does not do: no schema constraint, one choice, no timing fields
    assert {"response_format json_schema", "n > 1", "timings"} <= no, rows
    # at most 11 alternatives; the highest is the generated token (the entry's own id may be another)
    assert "largest accepted 11 (12: HTTP 400" in rows["top_logprobs"]["detail"]
    assert "the highest alternative is the sampled token (ids of a logprobs-only request): True" in \
        rows["top_logprobs"]["detail"]
    # an adapter applies only to a request that names the model by the folder the server serves
    assert "(the adapter ignored)" in rows["LoRA adapter per request"]["detail"]
    assert "no-such-model: HTTP 404" in rows["model names"]["detail"]
    assert str(mlx_models["full"].resolve()) in rows["GET /v1/models"]["detail"]
    assert "usage chunk yes" in rows["streaming"]["detail"] and "logprobs in chunks no" in rows["streaming"]["detail"]
    usage = json.loads(rows["usage fields"]["detail"])
    assert set(usage) == {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"}
