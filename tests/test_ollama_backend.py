"""The Ollama backend against tests/ollama_fixture.py (a fake that behaves as Ollama's server code does;
no Ollama server can be installed here), through the real `shootout run` and `shootout report`; `live`
tests run the same checks against a real server when OLLAMA_HOST answers."""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import urllib.request

import httpx
import pytest

from benchmark.backends.base import CallFailed, PromptTooLong
from benchmark.backends.ollama_backend import OllamaBackend
from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot
from tests.conftest import shootout
from tests.ollama_fixture import EVAL_NS, LOAD_SECONDS, PROMPT_NS, FakeModel, ollama, tokenize  # noqa: F401

TAG = "gemma3:270m"


def _config(tmp_path, *, articles=3, num_ctx=2048, warmup=True, tag=TAG):
    path = tmp_path / "config.yaml"
    path.write_text(
        f"task: sentiment\nnews:\n  source: snapshot\n  max_articles: {articles}\n"
        f"run:\n  iterations: 1\n  temperature: 0.7\n  num_predict: 96\n  seed: 7\n  num_ctx: {num_ctx}\n"
        f"  warmup: {str(warmup).lower()}\n  database: results.sqlite\n"
        "output:\n  reports_dir: reports\n  heatmaps_dir: heatmaps\n"
        f"models:\n  - {{name: olla, backend: ollama, tag: '{tag}', family: gemma3-270m, quant: Q4_K_M, "
        "options: {keep_alive: 5m}}\n")
    return path


def _run(config, host, *args):
    return shootout("run", "-c", str(config), "--no-progress", *args, env_extra={"OLLAMA_HOST": host})


def _calls(tmp_path, cols: str):
    return sqlite3.connect(tmp_path / "results.sqlite").execute(f"SELECT {cols} FROM calls ORDER BY id").fetchall()


def _real_chats(fake) -> list[dict]:
    """The chats that asked for an answer (not the load, not the renders)."""
    return [b for b in fake.chats() if b.get("messages") and not b.get("_debug_render_only")]


@pytest.mark.slow
def test_a_run_loads_once_at_its_context_and_stores_ollamas_counts(tmp_path, ollama):
    ollama.add(FakeModel(TAG))
    res = _run(_config(tmp_path), ollama.url)
    assert res.returncode == 0, res.stderr
    # one load, at run.num_ctx and without context shift: no call loads the model again
    assert ollama.loads == [(TAG, 2048, False)]
    rows = _calls(tmp_path, "valid, value, finish_reason, prompt_tokens, cached_tokens, completion_tokens, "
                            "prompt_seconds, gen_seconds, wall_seconds")
    assert len(rows) == 3
    reply_tokens = len(tokenize(json.dumps({"reasoning": "Orders rose.", "sentiment": 0.6, "confidence": 0.8}))) - 1
    for valid, value, finish, prompt, cached, completion, prompt_s, gen_s, wall in rows:
        assert (valid, value, finish, completion) == (1, 0.6, "stop", reply_tokens)
        # the few-shot prefix came from the cache: Ollama's prompt_eval_duration timed only the rest
        assert 900 < cached < prompt
        assert prompt_s == pytest.approx((prompt - cached) * PROMPT_NS / 1e9)
        assert gen_s == pytest.approx(completion * EVAL_NS / 1e9)
        assert wall < LOAD_SECONDS  # no load inside a measured call
    load = sqlite3.connect(tmp_path / "results.sqlite").execute(
        "SELECT load_seconds, engine_json FROM model_loads").fetchone()
    assert load[0] >= LOAD_SECONDS  # the load itself, timed apart from the calls
    chats = _real_chats(ollama)
    assert len(chats) == 4  # warm-up + 3 articles
    for body in chats:
        assert body["truncate"] is False and body["shift"] is False and body["stream"] is False
        assert body["keep_alive"] == "5m" and "think" not in body  # gemma3:270m cannot think
        assert body["format"]["required"] == ["reasoning", "sentiment", "confidence"]
        assert set(body["options"]) == {"temperature", "seed", "num_ctx", "num_predict"}
        assert body["options"]["num_ctx"] == 2048
        assert len(body["messages"]) == 12  # system + five example turns + the article
    load_request = next(b for b in ollama.chats() if not b.get("messages"))
    assert load_request["options"] == {"num_ctx": 2048} and load_request["shift"] is False


@pytest.mark.slow
def test_report_counts_evaluated_prompt_tokens_and_lists_the_models_provenance(tmp_path, ollama):
    ollama.add(FakeModel(TAG, vram_share=0.75))
    config = _config(tmp_path, articles=4)
    res = _run(config, ollama.url)
    assert res.returncode == 0, res.stderr
    rep = shootout("report", "-c", str(config))
    assert rep.returncode == 0, rep.stderr
    run_id = sqlite3.connect(tmp_path / "results.sqlite").execute("SELECT run_id FROM runs").fetchone()[0]
    details = next(csv.DictReader(open(tmp_path / "reports" / run_id / "model_details.csv")))
    # the fake evaluates 1,000 prompt tokens/s; counting cached tokens too would show several times that
    assert float(details["prompt_tok_s"]) == pytest.approx(1000, rel=0.01)
    assert float(details["gen_tok_s"]) == pytest.approx(50, rel=0.01)
    naive = sum(p for p, in _calls(tmp_path, "prompt_tokens")) / sum(s for s, in _calls(tmp_path, "prompt_seconds"))
    assert naive > 5000

    from openpyxl import load_workbook

    ws = load_workbook(tmp_path / "reports" / f"{run_id}.xlsx")["Run Info"]
    info = {r[0]: r[1] for r in ws.iter_rows(min_row=2, values_only=True)}
    assert info["model olla: server_version"] == "0.33.0"
    assert info["model olla: digest"] == FakeModel(TAG).digest
    assert info["model olla: quantization_level"] == "Q4_K_M"
    assert info["model olla: parameter_size"] == "268.10M"
    assert info["model olla: context_allocated"] == 2048
    assert info["model olla: share_in_vram"] == 0.75
    assert info["model olla: size_vram_bytes"] == int(FakeModel(TAG).size * 0.75)
    assert "<start_of_turn>" in info["model olla: template"]
    assert '"<end_of_turn>"' in info["model olla: parameters"]


@pytest.mark.slow
def test_a_prompt_longer_than_num_ctx_is_refused_with_its_counts_and_nothing_wrong_is_stored(tmp_path, ollama):
    ollama.add(FakeModel(TAG))
    res = _run(_config(tmp_path, num_ctx=512), ollama.url)
    assert res.returncode == 0, res.stderr  # the run goes on
    rows = _calls(tmp_path, "item_id, valid, finish_reason, prompt_tokens, completion_tokens, raw_text, value, error")
    assert len(rows) == 3
    err = " ".join(res.stderr.split())
    for item, valid, finish, prompt, completion, raw, value, error in rows:
        assert (valid, finish, completion, raw, value) == (0, "prompt_too_long", 0, "", None)
        assert prompt > 512  # the server's own count of the whole prompt
        assert f"olla, article {item}: the prompt needs {prompt} tokens but the context holds 512" in err
        assert "model 'olla'" in error and "512" in error
    assert all(b["truncate"] is False for b in _real_chats(ollama))
    # what the backend avoids: left to its default, the server drops the few-shot turns and answers
    body = {**_real_chats(ollama)[-1]}
    del body["truncate"]
    reply = httpx.post(ollama.url + "/api/chat", json=body).json()
    assert reply["done"] is True and reply["prompt_eval_count"] <= 512  # answered, examples gone


@pytest.mark.slow
def test_a_thinking_model_is_told_not_to_think_and_it_is_recorded(tmp_path, ollama):
    ollama.add(FakeModel(TAG, capabilities=["completion", "thinking"]))
    res = _run(_config(tmp_path, articles=2), ollama.url)
    assert res.returncode == 0, res.stderr
    sent = [b for m, p, b in ollama.requests if p in ("/api/chat", "/api/generate")]
    assert sent and all(b["think"] is False for b in sent)
    engine = json.loads(sqlite3.connect(tmp_path / "results.sqlite").execute(
        "SELECT engine_json FROM model_loads").fetchone()[0])
    assert engine["think"] is False and "thinking" in engine["capabilities"]
    thinking_free = _calls(tmp_path, "completion_tokens")
    # left to itself the model would think first, and those tokens would count as generated
    body = {k: v for k, v in _real_chats(ollama)[-1].items() if k != "think"}
    reply = httpx.post(ollama.url + "/api/chat", json=body).json()
    assert reply["message"]["thinking"] and reply["eval_count"] > thinking_free[-1][0]


@pytest.mark.slow
def test_an_aborted_generation_is_stored_as_aborted_and_warm_up_off_still_loads_first(tmp_path, ollama):
    ollama.add(FakeModel(TAG))
    ollama.abort_next = 1  # the first measured call ends without its final chunk (done false)
    res = _run(_config(tmp_path, warmup=False), ollama.url)
    assert res.returncode == 0, res.stderr
    rows = _calls(tmp_path, "finish_reason, valid, wall_seconds")
    assert [r[0] for r in rows] == ["aborted", "stop", "stop"]
    assert rows[0][1] == 0
    assert ollama.loads == [(TAG, 2048, False)]
    assert all(wall < LOAD_SECONDS for _, _, wall in rows)  # without a warm-up, still no load in a call


def test_server_errors_are_retried_then_reported(ollama):
    ollama.add(FakeModel(TAG))
    b = OllamaBackend(TAG, host=ollama.url, num_ctx=2048, backoff=0.01)
    b.load()
    messages = SENTIMENT.messages(load_snapshot()[0].to_item(), "few_shot")
    stopped = "model runner has unexpectedly stopped, this may be due to resource limitations or an internal error"
    ollama.fail_next = [(500, stopped)]
    reply = b.chat(messages, schema=SENTIMENT.constraint().schema, max_tokens=96)
    assert reply.finish_reason == "stop" and SENTIMENT.parse(reply.text).valid
    ollama.fail_next = [(500, stopped)] * 3
    with pytest.raises(CallFailed) as err:  # the runner stores it as a failed call and goes on
        b.chat(messages, schema=SENTIMENT.constraint().schema, max_tokens=96)
    assert (err.value.kind, err.value.attempts) == ("http_500", 3)
    assert (f"model '{TAG}': Ollama at {ollama.url} answered HTTP 500 Internal Server Error to POST /api/chat: "
            f"{stopped} (3 attempts)") in err.value.message
    b.close()


def test_metrics_the_server_leaves_out_because_they_are_zero_read_as_zero(ollama):
    ollama.add(FakeModel(TAG, reply=lambda body: ""))
    b = OllamaBackend(TAG, host=ollama.url, num_ctx=2048)
    b.load()
    messages = SENTIMENT.messages(load_snapshot()[0].to_item(), "few_shot")
    raw = httpx.post(ollama.url + "/api/chat", json={"model": TAG, "messages": messages, "stream": False,
                                                     "options": {"num_ctx": 2048}, "shift": False}).json()
    assert "eval_count" not in raw and "eval_duration" not in raw  # omitted, as api/types.go Metrics does
    reply = b.chat(messages, max_tokens=96)
    assert (reply.finish_reason, reply.completion_tokens, reply.gen_seconds) == ("stop", 0, 0.0)
    assert reply.prompt_tokens == raw["prompt_eval_count"]
    b.close()


def test_a_server_older_than_0_12_6_is_refused(tmp_path, ollama):
    ollama.add(FakeModel(TAG))
    ollama.version = "0.12.5"
    res = _run(_config(tmp_path), ollama.url)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    text = " ".join(res.stderr.split())
    assert "Ollama 0.12.5" in text and "cannot be asked not to truncate" in text and "0.12.6" in text
    assert not _real_chats(ollama)


def test_model_not_found_says_what_to_run(tmp_path, ollama):
    res = _run(_config(tmp_path, tag="llama3:8b"), ollama.url)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    text = " ".join(res.stderr.split())
    assert "no model 'llama3:8b'" in text and "ollama pull llama3:8b" in text


@pytest.mark.slow
def test_server_unreachable_names_ollama_host(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _run(_config(tmp_path), f"http://127.0.0.1:{port}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "OLLAMA_HOST" in res.stderr and f"127.0.0.1:{port}" in res.stderr


@pytest.mark.slow
def test_reply_that_is_not_valid_json_is_stored_as_invalid(tmp_path, ollama):
    ollama.add(FakeModel(TAG, reply=lambda body: "Sure! The sentiment is positive."))
    res = _run(_config(tmp_path, articles=2), ollama.url)
    assert res.returncode == 0, res.stderr
    rows = _calls(tmp_path, "valid, raw_text, error, value")
    assert len(rows) == 2
    assert all(v == 0 and raw == "Sure! The sentiment is positive." and "not JSON" in err and s is None
               for v, raw, err, s in rows)


# --------------------------------------------------------------------------- a real server

def _live_host() -> str | None:
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        return None
    from core.hosts import normalize_host

    host = normalize_host(host)
    try:
        urllib.request.urlopen(host + "/api/tags", timeout=2)
        return host
    except OSError:
        return None


def _live_model() -> str:
    tags = json.loads(urllib.request.urlopen(_live_host() + "/api/tags").read())["models"]
    if not tags and not os.environ.get("OLLAMA_TEST_MODEL"):
        pytest.skip("the live Ollama server has no models")
    return os.environ.get("OLLAMA_TEST_MODEL") or tags[0]["name"]


live = pytest.mark.skipif(_live_host() is None, reason="no Ollama server answers at OLLAMA_HOST")


@pytest.mark.live
@live
def test_live_load_records_provenance_and_calls_count_evaluated_tokens():
    b = OllamaBackend(_live_model(), host=_live_host(), num_ctx=4096)
    assert b.load() > 0
    info = b.engine_info()
    assert info["server_version"] and info["digest"] and info["quantization_level"]
    assert info["context_allocated"] == 4096 and 0 < info["share_in_vram"] <= 1
    arts = load_snapshot()[:3]
    replies = [b.chat(SENTIMENT.messages(a.to_item(), "few_shot"), schema=SENTIMENT.constraint().schema,
                      max_tokens=200) for a in arts]
    for r in replies:
        assert r.finish_reason in ("stop", "length") and r.completion_tokens > 0 and r.gen_seconds > 0
    # after the first call the few-shot prefix is served from the cache
    assert all(r.cached_tokens > 500 for r in replies[1:])
    assert all(r.cached_tokens < r.prompt_tokens for r in replies)
    b.close()


@pytest.mark.live
@live
def test_live_a_prompt_longer_than_num_ctx_is_refused():
    b = OllamaBackend(_live_model(), host=_live_host(), num_ctx=256)
    b.load()
    with pytest.raises(PromptTooLong) as err:
        b.chat(SENTIMENT.messages(load_snapshot()[0].to_item(), "few_shot"), max_tokens=16)
    assert err.value.prompt_tokens > 256 and err.value.n_ctx == 256
    b.close()
