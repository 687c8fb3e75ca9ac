"""`shootout demo` end to end (small), and the seed-format JSON export of its results."""

from __future__ import annotations

import json
import sqlite3

from tests.conftest import shootout


def _few_shot_prefix_tokens(engine) -> int:
    """Prompt tokens shared by two articles about different companies: the few-shot prefix."""
    from benchmark.tasks.base import Item
    from benchmark.tasks.sentiment import SENTIMENT

    a = engine.prompt_tokens(SENTIMENT.messages(Item(id="a", text="Acme rose.", fields={"company": "Acme"}), "few_shot"))
    b = engine.prompt_tokens(SENTIMENT.messages(Item(id="g", text="Globex fell.", fields={"company": "Globex"}), "few_shot"))
    return next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)


def test_demo_builds_ladder_runs_and_prints_table(tmp_path, engine):
    out = tmp_path / "demo"
    res = shootout("demo", "--out", str(out), "--iterations", "2", "--articles", "2", "--no-progress")
    assert res.returncode == 0, res.stderr
    for q in ("F16", "Q8_0", "Q5_K_M", "Q4_K_M"):
        assert (out / "models" / f"gemma3-270m.{q}.gguf").stat().st_size > 100_000_000
    # one row per (quant level, iteration, article), each with timings and token counts
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT quant, iteration, item_id, prompt_seconds, gen_seconds, wall_seconds,"
                       " prompt_tokens, completion_tokens FROM calls").fetchall()
    assert len(rows) == len({r[:3] for r in rows}) == 4 * 2 * 2
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

    # a second demo keeps the ladder and starts a new, complete run
    again = shootout("demo", "--out", str(out), "--iterations", "1", "--articles", "2", "--no-progress")
    assert again.returncode == 0 and "kept (already built)" in again.stderr

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
    assert ticker.isupper() and it in ("0", "1")
