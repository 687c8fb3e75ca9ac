"""Score tasks from a config block (a 1-5 rating), the value range a run stores and the report reads
back, the ordinal figures (exact and within-one accuracy, quadratic-weighted kappa) against
scikit-learn, and the report's columns coming from the task's declared metrics alone."""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from benchmark import metrics as M
from benchmark import report as rpt
from benchmark.config import ConfigError, load_config, parse_config
from benchmark.store import Store
from benchmark.tasks import task_for
from benchmark.tasks.base import TaskInfo, ValueScorer
from tests.conftest import shootout
from tests.report_runs import store_run

ROOT = Path(__file__).resolve().parents[1]
REVIEWS = ROOT / "examples" / "reviews" / "config.yaml"
GOOD, POOR = "gemma3-270m@examples", "gemma3-270m@no_examples"


def _rating_reply(arm: str, item, iteration: int) -> str:
    """The arm with examples is right or one star off; the other far off more often, and sometimes no number."""
    rng = np.random.default_rng([zlib.crc32(item.id.encode()), iteration, len(arm)])
    gold = int(item.value)
    if arm == POOR and rng.random() < 0.15:
        return "I would say it is quite good."
    step = rng.choice([-1, 0, 0, 1]) if arm == GOOD else rng.choice([-2, -1, 0, 1, 2])
    return json.dumps({"rating": int(min(max(gold + step, 1), 5))})


@pytest.fixture(scope="module")
def rating(tmp_path_factory):
    db = tmp_path_factory.mktemp("reviews") / "results.sqlite"
    _, task, items = store_run(REVIEWS, db, _rating_reply, run_id="rating", iterations=3)
    with Store(db) as store:
        rep = rpt.build(store, "rating")
        calls, frame_items, _ = store.frames("rating")
    return rep, calls.merge(frame_items[["item_id", "target_value"]], on="item_id"), db


# --------------------------------------------------------------------------- the task from its block


def test_the_rating_example_is_a_config_block_that_validates_and_reads_its_data():
    cfg = load_config(REVIEWS)
    task = task_for(cfg)
    items = task.load_items(cfg)
    assert len(items) == 40 and {i.value for i in items} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert all(i.label is None for i in items)
    info = TaskInfo.of(task)
    assert (info.kind, info.low, info.high, info.integer, info.direction) == ("value", 1.0, 5.0, True, False)
    # one worked example per star from the train split, as chat turns, never the item itself
    msgs = task.messages(items[0], "few_shot", "examples")
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 5 + ["user"]
    assert sorted(json.loads(m["content"])["rating"] for m in msgs[2:11:2]) == [1, 2, 3, 4, 5]
    assert task.messages(items[0], "few_shot", "no_examples")[1:] == [{"role": "user", "content": items[0].text}]
    r = shootout("validate", "-c", str(REVIEWS))
    assert r.returncode == 0 and "items train 10, test 40" in r.stdout, r.stderr


@pytest.mark.parametrize("answer, text, value, why", [
    ("json", '{"rating": 4}', 4.0, None),
    ("json", '{"rating": 6}', None, "less than or equal to 5"),
    ("json", '{"rating": 3.5}', None, "valid integer"),
    ("json", '{"rating": "4"}', None, "valid integer"),
    ("json", '{"rating": 4, "why": "good"}', None, "why"),
    ("text", " 5.\n", 5.0, None),
    ("text", "4.5", None, "not a whole number"),
    ("text", "0", None, "outside the range"),
    ("text", "four", None, "not a number"),
])
def test_a_reply_is_a_whole_number_in_the_range_or_invalid_with_its_reason(tmp_path, answer, text, value, why):
    cfg = _reviews_config(tmp_path, {"answer": answer})
    a = task_for(cfg).parse(text)
    assert a.value == value and a.valid == (why is None)
    if why:
        assert why in a.error and a.fields is None


def test_the_grammar_admits_exactly_the_scale_and_the_schema_keeps_its_bounds(tmp_path):
    task = task_for(_reviews_config(tmp_path, {}))
    c = task.constraint()
    assert c.grammar == 'root ::= "{\\"rating\\": " ("1" | "2" | "3" | "4" | "5") "}"\n'
    assert c.schema["properties"]["rating"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert task.reply_text({"rating": 4.0}) == '{"rating": 4}' and task.parse(task.reply_text({"rating": 2})).valid
    text = task_for(_reviews_config(tmp_path, {"answer": "text"})).constraint()
    assert text.schema is None and text.grammar == 'root ::= ("1" | "2" | "3" | "4" | "5")\n'


def _reviews_config(tmp_path: Path, task_changes: dict, text: str | None = None):
    from ruamel.yaml import YAML

    y = YAML(typ="safe")
    data = y.load(REVIEWS.read_text())
    data["task"].update(task_changes)
    data["task"]["data"]["path"] = str(REVIEWS.parent / "data" / "reviews.csv")
    path = tmp_path / "config.yaml"
    import io

    buf = io.StringIO()
    YAML().dump(data, buf)
    path.write_text(text or buf.getvalue())
    return load_config(path)


@pytest.mark.parametrize("change, needle", [
    ({"direction": True}, "direction (the sign of the value, with a neutral band around 0) needs a range around 0"),
    ({"range": [1, 5.5]}, "integer: true needs whole-number ends"),
    ({"range": [5, 1]}, "a range needs low < high"),
    ({"anchors": {"7": "great"}}, "anchor '7' is not a value in the range [1, 5]"),
    ({"labels": ["a", "b"]}, "task.labels (line"),
])
def test_a_broken_score_block_is_one_clear_error(tmp_path, change, needle):
    with pytest.raises(ConfigError) as e:
        _reviews_config(tmp_path, change)
    assert needle in str(e.value)
    if "labels" in change:  # the keys a score block allows, not a classification block's
        assert "Allowed keys here: name, kind, range, integer" in str(e.value)


def test_a_margin_for_a_metric_the_task_does_not_report_is_an_error(tmp_path):
    text = REVIEWS.read_text().replace("output:", "report:\n  margins: {sign_accuracy: 0.1}\noutput:")
    text = text.replace("path: data/reviews.csv", f"path: {REVIEWS.parent / 'data' / 'reviews.csv'}")
    with pytest.raises(ConfigError) as e:
        parse_config(text, check_files=False)
    assert "task 'reviews' does not report 'sign_accuracy'" in str(e.value) and "exact_accuracy" in str(e.value)


# --------------------------------------------------------------------------- the range a run stores


def test_a_value_task_stores_its_range_and_the_report_scores_on_it(tmp_path):
    """A 0-10 score without direction: an unanswered call is the worst error on 0..10, not on [-1, 1]."""

    class Tenths:  # a value task as a module would write it: a scorer with its range
        name, item_noun, variants = "tenths", "item", (None,)
        scorer = ValueScorer("score", 0.0, 10.0, direction=False, confidence=False)

    info = asdict(TaskInfo.of(Tenths))
    assert (info["low"], info["high"], info["direction"]) == (0.0, 10.0, False)
    rep = _value_run(tmp_path, info, gold=[2.0, 9.0], answers={"m-f16": [2.0, None], "m-q4": [3.0, 9.0]})
    d = rep.details.set_index("model")
    # m-f16: item 1 exact, item 2 unanswered = the worst error on 0..10 for a gold 9: 9
    assert d.loc["m-f16", "mae"] == pytest.approx((0 + 9) / 2)
    assert "sign_accuracy" not in rep.details  # no direction on a 0-10 score
    assert rep.metric("mae").scale == (0.0, 2.5) and rep.metric("mean_value").scale == (0.0, 10.0)
    # MAE's and the mean's margins scale with the range; the consistency margin is a ratio
    assert rep.settings.margins == {"mae": pytest.approx(0.25), "mean_value": pytest.approx(0.25),
                                    "value_variance": 1.5}


def test_a_run_stored_before_the_range_reads_as_the_sentiment_convention(tmp_path):
    old = {"name": "sentiment", "kind": "value", "item_noun": "article", "value_name": "sentiment", "labels": [],
           "variants": [None]}
    assert TaskInfo.stored(old).value_range == (-1.0, 1.0) and TaskInfo.stored(old).direction is True
    rep = _value_run(tmp_path, old, gold=[0.5, -0.5], answers={"m-f16": [0.5, None], "m-q4": [0.4, -0.5]})
    assert rep.details.set_index("model").loc["m-f16", "mae"] == pytest.approx((0 + 1.5) / 2)
    assert "sign_accuracy" in rep.details


def _value_run(tmp_path: Path, task_info: dict, gold: list[float], answers: dict[str, list]):
    from benchmark.tasks.base import Item

    db = tmp_path / f"{task_info['name']}.sqlite"
    with Store(db) as store:
        store.create_run("v", task=task_info["name"], seed=0, iterations=2, config_path=None, config_text="#",
                         settings={}, versions={}, hardware={}, task_info=task_info,
                         items=[Item(id=f"i{k}", text="t", value=g) for k, g in enumerate(gold)])
        rows = []
        for model, values in answers.items():
            for it in range(2):
                for k, v in enumerate(values):
                    rows.append({"run_id": "v", "model": model, "family": "m", "quant": model[2:].upper(),
                                 "backend": "llamacpp", "prompt_style": "few_shot", "iteration": it,
                                 "item_id": f"i{k}", "position": k, "seed": it, "raw_text": "x",
                                 "valid": int(v is not None), "value": v, "wall_seconds": 1.0 + 0.1 * it})
        store.add_calls(rows)
        return rpt.build(store, "v")


# --------------------------------------------------------------------------- the rating report


def test_the_rating_report_scores_on_1_to_5_with_the_ordinal_figures(rating):
    rep, calls, _ = rating
    d = rep.details.set_index("model")
    for arm in (GOOD, POOR):
        c = calls[calls["model"] == arm]
        gold = c["target_value"].to_numpy()
        answer = np.where(c["valid"], c["value"], np.nan)
        worst = np.maximum(gold - 1, 5 - gold)
        err = np.where(np.isnan(answer), worst, np.abs(answer - gold))
        per_item = pd.Series(err).groupby(c["item_id"].to_numpy()).mean()
        assert d.loc[arm, "mae"] == pytest.approx(per_item.mean())
        right = pd.Series(answer == gold).groupby(c["item_id"].to_numpy()).mean()
        assert d.loc[arm, "exact_accuracy"] == pytest.approx(right.mean())
        near = pd.Series(np.abs(answer - gold) <= 1).groupby(c["item_id"].to_numpy()).mean()
        assert d.loc[arm, "within_one_accuracy"] == pytest.approx(near.mean())
        # the unanswered call takes the value farthest from the gold one, then scikit-learn's weighted kappa
        far = np.where(5 - gold > gold - 1, 5, 1)
        filled = np.where(np.isnan(answer), far, answer).astype(int)
        assert d.loc[arm, "weighted_kappa"] == pytest.approx(
            cohen_kappa_score(gold.astype(int), filled, weights="quadratic", labels=[1, 2, 3, 4, 5]))
    assert d.loc[POOR, "valid_rate"] < 1 and d.loc[GOOD, "mae"] < d.loc[POOR, "mae"]
    # colour scales on 1..5: MAE 0 .. 1, the mean rating 1 .. 5
    assert rep.metric("mae").scale == (0.0, 1.0) and rep.metric("mean_value").scale == (1.0, 5.0)
    assert rep.metric("mean_value").label == "Mean rating"
    # the Decision: MAE at 0.1 stars, then exact accuracy at 5 points; the better arm is the reference
    assert rep.settings.margins == {"value_variance": 1.5, "mean_value": pytest.approx(0.1), "mae": pytest.approx(0.1),
                                    "exact_accuracy": 0.05}
    assert rep.refs == {POOR: GOOD}
    verdict = rep.decision.set_index("model").loc[POOR, "verdict"]
    assert verdict == "worse" and rep.decision.attrs["metric"] == "mae"


@pytest.mark.slow
def test_the_rating_report_writes_its_workbook_charts_and_notes(rating, tmp_path):
    from openpyxl import load_workbook

    from benchmark.report.charts import write_heatmaps

    rep, _, _ = rating
    note = rep.sheet("Summary").note
    assert "Rating on [1, 5] in whole numbers" in note and "weighted" in note and "neutral band" not in note
    wb = load_workbook(rpt.write_workbook(rep, tmp_path / "r.xlsx"))
    assert wb.sheetnames[:4] == ["Decision", "Summary", "Model Details", "Comparisons"]
    names = {p.name for p in write_heatmaps(rep, tmp_path / "maps")}
    assert {"grid_mae.png", "grid_exact_accuracy.png", "grid_weighted_kappa.png", "mean_rating_heatmap.png",
            "rating_variance_heatmap.png"} <= names
    assert "grid_sign_accuracy.png" not in names
    cmp = rep.sheet("Comparisons").table.set_index("metric")
    assert {"weighted_kappa", "answer_disagreement", "exact_accuracy"} <= set(cmp.index)


def test_weighted_kappa_comparison_recomputes_by_hand_over_items(rating):
    """The weighted kappa is compared with a paired t on per-item jackknife pseudo-values (scikit-learn)."""
    from scipy import stats as ss

    rep, calls, _ = rating
    items = sorted(set(calls["item_id"]))
    n = len(items)

    def kappa(arm, drop=None):
        c = calls[(calls["model"] == arm) & (calls["item_id"] != drop)]
        gold = c["target_value"].to_numpy().astype(int)
        answer = np.where(c["valid"], c["value"], np.nan)
        filled = np.where(np.isnan(answer), np.where(5 - gold > gold - 1, 5, 1), answer).astype(int)
        return cohen_kappa_score(gold, filled, weights="quadratic", labels=[1, 2, 3, 4, 5])

    full = kappa(POOR) - kappa(GOOD)
    pseudo = [n * full - (n - 1) * (kappa(POOR, i) - kappa(GOOD, i)) for i in items]
    row = rep.sheet("Comparisons").table.set_index("metric").loc["weighted_kappa"]
    assert row["estimate"] == pytest.approx(full)
    assert row["p"] == pytest.approx(2 * ss.t.sf(abs(full / ss.sem(pseudo)), n - 1))


def test_the_weighted_kappa_test_keeps_its_level():
    """Two equally good raters on a 1-5 scale (same per-item difficulty, their own noise), 50 items x 3
    iterations, 2000 simulated studies: the jackknife test's false-positive rate at alpha 0.05."""
    from benchmark.stats import compare as C
    from benchmark.stats import ordinal

    rng = np.random.default_rng(7)
    runs, n_items, n_it = 2000, 50, 3
    gold = rng.integers(1, 6, (runs, n_items)).astype(float)
    hard = rng.normal(0, 0.6, (runs, 1, n_items, 1))
    noise = rng.normal(0, 0.8, (runs, 2, n_items, n_it))
    value = np.clip(np.round(gold[:, None, :, None] + hard + noise), 1, 5)
    value[rng.random(value.shape) < 0.03] = np.nan  # a few unanswered calls
    tables = ordinal.tables(value, np.ones(value.shape, bool), gold, 1, 5)
    r = C.jackknife_paired(tables[:, 0], tables[:, 1], lambda s: ordinal.weighted_kappa(s, 5))
    rate = float(np.mean(r["p"] < 0.05))
    print(f"\nweighted kappa, jackknife paired t, 2000 null studies of 50 x 3: false positives {rate:.3f}")
    assert 0.035 <= rate <= 0.07


def test_weighted_kappa_tables_match_scikit_learn():
    from benchmark.stats import ordinal

    rng = np.random.default_rng(3)
    gold = rng.integers(1, 6, 30).astype(float)
    value = np.clip(gold[None, None, :, None] + rng.integers(-2, 3, (1, 2, 30, 4)), 1, 5).astype(float)
    value[0, 1, :5, 0] = np.nan
    t = ordinal.tables(value, np.ones(value.shape, bool), gold, 1, 5)
    for m in range(2):
        got = ordinal.weighted_kappa(np.nansum(t[0, m], 0), 5)
        v = value[0, m]
        filled = np.where(np.isnan(v), np.where(5 - gold > gold - 1, 5, 1)[:, None], v)
        want = cohen_kappa_score(np.repeat(gold, 4).astype(int), filled.ravel().astype(int), weights="quadratic",
                                 labels=[1, 2, 3, 4, 5])
        assert got == pytest.approx(want)


# --------------------------------------------------------------------------- declared columns


@pytest.mark.slow
def test_every_column_list_comes_from_the_declared_metrics(rating, tmp_path):
    from benchmark.report.console import model_summary
    from benchmark.synthetic import write_label_db
    from benchmark.stats.label_synth import SynthLabelModel

    rep, _, db = rating
    declared = rep.task.scorer().metrics
    ids = ["model", "family", "quant", "variant", "items", "iterations", "calls"]
    summary = [c for c in rep.sheet("Summary").table.columns if c not in ids and c not in ("rss_mb", "kv_cache_mb")]
    assert summary == [c for c in M.columns(declared, "summary") if c in rep.details]
    with Store(db) as store:
        _, rows = model_summary(store, "rating")
    assert list(rows[0])[3:] == [c for c in M.columns(declared, "console") if c in rep.details]
    tested = rep.decision_long["metric"].unique().tolist()
    assert sorted(tested) == sorted(M.decision_metrics(declared)) and tested[0] == M.primary(declared)
    # a label task without a positive class declares no precision/recall; with betas, its F-beta columns
    path = tmp_path / "l.sqlite"
    write_label_db(path, [SynthLabelModel("a", 0.8), SynthLabelModel("b", 0.7, quant="Q8_0")], 30, 2,
                   ["x", "y", "z"], run_id="l", betas=[0.5])
    with Store(path) as store:
        lab = rpt.build(store, "l")
    cols = list(lab.sheet("Summary").table.columns)
    assert "precision" not in cols and "f_beta_0.5" in cols and "exact_accuracy" not in cols
    assert [c for c in cols if c not in ids] == [c for c in M.columns(lab.task.scorer().metrics, "summary")
                                                 if c in lab.details]


@pytest.mark.slow
def test_the_rating_demo_runs_to_a_report_from_its_config_block(tmp_path):
    """`shootout demo --task reviews` on the embedded Gemma 3 270M: run, table, workbook, charts."""
    r = shootout("demo", "--task", "reviews", "--items", "5", "--iterations", "1", "--out",
                 str(tmp_path / "demo-reviews"), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    reports = tmp_path / "demo-reviews" / "reports"
    run_id = next(reports.glob("*.xlsx")).stem
    summary = pd.read_csv(reports / run_id / "summary.csv").set_index("model")
    assert set(summary.index) == {GOOD, POOR}
    assert {"mae", "exact_accuracy", "within_one_accuracy", "weighted_kappa"} <= set(summary.columns)
    assert ((summary["mean_value"] >= 1) & (summary["mean_value"] <= 5)).all()
    assert (summary["mae"] <= 4).all()
    assert (tmp_path / "demo-reviews" / "heatmaps" / run_id / "grid_exact_accuracy.png").is_file()


@pytest.mark.parametrize("scorer", [ValueScorer(), ValueScorer("rating", 1, 5, direction=False, integer=True,
                                                               confidence=False)],
                         ids=["sentiment", "rating"])
def test_a_scorer_declares_metrics_of_its_own_kind_that_round_trip_through_the_run(scorer):
    from benchmark.tasks.base import LabelScorer

    for s in (scorer, LabelScorer(("a", "b"), positive="a", betas=(0.5,))):
        assert all(M.known(m) and M.applies(m, s.kind) for m in s.metrics), s
        info = TaskInfo("t", s.kind, "item", **s.facts())
        assert TaskInfo.stored(json.loads(json.dumps(asdict(info)))).scorer() == s
