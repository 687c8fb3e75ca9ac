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


LADDER = ("F16", "Q8_0", "Q4_0")
GEMMA = SMOL = LADDER
MODELS = [f"gemma3-270m-{q.lower()}" for q in GEMMA] + [f"smollm2-135m-{q.lower()}" for q in SMOL]


@pytest.mark.slow
def test_demo_builds_two_ladders_runs_and_prints_table(tmp_path, engine):
    out = tmp_path / "demo"
    res = shootout("demo", "--out", str(out), "--iterations", "1", "--articles", "2", "--no-progress")
    assert res.returncode == 0, res.stderr
    for family, ladder in (("gemma3-270m", GEMMA), ("smollm2-135m", SMOL)):
        files = [out / "models" / f"{family}.{q}.gguf" for q in ladder]
        assert all(f.stat().st_size > 50_000_000 for f in files)
        sizes = [f.stat().st_size for f in files]
        assert sizes == sorted(sizes, reverse=True)  # sizes of a ladder shrink with the bits
    # one row per (model, iteration, article), each with timings and token counts
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT model, iteration, item_id, prompt_seconds, gen_seconds, wall_seconds,"
                       " prompt_tokens, completion_tokens FROM calls").fetchall()
    assert len(rows) == len({r[:3] for r in rows}) == 6 * 1 * 2
    assert {r[0] for r in rows} == set(MODELS)
    assert all(all(v is not None and v > 0 for v in r[3:]) for r in rows)
    families = dict(con.execute("SELECT model, family FROM calls"))
    assert {families[m] for m in MODELS} == {"gemma3-270m", "smollm2-135m"}
    # the few-shot prefix is computed once per model: the warm-up fills the cache, every call reuses it
    prefix = _few_shot_prefix_tokens(engine)
    assert prefix > 500
    cached = [r[0] for r in con.execute("SELECT cached_tokens FROM calls WHERE model LIKE 'gemma3%'")]
    assert min(cached) >= prefix
    assert min(r[0] for r in con.execute("SELECT cached_tokens FROM calls WHERE model LIKE 'smollm2%'")) > 500
    # SmolLM2 answers through its own (chatml) template: valid JSON-constrained replies
    assert con.execute("SELECT MIN(valid) FROM calls WHERE model LIKE 'smollm2%'").fetchone()[0] == 1
    # the per-model table
    for header in ("valid", "mean sentiment", "mean per-article var", "s / sample", "gen tok/s"):
        assert header in res.stderr
    for name in ("gemma3-270m-f16", "gemma3-270m-q4_0", "smollm2-135m-f16", "smollm2-135m-q4_0"):
        assert name in res.stderr

    # the workbook and the heatmaps of the run; the family pair among the comparisons
    from openpyxl import load_workbook

    run_id = con.execute("SELECT run_id FROM runs ORDER BY rowid LIMIT 1").fetchone()[0]
    wb = load_workbook(out / "reports" / f"{run_id}.xlsx")
    assert {"Summary", "Model Details", "Per Article", "Comparisons", "ANOVA", "Run Info"} <= set(wb.sheetnames)
    ws = wb["Summary"]
    numbers = [c for row in ws.iter_rows(min_row=4, min_col=4) for c in row if c.value is not None]
    assert numbers and all(c.data_type == "n" for c in numbers)
    # the same rungs in both families: a complete family x quant grid, so the two-way ANOVA runs
    anova = [str(c.value) for row in wb["ANOVA"].iter_rows() for c in row if c.value is not None]
    assert any("two-way ANOVA family x quant, item as block" in v for v in anova)
    assert not any("skipped: needs a complete grid" in v for v in anova)
    compared = {tuple(str(c.value) for c in row[:2]) for row in wb["Comparisons"].iter_rows()}
    assert ("gemma3-270m-f16", "smollm2-135m-f16") in compared
    assert (out / "reports" / run_id / "summary.csv").is_file()
    pngs = sorted(p.name for p in (out / "heatmaps" / run_id).glob("*.png"))
    assert "valid_rate_heatmap.png" in pngs and "mean_sentiment_heatmap.png" in pngs

    # the demo again with other settings keeps its ladders (the demo's own preparation, in process: a
    # second benchmark of six rungs costs six more few-shot prefixes) and writes the new settings;
    # that a run of other settings is a new, complete run is checked on a smaller config below
    from shootout.demo import prepare

    ladder = {p: p.stat().st_mtime_ns for p in (out / "models").glob("*.gguf")}
    assert len(ladder) == 6  # the ladders only: the sources stay in the cache
    said: list[str] = []
    config = prepare(out, 2, 1, log=said.append)
    assert sum("kept (already built)" in line for line in said) == 6
    assert {p: p.stat().st_mtime_ns for p in ladder} == ladder
    assert "max_articles: 1\n" in config.read_text() and "iterations: 2 " in config.read_text()

    # seed-format export of the first run
    exp = shootout("export-json", "-c", str(out / "config.yaml"), "--out", str(tmp_path / "sentiments"),
                   "--run-id", con.execute("SELECT run_id FROM runs ORDER BY rowid LIMIT 1").fetchone()[0])
    assert exp.returncode == 0, exp.stderr
    files = sorted((tmp_path / "sentiments").rglob("*.json"))
    assert {f.parent.name for f in files} == set(MODELS)
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
    cfg = load_config(write_config(tmp_path, {"gemma3-270m": {"F16": gguf}}, 1, 2))
    assert [m.name for m in cfg.models] == ["gemma3-270m-f16"] and not cfg.compare


@pytest.mark.slow
def test_the_demo_config_asks_which_family_and_which_rung(tmp_path, embedded_gguf):
    """Two families: each rung against its family's F16, and the two F16s against each other; Gemma's
    chat format declared (its GGUF has none), SmolLM2's taken from its GGUF."""
    from benchmark.config import load_config
    from core.embedded import embedded_gguf as gguf_of
    from shootout.demo import write_config

    (tmp_path / "models").mkdir()
    ladders = {}
    for family, ladder, src in (("gemma3-270m", GEMMA, embedded_gguf),
                                ("smollm2-135m", SMOL, gguf_of(model_name="smollm2"))):
        ladders[family] = {}
        for q in ladder:
            (tmp_path / "models" / f"{family}.{q}.gguf").symlink_to(src)
            ladders[family][q] = tmp_path / "models" / f"{family}.{q}.gguf"
    cfg = load_config(write_config(tmp_path, ladders, 3, None))
    assert [m.name for m in cfg.models] == MODELS
    assert {m.name: m.family for m in cfg.models} == {m: m.rsplit("-", 1)[0] for m in MODELS}
    assert [tuple(p) for p in cfg.compare] == [
        ("gemma3-270m-f16", "smollm2-135m-f16"),
        ("gemma3-270m-f16", "gemma3-270m-q8_0"), ("gemma3-270m-f16", "gemma3-270m-q4_0"),
        ("smollm2-135m-f16", "smollm2-135m-q8_0"), ("smollm2-135m-f16", "smollm2-135m-q4_0")]
    templates = {m.name: m.options.chat_template for m in cfg.models}
    assert all(templates[m] == "gemma" for m in MODELS[:3]) and all(templates[m] is None for m in MODELS[3:])
    assert all(m.prompt_style == "few_shot" for m in cfg.models)
    assert {m.name: cfg.model_path(m).name for m in cfg.models}["smollm2-135m-q4_0"] == "smollm2-135m.Q4_0.gguf"
    # the speed block costs about half a minute per model on a small CPU: on where the build offloads
    from engine.runtime import gpu_offload_supported

    assert cfg.run.speed_bench is gpu_offload_supported()
    assert cfg.run.order == "counterbalanced"
    assert cfg.run.iterations == 3 and "max_articles" not in (tmp_path / "config.yaml").read_text()


def test_the_demo_names_unknown_families_in_one_clear_error(tmp_path):
    from core.errors import ShootoutError
    from shootout.demo import prepare, prepare_example

    with pytest.raises(ShootoutError) as err:
        prepare(tmp_path / "demo", 1, 1, log=lambda _: None, families=["llama-7b"])
    assert "no embedded model 'llama-7b'" in err.value.message and "smollm2-135m" in err.value.hint
    with pytest.raises(ShootoutError) as err:
        prepare_example("sst2", tmp_path / "ex", None, None, model="llama-7b")
    assert "no embedded model 'llama-7b'" in err.value.message
    assert not (tmp_path / "demo").exists() and not (tmp_path / "ex").exists()  # nothing written


@pytest.mark.slow
def test_an_example_runs_on_smollm2_when_asked(tmp_path):
    """`--model smollm2` for a classification example: the one model entry becomes SmolLM2 (its GGUF
    beside the config, its own chat template), and the pairs that named the old entry follow."""
    import hashlib

    from benchmark.config import load_config
    from core.embedded import MODELS
    from shootout.demo import prepare_example

    smol = MODELS["smollm2-135m"]
    config = prepare_example("spam", tmp_path / "spam", 1, 4, model="smollm2")
    cfg = load_config(config)
    assert [m.name for m in cfg.models] == ["smollm2-135m"]
    m = cfg.models[0]
    assert (m.backend, m.family, m.quant, m.prompt_style, m.options.chat_template) == \
        ("llamacpp", "smollm2-135m", "Q4_1", "few_shot", None)
    path = cfg.model_path(m)
    assert path == tmp_path / "spam" / "models" / smol.file
    assert hashlib.sha256(path.read_bytes()).hexdigest() == smol.sha256
    assert [tuple(p) for p in cfg.compare] == [("smollm2-135m@trained", "smollm2-135m@one_word")]
    assert cfg.run.iterations == 1
    v = shootout("validate", "-c", str(config))
    assert v.returncode == 0, v.stderr
    # the default stays Gemma (the example's own entry), and asking for it by name changes nothing
    default = prepare_example("spam", tmp_path / "spam-gemma", 1, 4)
    named = prepare_example("spam", tmp_path / "spam-gemma", 1, 4, model="gemma3-270m")
    assert default == named and [m.path for m in load_config(named).models] == ["embedded"]


@pytest.mark.slow
def test_an_example_on_smollm2_runs_to_a_report(tmp_path):
    from shootout.demo import prepare_example

    config = prepare_example("sst2", tmp_path / "sst2", 1, 4, model="smollm2")
    r = shootout("run", "-c", str(config), "--no-progress")
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(tmp_path / "sst2" / "results.sqlite")
    rows = con.execute("SELECT model, family, quant, valid FROM calls").fetchall()
    assert len(rows) == 4 and {r[:3] for r in rows} == {("smollm2-135m", "smollm2-135m", "Q4_1")}
    assert sum(r[3] for r in rows) >= 3  # JSON-constrained labels: SmolLM2 answers in the format
    rep = shootout("report", "-c", str(config))
    assert rep.returncode == 0, rep.stderr
    run_id = con.execute("SELECT run_id FROM runs").fetchone()[0]
    assert (tmp_path / "sst2" / "reports" / f"{run_id}.xlsx").is_file()
