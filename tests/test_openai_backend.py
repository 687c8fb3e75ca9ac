"""The OpenAI-compatible backend against a real `python -m llama_cpp.server` on 127.0.0.1."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import send, shootout, write_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(embedded_gguf, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "wb") as out:  # a file, not a pipe: the server logs a lot and would block on a full pipe
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf), "--host",
                                 "127.0.0.1", "--port", str(port), "--chat_format", "gemma", "--n_ctx", "2048",
                                 "--model_alias", "gemma3-270m"], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(base + "/models", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("llama_cpp.server did not start:\n" + log.read_text()[-2000:])
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_server_down_is_one_clear_error(tmp_path, embedded_gguf):
    config = write_config(tmp_path, embedded_gguf, models=[], iterations=1, articles=1)
    port = _free_port()
    config.write_text(config.read_text().replace(
        "models:\n", f"models:\n  - {{name: x, backend: openai, base_url: 'http://127.0.0.1:{port}/v1', "
                     "family: f, quant: Q4_K_M}\n"))
    res = shootout("run", "-c", str(config), "--no-progress")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"no OpenAI-compatible server answers at http://127.0.0.1:{port}/v1" in " ".join(res.stderr.split())


@pytest.mark.slow
def test_an_article_longer_than_the_servers_context_is_a_failed_call_and_the_run_finishes(server, tmp_path,
                                                                                          embedded_gguf):
    """The real llama-cpp-python server (n_ctx 2048) refuses the long article with HTTP 400; the call is
    stored as failed with the server's reason, the short article is answered, and the run finishes."""
    import json

    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"items": [
        {"ticker": "ACME", "company": "Acme", "title": "long",
         "summary": " ".join(f"Acme shipped {i} more chips to customer {i * 7} this quarter." for i in range(160)),
         "expected_sentiment": 0.5},
        {"ticker": "ACME", "company": "Acme", "title": "short", "summary": "Acme shares fell 3% on weak guidance.",
         "expected_sentiment": -0.5}]}))
    extra = ("  - name: served\n    backend: openai\n    prompt_style: zero_shot\n"
             f"    base_url: {server}\n    model: gemma3-270m\n    family: gemma3-270m\n    quant: Q4_K_M\n")
    config = write_config(tmp_path, embedded_gguf, models=[], iterations=1, articles=2)
    text = config.read_text().replace("models:\n", "models:\n" + extra).replace(
        "  source: snapshot\n", f"  source: snapshot\n  snapshot: {snap}\n")
    config.write_text(text)
    res = shootout("run", "-c", str(config), "--run-id", "ctx", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "tokens but the context holds 2048; stored as a failed call" in " ".join(res.stderr.split())
    con = sqlite3.connect(tmp_path / "results.sqlite")
    rows = dict((json.loads(f)["title"], (v, fr, err, pt)) for f, v, fr, err, pt in con.execute(
        "SELECT i.fields_json, c.valid, c.finish_reason, c.error, c.prompt_tokens FROM calls c "
        "JOIN items i USING (run_id, item_id)"))
    valid, finish, error, prompt_tokens = rows["long"]
    assert (valid, finish) == (0, "prompt_too_long") and prompt_tokens > 2048
    assert "does not fit its context" in error and "maximum context length is 2048 tokens" in error
    assert rows["short"][1] == "stop"
    assert con.execute("SELECT finished_at IS NOT NULL FROM runs WHERE run_id='ctx'").fetchone() == (1,)


@pytest.mark.slow
def test_what_the_server_receives_few_shot_turns_and_the_schema_in_every_request(server, tmp_path, embedded_gguf):
    """A run against the real llama-cpp-python server, through a recording pass-through proxy on
    127.0.0.1: the requests it forwards are what the server received, and the replies are stored."""
    import json
    from http.server import BaseHTTPRequestHandler

    from benchmark.tasks.sentiment import EXAMPLES, SYSTEM_PROMPT
    from tests.conftest import loopback_server

    seen: list[dict] = []

    class Proxy(BaseHTTPRequestHandler):
        def _forward(self, body: bytes | None):
            req = urllib.request.Request(server.rsplit("/v1", 1)[0] + self.path, data=body, method=self.command,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=300) as r:
                    status, data = r.status, r.read()
            except urllib.error.HTTPError as e:
                status, data = e.code, e.read()
            send(self, status, "application/json", data)

        def do_GET(self):
            self._forward(None)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(json.loads(body))
            self._forward(body)

        def log_message(self, *a):
            pass

    import urllib.error

    with loopback_server(Proxy) as proxy:
        extra = ("  - name: served\n    backend: openai\n"
                 f"    base_url: {proxy}/v1\n    model: gemma3-270m\n    family: gemma3-270m\n    quant: Q4_K_M\n")
        config = write_config(tmp_path, embedded_gguf, models=[], iterations=1, articles=2)
        config.write_text(config.read_text().replace("models:\n", "models:\n" + extra))
        res = shootout("run", "-c", str(config), "--no-progress")
        assert res.returncode == 0, res.stderr
    # stored: one row per article with the server's counts and its reply
    con = sqlite3.connect(tmp_path / "results.sqlite")
    rows = con.execute("SELECT backend, prompt_tokens, completion_tokens, wall_seconds, raw_text, valid "
                       "FROM calls").fetchall()
    assert len(rows) == 2
    for backend, pt, ct, wall, raw, valid in rows:
        assert backend == "openai" and pt > 500 and ct > 0 and wall > 0 and raw
    assert sum(v for *_, v in rows) >= 1  # the server's grammar keeps replies to JSON (one may hit the token cap)
    engine = con.execute("SELECT engine_json FROM model_loads").fetchone()[0]
    assert '"schema_style": "json_object"' in engine  # llama-cpp-python's server wants its own form
    # received: every request with the few-shot turns and the schema
    chats = [b for b in seen if "messages" in b]
    answered = [b for b in chats if b["response_format"]["type"] == "json_object"]
    assert len(answered) == 1 + 2  # the warm-up and two articles, in the form this server takes
    assert chats[0]["response_format"]["type"] == "json_schema"  # tried first, refused, not asked again
    for body in answered:
        m = body["messages"]
        assert [x["role"] for x in m] == ["system"] + ["user", "assistant"] * 5 + ["user"]
        assert m[0]["content"] == SYSTEM_PROMPT
        assert [(u["content"], a["content"]) for u, a in zip(m[1:11:2], m[2:11:2])] == EXAMPLES
        assert body["response_format"]["schema"]["required"] == ["reasoning", "sentiment", "confidence"]
        assert body["temperature"] == 0.7 and body["stream"] is False
    seeds = [b["seed"] for b in answered[1:]]
    assert len(set(seeds)) == 2  # a seed per call


@pytest.mark.slow
def test_a_streamed_reply_of_the_real_server_equals_the_plain_one_and_is_timed(server):
    """llama-cpp-python's server streams a role-only first chunk, then one chunk per token, and no usage:
    at temperature 0 the streamed reply is the plain one, its tokens counted by chunk equal the server's
    own count, and the time to the first content token comes after the role chunk."""
    from benchmark.backends.openai_compat import OpenAICompatBackend
    from benchmark.tasks.sentiment import SENTIMENT
    from benchmark.tasks.sentiment.news import load_snapshot

    messages = SENTIMENT.messages(load_snapshot()[1].to_item(), "zero_shot")
    plain = OpenAICompatBackend(server, "gemma3-270m")
    streamed = OpenAICompatBackend(server, "gemma3-270m", stream=True)
    replies = []
    # the first call fills the server's prompt cache; the next two find the same prefix in it (a prompt
    # evaluated whole and one evaluated past a cached prefix can differ in the last float bits)
    for b in (plain, plain, streamed):
        b.load()
        replies.append(b.chat(messages, schema=SENTIMENT.constraint().schema, temperature=0.0, seed=1,
                              max_tokens=64))
    _, a, r = replies
    assert r.text == a.text and r.finish_reason == a.finish_reason
    assert r.completion_tokens == a.completion_tokens  # one token per content chunk, as it streams them
    assert r.ttft_seconds is not None and 0 < r.ttft_seconds <= r.e2e_seconds
    assert len(r.itl_gaps) == r.completion_tokens - 1 and r.prompt_tokens == 0  # no usage in its stream
