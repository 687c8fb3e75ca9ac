"""Issue 25, the results file, through the real command line and real processes: another process
holding a write lock (at start and mid-run), two runs on one new run id, read-only files, folders
and mounts, and damaged files (8 kB of noise inside). Each case: exit 2 with one message, the rows
stored before kept, the file's bytes unchanged where it must not be written."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, shootout
from tests.test_hostile import fake_server, one_error, small_disk

HOLDER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
con.execute("COMMIT")
"""


def _config(folder: Path, url: str, *, database: str = "results.sqlite", run: str = "", articles: int = 2) -> Path:
    path = folder / "config.yaml"
    path.write_text(f"task: sentiment\nnews: {{source: snapshot, max_articles: {articles}}}\n"
                    f"run: {{iterations: 2, warmup: false, seed: 7, database: '{database}'{run}}}\n"
                    f"models:\n  - {{name: served, backend: openai, base_url: '{url}', model: fake, family: f, "
                    f"quant: Q4_K_M}}\n")
    return path


def _counts(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM calls)").fetchone()
    finally:
        con.close()


@contextlib.contextmanager
def holding(db: Path):
    """Another process holding a write transaction on ``db`` until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(30)


def _popen(*args: str, cwd: Path) -> subprocess.Popen:
    """The real command line in its own process (not the zygote, which runs one command at a time)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "shootout.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# ------------------------------------------------------------------ another process holds the file


@pytest.mark.slow
def test_a_lock_held_past_the_wait_ends_the_run_with_one_message_and_nothing_written(tmp_path):
    with fake_server() as (url, handler):
        cfg = _config(tmp_path, url, run=", lock_wait_s: 2")
        assert shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "first").returncode == 0
        db = tmp_path / "results.sqlite"
        before = _counts(db)
        chats = len(handler.chats)
        with holding(db):
            res = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "second")
            raw = db.read_bytes()
        msg = one_error(res)
        assert f"{db} stayed locked by another process for 2 s" in msg and "raise run.lock_wait_s" in msg
        assert f"waiting for {db}: another process holds a write lock" in res.stderr  # progress while it waited
        assert _counts(db) == before and len(handler.chats) == chats and db.read_bytes() == raw


@pytest.mark.slow
def test_a_run_waits_for_a_lock_and_goes_on_once_it_is_released(tmp_path):
    with fake_server() as (url, handler):
        cfg = _config(tmp_path, url)
        assert shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "first").returncode == 0
        db = tmp_path / "results.sqlite"
        with holding(db) as holder:
            proc = _popen("run", "-c", str(cfg), "--no-progress", "--run-id", "second", cwd=tmp_path)
            line = proc.stderr.readline()  # it says it waits; then the other process lets go
            assert f"waiting for {db}: another process holds a write lock" in line, line
            holder.stdin.close()
            holder.wait(30)
            _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert _counts(db) == (2, 8)


@pytest.mark.slow
def test_a_lock_taken_mid_run_stops_it_with_the_calls_before_kept_and_it_resumes(tmp_path):
    db = tmp_path / "results.sqlite"
    state = {}

    def chat(h, body):  # another process takes the file while the second call is asked
        if len(type(h).chats) == 2:
            state["holder"] = holding(db)
            state["holder"].__enter__()
        return None

    with fake_server(chat=chat) as (url, handler):
        cfg = _config(tmp_path, url, run=", lock_wait_s: 1")
        res = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "mid")
        kept = _counts(db)
        state["holder"].__exit__(None, None, None)
        msg = one_error(res)
        assert "stayed locked by another process" in msg and f"--run-id mid" in msg
        assert kept == (1, 1)  # the first call, stored before the lock
        again = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "mid")
    assert again.returncode == 0, again.stderr
    assert "resuming run mid: 1 calls already stored, 3 to go" in again.stderr
    con = sqlite3.connect(db)
    keys = con.execute("SELECT model, iteration, item_id FROM calls").fetchall()
    con.close()
    assert len(keys) == len(set(keys)) == 4


# ------------------------------------------------------------------ two runs on one run id


@pytest.mark.slow
def test_two_runs_started_at_once_on_one_new_run_id_one_runs_the_other_names_it(tmp_path):
    go = threading.Event()

    def chat(h, body):  # the first call waits until the test lets it go: the writer is mid-run
        go.wait(120)
        return None

    with fake_server(chat=chat) as (url, handler):
        cfg = _config(tmp_path, url)
        procs = [_popen("run", "-c", str(cfg), "--no-progress", "--run-id", "same", cwd=tmp_path) for _ in range(2)]
        deadline = time.monotonic() + 300
        while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        refused = next(p for p in procs if p.poll() is not None)
        other = next(p for p in procs if p is not refused)
        out, err = refused.communicate()
        res = subprocess.CompletedProcess(refused.args, refused.returncode, out, err)
        go.set()
        _, other_err = other.communicate(timeout=300)
    msg = one_error(res)
    assert f"run same is being written by another process (pid {other.pid}" in msg
    assert other.returncode == 0, other_err
    con = sqlite3.connect(tmp_path / "results.sqlite")
    keys = con.execute("SELECT model, iteration, item_id FROM calls").fetchall()
    assert len(keys) == len(set(keys)) == 4 and con.execute("SELECT COUNT(*) FROM writers").fetchone() == (0,)
    con.close()


@pytest.mark.slow
def test_a_run_killed_mid_run_leaves_a_claim_that_its_resume_takes_over(tmp_path):
    go, asked = threading.Event(), threading.Event()

    def chat(h, body):
        asked.set()
        go.wait(120)
        return None

    with fake_server(chat=chat) as (url, handler):
        cfg = _config(tmp_path, url)
        proc = _popen("run", "-c", str(cfg), "--no-progress", "--run-id", "killed", cwd=tmp_path)
        assert asked.wait(300)
        proc.kill()
        proc.wait(30)
        go.set()
        con = sqlite3.connect(tmp_path / "results.sqlite")
        assert con.execute("SELECT pid FROM writers").fetchall() == [(proc.pid,)]  # left by the killed run
        con.close()
        res = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "killed")
    assert res.returncode == 0, res.stderr
    assert _counts(tmp_path / "results.sqlite") == (1, 4)


# ------------------------------------------------------------------ read-only files, folders and mounts


@pytest.mark.slow
def test_a_read_only_mount_is_reported_and_refused_for_a_run_with_the_true_cause(tmp_path):
    with small_disk(tmp_path / "mnt") as disk:
        with fake_server() as (url, handler):
            cfg = _config(tmp_path, url, database=str(disk / "results.sqlite"))
            assert shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "ro").returncode == 0
            db = disk / "results.sqlite"
            res = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
            if res.returncode != 0:
                pytest.skip(f"cannot remount read-only here ({res.stderr.decode().strip()})")
            raw, names = db.read_bytes(), sorted(p.name for p in disk.iterdir())
            chats = len(handler.chats)
            runs = shootout("runs", "--db", str(db))
            report = shootout("report", "--db", str(db), "--out", str(tmp_path / "reports"))
            refused = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "again")
        assert runs.returncode == 0, runs.stderr
        assert "ro" in runs.stdout and "4 calls" in runs.stdout
        assert report.returncode == 0, report.stderr
        assert (tmp_path / "reports" / "ro.xlsx").is_file()
        msg = one_error(refused)
        assert f"{db} is on a read-only file system" in msg and "not an SQLite database" not in msg
        assert len(handler.chats) == chats
        assert db.read_bytes() == raw and sorted(p.name for p in disk.iterdir()) == names


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` (a file or a folder) read-only for this user: its write permission taken away, and
    for root, who writes anyway, the file system's immutable attribute set (chattr +i)."""
    mode = path.stat().st_mode
    os.chmod(path, mode & ~0o222)
    immutable = os.geteuid() == 0
    if immutable:
        res = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if res.returncode != 0:
            os.chmod(path, mode)
            pytest.skip(f"cannot make {path} immutable here ({res.stderr.strip() or res.returncode})")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        os.chmod(path, mode)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_file_or_folder_is_reported_and_refused_for_a_run(tmp_path, what):
    data = tmp_path / "data"
    data.mkdir()
    with fake_server() as (url, handler):
        cfg = _config(data, url)
        assert shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "ro").returncode == 0
        db = data / "results.sqlite"
        with read_only(db if what == "file" else data):
            raw, names = db.read_bytes(), sorted(p.name for p in data.iterdir())
            chats = len(handler.chats)
            runs = shootout("runs", "--db", str(db))
            report = shootout("report", "--db", str(db), "--out", str(tmp_path / "reports"))
            refused = shootout("run", "-c", str(cfg), "--no-progress", "--run-id", "again")
            assert db.read_bytes() == raw and sorted(p.name for p in data.iterdir()) == names
    assert runs.returncode == 0, runs.stderr
    assert "ro" in runs.stdout and "4 calls" in runs.stdout
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "reports" / "ro.xlsx").is_file()
    msg = one_error(refused)
    cause = f"{db} is read-only" if what == "file" else f"the folder {data} is read-only for this user"
    assert cause in msg and "not an SQLite database" not in msg, msg
    assert len(handler.chats) == chats


# ------------------------------------------------------------------ damaged files


def _runs_db(path: Path) -> None:
    from benchmark.synthetic import SynthModel, write_db

    for k in range(3):
        write_db(path, [SynthModel("a", family="f", quant="F16"), SynthModel("b", family="f", quant="Q4_K_M")], 300, 3,
                 seed=k, run_id=f"run{k}")


def _noise(path: Path, at: float = 0.5) -> None:
    """8 kB of noise inside the file (from a page boundary near ``at`` of its length, plus 100 bytes)."""
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as f:
        f.seek(int(pages * at) * 4096 + 100)
        f.write(random.Random(25).randbytes(8192))  # the same noise every time


@pytest.fixture(scope="module")
def damaged_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    _runs_db(folder / "good.sqlite")
    shutil.copy(folder / "good.sqlite", folder / "bad.sqlite")
    _noise(folder / "bad.sqlite")
    return folder / "good.sqlite", folder / "bad.sqlite"


@pytest.mark.parametrize("create", [True, False])
def test_a_damaged_file_is_refused_untouched_with_the_way_to_recover(tmp_path, damaged_pair, create):
    from benchmark.store import Damaged, Store

    db = tmp_path / "r.sqlite"
    shutil.copy(damaged_pair[1], db)
    raw = db.read_bytes()
    with pytest.raises(Damaged) as err:
        Store(db, create=create)
    assert f"{db} is damaged (quick_check: " in err.value.message and "left untouched" in err.value.message
    assert f"shootout recover {db} " in err.value.hint
    assert db.read_bytes() == raw and sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite"]


@pytest.mark.parametrize("command", [["runs"], ["report"]])
def test_runs_and_report_on_a_damaged_file_give_one_message(tmp_path, damaged_pair, command):
    db = tmp_path / "r.sqlite"
    shutil.copy(damaged_pair[1], db)
    raw = db.read_bytes()
    res = shootout(*command, "--db", str(db), cwd=tmp_path)
    msg = one_error(res)
    assert f"{db} is damaged" in msg and "shootout recover" in msg
    assert db.read_bytes() == raw


def test_a_run_on_a_damaged_file_is_refused_before_any_call(tmp_path, damaged_pair):
    db = tmp_path / "r.sqlite"
    shutil.copy(damaged_pair[1], db)
    raw = db.read_bytes()
    with fake_server() as (url, handler):
        res = shootout("run", "-c", str(_config(tmp_path, url, database="r.sqlite")), "--no-progress")
    assert f"{db} is damaged" in one_error(res)
    assert handler.chats == [] and db.read_bytes() == raw


def test_recover_copies_every_readable_run_into_a_new_file(tmp_path, damaged_pair):
    from benchmark.store import Store
    from benchmark.store.files import quick_check
    from benchmark.store.recover import recover

    good, bad = damaged_pair
    src = tmp_path / "bad.sqlite"
    shutil.copy(bad, src)
    raw = src.read_bytes()
    out = recover(src, tmp_path / "recovered.sqlite")
    assert src.read_bytes() == raw and not Path(str(src) + "-wal").exists()
    assert out.damaged.get("calls") and set(out.runs) == {"run0", "run1", "run2"}
    cols = "run_id, model, iteration, item_id, value, valid, wall_seconds"
    original = set(sqlite3.connect(good).execute(f"SELECT {cols} FROM calls").fetchall())
    with Store(tmp_path / "recovered.sqlite", create=False) as store:
        recovered = {tuple(r) for r in store.db.execute(f"SELECT {cols} FROM calls")}
        assert quick_check(store.db) is None
        assert [(s.run_id, s.calls) for s in store.run_summaries()] == sorted(out.runs.items())
        calls, items, _ = store.frames("run1")
        assert len(items) == 300 and len(calls) == out.runs["run1"]
    # only what was stored, and all but the rows on the damaged pages (2 pages of about 25 calls each)
    assert recovered <= original and len(recovered) >= len(original) - 100
    with pytest.raises(Exception, match="already exists"):
        recover(src, tmp_path / "recovered.sqlite")


def test_recover_refuses_to_write_into_an_existing_file_and_reads_a_healthy_one_whole(tmp_path, damaged_pair):
    from benchmark.store.recover import recover

    out = recover(damaged_pair[0], tmp_path / "copy.sqlite")
    assert out.damaged == {} and out.runs == {"run0": 1800, "run1": 1800, "run2": 1800}
    assert json.loads(json.dumps(out.rows))["calls"] == 5400


def test_a_read_only_file_of_an_older_layout_is_read_as_today_without_writing_it(tmp_path):
    from benchmark.store import Store

    db = tmp_path / "old.sqlite"
    shutil.copy(ROOT / "tests" / "fixtures" / "v1" / "results.sqlite", db)
    with read_only(db):
        raw = db.read_bytes()
        with Store(db, create=False) as store:  # migrated in memory
            assert store.readonly
            run_id = store.latest_run_id(with_calls=True)
            calls, items, _ = store.frames(run_id)
            facts = store.arm_facts(run_id)
        runs = shootout("runs", "--db", str(db))
        assert db.read_bytes() == raw and sorted(p.name for p in tmp_path.iterdir()) == ["old.sqlite"]
    assert len(calls) == 22 and len(items) == 3 and len(facts) == 4
    assert runs.returncode == 0 and "22 calls" in runs.stdout, runs.stderr
