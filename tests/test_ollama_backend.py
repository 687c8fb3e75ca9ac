"""The Ollama backend against an HTTP fixture that follows Ollama's documented /api/chat (no Ollama
server can be installed here), plus a `live` test that runs when OLLAMA_HOST answers."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from tests.conftest import loopback_server, shootout, write_config

VALID = json.dumps({"reasoning": "Orders rose.", "sentiment": 0.6, "confidence": 0.8})


class FakeOllama(BaseHTTPRequestHandler):
    """/api/chat as documented: non-streaming replies with nanosecond timings; 404 for unknown models;
    an empty messages list only loads the model."""

    models = {"gemma3:270m"}
    reply = VALID
    requests: list[dict] = []

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOllama.requests.append(body)
        if self.path != "/api/chat":
            return self._send(404, {"error": "not found"})
        if body["model"] not in self.models:
            return self._send(404, {"error": f'model "{body["model"]}" not found, try pulling it first'})
        base = {"model": body["model"], "created_at": "2026-11-22T00:00:00.000000Z", "done": True}
        if not body.get("messages"):
            return self._send(200, {**base, "message": {"role": "assistant", "content": ""}, "done_reason": "load",
                                    "load_duration": 812_000_000})
        self._send(200, {**base, "message": {"role": "assistant", "content": FakeOllama.reply}, "done_reason": "stop",
                         "total_duration": 1_500_000_000, "load_duration": 3_000_000,
                         "prompt_eval_count": 91, "prompt_eval_duration": 250_000_000,
                         "eval_count": 24, "eval_duration": 1_200_000_000})

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_ollama():
    FakeOllama.requests = []
    FakeOllama.reply = VALID
    with loopback_server(FakeOllama) as url:
        yield url


def _config(tmp_path, embedded_gguf, tag="gemma3:270m", articles=2):
    config = write_config(tmp_path, embedded_gguf, models=[], iterations=1, articles=articles)
    config.write_text(config.read_text().replace(
        "models:\n", f"models:\n  - {{name: olla, backend: ollama, tag: '{tag}', family: gemma3-270m, quant: Q4_K_M, "
                     "options: {keep_alive: 5m}}\n"))
    return config


def _run(config, host):
    return shootout("run", "-c", str(config), "--no-progress", env_extra={"OLLAMA_HOST": host})


def test_success_stores_ollamas_own_timings(tmp_path, embedded_gguf, fake_ollama):
    res = _run(_config(tmp_path, embedded_gguf), fake_ollama)
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(tmp_path / "results.sqlite")
    rows = con.execute("SELECT valid, value, prompt_tokens, completion_tokens, prompt_seconds, gen_seconds, "
                       "backend FROM calls").fetchall()
    assert rows == [(1, 0.6, 91, 24, 0.25, 1.2, "ollama")] * 2
    load = json.loads(con.execute("SELECT engine_json FROM model_loads").fetchone()[0])
    assert load["load_duration_s"] == 0.812  # the load, kept apart from the calls
    chats = [r for r in FakeOllama.requests if r.get("messages")]
    assert len(chats) == 3  # warm-up + 2 articles
    for r in chats:
        assert r["stream"] is False and r["keep_alive"] == "5m"
        assert r["format"]["required"] == ["reasoning", "sentiment", "confidence"]
        assert set(r["options"]) == {"temperature", "seed", "num_ctx", "num_predict"}
        assert len(r["messages"]) == 12  # system + five example turns + the article


def test_model_not_found_says_what_to_run(tmp_path, embedded_gguf, fake_ollama):
    res = _run(_config(tmp_path, embedded_gguf, tag="llama3:8b"), fake_ollama)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    text = " ".join(res.stderr.split())
    assert "no model 'llama3:8b'" in text and "ollama pull llama3:8b" in text


def test_server_unreachable_names_ollama_host(tmp_path, embedded_gguf):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _run(_config(tmp_path, embedded_gguf), f"http://127.0.0.1:{port}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "OLLAMA_HOST" in res.stderr and f"127.0.0.1:{port}" in res.stderr


def test_reply_that_is_not_valid_json_is_stored_as_invalid(tmp_path, embedded_gguf, fake_ollama):
    FakeOllama.reply = "Sure! The sentiment is positive."
    res = _run(_config(tmp_path, embedded_gguf), fake_ollama)
    assert res.returncode == 0, res.stderr
    rows = sqlite3.connect(tmp_path / "results.sqlite").execute(
        "SELECT valid, raw_text, error, value FROM calls").fetchall()
    assert len(rows) == 2
    assert all(v == 0 and raw == FakeOllama.reply and "not JSON" in err and s is None for v, raw, err, s in rows)


def _live_host() -> str | None:
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        return None
    host = host if host.startswith("http") else f"http://{host}"
    try:
        urllib.request.urlopen(host + "/api/tags", timeout=2)
        return host
    except OSError:
        return None


@pytest.mark.live
@pytest.mark.skipif(_live_host() is None, reason="no Ollama server answers at OLLAMA_HOST")
def test_live_ollama_chat():
    from benchmark.backends.ollama_backend import OllamaBackend
    from benchmark.tasks.base import Item
    from benchmark.tasks.sentiment import SENTIMENT

    tags = json.loads(urllib.request.urlopen(_live_host() + "/api/tags").read())["models"]
    if not tags:
        pytest.skip("the live Ollama server has no models")
    b = OllamaBackend(os.environ.get("OLLAMA_TEST_MODEL", tags[0]["name"]), host=_live_host())
    assert b.load() > 0
    r = b.chat(SENTIMENT.messages(Item(id="a", text="Acme beat estimates.", fields={"company": "Acme"}), "few_shot"), schema=SENTIMENT.constraint().schema, max_tokens=200)
    assert r.completion_tokens > 0 and r.gen_seconds > 0
