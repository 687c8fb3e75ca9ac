"""The HTML report (benchmark.report.html): one offline file; the explorer's figures; and the page of a
real run opened in a real headless Chromium (Debian's package, driven by playwright): no console
errors, the Decision and the explorer's rows in the rendered DOM, markup in replies and texts shown as
text and never run."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shootout

HOSTILE_REPLY = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned_img = 1"><b>bold?</b>'
HOSTILE_TEXT = ('a confused script <script>window.__pwned_text = 1</script> buried under '
                '<img src=x onerror="window.__pwned_text_img = 1"> a pile of effects')
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


# --------------------------------------------------------------------------- the page's data


def _inputs(kind="label", **kw):
    from benchmark.report.html import HtmlInputs, Table

    base = dict(title="t", run_id="r", kind=kind, item_noun="text", value_name="value",
                labels=["neg", "pos"] if kind == "label" else [], arms=["ref", "cand"], references={"cand": "ref"},
                summary=Table(pd.DataFrame({"model": ["ref", "cand"]})))
    return HtmlInputs(**{**base, **kw})


def _calls(rows):
    return pd.DataFrame(rows, columns=["model", "iteration", "item_id", "valid", "label", "value", "raw_text"]).assign(
        error=None, confidence=np.nan)


def test_explorer_figures_on_a_hand_counted_run():
    from benchmark.report import html_data

    items = pd.DataFrame({"item_id": ["a", "b", "c"], "text": ["ta", "tb", "tc"],
                          "target_label": ["pos", "neg", None]})
    calls = _calls([
        # a: the candidate differs from the reference in iteration 1 and changes its answer; its vote stays pos
        ("ref", 0, "a", 1, "pos", None, "r"), ("ref", 1, "a", 1, "pos", None, "r"), ("ref", 2, "a", 1, "pos", None, "r"),
        ("cand", 0, "a", 1, "pos", None, "c"), ("cand", 1, "a", 1, "neg", None, "c"), ("cand", 2, "a", 1, "pos", None, "c"),
        # b: the candidate answers neg twice and once invalid; the reference says pos every time
        ("ref", 0, "b", 1, "pos", None, "r"), ("ref", 1, "b", 1, "pos", None, "r"), ("ref", 2, "b", 1, "pos", None, "r"),
        ("cand", 0, "b", 1, "neg", None, "c"), ("cand", 1, "b", 0, None, None, "??"), ("cand", 2, "b", 1, "neg", None, "c"),
        # c: no gold; both agree; the candidate's iteration 2 is missing
        ("ref", 0, "c", 1, "neg", None, "r" * 10), ("ref", 1, "c", 1, "neg", None, "r" * 10),
        ("ref", 2, "c", 1, "neg", None, "r" * 10), ("cand", 0, "c", 1, "neg", None, "c" * 10),
        ("cand", 1, "c", 1, "neg", None, "c" * 10),
    ])
    inputs = _inputs(items=items, calls=calls)
    cb = html_data.cube(inputs)
    fl = html_data.flags(inputs, cb)
    ref, cand = 0, 1
    assert fl["flip"][:, cand].tolist() == [1, 3, 0]        # b: two different labels and one invalid reply
    assert fl["flip"][:, ref].tolist() == [-1, -1, -1]      # the reference has no reference
    assert fl["disagree"][:, cand].tolist() == [0, 1, 0]    # votes: a pos/pos, b neg/pos, c neg/neg
    assert fl["changes"][:, cand].tolist() == [1, 1, 0]     # b: neg and (invalid)
    assert fl["invalid"][:, cand].tolist() == [0, 1, 0]
    assert fl["wrong"][:, cand].tolist() == [1, 1, -1]      # b: gold neg, the invalid reply is wrong; c: no gold
    assert fl["wrong"][:, ref].tolist() == [0, 3, -1]
    data = html_data.explorer_data(inputs)
    assert data["class_errors"] == [[3, 1], [0, 1]]         # gold neg: ref 3, cand 1; gold pos: ref 0, cand 1
    k = ((1 * 2) + cand) * 3 + 1                            # item b, the candidate, iteration 1
    assert (data["calls"]["ok"][k], data["calls"]["ans"][k], data["s"][data["calls"]["raw"][k]]) == (0, None, "??")
    assert data["calls"]["ok"][((2 * 2) + cand) * 3 + 2] == -1  # no call
    assert "note" not in data
    # a page over its reply budget keeps the replies that differ from the reference's (and the reference's
    # reply beside each) and the invalid ones; over it again, none
    small = html_data.explorer_data(inputs, reply_budget=4)   # distinct replies: 24 characters; kept r, c, ??: 4
    kept = [(i, m, r) for i in range(3) for m in range(2) for r in range(3)
            if small["calls"]["raw"][((i * 2) + m) * 3 + r] >= 0]
    assert kept == [(0, ref, 1), (0, cand, 1), (1, ref, 0), (1, ref, 1), (1, ref, 2), (1, cand, 0), (1, cand, 1),
                    (1, cand, 2)]
    assert "`shootout view` shows every reply" in small["note"]
    assert all(x in (-1, -2) for x in html_data.explorer_data(inputs, reply_budget=3)["calls"]["raw"])


def test_value_answers_compare_by_direction_with_the_neutral_band():
    from benchmark.report import html_data

    items = pd.DataFrame({"item_id": ["a"], "text": ["t"], "target_value": [0.5]})
    calls = _calls([("ref", 0, "a", 1, None, 0.30, ""), ("ref", 1, "a", 1, None, 0.05, ""),
                    ("cand", 0, "a", 1, None, 0.90, ""), ("cand", 1, "a", 1, None, 0.15, "")])
    inputs = _inputs("value", items=items, calls=calls, neutral_band=0.1)
    fl = html_data.flags(inputs, html_data.cube(inputs))
    assert fl["flip"][0, 1] == 1             # iteration 1: 0.05 is neutral, 0.15 positive
    assert fl["changes"][0].tolist() == [1, 0]
    assert fl["wrong"][0].tolist() == [1, 0]
    assert fl["abs_error"][0].tolist() == pytest.approx([0.325, 0.375])  # ref: (0.2 + 0.45) / 2; cand: (0.4 + 0.35) / 2


def test_the_json_blob_cannot_end_its_script_element():
    from benchmark.report.html_data import to_script_json

    obj = {"s": ["</script><script>alert(1)</script>", "<!-- x", "a & b", "line\u2028sep"]}
    text = to_script_json(obj)
    assert not re.search(r"[<>&\u2028]", text)
    assert json.loads(text) == obj


@pytest.fixture
def label_report(tmp_path):
    """A synthetic classification run whose replies hold markup, as a report and the page's inputs."""
    from benchmark import report as rpt
    from benchmark.report.html import inputs_from_report
    from benchmark.stats.label_synth import SynthLabelModel
    from benchmark.store import Store
    from benchmark.synthetic import write_label_db

    db = tmp_path / "results.sqlite"
    write_label_db(db, [SynthLabelModel("fam-f16", 0.8, quant="F16", invalid_rate=0.05),
                        SynthLabelModel("fam-q4", 0.65, quant="Q4_K_M", invalid_rate=0.1)], 40, 3,
                   ["neg", "neu", "pos"], seed=5, run_id="lab")
    con = sqlite3.connect(db)
    con.execute("UPDATE calls SET raw_text = json_object('label', label) WHERE valid = 1")
    con.execute("UPDATE calls SET raw_text = ? WHERE valid = 0", (HOSTILE_REPLY,))
    con.execute("UPDATE items SET text = ? WHERE item_id = 'item000003'", (HOSTILE_TEXT,))
    con.commit()
    con.close()
    with Store(db, create=False) as store:
        rep = rpt.build(store, "lab")
        inputs = inputs_from_report(rep, store, charts=[])
    return db, rep, inputs


@pytest.mark.slow
def test_the_page_is_one_file_that_needs_no_network(label_report, tmp_path):
    from benchmark.report.html import write_html

    db, rep, inputs = label_report
    page = write_html(inputs, tmp_path / "lab.html").read_text(encoding="utf-8")
    blob = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', page, re.S).group(1)
    markup = page.replace(blob, "")  # the page less its data (JSON, in which a reply's "src=x" is only text)
    # nothing to fetch: no external script, style, image or link; the only images are data URIs
    assert not re.search(r"<(link|iframe|object|embed)\b", markup, re.I)
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", markup, re.I)
    assert links and all(x.startswith(("data:image/png;base64,", "#")) for x in links)
    assert not re.search(r"https?://", markup)
    # the policy allows no network and no script but the page's own (by hash)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "img-src data:" in csp
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    # the replies' and the text's markup are nowhere in the page as markup
    assert "<script>window" not in page and "<img src=x" not in page
    data = json.loads(blob)
    assert HOSTILE_REPLY in data["s"] and HOSTILE_TEXT in data["s"]
    assert data["arms"] == ["fam-f16", "fam-q4"] and data["ref"] == [-1, 0]
    # the Decision first, its verdict lines in words, then the Summary
    assert page.index('id="decision"') < page.index('id="summary"') < page.index('id="charts"') < \
        page.index('id="explorer"')
    for line in rep.decision_lines:
        assert html.escape(line) in page


@pytest.mark.slow
def test_a_big_run_stays_under_20_mb(tmp_path):
    """1,000 items x 4 models x 5 iterations, with a real run's text lengths (2,000-character items,
    ~260-character replies), charts included."""
    import sys

    from benchmark import report as rpt
    from benchmark.report.html import inputs_from_report, write_html
    from benchmark.store import Store
    from benchmark.synthetic import SynthModel, write_db

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.html_view import realistic_text

    db = tmp_path / "big.sqlite"
    write_db(db, [SynthModel(f"m{q}", family="f", quant=q, invalid_rate=0.02) for q in ("F16", "Q8_0", "Q5_K_M",
                                                                                          "Q4_K_M")],
             1000, 5, seed=1, run_id="big")
    realistic_text(db)
    with Store(db, create=False) as store:
        inputs = inputs_from_report(rpt.build(store, "big"), store)   # charts drawn here
    out = write_html(inputs, tmp_path / "big.html")
    assert len(inputs.calls) == 20_000
    assert out.stat().st_size < 20e6
    # the grids, the reliability and the Decision chart are in; the items x models heatmaps of 1,000 items are not
    captions = [c for c, _ in inputs.charts]
    assert "grid mae" in captions and "reliability" in captions and inputs.decision_chart
    assert not [c for c in captions if c.endswith("heatmap")]
    assert "as the run has 1000 articles (more than 100)" in inputs.chart_note


# --------------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser():
    chromium = os.environ.get("SHOOTOUT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1300, "height": 1600})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}") if not r.url.startswith(("file:", "data:"))
            else None)
    page.goto(path.as_uri())
    page.wait_for_selector("article.item")
    return page, problems


def _not_run(page) -> None:
    for name in ("__pwned", "__pwned_img", "__pwned_text", "__pwned_text_img"):
        assert page.evaluate(f"typeof window.{name}") == "undefined", name
    assert page.evaluate("document.scripts.length") == 2           # the data blob and the page's own script
    assert page.locator("#explorer-root img, #explorer-root script, #explorer-root b").count() == 0


@pytest.mark.slow
def test_explorer_filters_in_chromium(browser, label_report, tmp_path):
    from benchmark.report.html import write_html

    db, rep, inputs = label_report
    page, problems = _open(browser, write_html(inputs, tmp_path / "lab.html"))
    try:
        assert page.locator("article.item").count() == 25                    # paged: 25 of 40
        assert "40 of 40 texts match" in page.locator("#explorer .status").inner_text()
        page.get_by_role("button", name="next →").click()
        assert page.locator("article.item").count() == 15
        calls = pd.read_sql_query("SELECT c.model, c.item_id, c.iteration, c.valid, c.label, i.target_label FROM "
                                  "calls c JOIN items i USING (run_id, item_id)", sqlite3.connect(db))
        calls["wrong"] = (calls["valid"] == 0) | (calls["label"] != calls["target_label"])
        # invalid replies: the items with at least one
        page.check("#f-invalid")
        want = calls.loc[calls["valid"] == 0, "item_id"].nunique()
        assert f"{want} of 40 texts match" in page.locator("#explorer .status").inner_text()
        # their replies, markup included, are shown as text
        page.locator("article.item details.replies-box summary").first.click()
        # the page fills a details box on its 'toggle' event, which the browser fires as a later task
        page.wait_for_selector("article.item .reply.invalid pre.raw")
        raws = page.locator("article.item .reply.invalid pre.raw").all_inner_texts()
        assert raws and set(raws) == {HOSTILE_REPLY}
        page.uncheck("#f-invalid")
        # per-class errors: a click on (gold neu, fam-q4) shows exactly the neu items fam-q4 got wrong
        cell = page.locator(".class-errors tr", has_text="neu").locator("button").nth(1)
        q4 = calls[(calls["model"] == "fam-q4") & (calls["target_label"] == "neu")]
        assert cell.inner_text() == str(int(q4["wrong"].sum()))
        cell.click()
        page.select_option("#f-size", "100")
        shown = page.locator("article.item").evaluate_all("els => els.map(e => e.dataset.item)")
        assert sorted(shown) == sorted(q4.loc[q4["wrong"], "item_id"].unique())
        assert all(t == "gold: neu" for t in page.locator("article.item .gold").all_inner_texts())
        # the text with markup, as text
        page.fill("#f-search", "confused script")
        page.select_option("#f-arm", "-1")
        page.select_option("#f-gold", "-1")
        page.uncheck("#f-wrong")
        assert page.locator("article.item").count() == 1
        assert page.locator("article.item .text").inner_text() == HOSTILE_TEXT
        _not_run(page)
        assert problems == []
    finally:
        page.close()


def _classify_config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\nleaves you grinning all the way to the parking lot\t1\n"
                                    "a tedious, joyless slog\t0\nthe cast is wonderful and the script sings\t1\n"
                                    "flat, dull and far too long\t0\n")
    (data / "dev.tsv").write_text(f"sentence\tlabel\n{HOSTILE_TEXT}\t0\n"
                                  "the director keeps the tension humming from the first frame to the last\t1\n"
                                  "never builds any real suspense\t0\n")
    models = "".join(f"  - {{name: gemma-{style.split('_')[0]}, backend: llamacpp, path: embedded, family: gemma3-270m, "
                     f"quant: Q4_K_M, prompt_style: {style}, options: {{chat_template: gemma}}}}\n"
                     for style in ("few_shot", "zero_shot"))
    config = tmp_path / "config.yaml"
    config.write_text(
        "task:\n  name: reviews\n  kind: classify\n  labels: [negative, positive]\n  positive: positive\n"
        "  instruction: Read the movie-review sentence and say whether its sentiment is negative or positive.\n"
        "  item_noun: sentence\n  data:\n    files: {train: data/train.tsv, validation: data/dev.tsv}\n"
        "    format: tsv\n    text: sentence\n    label: label\n    label_map: {'0': negative, '1': positive}\n"
        "    evaluate: validation\n  few_shot: {k: 1, seed: 0}\n  answer: json\n"
        "run:\n  iterations: 2\n  temperature: 0.7\n  num_ctx: 1024\n  num_predict: 16\n  seed: 1234\n"
        f"  database: results.sqlite\nmodels:\n{models}")
    return config


@pytest.mark.slow
def test_the_page_of_a_real_run_in_chromium(browser, tmp_path):
    """A run of the embedded model (2 arms x 3 sentences x 2 iterations, one sentence holding markup),
    one stored reply made hostile as a model could write it, the page opened in Chromium."""
    from benchmark import report as rpt
    from benchmark.report.html import inputs_from_report, write_html
    from benchmark.store import Store

    res = shootout("run", "-c", str(_classify_config(tmp_path)), "--no-progress")
    assert res.returncode == 0, res.stderr
    db = tmp_path / "results.sqlite"
    con = sqlite3.connect(db)
    run_id, = con.execute("SELECT run_id FROM runs").fetchone()
    assert con.execute("SELECT count(*) FROM calls").fetchone()[0] == 12
    hostile_item, = con.execute("SELECT item_id FROM items WHERE text = ?", (HOSTILE_TEXT,)).fetchone()
    # a reply as a model could write it: markup and a script, stored as the reply's raw text
    con.execute("UPDATE calls SET raw_text = ? WHERE model = 'gemma-zero' AND iteration = 1 AND item_id = ?",
                (HOSTILE_REPLY, hostile_item))
    con.commit()
    flips = con.execute("SELECT count(DISTINCT c.item_id) FROM calls c JOIN calls r ON r.run_id = c.run_id AND "
                        "r.item_id = c.item_id AND r.iteration = c.iteration AND r.model = 'gemma-few' WHERE "
                        "c.model = 'gemma-zero' AND (c.valid <> r.valid OR coalesce(c.label, '') <> "
                        "coalesce(r.label, ''))").fetchone()[0]
    con.close()
    with Store(db, create=False) as store:
        rep = rpt.build(store, run_id)
        out = write_html(inputs_from_report(rep, store), tmp_path / "reports" / f"{run_id}.html")
    page, problems = _open(browser, out)
    try:
        decision = page.locator("#decision").inner_text()
        assert "Quality metric: Accuracy" in decision
        assert "gemma-zero vs gemma-few:" in decision
        assert page.locator("#decision img").evaluate("i => i.naturalWidth") > 200   # the Decision chart drawn
        assert page.locator("#summary table td", has_text="gemma-zero").count() >= 1
        assert page.locator("#charts figure img").count() >= 3
        assert page.locator("article.item").count() == 3
        assert "3 of 3 sentences match" in page.locator("#explorer .status").inner_text()
        page.check("#f-flip")
        assert f"{flips} of 3 sentences match" in page.locator("#explorer .status").inner_text()
        page.uncheck("#f-flip")
        item = page.locator(f'article.item[data-item="{hostile_item}"]')
        assert item.locator(".text").inner_text() == HOSTILE_TEXT
        assert item.locator("table.answers tr").count() == 3            # header + 2 arms
        item.locator("details.replies-box summary").click()
        item.locator("pre.raw").first.wait_for()  # the replies are built when the box opens
        assert HOSTILE_REPLY in item.locator("pre.raw").all_inner_texts()
        _not_run(page)
        item.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "explorer.png"))
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(tmp_path / "decision.png"))
        assert problems == []
    finally:
        page.close()
