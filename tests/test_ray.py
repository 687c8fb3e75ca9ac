"""Ray as an executor, on a local Ray instance the tests start (2 CPUs, no dashboard): a run sent as
one task per model reports like the single-process run; a task whose worker is killed mid-shard
leaves the other shard stored and a clear message, and `--resume` completes it with one row per
call; a shard that no node can hold is refused before anything runs. Ray stays optional: without
it these skip, `shootout --help` and a normal run import nothing of it, and `--executor ray` says
how to install it."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, shootout
from tests.test_shards import two_model_config

TIMING = {"s_per_sample", "latency_p50", "latency_p95", "prompt_tok_s", "gen_tok_s", "load_seconds", "cost_per_1k",
          "rss_mb", "kv_cache_mb", "vram_mb", "joules_per_call", "speedup", "speed_vs_ref",
          "pareto", "what_it_means"}  # the machine at the time (and what the Decision sheet makes of it), not the answers


def _untimed(frame: pd.DataFrame) -> pd.DataFrame:
    """A report table without its timing figures: columns named by TIMING (and their intervals), rows of a timing
    metric."""
    if "metric" in frame:
        frame = frame[~frame["metric"].isin(TIMING)]
    return frame[[c for c in frame.columns if not any(c == t or c.startswith(t + "_") for t in TIMING)]]


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _console():
    from core.console import make_console

    buf = io.StringIO()
    return make_console(file=buf, width=300), buf


def _calls(db: Path) -> pd.DataFrame:
    con = sqlite3.connect(db)
    try:
        return pd.read_sql_query("SELECT model, iteration, item_id, raw_text, valid, label, endpoint FROM calls "
                                 "ORDER BY model, iteration, item_id", con)
    finally:
        con.close()


@pytest.mark.slow
def test_ray_run_reports_like_the_single_process_run(ray_local, tmp_path):
    from benchmark.config import load_config
    from benchmark.run.executors import run_with_executor

    single, spread = tmp_path / "single", tmp_path / "ray"
    r = shootout("run", "-c", str(two_model_config(single)), "--no-progress")
    assert r.returncode == 0, r.stderr
    cfg = load_config(two_model_config(spread))
    console, out = _console()
    res = run_with_executor(cfg, "ray", console=console, progress=False)  # the instance this test started
    assert res.finished and not res.failed and res.stored == 2 * 3
    assert [(j.label(), j.state) for j in res.shards] == [("shard 1/2 (a)", "done"), ("shard 2/2 (b)", "done")]
    # each shard wrote its own file beside run.database; the driver's database holds every call once
    assert sorted(p.name for p in spread.glob("*.sqlite")) == [
        "results.shard-01-of-02.sqlite", "results.shard-02-of-02.sqlite", "results.sqlite"]
    a, b = _calls(single / "results.sqlite"), _calls(spread / "results.sqlite")
    keys = ["model", "iteration", "item_id"]
    assert len(b) == len(b[keys].drop_duplicates()) == 6
    assert a.drop(columns="endpoint").equals(b.drop(columns="endpoint"))  # temperature 0: the same answers
    assert b["endpoint"].notna().all()  # a call run in process on a node records the node
    con = sqlite3.connect(spread / "results.sqlite")
    hardware = json.loads(con.execute("SELECT hardware_json FROM runs").fetchone()[0])
    loads = con.execute("SELECT model, endpoint FROM model_loads ORDER BY model").fetchall()
    con.close()
    boxes = json.loads(hardware["merged_from"])  # each node's hardware and versions, as a merge keeps them
    assert sorted((box["shard"], tuple(box["models"])) for box in boxes) == [("1/2", ("a",)), ("2/2", ("b",))]
    assert all(box["hardware"]["cpu_count"] and box["versions"]["llama-cpp-python"] for box in boxes)
    assert [m for m, _ in loads] == ["a", "b"] and all(e for _, e in loads)
    # the report: every figure that does not depend on time is the single-process run's
    for name, folder in (("single", single), ("ray", spread)):
        rep = shootout("report", "--db", str(folder / "results.sqlite"), "--out", str(tmp_path / f"rep-{name}"))
        assert rep.returncode == 0, rep.stderr
    (ra,), (rb,) = ([d for d in (tmp_path / f"rep-{n}").iterdir() if d.is_dir()] for n in ("single", "ray"))
    # the Speed sheet's tables are the machine's and the order's: each shard ran its own order (as a merge
    # keeps it, the first shard's), so they are compared for presence, not content
    speed_tables = {"order", "speed", "drift"}
    assert {p.stem for p in rb.glob("*.csv")} & speed_tables == {p.stem for p in ra.glob("*.csv")} & speed_tables
    assert "order" in {p.stem for p in rb.glob("*.csv")}
    tables = sorted(p.name for p in ra.glob("*.csv") if p.stem not in {"run_info", *speed_tables})
    assert {"summary.csv", "per_item.csv", "comparisons.csv", "confusion.csv"} <= set(tables)
    for table in tables:
        x, y = pd.read_csv(ra / table), pd.read_csv(rb / table)
        assert list(y.columns) == list(x.columns) and len(x) == len(y) > 0, table
        # in the same order too, though the shards' calls arrived interleaved (b's first, often)
        pd.testing.assert_frame_equal(_untimed(x), _untimed(y), check_exact=False, rtol=1e-12, obj=table)
    info = pd.read_csv(rb / "run_info.csv").set_index("key")["value"]
    assert "merged_from" in " ".join(info.index) and info["seed"] == pd.read_csv(ra / "run_info.csv").set_index(
        "key")["value"]["seed"]


def _worker_holding(name: str) -> int | None:
    """The pid of the Ray worker that has the shard file ``name`` open (Linux /proc)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"ray::"):
                continue
            if any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name) for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    return None


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_a_killed_worker_leaves_the_other_shard_stored_and_resume_completes_it(ray_local, tmp_path):
    from benchmark.config import load_config
    from benchmark.run.executors import run_with_executor

    items = 6
    cfg = load_config(two_model_config(tmp_path, items=items))
    db = tmp_path / "results.sqlite"
    console, out = _console()
    done: dict = {}
    driver = threading.Thread(target=lambda: done.update(res=run_with_executor(cfg, "ray", console=console,
                                                                                 progress=False)))
    driver.start()
    victim, t0 = None, time.time()
    while victim is None and time.time() - t0 < 300:  # b's worker, once the driver holds some of b's calls
        assert driver.is_alive(), out.getvalue()
        try:
            con = sqlite3.connect(db)
            n = con.execute("SELECT COUNT(*) FROM calls WHERE model='b'").fetchone()[0]
            con.close()
        except sqlite3.OperationalError:
            n = 0
        if n >= 1:
            victim = _worker_holding("results.shard-02-of-02.sqlite")
        time.sleep(0.1)
    assert victim, "b's worker was not found"
    os.kill(victim, 9)
    driver.join(timeout=600)
    res = done["res"]
    assert not res.finished and [j.label() for j in res.failed] == ["shard 2/2 (b)"]
    calls = _calls(db)
    assert (calls["model"] == "a").sum() == items  # the other shard is stored whole
    assert 1 <= (calls["model"] == "b").sum() < items
    said = " ".join(out.getvalue().split())
    assert "shard 2/2 (b)" in said and "its worker process died" in said and "--resume" in said
    assert "Traceback" not in said
    con = sqlite3.connect(db)
    assert con.execute("SELECT finished_at FROM runs").fetchone() == (None,)
    con.close()
    # --resume sends only the unfinished shard; the driver ends with one row per call
    again = run_with_executor(cfg, "ray", resume=True, console=console, progress=False)
    assert again.run_id == res.run_id and again.finished and not again.failed
    assert [j.state for j in again.shards] == ["complete", "done"]
    calls = _calls(db)
    assert len(calls) == len(calls[["model", "iteration", "item_id"]].drop_duplicates()) == 2 * items
    con = sqlite3.connect(db)
    assert con.execute("SELECT finished_at IS NOT NULL FROM runs").fetchone() == (1,)
    con.close()


@pytest.mark.slow
def test_a_shard_no_node_can_hold_is_refused_before_anything_runs(ray_local, tmp_path):
    from benchmark.config import load_config
    from benchmark.run.executors import run_with_executor
    from core.errors import ShootoutError

    cfg = load_config(two_model_config(tmp_path, extra=", resources: {num_gpus: 1}"))
    with pytest.raises(ShootoutError) as e:
        run_with_executor(cfg, "ray", progress=False)
    assert "needs 1 GPU(s) and 1 CPU(s) on one node" in e.value.message and "0 GPU(s)" in e.value.message
    assert "models[].resources" in e.value.message
    assert not (tmp_path / "results.sqlite").exists()  # no run was started
    with pytest.raises(ShootoutError, match="more than the 2 models"):
        run_with_executor(load_config(two_model_config(tmp_path)), "ray", count=3, progress=False)
    with pytest.raises(ShootoutError, match="use local, ray or ray:ADDRESS"):
        run_with_executor(cfg, "dask", progress=False)


def _imports_ray(code: str, cwd: Path) -> str:
    """Run ``code`` in a new Python and say whether ray was imported by the end (stderr's last line)."""
    probe = ("import atexit, sys\natexit.register(lambda: print('ray imported' if 'ray' in sys.modules else "
             "'ray not imported', file=sys.stderr))\n" + code)
    r = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "COLUMNS": "200"})
    return r.stderr


@pytest.mark.slow
def test_ray_stays_optional(tmp_path):
    config = two_model_config(tmp_path, items=1, models=("a",))
    help_out = _imports_ray("sys.argv = ['shootout', '--help']\nfrom shootout.cli import main\nmain()", ROOT)
    assert help_out.strip().endswith("ray not imported"), help_out
    run_out = _imports_ray(f"sys.argv = ['shootout', 'run', '-c', {str(config)!r}, '--no-progress']\n"
                           "from shootout.cli import main\nmain()", ROOT)
    assert run_out.strip().endswith("ray not imported"), run_out
    assert sqlite3.connect(tmp_path / "results.sqlite").execute("SELECT COUNT(*) FROM calls").fetchone() == (1,)
    # without Ray installed, --executor ray says how to install it (ray hidden from this process)
    missing = _imports_ray("sys.modules['ray'] = None\nfrom benchmark.config import load_config\n"
                           "from benchmark.run.executors import run_with_executor\nfrom core.errors import ShootoutError\n"
                           f"try:\n    run_with_executor(load_config({str(config)!r}), 'ray')\n"
                           "except ShootoutError as e:\n    print(e.message, '|', e.hint, file=sys.stderr)\n", ROOT)
    assert "--executor ray needs Ray, which is not installed | pip install 'gguf-shootout[ray]'" in missing
