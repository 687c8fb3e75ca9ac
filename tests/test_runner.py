"""The measuring loop on the real engine: rows, timings, resume after SIGKILL, clean Ctrl-C."""

from __future__ import annotations

import signal
import sqlite3
import time

from benchmark.config import load_config
from benchmark.run.runner import Runner, call_seed, iteration_order
from benchmark.store import Store
from benchmark.tasks.sentiment import EXAMPLES, SYSTEM_PROMPT
from tests.conftest import shootout, start_shootout, write_config
import pytest


def _rows(db, sql="SELECT model, iteration, item_id FROM calls"):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


class Spy:
    """Wraps the real engine and keeps the exact prompt text of every request."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.prompts: list[str] = []

    def load(self):
        return self.inner.load()

    def engine_info(self):
        return self.inner.engine_info()

    def close(self):
        self.inner.close()

    def chat(self, messages, **kw):
        self.prompts.append(self.inner.render(messages))
        return self.inner.chat(messages, **kw)


@pytest.mark.slow
def test_run_stores_one_row_per_call_with_timings_and_shows_few_shot_turns(tmp_path, embedded_gguf):
    from benchmark.backends import make_backend

    config = write_config(tmp_path, embedded_gguf, iterations=2, articles=2, models=[("fs", "few_shot"), ("zs", "zero_shot")])
    # short replies: the prompts, the rows and their order are under test, not the answers
    config.write_text(config.read_text().replace("num_predict: 96", "num_predict: 24"))
    cfg = load_config(config)
    spies = {}

    def factory(entry, cfg_):
        spies[entry.name] = Spy(make_backend(entry, cfg_))
        return spies[entry.name]

    with Store(tmp_path / "results.sqlite") as store:
        result = Runner(cfg, store, run_id="r1", progress=False, backend_factory=factory).run()
        assert result.stored == 2 * 2 * 2 and not result.stopped
        rows = store.calls("r1")
        run = store.run("r1")
        loads = store.db.execute("SELECT * FROM model_loads").fetchall()
    # one row per (model, iteration, article), each with timings and token counts
    assert len({(r["model"], r["iteration"], r["item_id"]) for r in rows}) == len(rows) == 8
    for r in rows:
        assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
        assert r["prompt_seconds"] > 0 and r["gen_seconds"] > 0 and r["wall_seconds"] >= r["gen_seconds"]
        assert r["raw_text"] and (r["valid"] == 1) == (r["error"] is None)
        assert r["family"] == "gemma3-270m" and r["quant"] == "Q4_K_M" and r["backend"] == "llamacpp"
    # load time is stored apart, with the uncounted warm-up
    assert {l["model"] for l in loads} == {"fs", "zs"} and all(l["load_seconds"] > 0 for l in loads)
    # the run row keeps config, versions and hardware
    assert "prompt_style: zero_shot" in run["config_text"]
    assert "llama-cpp-python" in run["versions_json"] and "cpu" in run["hardware_json"]
    # every request of the few-shot model carries the five worked examples as model turns
    fs, zs = spies["fs"].prompts, spies["zs"].prompts
    assert len(fs) == len(zs) == 1 + 4  # warm-up + 2 iterations x 2 articles
    for prompt in fs:  # the turns, in order: the system prompt opens the first user turn (Gemma's way)
        turns = [t.split("<end_of_turn>")[0] for t in prompt.split("<start_of_turn>")[1:]]
        assert [t.split("\n", 1)[0] for t in turns] == ["user", "model"] * 5 + ["user", "model"]
        assert turns[0] == f"user\n{SYSTEM_PROMPT}\n\n{EXAMPLES[0][0]}"
        for k, (user, reply) in enumerate(EXAMPLES):
            if k:
                assert turns[2 * k] == f"user\n{user}"
            assert turns[2 * k + 1] == f"model\n{reply}"
        assert turns[-1] == "model\n"  # the generation prompt
    for prompt in zs:
        assert not any(reply in prompt for _, reply in EXAMPLES)
        assert prompt.count("<start_of_turn>user") == 1
    # every model sees the same order and the same seed per (iteration, article)
    by_model = {m: {(r["iteration"], r["item_id"]): (r["position"], r["seed"]) for r in rows if r["model"] == m}
                for m in ("fs", "zs")}
    assert by_model["fs"] == by_model["zs"]
    stored_ids = [i.id for i in Store(tmp_path / "results.sqlite").items("r1")]
    for it in (0, 1):  # the order of each iteration is the run seed's shuffle of the stored articles
        order = [k[1] for k, v in sorted(by_model["fs"].items(), key=lambda kv: kv[1][0]) if k[0] == it]
        assert order == iteration_order(stored_ids, 7, it)
        assert all(by_model["fs"][(it, a)][1] == call_seed(7, it, a) for a in order)
    # after the first call of the few-shot model the shared prefix comes from the cache
    fs_rows = sorted((r for r in rows if r["model"] == "fs"), key=lambda r: r["id"])
    assert all(r["cached_tokens"] > 600 for r in fs_rows)  # the warm-up already filled the cache


def test_order_is_shuffled_per_iteration_and_shared_by_models():
    ids = [f"a{i}" for i in range(20)]
    o0, o1 = iteration_order(ids, 5, 0), iteration_order(ids, 5, 1)
    assert sorted(o0) == sorted(ids) and o0 != o1 and o0 == iteration_order(ids, 5, 0)
    assert call_seed(5, 0, "a1") == call_seed(5, 0, "a1") != call_seed(5, 1, "a1")


def _wait_for_rows(db, n, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        try:
            if len(_rows(db)) >= n:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.2)
    raise AssertionError("run did not store rows in time")


def _start(config, run_id):
    return start_shootout("run", "-c", str(config), "--run-id", run_id, "--no-progress")


def _seeds(db):
    return {(m, it, a): (pos, seed) for m, it, a, pos, seed in
            _rows(db, "SELECT model, iteration, item_id, position, seed FROM calls")}


@pytest.mark.slow
def test_sigkill_midway_then_resume_gives_exactly_one_row_per_call(tmp_path, embedded_gguf):
    config = write_config(tmp_path, embedded_gguf, iterations=2, articles=3, models=[("a", "zero_shot"), ("b", "zero_shot")])
    # short replies: what is stored where, and with which seed, is under test, not the answers
    config.write_text(config.read_text().replace("num_predict: 96", "num_predict: 24"))
    db = tmp_path / "results.sqlite"
    proc = _start(config, "k1")
    _wait_for_rows(db, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _seeds(db)
    assert 4 <= len(before) < 12
    res = shootout("run", "-c", str(config), "--run-id", "k1", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "resuming run k1" in res.stderr
    after = _seeds(db)
    assert len(_rows(db)) == len(after) == 12
    assert {k: after[k] for k in before} == before  # what was stored stays as it was
    # the calls made after the resume got the order and seeds of an uninterrupted run
    ids = [i.id for i in Store(db).items("k1")]
    for (m, it, a), (pos, seed) in after.items():
        assert pos == iteration_order(ids, 7, it).index(a) and seed == call_seed(7, it, a)
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert _rows(db, "SELECT finished_at IS NOT NULL FROM runs") == [(1,)]


@pytest.mark.slow
def test_ctrl_c_stops_after_the_call_in_flight_and_resumes(tmp_path, embedded_gguf):
    config = write_config(tmp_path, embedded_gguf, iterations=2, articles=2, models=[("m", "zero_shot")])
    db = tmp_path / "results.sqlite"
    proc = _start(config, "c1")
    _wait_for_rows(db, 1, proc)
    proc.send_signal(signal.SIGINT)  # the second call is in flight now
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--run-id c1" in err and "after the call in flight" in err
    assert len(_rows(db)) == 2  # the call in flight was finished and stored, no other was started
    res = shootout("run", "-c", str(config), "--run-id", "c1", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert len(set(_rows(db))) == len(_rows(db)) == 4


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_leaves_a_resumable_database(tmp_path, embedded_gguf):
    config = write_config(tmp_path, embedded_gguf, iterations=2, articles=2, models=[("m", "zero_shot")])
    db = tmp_path / "results.sqlite"
    proc = _start(config, "c2")
    _wait_for_rows(db, 1, proc)
    proc.send_signal(signal.SIGINT)
    seen = []
    while not any("Ctrl-C again" in line for line in seen):  # the first one was taken (signals coalesce)
        line = proc.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
    proc.send_signal(signal.SIGINT)  # again, while the call is still in flight
    out, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped at once" in err and "--run-id c2" in err
    assert len(_rows(db)) == 1  # the call in flight was abandoned, not stored half-done
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    res = shootout("run", "-c", str(config), "--run-id", "c2", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert len(set(_rows(db))) == len(_rows(db)) == 4


@pytest.mark.slow
def test_an_item_longer_than_the_context_is_a_failed_call_and_the_run_finishes(tmp_path, embedded_gguf):
    config = write_config(tmp_path, embedded_gguf, iterations=1, articles=2,
                          models=[("short-ctx", "few_shot"), ("fits", "zero_shot")],
                          extra="")
    text = config.read_text().replace("  num_predict: 96\n", "  num_predict: 8\n  num_ctx: 256\n")
    config.write_text(text)
    res = shootout("run", "-c", str(config), "--no-progress")
    assert res.returncode == 0, res.stderr
    message = " ".join(res.stderr.split())
    assert "short-ctx, article" in message and "tokens but the context holds 256" in message
    rows = _rows(tmp_path / "results.sqlite", "SELECT model, valid, finish_reason, error, prompt_tokens FROM calls "
                                               "WHERE model = 'short-ctx'")
    assert len(rows) == 2
    for _, valid, finish, error, tokens in rows:
        assert valid == 0 and finish == "prompt_too_long" and tokens > 256 and f"needs {tokens} tokens" in error
    assert _rows(tmp_path / "results.sqlite", "SELECT finished_at IS NOT NULL FROM runs") == [(1,)]
