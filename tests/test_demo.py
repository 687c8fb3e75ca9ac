"""`shootout demo` end to end (small), and the seed-format JSON export of its results."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import shootout


def _few_shot_prefix_tokens(engine) -> int:
    """Prompt tokens shared by two articles about different companies: the few-shot prefix."""
    from benchmark.tasks.base import Item
    from benchmark.tasks.sentiment import SENTIMENT

    a = engine.prompt_tokens(SENTIMENT.messages(Item(id="a", text="Acme rose.", fields={"company": "Acme"}), "few_shot"))
    b = engine.prompt_tokens(SENTIMENT.messages(Item(id="g", text="Globex fell.", fields={"company": "Globex"}), "few_shot"))
    return next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)


@pytest.mark.slow
def test_demo_builds_ladder_runs_and_prints_table(tmp_path, engine):
    out = tmp_path / "demo"
    res = shootout("demo", "--out", str(out), "--iterations", "1", "--articles", "2", "--no-progress")
    assert res.returncode == 0, res.stderr
    for q in ("F16", "Q8_0", "Q5_K_M", "Q4_K_M"):
        assert (out / "models" / f"gemma3-270m.{q}.gguf").stat().st_size > 100_000_000
    # one row per (quant level, iteration, article), each with timings and token counts
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT quant, iteration, item_id, prompt_seconds, gen_seconds, wall_seconds,"
                       " prompt_tokens, completion_tokens FROM calls").fetchall()
    assert len(rows) == len({r[:3] for r in rows}) == 4 * 1 * 2
    assert all(all(v is not None and v > 0 for v in r[3:]) for r in rows)
    # the few-shot prefix is computed once per model: the warm-up fills the cache, every call reuses it
    prefix = _few_shot_prefix_tokens(engine)
    assert prefix > 500
    cached = [r[0] for r in con.execute("SELECT cached_tokens FROM calls")]
    assert min(cached) >= prefix
    # sizes of the ladder shrink with the bits
    sizes = [(out / "models" / f"gemma3-270m.{q}.gguf").stat().st_size for q in ("F16", "Q8_0", "Q5_K_M", "Q4_K_M")]
    assert sizes == sorted(sizes, reverse=True)
    # the per-model table
    for header in ("valid", "mean sentiment", "mean per-article var", "s / sample", "gen tok/s"):
        assert header in res.stderr
    for name in ("gemma3-270m-f16", "gemma3-270m-q4_k_m"):
        assert name in res.stderr

    # the workbook and the heatmaps of the run
    from openpyxl import load_workbook

    run_id = con.execute("SELECT run_id FROM runs ORDER BY rowid LIMIT 1").fetchone()[0]
    wb = load_workbook(out / "reports" / f"{run_id}.xlsx")
    assert {"Summary", "Model Details", "Per Article", "Comparisons", "ANOVA", "Run Info"} <= set(wb.sheetnames)
    ws = wb["Summary"]
    numbers = [c for row in ws.iter_rows(min_row=4, min_col=4) for c in row if c.value is not None]
    assert numbers and all(c.data_type == "n" for c in numbers)
    assert (out / "reports" / run_id / "summary.csv").is_file()
    pngs = sorted(p.name for p in (out / "heatmaps" / run_id).glob("*.png"))
    assert "valid_rate_heatmap.png" in pngs and "mean_sentiment_heatmap.png" in pngs

    # the demo again with other settings keeps its ladder (the demo's own preparation, in process: a
    # second benchmark of four rungs costs four more few-shot prefixes) and writes the new settings;
    # that a run of other settings is a new, complete run is checked on a smaller config below
    from shootout.demo import prepare

    ladder = {p: p.stat().st_mtime_ns for p in (out / "models").glob("gemma3-270m.*.gguf")}
    said: list[str] = []
    config = prepare(out, 2, 1, log=said.append)
    assert sum("kept (already built)" in line for line in said) == 4
    assert {p: p.stat().st_mtime_ns for p in ladder} == ladder
    assert "max_articles: 1\n" in config.read_text() and "iterations: 2 " in config.read_text()

    # seed-format export of the first run
    exp = shootout("export-json", "-c", str(out / "config.yaml"), "--out", str(tmp_path / "sentiments"),
                   "--run-id", con.execute("SELECT run_id FROM runs ORDER BY rowid LIMIT 1").fetchone()[0])
    assert exp.returncode == 0, exp.stderr
    files = sorted((tmp_path / "sentiments").rglob("*.json"))
    assert {f.parent.name for f in files} == {"gemma3-270m-f16", "gemma3-270m-q8_0", "gemma3-270m-q5_k_m",
                                              "gemma3-270m-q4_k_m"}
    data = json.loads(files[0].read_text())
    assert set(data) == {"average_sentiment", "time_taken", "sentiments"}
    entry = next(iter(data["sentiments"].values()))
    assert {"reasoning", "sentiment", "confidence", "valid", "url", "published", "time_taken"} <= set(entry)
    ticker, it = files[0].stem.rsplit("_", 1)
    assert ticker.isupper() and it == "0"  # the first run: one iteration


@pytest.mark.slow
def test_an_interrupted_demo_is_resumed_by_running_it_again(tmp_path, embedded_gguf):
    """The README's promise: re-running the demo resumes its unfinished run (same config, same run)."""
    import signal
    import time

    from tests.conftest import start_shootout

    out = tmp_path / "demo"
    args = ["demo", "--task", "sst2", "--out", str(out), "--items", "3", "--iterations", "2", "--no-progress"]
    proc = start_shootout(*args)
    db = out / "results.sqlite"
    t0 = time.time()
    while time.time() - t0 < 300:
        assert proc.poll() is None, proc.communicate()
        try:
            if sqlite3.connect(db).execute("SELECT COUNT(*) FROM calls").fetchone()[0] >= 2:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = sqlite3.connect(db).execute("SELECT run_id FROM runs").fetchall()
    again = shootout(*args)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {first[0][0]}" in again.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT run_id, finished_at IS NOT NULL FROM runs").fetchall() == [(first[0][0], 1)]
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT model || iteration || item_id) FROM calls").fetchone() == (6, 6)


@pytest.mark.slow
def test_run_resume_picks_the_latest_unfinished_run_of_the_same_config(tmp_path, embedded_gguf):
    from tests.conftest import write_config

    config = write_config(tmp_path, embedded_gguf, iterations=1, articles=2, models=[("m", "zero_shot")])
    first = shootout("run", "-c", str(config), "--run-id", "r1", "-m", "m", "--no-progress")
    assert first.returncode == 0, first.stderr
    con = sqlite3.connect(tmp_path / "results.sqlite")
    con.execute("DELETE FROM calls WHERE id = (SELECT MAX(id) FROM calls)")  # as if it stopped one call short
    con.execute("UPDATE runs SET finished_at = NULL")
    con.commit()
    r = shootout("run", "-c", str(config), "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resuming run r1: 1 calls already stored, 1 to go" in r.stderr
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert con.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 2
    # other settings (as a second demo with other options writes them): a new, complete run
    config.write_text(config.read_text().replace("max_articles: 2", "max_articles: 1"))
    again = shootout("run", "-c", str(config), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "resuming" not in again.stderr
    runs = con.execute("SELECT run_id, finished_at FROM runs ORDER BY rowid").fetchall()
    assert len(runs) == 2 and runs[0][0] == "r1" and all(done for _, done in runs)
    assert con.execute("SELECT COUNT(*) FROM calls WHERE run_id = ?", (runs[1][0],)).fetchone()[0] == 1
    # `shootout runs`: both, newest last, with their calls, finished
    listing = shootout("runs", "-c", str(config))
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [r[0] for r in runs]
    assert [line.split()[2] for line in lines] == ["2", "1"]
    assert all(line.endswith("finished") and "unfinished" not in line for line in lines)


def test_help_answers_without_loading_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys, io, contextlib\nsys.argv = ['shootout', '--help']\nfrom shootout import cli\n"
            "buf = io.StringIO()\ntry:\n    with contextlib.redirect_stdout(buf): cli.main()\nexcept SystemExit: pass\n"
            "heavy = ['llama_cpp', 'torch', 'transformers', 'pandas', 'numpy', 'scipy', 'matplotlib', 'openpyxl',"
            " 'sklearn', 'httpx']\nprint('commands:', 'demo' in buf.getvalue() and 'report' in buf.getvalue())\n"
            "print('loaded:', [m for m in heavy if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "commands: True" in r.stdout and "loaded: []" in r.stdout


def test_a_demo_config_of_one_rung_loads(tmp_path, embedded_gguf):
    """The demo's config writer with a ladder of one level (nothing to compare): a config that loads."""
    from benchmark.config import load_config
    from shootout.demo import write_config

    (tmp_path / "models").mkdir()
    gguf = tmp_path / "models" / "gemma3-270m.F16.gguf"
    gguf.symlink_to(embedded_gguf)
    cfg = load_config(write_config(tmp_path, {"F16": gguf}, 1, 2))
    assert [m.name for m in cfg.models] == ["gemma3-270m-f16"] and not cfg.compare
