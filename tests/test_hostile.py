"""Issue 14, end to end through the `shootout` command line: broken OpenAI-compatible servers (real
HTTP servers on 127.0.0.1), markup in user-visible text, files where folders belong, databases that
are not ours, and full disks. Each test checks what a user sees: the exit code, one message, and
what is (or is not) left on disk."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import ROOT, loopback_server, send, shootout

VALID = json.dumps({"reasoning": "Orders rose.", "sentiment": 0.5, "confidence": 0.8})


class FakeServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible server whose answers a test sets: ``models`` and ``chat`` are
    callables(handler, body) -> (status, content type, body bytes), or None for the normal answer."""

    models = None
    chat = None
    chats: list[dict] = []

    def _send(self, status: int, ctype: str, body: bytes | str) -> None:
        send(self, status, ctype, body)

    def do_GET(self):  # noqa: N802
        if self.path.endswith("/models"):
            out = type(self).models(self, None) if type(self).models else \
                (200, "application/json", json.dumps({"data": [{"id": "fake"}]}))
            if out:
                self._send(*out)
            return
        self._send(404, "text/plain", "no")

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).chats.append(body)
        out = type(self).chat(self, body) if type(self).chat else None
        if out is None:
            out = (200, "application/json", json.dumps({
                "choices": [{"message": {"role": "assistant", "content": VALID}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 9}}))
        if out:
            self._send(*out)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def fake_server(models=None, chat=None):
    handler = type("Fake", (FakeServer,), {"models": staticmethod(models) if models else None,
                                           "chat": staticmethod(chat) if chat else None, "chats": []})
    with loopback_server(handler) as url:
        yield url + "/v1", handler


def config(folder: Path, base_url: str, *, articles: int = 2, iterations: int = 1, options: str = "",
           database: str = "results.sqlite", extra: str = "", snapshot: str | None = None) -> Path:
    news = f"news:\n  source: snapshot\n  max_articles: {articles}\n" + (f"  snapshot: {snapshot}\n" if snapshot else "")
    text = (f"task: sentiment\n{news}run:\n  iterations: {iterations}\n  warmup: false\n  seed: 7\n"
            f"  database: {database}\n"
            f"models:\n  - name: served\n    backend: openai\n    base_url: '{base_url}'\n    model: fake\n"
            f"    family: f\n    quant: Q4_K_M\n" + (f"    options: {{{options}}}\n" if options else "") + extra)
    path = folder / "config.yaml"
    path.write_text(text)
    return path


def one_error(res: subprocess.CompletedProcess) -> str:
    """The single error message of a failed command (exit 2, no traceback), spaces collapsed."""
    out = res.stderr + res.stdout
    assert res.returncode == 2, out
    assert "Traceback" not in out and "MarkupError" not in out, out
    assert sum(line.startswith("error:") for line in res.stderr.splitlines()) == 1, out
    return " ".join(res.stderr.split())


# ------------------------------------------------------------------ OpenAI-compatible servers

def test_a_normal_fake_server_run_completes(tmp_path):
    with fake_server() as (url, handler):
        res = shootout("run", "-c", str(config(tmp_path, url)), "--no-progress", "--run-id", "ok")
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(tmp_path / "results.sqlite")
    assert con.execute("SELECT COUNT(*), SUM(valid) FROM calls").fetchone() == (2, 2)
    assert len(handler.chats) == 2


def failed_calls(folder: Path) -> list[tuple]:
    """(valid, finish_reason, error, attempts) of each stored call."""
    con = sqlite3.connect(folder / "results.sqlite")
    try:
        return con.execute("SELECT valid, finish_reason, error, attempts FROM calls ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_hanging_server_is_given_up_on_in_the_configured_time(tmp_path):
    """Issue 25's policy: each call is given up on after (retries + 1) x timeout_s and stored as failed."""
    def hang(h, body):
        time.sleep(60)
        return False

    with fake_server(chat=hang) as (url, handler):
        res = shootout("run", "-c", str(config(tmp_path, url, options="timeout_s: 1, retries: 1")), "--no-progress",
                       timeout=90)
    assert res.returncode == 0, res.stderr
    rows = failed_calls(tmp_path)
    assert len(rows) == 2 and all(v == 0 and f == "failed" and n == 2 for v, f, _, n in rows)
    assert all("gave no complete answer to POST /chat/completions within 1 s (2 attempts)" in e for _, _, e, _ in rows)
    assert len(handler.chats) == 4  # one try and one retry per call, as configured


@pytest.mark.parametrize("answer, needle", [
    ((200, "text/html", "<html><body>Welcome to nginx!</body></html>"),
     "answered POST /chat/completions with something that is not JSON: <html><body>Welcome to nginx!"),
    ((200, "application/json", json.dumps({"id": "x", "object": "chat.completion"})),
     "with a reply without choices[0].message"),
    ((200, "application/json", json.dumps({"choices": []})), "with a reply without choices[0].message"),
    ((200, "application/json", "[1, 2]"), "with a JSON list, not an object"),
])
def test_non_json_or_choices_less_answers_are_failed_calls_with_their_reason(tmp_path, answer, needle):
    with fake_server(chat=lambda h, body: answer) as (url, _):
        res = shootout("run", "-c", str(config(tmp_path, url, options="retries: 0")), "--no-progress")
    assert res.returncode == 0, res.stderr
    rows = failed_calls(tmp_path)
    assert len(rows) == 2 and all(v == 0 and f == "failed" for v, f, _, _ in rows)
    assert all("model 'served'" in e and needle in e for _, _, e, _ in rows), rows


@pytest.mark.slow
def test_a_500_on_models_is_reported_as_such(tmp_path):
    with fake_server(models=lambda h, b: (500, "application/json",
                                          json.dumps({"error": {"message": "CUDA out of memory"}}))) as (url, _):
        res = shootout("run", "-c", str(config(tmp_path, url)), "--no-progress")
    msg = one_error(res)
    assert "answered HTTP 500" in msg and "GET /models" in msg and "CUDA out of memory" in msg
    assert "no OpenAI-compatible server answers" not in msg


def test_a_server_without_a_model_listing_is_still_used(tmp_path):
    with fake_server(models=lambda h, b: (404, "text/plain", "Not Found")) as (url, _):
        res = shootout("run", "-c", str(config(tmp_path, url)), "--no-progress")
    assert res.returncode == 0, res.stderr


def test_a_prompt_the_server_cannot_fit_is_a_failed_call_and_the_run_finishes(tmp_path):
    """llama.cpp's server says exceed_context_size_error (HTTP 400) for the long article."""
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({"items": [
        {"ticker": "AC", "company": "Acme", "title": "long", "summary": "LONG " + "Acme grew. " * 50,
         "expected_sentiment": 0.5},
        {"ticker": "AC", "company": "Acme", "title": "short", "summary": "Acme fell.", "expected_sentiment": -0.5}]}))

    def chat(h, body):
        if "LONG" in body["messages"][-1]["content"]:
            return (400, "application/json", json.dumps({"error": {
                "code": 400, "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error", "n_prompt_tokens": 4100, "n_ctx": 4096}}))
        return None

    with fake_server(chat=chat) as (url, _):
        res = shootout("run", "-c", str(config(tmp_path, url, iterations=2, snapshot=str(snap))), "--no-progress",
                       "--run-id", "ctx")
    assert res.returncode == 0, res.stderr
    assert "the prompt needs 4100 tokens but the context holds 4096" in " ".join(res.stderr.split())
    con = sqlite3.connect(tmp_path / "results.sqlite")
    rows = con.execute("SELECT i.title, c.valid, c.finish_reason, c.error FROM calls c JOIN "
                       "(SELECT item_id, json_extract(fields_json, '$.title') AS title FROM items) i "
                       "USING (item_id) ORDER BY i.title, c.iteration").fetchall()
    assert [(t, v, f) for t, v, f, _ in rows] == [("long", 0, "prompt_too_long")] * 2 + [("short", 1, "stop")] * 2
    assert "exceeds the available context size" in rows[0][3]
    assert con.execute("SELECT finished_at IS NOT NULL FROM runs").fetchone() == (1,)


# ------------------------------------------------------------------ markup in user-visible text

def test_markup_in_a_server_error_is_printed_as_it_is(tmp_path):
    with fake_server(chat=lambda h, b: (503, "text/plain", "overloaded [/x] [bold]retry[/bold] :smile:")) as (url, _):
        res = shootout("run", "-c", str(config(tmp_path, url, options="retries: 0")), "--no-progress")
    assert res.returncode == 0 and "MarkupError" not in res.stderr, res.stderr
    assert "answered HTTP 503 Service Unavailable to POST /chat/completions: overloaded [/x] [bold]retry[/bold] :smile:" \
        in " ".join(res.stderr.split())


@pytest.mark.slow
def test_markup_in_a_feed_url_warning_and_a_run_id_is_printed_as_it_is(tmp_path):
    with fake_server() as (url, _):
        cfg = config(tmp_path, url, extra="")
        text = cfg.read_text().replace(
            "news:\n  source: snapshot\n",
            "news:\n  source: rss\n  rss_url: 'http://127.0.0.1:9/[/x]/{ticker}'\n  tickers: {ACME: Acme}\n"
            "  allow_private_addresses: true\n  timeout_s: 5\n")
        cfg.write_text(text)
        res = shootout("run", "-c", str(cfg), "--no-progress")
        msg = one_error(res)
        assert "warning: news feed for ACME failed (http://127.0.0.1:9/[/x]/ACME: connection refused" in msg
        assert "no news articles to benchmark on" in msg
        # a run id with markup, printed when the run resumes
        cfg = config(tmp_path, url)
        first = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "r[/x][red]", "--model", "served")
        assert first.returncode == 0, first.stderr
        with sqlite3.connect(tmp_path / "results.sqlite") as con:
            con.execute("DELETE FROM calls WHERE id = (SELECT MAX(id) FROM calls)")
        again = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "r[/x][red]")
    assert again.returncode == 0, again.stderr
    assert "resuming run r[/x][red]: 1 calls already stored, 1 to go" in again.stderr


# ------------------------------------------------------------------ files where folders belong

def test_news_cache_dir_that_is_a_file_is_one_clear_error(tmp_path):
    (tmp_path / "cachefile").write_text("x")
    with fake_server() as (url, _):
        cfg = config(tmp_path, url)
        cfg.write_text(cfg.read_text().replace(
            "news:\n  source: snapshot\n", "news:\n  source: rss\n  cache_dir: cachefile\n"))
        res = shootout("run", "-c", str(cfg), "--no-progress")
    msg = one_error(res)
    assert f"news.cache_dir {tmp_path / 'cachefile'} is a file, not a folder" in msg


@pytest.mark.slow
@pytest.mark.parametrize("out", ["afile", "afile/sub"])
def test_export_out_that_is_a_file_is_one_clear_error(tmp_path, out):
    (tmp_path / "afile").write_text("x")
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF")
    res = shootout("export", str(src), "--out", str(tmp_path / out), "--no-verify")
    msg = one_error(res)
    assert f"--out {tmp_path / out} is not a folder" in msg
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.slow
def test_report_out_that_is_a_file_is_one_clear_error(tmp_path):
    with fake_server() as (url, _):
        cfg = config(tmp_path, url)
        assert shootout("run", "-c", str(cfg), "--no-progress").returncode == 0
    (tmp_path / "afile").write_text("x")
    res = shootout("report", "-c", str(cfg), "--out", str(tmp_path / "afile"))
    msg = one_error(res)
    assert str(tmp_path / "afile") in msg and "a file stands where a folder is needed" in msg


# ------------------------------------------------------------------ databases that are not ours

def _foreign(kind: str, path: Path) -> None:
    if kind == "not sqlite":
        path.write_bytes(b"name,score\nalice,3\n" * 100)
    elif kind == "another program":
        with sqlite3.connect(path) as con:
            con.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
            con.execute("INSERT INTO contacts VALUES ('alice', '123')")
        con.close()
    else:  # an empty SQLite file
        path.write_bytes(b"")


@pytest.mark.parametrize("kind, needle", [("not sqlite", "is not an SQLite database"),
                                          ("another program", "is an SQLite database of another program"),
                                          ("empty", "holds no gguf-shootout results")])
@pytest.mark.parametrize("command", [["report"], ["runs"], ["heatmaps"], ["export-json"]])
def test_a_database_that_is_not_ours_is_refused_and_left_untouched(tmp_path, kind, needle, command):
    db = tmp_path / "their.db"
    _foreign(kind, db)
    before, mtime = db.read_bytes(), db.stat().st_mtime_ns
    res = shootout(*command, "--db", str(db), cwd=tmp_path)
    msg = one_error(res)
    assert needle in msg and str(db) in msg
    assert db.read_bytes() == before and db.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["their.db"]  # no -wal, -shm, reports
    if kind == "another program":
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["contacts"]
        con.close()


def test_run_on_a_database_that_is_not_ours_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "their.db"
    _foreign("another program", db)
    before = db.read_bytes()
    with fake_server() as (url, handler):
        res = shootout("run", "-c", str(config(tmp_path, url, database="their.db")), "--no-progress")
    assert "of another program" in one_error(res)
    assert db.read_bytes() == before and handler.chats == []


# ------------------------------------------------------------------ full disks

def _fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the disk is full."""
    filler = folder / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "24m"):
    folder.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc})")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({res.stderr.decode().strip() or res.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.slow
def test_a_run_on_a_disk_that_fills_up_exits_2_and_resumes_once_space_is_freed(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        state = {"filler": None}

        def chat(h, body):  # another program fills the disk while the third call is asked
            if len(type(h).chats) == 3:
                state["filler"] = _fill(disk)
            return None

        with fake_server(chat=chat) as (url, handler):
            cfg = config(tmp_path, url, articles=3, iterations=2, database=str(disk / "results.sqlite"))
            res = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "full")
            msg = one_error(res)
            assert f"the disk holding {disk / 'results.sqlite'} is full" in msg
            assert "every call stored before this one is kept" in msg
            assert f"shootout run --config {cfg} --run-id full" in msg
            os.unlink(state["filler"])
            with sqlite3.connect(disk / "results.sqlite") as con:
                kept = con.execute("SELECT iteration, item_id, raw_text FROM calls ORDER BY id").fetchall()
                assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            con.close()
            assert len(kept) == 2  # the two calls before the disk filled up
            again = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "full")
        assert again.returncode == 0, again.stderr
        assert "resuming run full: 2 calls already stored, 4 to go" in again.stderr
        con = sqlite3.connect(disk / "results.sqlite")
        rows = con.execute("SELECT iteration, item_id, raw_text FROM calls ORDER BY id").fetchall()
        assert rows[:2] == kept and len(rows) == len(set((r[0], r[1]) for r in rows)) == 6
        assert con.execute("SELECT finished_at IS NOT NULL FROM runs").fetchone() == (1,)
        con.close()


def test_a_run_on_a_full_disk_does_not_start_and_leaves_no_file(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        filler = _fill(disk)
        with fake_server() as (url, handler):
            cfg = config(tmp_path, url, database=str(disk / "results.sqlite"))
            res = shootout("run", "-c", str(cfg), "--no-progress")
        msg = one_error(res)
        assert "free on the disk holding" in msg and "a run needs at least 16.0 MB" in msg
        assert sorted(p.name for p in disk.iterdir()) == [filler.name] and handler.chats == []


def test_a_results_file_that_cannot_be_set_up_on_a_full_disk_is_removed(tmp_path):
    from benchmark.store import Store
    from core.errors import DiskFull

    with small_disk(tmp_path / "disk") as disk:
        filler = _fill(disk)
        with pytest.raises(DiskFull) as err:
            Store(disk / "results.sqlite", min_free_bytes=0)  # past the preflight: the first write fails
        assert "is full" in err.value.message
        assert sorted(p.name for p in disk.iterdir()) == [filler.name]  # no 0-byte results file


def test_a_full_database_raises_disk_full_and_keeps_every_stored_call(tmp_path):
    """The same mechanism without a small disk: SQLite's page limit makes the database 'full'."""
    from benchmark.store import Store
    from benchmark.tasks.base import Item
    from core.errors import DiskFull

    items = [Item(id=f"i{k}", text="Acme " * 50) for k in range(3)]
    with Store(tmp_path / "r.sqlite") as store:
        store.create_run("r", task="sentiment", seed=1, iterations=1, config_path=None, config_text="", settings={},
                         versions={}, hardware={}, items=items)
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + 2}")
        stored = 0
        with pytest.raises(DiskFull) as err:
            for k in range(10_000):
                store.add_call({"run_id": "r", "model": "m", "iteration": k, "item_id": "i0", "valid": 1,
                                "raw_text": "x" * 500})
                stored += 1
        assert "is full" in err.value.message and "every call stored before this one is kept" in err.value.message
        assert 0 < stored < 10_000
    with Store(tmp_path / "r.sqlite") as store:  # reopened without the limit: every stored call is there
        assert store.count_calls("r") == stored
        assert store.add_call({"run_id": "r", "model": "m", "iteration": stored, "item_id": "i0", "valid": 1})
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _other_pythons() -> list[str]:
    """Interpreters of other CPython versions on this machine (pyenv's, /usr/bin's), one per version."""
    import glob

    found = {}
    for exe in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")) +
                      glob.glob("/usr/bin/python3.1[2-9]")):
        try:
            v = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                               text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if v and v != f"{sys.version_info[0]}.{sys.version_info[1]}":
            found.setdefault(v, exe)
    return list(found.values())


@pytest.mark.parametrize("python", _other_pythons() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no CPython 3.12+ besides the test's own on this machine"))])
def test_the_http_client_reads_answers_on_newer_pythons(python):
    """Python 3.12.3+ and 3.13 close the socket object once the response owns the connection; a
    fetch that touched it afterwards failed with 'Bad file descriptor' there (seen on the GPU box)."""
    class Models(BaseHTTPRequestHandler):
        def do_GET(self):
            send(self, 200, "application/json", json.dumps({"object": "list", "data": [{"id": "m"}]}))

        def log_message(self, *a):
            pass

    with loopback_server(Models) as url:
        code = ("from core import netsafe; r = netsafe.fetch(%r, netsafe.Policy(allow_private=True, deadline_s=20)); "
                "print(r.status, r.body.decode())" % (url + "/v1/models"))
        r = subprocess.run([python, "-c", code], cwd=ROOT / "src", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.split(" ", 1)[0] == "200" and '"id": "m"' in r.stdout


def test_a_bad_thread_count_in_the_environment_is_one_clear_error(tmp_path, embedded_gguf):
    from tests.conftest import write_config

    config = write_config(tmp_path, embedded_gguf, iterations=1, articles=1)
    r = shootout("run", "-c", str(config), "--no-progress", env_extra={"SHOOTOUT_THREADS": "two"})
    assert r.returncode == 2, r.stderr
    assert "SHOOTOUT_THREADS='two'" in r.stderr and "whole number" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_a_damaged_embedded_model_is_assembled_again_and_never_seen_half_written(tmp_path, embedded_gguf):
    import hashlib

    from core.embedded import embedded_gguf as assemble

    dest = tmp_path / "models" / embedded_gguf.name
    dest.parent.mkdir()
    dest.write_bytes(b"GGUF" + b"\0" * 1000)  # an interrupted assembly
    assert assemble(dest) == dest
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(embedded_gguf.read_bytes()).hexdigest()
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no part file left behind
