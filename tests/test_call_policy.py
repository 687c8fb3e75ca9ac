"""One failure policy for the server backends, through the real `shootout run` against loopback servers:
an OpenAI-compatible stand-in (tests/openai_standin.py) and the Ollama fixture (tests/ollama_fixture.py)
failing calls in planted ways. What a user checks: the exit code, one message, every call stored once
with its reason, what the servers were asked (retries), and what `--retry-failed` asks again."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.conftest import loopback_server, shootout
from tests.ollama_fixture import FakeModel, FakeOllama, ollama  # noqa: F401  (a fixture)
from tests.ollama_fixture import make_handler as ollama_handler
from tests.openai_standin import StandIn, make_handler, one_in_three

TAG = "gemma3:270m"
KINDS = ["http_500", "not_json", "timeout", "cut"]  # what one_in_three plants, in turn, as stored


def _config(folder: Path, models: str, *, articles: int = 12, warmup: bool = True) -> Path:
    path = folder / "config.yaml"
    path.write_text(f"task: sentiment\nnews: {{source: snapshot, max_articles: {articles}}}\n"
                    f"run: {{iterations: 1, temperature: 0.0, num_predict: 96, seed: 7, database: results.sqlite, "
                    f"warmup: {str(warmup).lower()}}}\nmodels:\n{models}")
    return path


def _openai(url: str, name: str = "oa", options: str = "timeout_s: 1, retries: 1") -> str:
    return (f"  - {{name: {name}, backend: openai, base_url: '{url}/v1', model: standin, family: f, quant: Q4_K_M, "
            f"options: {{{options}}}}}\n")


def _ollama(name: str = "olla", options: str = "timeout_s: 1, retries: 1", endpoints: str = "") -> str:
    return (f"  - {{name: {name}, backend: ollama, tag: '{TAG}', family: g, quant: Q4_K_M, options: {{{options}}}"
            f"{', endpoints: [' + endpoints + ']' if endpoints else ''}}}\n")


def _rows(db: Path, model: str | None = None) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    where = " WHERE model = ?" if model else ""
    out = [dict(r) for r in con.execute(f"SELECT * FROM calls{where} ORDER BY model, iteration, item_id",
                                        (model,) if model else ())]
    con.close()
    return out


def _one_message(res) -> str:
    out = res.stderr + res.stdout
    assert res.returncode == 2, out
    assert "Traceback" not in out, out
    assert sum(line.startswith("error:") for line in res.stderr.splitlines()) == 1, out
    return " ".join(res.stderr.split())


def _answering_chats(fake: FakeOllama) -> list[dict]:
    return [b for b in fake.chats() if b.get("messages") and not b.get("_debug_render_only")]


@pytest.fixture()
def servers():
    """An OpenAI-compatible stand-in and the Ollama fixture, both failing one call in three."""
    standin = StandIn(fault=one_in_three, hang_s=2.5)
    fake = FakeOllama()
    fake.add(FakeModel(TAG))
    fake.chat_fault, fake.hang_s = one_in_three, 2.5
    with loopback_server(make_handler(standin)) as u1, loopback_server(ollama_handler(fake)) as u2:
        standin.url, fake.url = u1, u2
        yield standin, fake
    fake.close()
    assert not fake.errors, fake.errors


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_servers_failing_one_call_in_three_leave_every_call_stored_once_and_retry_failed_asks_only_those(
        tmp_path, servers):
    standin, fake = servers
    config = _config(tmp_path, _openai(standin.url) + _ollama())
    env = {"OLLAMA_HOST": fake.url}
    res = shootout("run", "-c", str(config), "--run-id", "r1", "--no-progress", env_extra=env)
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split()) + " ".join(res.stdout.split())
    assert "8 call(s) got no usable answer" in said and "--retry-failed" in said
    db = tmp_path / "results.sqlite"
    rows = _rows(db)
    assert len(rows) == 24 and len({(r["model"], r["iteration"], r["item_id"]) for r in rows}) == 24
    for model, server in (("oa", standin), ("olla", fake)):
        mine = _rows(db, model)
        failed = [r for r in mine if r["finish_reason"] == "failed"]
        answered = [r for r in mine if r["finish_reason"] != "failed"]
        # the warm-up was the servers' call 0; calls 2, 5, 8 and 11 failed: 500, garbage, timeout, cut
        assert len(failed) == 4 and len(answered) == 8
        assert sorted(r["error"].split(":")[0] for r in failed) == sorted(KINDS)
        assert all(r["valid"] == 0 and r["attempts"] == 2 and r["wall_seconds"] is None and r["raw_text"] == ""
                   for r in failed)
        assert all(r["valid"] == 1 and r["attempts"] == 1 and r["finish_reason"] == "stop" for r in answered)
        by_kind = {r["error"].split(":")[0]: r["error"] for r in failed}
        assert "HTTP 500 Internal Server Error" in by_kind["http_500"]
        assert "something that is not JSON: <html><body><h1>502 Bad Gateway" in by_kind["not_json"]
        assert "gave no complete answer to POST" in by_kind["timeout"] and "within 1 s (2 attempts)" in by_kind["timeout"]
        assert "closed the connection after" in by_kind["cut"]
        met = [c for c, _ in server.faults_met]
        assert sorted(met) == sorted([2, 2, 5, 5, 8, 8, 11, 11])  # each failing call asked twice (retries: 1)
    assert sqlite3.connect(db).execute("SELECT finished_at IS NOT NULL FROM runs").fetchone() == (1,)

    # the servers mend; a plain resume asks nothing (every call is stored)
    standin.fault = fake.chat_fault = None
    before_oa, before_olla = len(standin.bodies), len(_answering_chats(fake))
    res = shootout("run", "-c", str(config), "--run-id", "r1", "--no-progress", env_extra=env)
    assert res.returncode == 0, res.stderr
    assert (len(standin.bodies), len(_answering_chats(fake))) == (before_oa, before_olla)

    # --resume --retry-failed: the warm-up, then the four failed calls of each model, and nothing else
    res = shootout("run", "-c", str(config), "--resume", "--retry-failed", "--no-progress", env_extra=env)
    assert res.returncode == 0, res.stderr
    assert len(standin.bodies) - before_oa == 1 + 4 and len(_answering_chats(fake)) - before_olla == 1 + 4
    again = _rows(db)
    assert len(again) == 24 and all(r["valid"] == 1 and r["finish_reason"] == "stop" for r in again)
    old = {r["id"]: r for r in rows}
    for r in again:  # one row per call: the failed rows replaced in place, the answered ones untouched
        assert r["id"] in old
        if old[r["id"]]["finish_reason"] != "failed":
            assert r == old[r["id"]]


def _by_item(faults: dict[int, str]):
    """A stand-in fault by the item asked (the k-th distinct last message), whatever the request's form."""
    seen: dict[str, int] = {}

    def fault(call: int, body: dict) -> str | None:
        k = seen.setdefault(body["messages"][-1]["content"], len(seen))
        return faults.get(k)
    return fault


@pytest.mark.slow
def test_a_4xx_is_never_retried_and_an_oversized_body_is_not_either(tmp_path):
    """A 400 first makes the backend try the json_object form of the schema (servers that only know it
    refuse json_schema with a 400); refused again, the call fails at once, whatever options.retries says."""
    standin = StandIn(fault=_by_item({2: "400", 3: "huge"}))
    with loopback_server(make_handler(standin)) as url:
        res = shootout("run", "-c", str(_config(tmp_path, _openai(url, options="retries: 3"), articles=4)),
                       "--no-progress")
    assert res.returncode == 0, res.stderr
    rows = {r["item_id"]: r for r in _rows(tmp_path / "results.sqlite")}
    failed = sorted((r for r in rows.values() if r["finish_reason"] == "failed"), key=lambda r: r["error"])
    assert [r["error"].split(":")[0] for r in failed] == ["http_400", "too_large"]
    assert all(r["attempts"] == 1 for r in failed)
    assert "'temperature' is invalid (planted)" in failed[0]["error"] and "(not retried)" in failed[0]["error"]
    assert "more than the 1,192,000 bytes allowed" in failed[1]["error"]
    met = [f for _, f in standin.faults_met]
    assert met.count("huge") == 1 and met.count("400") == 2  # once per form for the 400, despite retries: 3


@pytest.mark.slow
def test_an_endpoint_that_keeps_failing_is_retired_and_its_work_finishes_on_the_other(tmp_path):
    """Two endpoints of one model; one answers 500 to everything: three failed calls retire it, the
    rest go to the healthy one, and the run finishes."""
    good, bad = StandIn(), StandIn(fault=lambda call, body: "500")
    with loopback_server(make_handler(good)) as g, loopback_server(make_handler(bad)) as b:
        models = (f"  - {{name: oa, backend: openai, model: standin, endpoints: ['{g}/v1', '{b}/v1'], family: f, "
                  "quant: Q4_K_M, options: {retries: 0}}\n")
        res = shootout("run", "-c", str(_config(tmp_path, models, articles=12, warmup=False)), "--no-progress")
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split())
    assert f"endpoint {b}/v1 failed 3 calls in a row; its calls went to the others" in said
    rows = _rows(tmp_path / "results.sqlite")
    assert len(rows) == 12
    failed = [r for r in rows if r["finish_reason"] == "failed"]
    assert len(failed) == 3 and {r["endpoint"] for r in failed} == {f"{b}/v1"}
    assert all(r["valid"] == 1 and r["endpoint"] == f"{g}/v1" for r in rows if r["finish_reason"] != "failed")
    assert len(bad.bodies) == 3


# ------------------------------------------------------------------ Ollama: timeouts and garbled answers

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ollama_honours_timeout_s_and_retries_and_stops_when_its_only_host_keeps_failing(tmp_path):
    fake = FakeOllama()
    fake.add(FakeModel(TAG))
    fake.chat_fault, fake.hang_s = (lambda call, body: "timeout"), 2.5
    with loopback_server(ollama_handler(fake)) as url:
        fake.url = url
        res = shootout("run", "-c", str(_config(tmp_path, _ollama(), articles=5, warmup=False)), "--no-progress",
                       env_extra={"OLLAMA_HOST": url})
    msg = _one_message(res)
    assert "model 'olla': 2 calls left and no endpoint answers" in msg
    assert "failed 3 calls in a row" in msg and "gave no complete answer to POST /api/chat within 1 s (2 attempts)" in msg
    assert "raise options.timeout_s (now 1)" in msg
    rows = _rows(tmp_path / "results.sqlite")
    assert len(rows) == 3 and all(r["error"].startswith("timeout:") and r["attempts"] == 2 for r in rows)
    assert sorted(c for c, _ in fake.faults_met) == [0, 0, 1, 1, 2, 2]  # each call asked twice (retries: 1)
    fake.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_host_that_never_answers_is_given_up_on_after_retries_plus_one_timeouts(tmp_path):
    """A socket that accepts and never answers: the first request (GET /api/version) is given up on
    after (retries + 1) x timeout_s, one message."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        held = []
        stop = threading.Event()

        def accept():
            s.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(s.accept()[0])
                except OSError:
                    pass

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        res = shootout("run", "-c", str(_config(tmp_path, _ollama(), articles=2)), "--no-progress",
                       env_extra={"OLLAMA_HOST": url})
        stop.set()
        t.join()
        s.setblocking(False)
        while True:  # connections still waiting in the backlog
            try:
                held.append(s.accept()[0])
            except OSError:
                break
        for c in held:
            c.close()
    msg = _one_message(res)
    assert f"Ollama at {url} gave no complete answer to GET /api/version within 1 s (2 attempts)" in msg
    assert len(held) == 2  # one try and one retry


GARBLED = [
    ("/api/version", b"<html>Welcome to nginx!</html>", "answered GET /api/version with something that is not JSON: "
                                                        "<html>Welcome to nginx!</html>"),
    ("/api/version", b'{"name": "not ollama"}', "answered GET /api/version without a version (None)"),
    ("/api/show", b"not json at all", "answered POST /api/show with something that is not JSON: not json at all"),
    ("/api/show", b'{"details": 5}', "answered POST /api/show with JSON of the wrong shape for POST /api/show"),
    ("/api/ps", b"\x00\x01garbage", "answered GET /api/ps with something that is not JSON"),
    ("/api/ps", b'{"models": "x"}', "answered GET /api/ps with JSON of the wrong shape for GET /api/ps (models:"),
    ("/api/chat", b"[1, 2]", "answered POST /api/chat with a JSON list, not an object: [1, 2]"),
    ("/api/chat", b'{"done": true}', "answered POST /api/chat with JSON of the wrong shape for POST /api/chat "
                                     "(message: Field required)"),
]


@pytest.mark.parametrize("path, body, needle", GARBLED, ids=[f"{p}-{k}" for k, (p, _, _) in enumerate(GARBLED)])
def test_ollama_answers_that_are_not_json_or_of_the_wrong_shape_at_load_are_one_message(tmp_path, ollama, path,
                                                                                       body, needle):
    ollama.add(FakeModel(TAG))
    ollama.garble[path] = body
    res = shootout("run", "-c", str(_config(tmp_path, _ollama())), "--no-progress",
                   env_extra={"OLLAMA_HOST": ollama.url})
    msg = _one_message(res)
    assert f"model 'olla': Ollama at {ollama.url} {needle}" in msg, msg
    assert "Ollama server's root" in msg  # the hint: the address is not an Ollama server's
    assert not _answering_chats(ollama)  # nothing was asked


@pytest.mark.parametrize("fault, kind, needle", [
    ("garbage", "not_json", "not JSON: <html><body><h1>502 Bad Gateway"),
    ("wrong_shape", "wrong_shape", "JSON of the wrong shape for POST /api/chat (message: Field required)"),
    ("cut", "cut", "closed the connection after"),
])
@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_ollama_chat_answers_that_are_garbled_are_failed_calls_and_the_run_goes_on(tmp_path, ollama, fault, kind,
                                                                                    needle, stream):
    ollama.add(FakeModel(TAG))
    ollama.chat_fault = lambda call, body: fault if call == 1 else None
    res = shootout("run", "-c", str(_config(tmp_path, _ollama(options=f"retries: 1, stream: {str(stream).lower()}"),
                                            articles=3, warmup=False)),
                   "--no-progress", env_extra={"OLLAMA_HOST": ollama.url})
    assert res.returncode == 0, res.stderr
    rows = _rows(tmp_path / "results.sqlite")
    failed = [r for r in rows if r["finish_reason"] == "failed"]
    assert len(rows) == 3 and len(failed) == 1
    assert failed[0]["error"].startswith(f"{kind}: ") and needle in failed[0]["error"], failed[0]["error"]
    assert [c for c, _ in ollama.faults_met] == [1, 1]
    assert all(r["valid"] == 1 for r in rows if r["finish_reason"] != "failed")


@pytest.mark.slow
def test_a_failed_call_counts_as_unanswered_and_stays_out_of_the_latency_figures(tmp_path):
    """The report counts the failed call (an unanswered call: not valid) and keeps its time, which is the
    time of a failure, out of seconds per sample."""
    import pandas as pd

    standin = StandIn(fault=lambda call, body: "500" if call == 1 else None)
    with loopback_server(make_handler(standin)) as url:
        res = shootout("run", "-c", str(_config(tmp_path, _openai(url, options="retries: 0"), articles=3,
                                                warmup=False)), "--no-progress")
        assert res.returncode == 0, res.stderr
    rep = shootout("report", "--db", str(tmp_path / "results.sqlite"), "--out", str(tmp_path / "out"))
    assert rep.returncode == 0, rep.stderr
    row = pd.read_csv(next((tmp_path / "out").glob("*/model_details.csv"))).iloc[0]
    rows = _rows(tmp_path / "results.sqlite")
    answered = [r["wall_seconds"] for r in rows if r["finish_reason"] != "failed"]
    assert row["calls"] == 3 and row["valid_rate"] == pytest.approx(2 / 3) and len(answered) == 2
    assert row["s_per_sample"] == pytest.approx(sum(answered) / 2)
