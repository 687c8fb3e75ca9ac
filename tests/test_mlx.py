"""A real ``mlx_lm.server`` (MLX's CPU wheels for Linux) on 127.0.0.1, serving the tiny HF model the
tests build, converted with ``mlx_lm.convert`` (full precision and 4-bit): chat completions with
log-probabilities, and what the server does with each field a benchmark sends
(benchmarks/mlx_probe.py, the capability table); and `backend: mlx` running a classification example
in log-probability mode to a report, its label probabilities checked against the model's own."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import ROOT, cached_build, shootout
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


# --------------------------------------------------------------------------- backend: mlx, label scoring

REFERENCE = r"""
import json, sys
import mlx.core as mx
from mlx_lm import load
from transformers import AutoTokenizer

folder, messages, prefix, labels = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
model, _ = load(folder)
tok = AutoTokenizer.from_pretrained(folder)
text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefix
ids = tok.encode(text, add_special_tokens=False)  # the template writes the BOS itself
logits = model(mx.array([ids]))[0, -1].astype(mx.float32)
logp = logits - mx.logsumexp(logits)
first = {k: tok.encode(text + k, add_special_tokens=False)[len(ids)] for k in labels}
print(json.dumps({k: logp[i].item() for k, i in first.items()}))
"""


def _mlx_config(tmp_path, base_url, *, options="", decoding="logprob", items=3, iterations=2):
    text = (ROOT / "examples" / "sst2" / "config.yaml").read_text()
    head = text.split("\nmodels:\n", 1)[0]
    head = head.replace("  answer: json", f"  decoding: {decoding}\n  answer: json")
    head = head.replace("    evaluate: validation", f"    max_items: {items}\n    evaluate: validation")
    head = head.replace("  iterations: 3", f"  iterations: {iterations}")
    shutil.copytree(ROOT / "examples" / "sst2" / "data", tmp_path / "data", dirs_exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(head + f"\nmodels:\n  - name: tiny-mlx\n    backend: mlx\n    base_url: {base_url}\n"
                           f"    family: tiny\n    quant: F32\n    prompt_style: few_shot\n{options}"
                           "output:\n  reports_dir: reports\n  heatmaps_dir: heatmaps\n")
    return path


def test_sst2_on_mlx_lm_server_stores_every_label_probability(mlx_models, mlx_server, tmp_path):
    config = _mlx_config(tmp_path, mlx_server.base_url)
    res = shootout("run", "-c", str(config), "--run-id", "lp", "--no-progress", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = shootout("report", "-c", str(config), "--run-id", "lp", "--out", str(tmp_path / "reports"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    con = sqlite3.connect(tmp_path / "results.sqlite")
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT * FROM calls ORDER BY item_id, iteration").fetchall()
    assert len(rows) == 3 * 2
    by_item = {}
    for r in rows:
        probs = json.loads(r["label_probs_json"])
        assert r["valid"] == 1 and set(probs) == {"negative", "positive"} and None not in probs.values()
        assert sum(probs.values()) == pytest.approx(1.0) and r["label"] == max(probs, key=probs.get)
        assert r["raw_text"] == json.dumps({"label": r["label"]}) and r["completion_tokens"] == 1
        by_item.setdefault(r["item_id"], []).append(probs)
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in by_item.values())  # greedy: the same twice
    with open(tmp_path / "reports" / "lp" / "calibration.csv", newline="") as f:
        calib = list(csv.DictReader(f))
    assert [(c["confidence_from"], int(c["calls"])) for c in calib] == [("label probability vs label right", 6)]
    engine = json.loads(con.execute("SELECT engine_json FROM model_loads").fetchone()[0])
    assert engine["model"] == "default_model" and engine["tokenizer"] == str(mlx_models["full"].resolve())

    # the model's own next-token distribution after the prompt and '{"label": "', computed with MLX in
    # a process of its own, renormalized over the labels' first tokens: what the server answered
    # under the logit bias
    from benchmark.config import load_config
    from benchmark.tasks import task_for

    cfg = load_config(config)
    task = task_for(cfg)
    items = {i.id: i for i in task.load_items(cfg, warn=print)}
    for item_id, (probs, _) in by_item.items():
        messages = task.messages(items[item_id], "few_shot")
        out = subprocess.run([sys.executable, "-c", REFERENCE, str(mlx_models["full"]), json.dumps(messages),
                              '{"label": "', json.dumps(["negative", "positive"])], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr[-2000:]
        logp = json.loads(out.stdout.strip().splitlines()[-1])
        z = math.exp(logp["negative"]) + math.exp(logp["positive"])
        assert probs == pytest.approx({k: math.exp(v) / z for k, v in logp.items()}, abs=1e-4), item_id


def test_mlx_without_a_model_listing_needs_the_tokenizer_named(mlx_models, tmp_path):
    """With no Hugging Face cache folder mlx_lm.server answers GET /v1/models with 200 and an empty
    body: the backend still loads; label scoring then needs options.tokenizer, said in one message;
    generation needs nothing more (model: default_model)."""
    srv = MlxServer(mlx_models["full"], tmp_path / "srv")
    try:
        shutil.rmtree(tmp_path / "srv" / "hf-cache")
        with urllib.request.urlopen(srv.base_url + "/models", timeout=30) as r:
            assert (r.status, r.read()) == (200, b"")
        config = _mlx_config(tmp_path / "a", srv.base_url, items=1, iterations=1)
        res = shootout("run", "-c", str(config), "--no-progress", timeout=900)
        said = " ".join(res.stderr.split())
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert "label scoring on mlx_lm.server needs the model's tokenizer" in said and "set options.tokenizer" in said
        named = _mlx_config(tmp_path / "b", srv.base_url, items=1, iterations=1,
                            options=f"    options: {{tokenizer: '{mlx_models['full']}'}}\n")
        res = shootout("run", "-c", str(named), "--no-progress", timeout=900)
        assert res.returncode == 0, res.stderr[-2000:]
        # backend: openai at the same server says what that empty listing is
        plain = _mlx_config(tmp_path / "d", srv.base_url, items=1, iterations=1)
        plain.write_text(plain.read_text().replace("backend: mlx", "backend: openai"))
        res = shootout("run", "-c", str(plain), "--no-progress", timeout=900)
        assert res.returncode == 2 and "answered GET /models with an empty body" in " ".join(res.stderr.split())
        assert "use backend: mlx for it" in " ".join(res.stderr.split())
        generate = _mlx_config(tmp_path / "c", srv.base_url, decoding="generate", items=1, iterations=1)
        res = shootout("run", "-c", str(generate), "--no-progress", timeout=900)
        assert res.returncode == 0, res.stderr[-2000:]
    finally:
        srv.stop()
    db = sqlite3.connect(tmp_path / "b" / "results.sqlite")
    (probs,) = db.execute("SELECT label_probs_json FROM calls").fetchone()
    assert set(json.loads(probs)) == {"negative", "positive"} and None not in json.loads(probs).values()
    (text,) = sqlite3.connect(tmp_path / "c" / "results.sqlite").execute("SELECT raw_text FROM calls").fetchone()
    assert text  # the tiny model's own words, asked by chat completions under default_model


def test_the_mac_example_runs_a_gguf_rung_against_mlx_4bit_of_the_same_base(mlx_models, tiny_gguf, tmp_path):
    """examples/mac/gguf-vs-mlx.yaml as it is, with the tiny model in its two forms: its F16 GGUF in
    process (llama.cpp) and its 4-bit MLX conversion on a real mlx_lm.server; run to a report that
    pairs the two per sentence."""
    text = (ROOT / "examples" / "mac" / "gguf-vs-mlx.yaml").read_text()
    srv = MlxServer(mlx_models["q4"], tmp_path / "srv")
    try:
        text = (text.replace("path: embedded", f"path: {tiny_gguf}")
                .replace("options: {chat_template: gemma, n_gpu_layers: -1}", "options: {n_threads: 1}")
                .replace("http://127.0.0.1:8080/v1", srv.base_url)
                .replace("tokenizer: mlx-community/gemma-3-270m-it-4bit", f"tokenizer: {mlx_models['q4']}")
                .replace("    evaluate: validation", "    max_items: 4\n    evaluate: validation"))
        (tmp_path / "mac").mkdir()
        shutil.copytree(ROOT / "examples" / "sst2", tmp_path / "sst2")
        config = tmp_path / "mac" / "gguf-vs-mlx.yaml"
        config.write_text(text)
        res = shootout("run", "-c", str(config), "--run-id", "mac", "--no-progress", timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        srv.stop()
    rep = shootout("report", "-c", str(config), "--run-id", "mac", "--out", str(tmp_path / "reports"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    rows = sqlite3.connect(tmp_path / "mac" / "gguf-vs-mlx.sqlite").execute(
        "SELECT model, backend, quant, label_probs_json FROM calls").fetchall()
    assert sorted({r[:3] for r in rows}) == [("gemma3-270m-mlx4", "mlx", "MLX-4bit"),
                                             ("gemma3-270m-q4km", "llamacpp", "Q4_K_M")]
    assert len(rows) == 2 * 4 * 2
    assert all(set(json.loads(r[3])) == {"negative", "positive"} and None not in json.loads(r[3]).values()
               for r in rows)
    with open(tmp_path / "reports" / "mac" / "comparisons.csv", newline="") as f:
        pairs = list(csv.DictReader(f))
    assert [(p["reference"], p["candidate"], int(p["items"]), int(p["matched_calls"])) for p in pairs] == [
        ("gemma3-270m-q4km", "gemma3-270m-mlx4", 4, 8)]
