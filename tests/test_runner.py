"""The measuring loop. Fast tier: the scripted fake backend, in process (rows, order, seeds, resume,
Ctrl-C, failed calls). Slow tier: the real engine and real signals (few-shot turns as the model sees
them, its prompt cache and timings, resume after SIGKILL, Ctrl-C of the real command)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from benchmark.backends import fake
from benchmark.backends.base import BackendUnavailable
from benchmark.config import load_config
from benchmark.run.runner import Runner, call_seed, iteration_order
from benchmark.store import Store
from benchmark.tasks.sentiment import EXAMPLES, SYSTEM_PROMPT
from core.errors import ShootoutError
from tests.conftest import shootout, start_shootout, write_config
from tests.fake_configs import classify_config, sentiment_config


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

    def memory_facts(self):
        return self.inner.memory_facts()

    def close(self):
        self.inner.close()

    def chat(self, messages, **kw):
        self.prompts.append(self.inner.render(messages))
        return self.inner.chat(messages, **kw)


@pytest.mark.slow
def test_run_stores_one_row_per_call_with_timings_and_shows_few_shot_turns(tmp_path, embedded_gguf):
    """What only the real engine shows: the turns as the model sees them, its cache, its timings. The
    order and seeds of the calls over iterations are the runner's: the fake-backend tests below."""
    from benchmark.backends import make_backend

    config = write_config(tmp_path, embedded_gguf, iterations=1, articles=2, models=[("fs", "few_shot"), ("zs", "zero_shot")])
    # short replies: the prompts and the rows are under test, not the answers
    config.write_text(config.read_text().replace("num_predict: 96", "num_predict: 24"))
    cfg = load_config(config)
    spies = {}

    def factory(entry, cfg_):
        spies[entry.name] = Spy(make_backend(entry, cfg_))
        return spies[entry.name]

    with Store(tmp_path / "results.sqlite") as store:
        result = Runner(cfg, store, run_id="r1", progress=False, backend_factory=factory).run()
        assert result.stored == 2 * 2 and not result.stopped
        rows = store.calls("r1")
        run = store.run("r1")
        loads = store.db.execute("SELECT * FROM model_loads").fetchall()
    # one row per (model, iteration, article), each with timings and token counts
    assert len({(r["model"], r["iteration"], r["item_id"]) for r in rows}) == len(rows) == 4
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
    assert len(fs) == len(zs) == 1 + 2  # warm-up + 2 articles
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
    # every model sees the same order and the same seed per article
    by_model = {m: {r["item_id"]: (r["position"], r["seed"]) for r in rows if r["model"] == m} for m in ("fs", "zs")}
    assert by_model["fs"] == by_model["zs"]
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


# --------------------------------------------------------------------------- the fast tier: the fake backend


def _run(config, db, run_id="r1", **kw):
    with Store(db) as store:
        return Runner(load_config(config), store, run_id=run_id, progress=False, **kw).run()


def _table(db, run_id="r1"):
    with Store(db) as store:
        return {(r["model"], r["iteration"], r["item_id"]): dict(r) for r in store.calls(run_id)}


def test_every_call_is_one_row_in_the_shared_shuffled_order_with_the_shared_seed(tmp_path):
    models = ("  - {name: a, backend: fake, family: fam, quant: Q4_K_M, options: {seconds_per_token: 0.01, "
              "seconds_per_prompt_token: 0.001, sleep: false, model_bytes: 1000, memory_mb: 12.5}}\n"
              "  - {name: b, backend: fake, family: fam, quant: Q8_0, prompt_style: zero_shot}\n")
    config = sentiment_config(tmp_path, models=models, iterations=2, articles=3)
    result = _run(config, tmp_path / "results.sqlite")
    assert (result.stored, result.skipped, result.stopped, result.per_model) == (12, 0, False, {"a": 6, "b": 6})
    rows = _table(tmp_path / "results.sqlite")
    with Store(tmp_path / "results.sqlite") as store:
        ids = [i.id for i in store.items("r1")]
        run = store.run("r1")
        loads = {l["model"]: dict(l) for l in store.db.execute("SELECT * FROM model_loads")}
    assert len(rows) == 12 and {k[0] for k in rows} == {"a", "b"} and len(ids) == 3
    for (model, it, item), r in rows.items():
        assert r["position"] == iteration_order(ids, 7, it).index(item)  # the run seed's shuffle, every model
        assert r["seed"] == call_seed(7, it, item)                        # the same sampling seed, every model
        assert r["valid"] == 1 and r["backend"] == "fake" and r["finish_reason"] == "stop"
    assert iteration_order(ids, 7, 0) != iteration_order(ids, 7, 1) or len(ids) < 3
    # the fake's timings are reported like an engine's: evaluated prompt tokens and generated tokens
    a = [r for k, r in rows.items() if k[0] == "a"]
    for r in a:
        assert r["gen_seconds"] == pytest.approx(0.01 * r["completion_tokens"])
        assert r["prompt_seconds"] == pytest.approx(0.001 * (r["prompt_tokens"] - r["cached_tokens"]))
        assert r["cached_tokens"] > 600  # the warm-up already filled the cache with the few-shot turns
    # one load per model, with the uncounted warm-up and the memory the backend reports (a capability)
    assert set(loads) == {"a", "b"} and all(l["warmup_prompt_tokens"] > 0 for l in loads.values())
    assert loads["a"]["rss_mb"] == 12.5 and loads["b"]["rss_mb"] is None
    assert '"model_bytes": 1000' in loads["a"]["engine_json"]
    assert "backend: fake" in run["config_text"] and run["finished_at"] is not None


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """The server stops answering every few calls; each resume goes on where the last one stopped."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    models = ("  - {{name: a, backend: fake, family: fam, quant: Q4_K_M, options: {{accuracy: 0.6{0}}}}}\n"
              "  - {{name: b, backend: fake, family: fam, quant: Q8_0, options: {{accuracy: 0.8{0}}}}}\n")
    _run(classify_config(whole, models=models.format(""), n_items=8, iterations=3), whole / "results.sqlite")
    config = classify_config(broken, models=models.format(", down_after: 5"), n_items=8, iterations=3)
    counts = []
    for attempt in range(20):
        try:
            result = _run(config, broken / "results.sqlite")
            break
        except BackendUnavailable as exc:
            assert "stopped answering after 5 calls" in exc.message
            counts.append(len(_table(broken / "results.sqlite")))
    else:
        raise AssertionError("the run never finished")
    assert counts == sorted(set(counts)) and len(counts) >= 6  # every resume stored more calls, none twice
    assert result.skipped == counts[-1] and result.stored == 48 - counts[-1]
    done, reference = _table(broken / "results.sqlite"), _table(whole / "results.sqlite")
    assert set(done) == set(reference) and len(done) == 48
    for key, r in reference.items():  # same position, seed and answer as without the interruptions
        assert [done[key][c] for c in ("position", "seed", "raw_text", "valid", "label")] == \
               [r[c] for c in ("position", "seed", "raw_text", "valid", "label")]
    with Store(broken / "results.sqlite") as store:
        assert store.run("r1")["finished_at"] is not None


def test_ctrl_c_stops_after_the_call_in_flight_and_a_second_one_at_once(tmp_path):
    config = sentiment_config(tmp_path, iterations=2, articles=3)
    db = tmp_path / "results.sqlite"

    def interrupt(times):
        def script(call):
            if call.index == 3 and not script.done:  # the 3rd call after the warm-up (index 0)
                script.done = True
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)
            return None  # and answer as usual
        script.done = False
        return fake.scripted(script)

    result = _run(config, db, backend_factory=interrupt(1))
    assert result.stopped and result.stored == 3  # the call in flight was finished and stored; no other started
    assert len(_table(db)) == 3
    with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C: the call in flight is abandoned
        _run(config, db, backend_factory=interrupt(2))
    assert len(_table(db)) == 5  # two more calls stored, the third one abandoned in flight, nothing half-stored
    result = _run(config, db)
    assert result.skipped == 5 and result.stored == 7 and not result.stopped
    assert len(_table(db)) == 12


def test_a_prompt_longer_than_the_context_is_a_failed_call_and_the_run_finishes(tmp_path):
    config = sentiment_config(tmp_path, iterations=1, articles=2, models=(
        "  - {name: short, backend: fake, family: f, quant: Q4_K_M, options: {num_ctx: 256}}\n"
        "  - {name: fits, backend: fake, family: f, quant: Q4_K_M, prompt_style: zero_shot, options: {num_ctx: 256}}\n"))
    result = _run(config, tmp_path / "results.sqlite")
    rows = _table(tmp_path / "results.sqlite")
    short = [r for k, r in rows.items() if k[0] == "short"]  # five few-shot turns do not fit 256 tokens
    assert len(short) == 2 and all(
        r["finish_reason"] == "prompt_too_long" and r["valid"] == 0 and r["prompt_tokens"] > 256 and
        f"needs {r['prompt_tokens']} tokens but the context holds 256" in r["error"] for r in short)
    assert all(r["valid"] == 1 for k, r in rows.items() if k[0] == "fits")
    assert sorted((m, i) for m, i, _, _ in result.too_long) == sorted(("short", r["item_id"]) for r in short)
    with Store(tmp_path / "results.sqlite") as store:
        assert store.run("r1")["finished_at"] is not None


def test_planted_faults_are_stored_as_the_failed_calls_they_are(tmp_path):
    config = classify_config(tmp_path, n_items=4, iterations=1, models=(
        "  - {name: faulty, backend: fake, family: f, quant: Q4_K_M, options: {faults: {t00: not_json, t01: aborted}}}\n"
        "  - {name: cut, backend: fake, family: f, quant: Q4_K_M, options: {num_predict: 3}}\n"))
    result = _run(config, tmp_path / "results.sqlite")
    rows = _table(tmp_path / "results.sqlite")
    assert len(rows) == 8 and result.stored == 8
    faulty = {k[2]: r for k, r in rows.items() if k[0] == "faulty"}
    assert faulty["t00"]["valid"] == 0 and "not JSON" in faulty["t00"]["error"]
    assert faulty["t00"]["raw_text"] == fake.NOT_JSON
    assert faulty["t01"]["finish_reason"] == "aborted" and faulty["t01"]["valid"] == 0
    assert all(faulty[i]["valid"] == 1 for i in ("t02", "t03"))
    # num_predict 3 cuts every reply: stored as cut ("length") and invalid, not repaired
    for r in (r for k, r in rows.items() if k[0] == "cut"):
        assert (r["finish_reason"], r["completion_tokens"], r["valid"]) == ("length", 3, 0), r
        assert r["raw_text"] == '{"label' and "not JSON" in r["error"]


def test_a_server_error_stops_the_run_with_its_message_and_what_was_stored_stays(tmp_path):
    config = classify_config(tmp_path, n_items=4, iterations=1, models=(
        "  - {name: a, backend: fake, family: f, quant: Q4_K_M, options: {faults: {t02: error}}}\n"))
    with pytest.raises(ShootoutError) as err:
        _run(config, tmp_path / "results.sqlite")
    assert "item t02" in err.value.message and "answered 500" in err.value.message
    stored = _table(tmp_path / "results.sqlite")
    assert 0 < len(stored) < 4 and all(k[2] != "t02" for k in stored)


def test_label_scoring_stores_every_labels_probability(tmp_path):
    config = classify_config(tmp_path, n_items=6, iterations=2, decoding="logprob", models=(
        "  - {name: a, backend: fake, family: f, quant: Q4_K_M, options: {label_confidence: 0.8}}\n"))
    _run(config, tmp_path / "results.sqlite")
    import json

    for (_, it, item), r in _table(tmp_path / "results.sqlite").items():
        gold = ("negative", "positive")[int(item[1:]) % 2]
        probs = json.loads(r["label_probs_json"])
        assert r["label"] == gold and probs == pytest.approx({gold: 0.8, ({"negative", "positive"} - {gold}).pop(): 0.2})
        assert r["confidence"] == pytest.approx(0.8) and r["raw_text"] == f'{{"label": "{gold}"}}'


@pytest.mark.slow
def test_the_command_line_runs_and_reports_a_fake_model_in_seconds(tmp_path):
    """`shootout run` then `shootout report` on the fake backend: the whole command path, no model."""
    import pandas as pd

    models = ("  - {name: good, backend: fake, family: fam, quant: Q8_0}\n"
              "  - {name: poor, backend: fake, family: fam, quant: Q2_K, options: {accuracy: 0.5, invalid_rate: 0.2}}\n")
    config = classify_config(tmp_path, models=models, n_items=10, iterations=2, extra="compare:\n  - [good, poor]\n")
    res = shootout("run", "-c", str(config), "--run-id", "cli", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "run cli (40 calls in" in " ".join(res.stderr.split())
    rep = shootout("report", "-c", str(config), "--out", str(tmp_path / "out"))
    assert rep.returncode == 0, rep.stderr
    summary = pd.read_csv(next((tmp_path / "out").glob("*/summary.csv"))).set_index("model")
    assert summary.loc["good", "accuracy"] == 1.0 and summary.loc["poor", "accuracy"] < 0.9
    rows = _rows(tmp_path / "results.sqlite", "SELECT model, valid FROM calls WHERE model = 'poor'")
    assert 0 < sum(1 - v for _, v in rows) < len(rows)  # some replies not JSON, drawn from the seeds
