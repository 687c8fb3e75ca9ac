"""Past one machine: one model spread over three real llama_cpp.server processes on 127.0.0.1
(the tiny model, one thread each), a server killed mid-run, and shards run as separate processes
merged into one run that reports like the unsharded one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, shootout

SST2 = ROOT / "examples" / "sst2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(gguf: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "1024",
                             "--model_alias", "tiny"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "llama_cpp.server exited"
        try:
            urllib.request.urlopen(url + "/models", timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


@contextlib.contextmanager
def _three_servers(gguf: Path):
    """Three llama_cpp.server processes of ``gguf`` on 127.0.0.1, ready: (urls, processes); killed after."""
    ports = [_free_port() for _ in range(3)]
    procs = [_start_server(gguf, p) for p in ports]
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    try:
        for u, p in zip(urls, procs):
            _wait_ready(u, p)
        yield urls, procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture(scope="module")
def servers(tiny_gguf):
    with _three_servers(tiny_gguf) as both:
        yield both


def _config(tmp_path: Path, endpoints: list[str], *, items: int = 6, iterations: int = 2) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    for f in ("train.tsv", "dev.tsv"):
        shutil.copy(SST2 / "data" / f, tmp_path / "data" / f)
    text = (SST2 / "config.yaml").read_text()
    text = text.replace("    evaluate: validation", f"    evaluate: validation\n    max_items: {items}")
    text = text.replace("  iterations: 3\n  temperature: 0.7", f"  iterations: {iterations}\n  temperature: 0.0")
    models = ("models:\n  - name: tiny\n    backend: openai\n    model: tiny\n    endpoints:\n"
              + "".join(f"      - {u}\n" for u in endpoints)
              + "    family: tiny\n    quant: F16\n    prompt_style: zero_shot\n")
    text = text[:text.index("models:")] + models + text[text.index("output:"):]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def _calls(db: Path) -> pd.DataFrame:
    con = sqlite3.connect(db)
    try:
        return pd.read_sql_query("SELECT model, iteration, item_id, raw_text, valid, label, endpoint, in_flight "
                                 "FROM calls ORDER BY model, iteration, item_id", con)
    finally:
        con.close()


@pytest.mark.slow
def test_three_endpoints_store_the_rows_and_answers_of_one(servers, tmp_path):
    urls, _ = servers
    one, three = tmp_path / "one", tmp_path / "three"
    one.mkdir()
    three.mkdir()
    r1 = shootout("run", "-c", str(_config(one, urls[:1])), "--no-progress")
    assert r1.returncode == 0, r1.stderr
    r3 = shootout("run", "-c", str(_config(three, urls)), "--no-progress")
    assert r3.returncode == 0, r3.stderr
    a, b = _calls(one / "results.sqlite"), _calls(three / "results.sqlite")
    assert len(a) == len(b) == 6 * 2
    keys = ["model", "iteration", "item_id"]
    assert a[keys].equals(b[keys])
    assert a["raw_text"].tolist() == b["raw_text"].tolist()  # temperature 0: the same answers wherever a call ran
    assert set(a["endpoint"]) == {urls[0]}
    assert b["endpoint"].nunique() >= 2 and set(b["endpoint"]) <= set(urls)  # the work was spread
    assert (b["in_flight"] == 1).all()  # latency mode: one call per endpoint at a time
    loads = sqlite3.connect(three / "results.sqlite").execute("SELECT endpoint FROM model_loads").fetchall()
    assert {e for (e,) in loads} == set(urls)  # each endpoint loaded and warmed up


@pytest.mark.slow
def test_a_server_killed_mid_run_loses_nothing_and_its_work_finishes_elsewhere(tiny_gguf, tmp_path):
    with _three_servers(tiny_gguf) as (urls, procs):
        config = _config(tmp_path, urls, items=10, iterations=3)
        run = subprocess.Popen([sys.executable, "-m", "shootout.cli", "run", "-c", str(config), "--no-progress"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        db = tmp_path / "results.sqlite"
        t0 = time.time()
        while time.time() - t0 < 300:
            try:
                if (sqlite3.connect(db).execute("SELECT COUNT(*) FROM calls WHERE endpoint = ?", (urls[1],))
                        .fetchone()[0] >= 2):
                    break
            except sqlite3.OperationalError:
                pass
            assert run.poll() is None, run.communicate()
            time.sleep(0.1)
        os.killpg(procs[1].pid, signal.SIGKILL)  # one server dies in the middle of the run
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        assert "stopped answering" in err and urls[1] in " ".join(err.split())
        calls = _calls(db)
        assert len(calls) == len(calls[["iteration", "item_id"]].drop_duplicates()) == 10 * 3
        after = calls[calls["endpoint"] != urls[1]]
        assert len(after) > 0 and set(calls["endpoint"]) <= set(urls)
        assert sqlite3.connect(db).execute("SELECT finished_at IS NOT NULL FROM runs").fetchone() == (1,)


# --------------------------------------------------------------------------- shards and merge


def _two_model_config(tmp_path: Path, gguf: Path) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    for f in ("train.tsv", "dev.tsv"):
        shutil.copy(SST2 / "data" / f, tmp_path / "data" / f)
    text = (SST2 / "config.yaml").read_text()
    text = text.replace("    evaluate: validation", "    evaluate: validation\n    max_items: 5")
    text = text.replace("  iterations: 3\n  temperature: 0.7", "  iterations: 2\n  temperature: 0.0")
    models = "".join(f"  - {{name: {n}, backend: llamacpp, path: {gguf}, family: tiny, quant: {q}, "
                     f"prompt_style: zero_shot, options: {{n_threads: 1}}}}\n" for n, q in (("a", "F16"), ("b", "F16x")))
    text = text[:text.index("models:")] + "models:\n" + models + "compare:\n  - [a, b]\n" + text[text.index("output:"):]
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path / "config.yaml"


TIMING = {"s_per_sample", "latency_p50", "latency_p95", "prompt_tok_s", "gen_tok_s", "load_seconds", "cost_per_1k",
          "rss_mb", "kv_cache_mb", "vram_mb", "joules_per_call"}  # measurements of the machine at the time, not of the answers


@pytest.mark.slow
def test_shards_run_as_separate_processes_merge_into_the_unsharded_report(tiny_gguf, tmp_path):
    full, s1, s2 = (tmp_path / n for n in ("full", "s1", "s2"))
    for d in (full, s1, s2):
        d.mkdir()
        _two_model_config(d, tiny_gguf)
    r = shootout("run", "-c", str(full / "config.yaml"), "--no-progress")
    assert r.returncode == 0, r.stderr
    procs = [subprocess.Popen([sys.executable, "-m", "shootout.cli", "run", "-c", str(d / "config.yaml"),
                               "--shard", f"{k}/2", "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k, d in ((1, s1), (2, s2))]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    f1, f2 = s1 / "results.shard-01-of-02.sqlite", s2 / "results.shard-02-of-02.sqlite"  # each shard its own file
    assert not (s1 / "results.sqlite").exists() and not (s2 / "results.sqlite").exists()
    assert set(_calls(f1)["model"]) == {"a"} and set(_calls(f2)["model"]) == {"b"}
    merged = tmp_path / "merged.sqlite"
    m = shootout("merge", str(f1), str(f2), "--out", str(merged))
    assert m.returncode == 0, m.stderr
    again = shootout("merge", str(f1), str(f1), "--out", str(tmp_path / "x.sqlite"))
    assert again.returncode == 2 and "stored in both" in again.stderr  # duplicates refused
    for name, db in (("full", full / "results.sqlite"), ("merged", merged)):
        rep = shootout("report", "--db", str(db), "--out", str(tmp_path / f"rep-{name}"))
        assert rep.returncode == 0, rep.stderr
    run_full = sqlite3.connect(full / "results.sqlite").execute("SELECT run_id FROM runs").fetchone()[0]
    run_merged = sqlite3.connect(merged).execute("SELECT run_id FROM runs").fetchone()[0]
    for table in ("summary", "model_details", "per_item", "per_class", "confusion", "comparisons"):
        a = pd.read_csv(tmp_path / "rep-full" / run_full / f"{table}.csv")
        b = pd.read_csv(tmp_path / "rep-merged" / run_merged / f"{table}.csv")
        keep = [c for c in a.columns if c not in TIMING]
        pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=False, rtol=1e-12)
    fa, fb = _calls(full / "results.sqlite"), _calls(merged)
    assert fa.drop(columns=["endpoint"]).equals(fb.drop(columns=["endpoint"]))
    assert sqlite3.connect(merged).execute("SELECT finished_at IS NOT NULL FROM runs").fetchone() == (1,)


@pytest.mark.slow
def test_ollama_hosts_in_throughput_mode_spread_calls_and_count_them_in_flight(tmp_path):
    """Two Ollama hosts (the loopback fixture of tests/ollama_fixture.py), two calls in flight each:
    every call stored once, both hosts used, concurrency recorded per call."""
    from tests.conftest import loopback_server
    from tests.ollama_fixture import FakeModel, FakeOllama, make_handler

    hosts = [FakeOllama(), FakeOllama()]
    with loopback_server(make_handler(hosts[0])) as u1, loopback_server(make_handler(hosts[1])) as u2:
        for h, u in zip(hosts, (u1, u2)):
            h.url = u
            h.add(FakeModel("gemma3:270m", vram_share=0.75))
        (tmp_path / "config.yaml").write_text(
            "task: sentiment\nnews: {source: snapshot, max_articles: 8}\n"
            "run: {iterations: 2, temperature: 0.7, num_predict: 96, seed: 7, database: results.sqlite, "
            "concurrency: 2}\n"
            f"models:\n  - {{name: olla, backend: ollama, tag: 'gemma3:270m', endpoints: ['{u1}', '{u2}'], "
            "family: gemma3-270m, quant: Q4_K_M}\n")
        r = shootout("run", "-c", str(tmp_path / "config.yaml"), "--no-progress")
        assert r.returncode == 0, r.stderr
    calls = _calls(tmp_path / "results.sqlite")
    assert len(calls) == len(calls[["iteration", "item_id"]].drop_duplicates()) == 16
    assert set(calls["endpoint"]) == {u1, u2}
    assert calls["in_flight"].between(1, 2).all()
    for h in hosts:
        h.close()

    # the report: a Throughput sheet per endpoint and overall; memory from /api/ps in Summary and Decision
    r = shootout("report", "--db", str(tmp_path / "results.sqlite"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    xlsx = next((tmp_path / "out").glob("*.xlsx"))
    sheets = pd.read_excel(xlsx, sheet_name=None, header=None)
    assert "Throughput" in sheets
    tp = next((tmp_path / "out").glob("*/throughput.csv"))
    tp = pd.read_csv(tp)
    assert set(tp["endpoint"]) == {u1, u2, "all endpoints"}
    allrow = tp[tp["endpoint"] == "all endpoints"].iloc[0]
    assert allrow["calls"] == 16 and tp.loc[tp["endpoint"] != "all endpoints", "calls"].sum() == 16
    full = pd.read_sql_query("SELECT started_at, wall_seconds, completion_tokens FROM calls",
                             sqlite3.connect(tmp_path / "results.sqlite"))
    span = (full["started_at"] + full["wall_seconds"]).max() - full["started_at"].min()
    assert allrow["requests_per_s"] == pytest.approx(16 / span, rel=1e-6)
    assert allrow["gen_tok_per_s"] == pytest.approx(full["completion_tokens"].sum() / span, rel=1e-6)
    summary = pd.read_csv(next((tmp_path / "out").glob("*/summary.csv")))
    decision = pd.read_csv(next((tmp_path / "out").glob("*/decision.csv")))
    for table in (summary, decision):
        row = table[table["model"] == "olla"].iloc[0]
        assert row["vram_mb"] == pytest.approx(536_000_000 * 0.75 / 2**20)
        assert row["rss_mb"] == pytest.approx(536_000_000 * 0.25 / 2**20)


def test_latency_figures_use_the_calls_that_ran_alone():
    """Seconds per sample, percentiles and token rates from calls alone on their endpoint; quality from all."""
    from benchmark.stats.common import timing
    from benchmark.stats.throughput import latency_view

    calls = pd.DataFrame({
        "model": ["a"] * 6 + ["b"] * 2, "family": "f", "quant": "Q4_K_M", "backend": "openai", "prompt_style": "z",
        "item_id": ["1", "2", "3", "1", "2", "3", "1", "2"], "iteration": [0, 0, 0, 1, 1, 1, 0, 0],
        "valid": True, "finish_reason": "stop", "prompt_tokens": 10, "cached_tokens": 0,
        "completion_tokens": [5, 5, 5, 50, 50, 50, 5, 5],
        "prompt_seconds": [0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 0.2, 0.2],
        "gen_seconds": [0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 0.5, 0.5],
        "wall_seconds": [1.0, 2.0, 3.0, 9.0, 9.0, 9.0, 4.0, 6.0],
        "in_flight": [1, 1, 1, 3, 3, 2, 2, 2], "energy_j": [10.0, 20.0, 30.0, 500.0, 500.0, 500.0, 40.0, 60.0]})
    view, note = latency_view(calls)
    t = timing(view).set_index("model")
    assert t.loc["a", "s_per_sample"] == pytest.approx(2.0)       # 1, 2, 3 alone; the 9 s calls under load
    assert t.loc["a", "latency_p50"] == pytest.approx(2.0)
    assert t.loc["a", "gen_tok_s"] == pytest.approx(15 / 1.5)
    assert t.loc["a", "calls"] == 6                                # every call still counts
    assert t.loc["a", "joules_per_call"] == pytest.approx(20.0)    # NVML counts the whole GPU: alone calls only
    assert t.loc["b", "s_per_sample"] == pytest.approx(5.0)       # no call of b ran alone: all kept, and said
    assert "3 calls that ran alone" in note and "No call of b ran alone" in note
    assert timing(latency_view(calls, "all")[0]).set_index("model").loc["a", "s_per_sample"] == pytest.approx(5.5)


# --------------------------------------------------------------------------- the scheduler on fake servers (fast)

FAKES = ("fake://a", "fake://b", "fake://c")


def _fake_run(folder, options: str, *, endpoints=FAKES, concurrency=1, run_id="r"):
    """A run of one fake model over ``endpoints``, in process: (result, calls, what it warned)."""
    import io

    from rich.console import Console

    from benchmark.config import load_config
    from benchmark.run.runner import Runner
    from benchmark.store import Store
    from tests.fake_configs import classify_config

    folder.mkdir(exist_ok=True)
    models = (f"  - {{name: m, backend: fake, family: f, quant: Q4_K_M, endpoints: [{', '.join(endpoints)}], "
              f"options: {{{options}}}}}\n")
    config = classify_config(folder, models=models, n_items=10, iterations=3, run_extra=f"  concurrency: {concurrency}\n")
    out = io.StringIO()
    with Store(folder / "results.sqlite") as store:
        result = Runner(load_config(config), store, run_id=run_id, progress=False,
                        console=Console(file=out, width=300)).run()
    return result, _calls(folder / "results.sqlite").sort_values(["iteration", "item_id"]).reset_index(drop=True), \
        " ".join(out.getvalue().split())


def test_calls_spread_over_endpoints_with_their_concurrency_and_one_row_each(tmp_path):
    # a short sleep per generated token: every worker gets calls while the others are busy
    result, calls, _ = _fake_run(tmp_path, "seconds_per_token: 0.002", concurrency=2)
    assert result.stored == 30 and len(calls[["iteration", "item_id"]].drop_duplicates()) == 30
    assert set(calls["endpoint"]) <= set(FAKES) and calls["endpoint"].nunique() >= 2
    assert set(calls["in_flight"]) <= {1, 2}
    loads = sqlite3.connect(tmp_path / "results.sqlite").execute("SELECT endpoint FROM model_loads").fetchall()
    assert sorted(e for (e,) in loads) == list(FAKES)  # each endpoint loaded and warmed up


def test_a_dead_endpoint_and_a_dropped_call_leave_the_answers_of_an_undisturbed_run(tmp_path):
    from benchmark.backends import fake

    fake.reset_faults()
    _, calm, _ = _fake_run(tmp_path / "calm", "accuracy: 0.7", endpoints=FAKES[:1])
    # fake://b dies after its warm-up; one call of item t07 drops its connection once
    result, rough, warned = _fake_run(tmp_path / "rough", "accuracy: 0.7, seconds_per_token: 0.001, "
                                                          "down_after: {fake://b: 1}, faults: {t07: transient}")
    keys = ["iteration", "item_id"]
    assert result.stored == 30 and rough[keys].equals(calm[keys])
    for column in ("raw_text", "label", "valid"):  # the same answer wherever a call ran
        assert rough[column].tolist() == calm[column].tolist(), column
    assert "fake://b" not in set(rough["endpoint"])
    assert "endpoint fake://b stopped answering; its calls went to the others" in warned
    assert warned.count("stopped answering; its calls went to the others") == 2  # b, and where t07 dropped
    assert sqlite3.connect(tmp_path / "rough" / "results.sqlite").execute(
        "SELECT finished_at IS NOT NULL FROM runs").fetchone() == (1,)


def test_when_no_endpoint_answers_the_run_stops_resumable_and_loses_nothing(tmp_path):
    from core.errors import ShootoutError

    with pytest.raises(ShootoutError) as err:
        _fake_run(tmp_path, "down_after: 4, seconds_per_token: 0.001")  # 3 endpoints x 3 calls: 9 of 30
    assert "calls left and no endpoint answers" in err.value.message and "resume" in err.value.hint
    stored = _calls(tmp_path / "results.sqlite")
    assert len(stored) == 9 and not stored.duplicated(["iteration", "item_id"]).any()
    result, calls, warned = _fake_run(tmp_path, "seconds_per_token: 0.001")  # the servers are back
    assert "config differs from the one run r started with" in warned
    assert result.skipped == 9 and result.stored == 21 and len(calls) == 30
    assert calls.merge(stored, on=["iteration", "item_id"])["raw_text_x"].tolist() == stored["raw_text"].tolist()
