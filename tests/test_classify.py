"""Classification tasks from config: prompts, answers, the examples end to end on the embedded
model, label scoring against constrained generation, the report against scikit-learn and
statsmodels, and a results database of the previous layout migrated, resumed and reported."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest

from benchmark.config import load_config
from benchmark.tasks import task_for
from tests.conftest import ROOT, shootout

EXAMPLES = ROOT / "examples"
NAMES = ["spam", "sst2", "stance", "sarcasm", "japanese_news"]


def _task(name: str):
    return task_for(load_config(EXAMPLES / name / "config.yaml", check_files=True))


# --------------------------------------------------------------------------- prompts and answers


def test_few_shot_turns_come_from_the_training_split_k_per_class_and_variants_change_only_the_system_prompt():
    task = _task("spam")
    items = task.load_items()
    assert len(items) == 50 and {i.split for i in items} == {"test"}
    assert sum(i.label == "spam" for i in items) == 39  # 78% spam, as in the write-up
    msgs = {v: task.messages(items[0], "few_shot", v) for v in ("trained", "one_word")}
    for m in msgs.values():
        assert [x["role"] for x in m] == ["system"] + ["user", "assistant"] * 4 + ["user"]
        answers = [x["content"] for x in m[2:-1:2]]
        assert sorted(answers) == ["ham", "ham", "spam", "spam"]  # k=2 per class, bare labels
        train_texts = {i.text for i in task.all_items() if i.split == "train"}
        assert all(x["content"] in train_texts for x in m[1:-1:2])  # examples from the training file only
        assert m[-1]["content"] == items[0].text
    assert msgs["trained"][1:] == msgs["one_word"][1:]
    assert "Answer with one word." in msgs["one_word"][0]["content"]
    assert "Answer with one word." not in msgs["trained"][0]["content"]


def test_definitions_variant_and_merge_map():
    task = _task("stance")
    assert task.labels == ["for", "neutral", "against"]
    items = task.all_items()
    assert {i.label for i in items} == {"for", "neutral", "against"}  # seven labels merged into three
    assert sum(i.label == "for" for i in items) == 30
    with_defs = task.system_prompt("definitions")
    without = task.system_prompt("no_definitions")
    assert "- neutral: takes no side" in with_defs and "- neutral:" not in without


def test_answers_parse_to_exactly_one_label_and_nothing_is_guessed():
    spam, sst2 = _task("spam"), _task("sst2")
    assert spam.parse(" Spam.\n").label == "spam"          # bare labels: case and punctuation around them
    assert not spam.parse("probably spam").valid
    assert "not one of the labels" in spam.parse("probably spam").error
    assert sst2.parse('{"label": "positive"}').label == "positive"
    bad = sst2.parse('{"label": "mixed"}')
    assert not bad.valid and bad.label is None
    assert not sst2.parse('{"label": "positive", "why": 1}').valid
    schema = sst2.constraint().schema
    assert schema["properties"]["label"]["enum"] == ["negative", "positive"]
    assert spam.constraint().schema is None and "spam" in spam.constraint().grammar


def test_japanese_text_stays_intact_from_file_to_prompt():
    task = _task("japanese_news")
    items = task.all_items()
    assert len(items) == 45 and len(task.labels) == 9
    item = next(i for i in items if i.label == "sports-watch")
    raw = (EXAMPLES / "japanese_news" / "data" / item.fields["file"]).read_text(encoding="utf-8").splitlines()
    assert item.fields["title"] == raw[2] and item.text.startswith(raw[3][:10])
    assert item.text in task.messages(item, "zero_shot")[-1]["content"]


@pytest.mark.slow
def test_a_broken_task_block_is_one_clear_error_naming_the_field(tmp_path):
    text = (EXAMPLES / "sst2" / "config.yaml").read_text().replace("positive: positive", "positive: upbeat")
    (tmp_path / "data").mkdir()
    for f in ("train.tsv", "dev.tsv"):
        shutil.copy(EXAMPLES / "sst2" / "data" / f, tmp_path / "data" / f)
    (tmp_path / "config.yaml").write_text(text)
    r = shootout("validate", "-c", str(tmp_path / "config.yaml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "task" in r.stderr and "upbeat" in r.stderr and "is not one of the labels" in r.stderr
    (tmp_path / "data" / "dev.tsv").unlink()
    (tmp_path / "config.yaml").write_text((EXAMPLES / "sst2" / "config.yaml").read_text())
    r = shootout("validate", "-c", str(tmp_path / "config.yaml"))
    assert r.returncode == 2 and "task.data.files" in r.stderr and "dev.tsv" in r.stderr


# --------------------------------------------------------------------------- end to end


def _check_example_report(out, items: int, iterations: int) -> str:
    """What every example's demo leaves: one row per call with a known label (or the raw reply kept),
    the workbook's sheets, the summary's columns with one majority baseline, the plots; its run id."""
    con = sqlite3.connect(out / "results.sqlite")
    run_id, task_json = con.execute("SELECT run_id, task_json FROM runs").fetchone()
    task = json.loads(task_json)
    n_items = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    n_arms = max(1, len([v for v in task["variants"] if v]))
    assert n_items == items
    rows = con.execute("SELECT valid, label, raw_text FROM calls").fetchall()
    assert len(rows) == items * iterations * n_arms
    assert all(label in task["labels"] for valid, label, _ in rows if valid)
    assert all(label is None and raw for valid, label, raw in rows if not valid)  # invalid: raw text kept
    from openpyxl import load_workbook

    wb = load_workbook(out / "reports" / f"{run_id}.xlsx")
    assert {"Summary", "Per Class", "Confusion", "Comparisons", "Run Info"} <= set(wb.sheetnames)
    summary = pd.read_csv(out / "reports" / run_id / "summary.csv")
    assert {"accuracy", "macro_f1", "vote_accuracy"} <= set(summary.columns)
    assert summary["model"].str.startswith("baseline: majority").sum() == 1
    pngs = {p.name for p in (out / "heatmaps" / run_id).glob("*.png")}
    assert any(p.startswith("confusion_") for p in pngs) and "per_class_f1.png" in pngs
    return run_id


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n != "spam"])  # spam: the next test runs its demo
def test_every_example_runs_to_a_report_on_the_embedded_model(tmp_path, embedded_gguf, name):
    out = tmp_path / name
    r = shootout("demo", "--task", name, "--out", str(out), "--items", "4", "--iterations", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    _check_example_report(out, items=4, iterations=1)


@pytest.mark.slow
def test_spam_demo_baselines_and_voting(tmp_path, embedded_gguf):
    """The spam example's report, and its study's own figures: always-spam 78%, always-ham 22%, vote
    accuracy beside accuracy."""
    out = tmp_path / "spam"
    r = shootout("demo", "--task", "spam", "--out", str(out), "--iterations", "3", "--items", "6",
                 "--no-progress")
    assert r.returncode == 0, r.stderr
    run_id = _check_example_report(out, items=6, iterations=3)
    summary = pd.read_csv(out / "reports" / run_id / "summary.csv").set_index("model")
    gold = pd.read_csv(out / "reports" / run_id / "per_item.csv").drop_duplicates("item_id")["target_label"]
    share = (gold == "spam").mean()
    assert summary.loc["baseline: always spam", "accuracy"] == pytest.approx(share)
    assert summary.loc["baseline: always ham", "accuracy"] == pytest.approx(1 - share)
    calls = sqlite3.connect(out / "results.sqlite")
    for model in ("gemma3-270m@trained", "gemma3-270m@one_word"):
        rows = calls.execute("SELECT c.item_id, c.valid, c.label, i.target_label FROM calls c JOIN items i "
                             "ON c.item_id = i.item_id WHERE model = ?", (model,)).fetchall()
        acc = np.mean([bool(v) and l == t for _, v, l, t in rows])
        assert summary.loc[model, "accuracy"] == pytest.approx(acc)
        assert 0 <= summary.loc[model, "vote_accuracy"] <= 1
    # every model against the best trivial baseline, in the Decision (and the console lines it prints)
    decision = pd.read_csv(out / "reports" / run_id / "decision.csv").set_index("model")
    tests = pd.read_csv(out / "reports" / run_id / "baselines.csv")
    for model in ("gemma3-270m@trained", "gemma3-270m@one_word"):
        row = tests[(tests["model"] == model) & (tests["strategy"] == "majority")].iloc[0]
        said = decision.loc[model, "baseline"]
        assert said.startswith(f"{model}: {'better than' if row['better'] else 'no better than'} always answering")
        assert said[:70] in r.stderr  # (the console wraps long lines)


# --------------------------------------------------------------------------- label scoring


@pytest.mark.slow
def test_logprob_argmax_equals_the_constrained_greedy_answer(engine):
    task = _task("sst2")
    items = task.load_items()
    assert len(items) == 40
    items = items[:24]  # the first 24 of the split: the comparison is per item
    same = 0
    for item in items:
        msgs = task.messages(item, "few_shot")
        c = task.constraint()
        greedy = task.parse(engine.chat(msgs, schema=c.schema, grammar=c.grammar, temperature=0.0,
                                        max_tokens=16).text)
        scored = engine.score_choices(msgs, task.choices())
        assert greedy.valid and set(scored.probs) == set(task.labels)
        assert sum(scored.probs.values()) == pytest.approx(1.0)
        assert all(lp < 0 for lp in scored.logprobs.values())
        same += max(scored.probs, key=scored.probs.get) == greedy.label
    assert same / len(items) >= 0.95, same


@pytest.mark.slow
def test_logprob_mode_stores_every_label_probability(tmp_path, embedded_gguf):
    from benchmark.run.runner import Runner
    from benchmark.store import Store

    cfg_text = (EXAMPLES / "sst2" / "config.yaml").read_text().replace("answer: json", "answer: json\n  decoding: logprob")
    cfg_text = cfg_text.replace("    evaluate: validation", "    evaluate: validation\n    max_items: 3")
    shutil.copytree(EXAMPLES / "sst2" / "data", tmp_path / "data")
    (tmp_path / "config.yaml").write_text(cfg_text)
    cfg = load_config(tmp_path / "config.yaml")
    with Store(tmp_path / "r.sqlite") as store:
        Runner(cfg, store, run_id="lp", progress=False).run()
        rows = store.calls("lp")
    assert len(rows) == 3 * 3
    for r in rows:
        probs = json.loads(r["label_probs_json"])
        assert set(probs) == {"negative", "positive"} and sum(probs.values()) == pytest.approx(1.0)
        assert r["label"] == max(probs, key=probs.get) and r["confidence"] == pytest.approx(max(probs.values()))
    # no sampling: the three iterations of an item agree
    by_item = {}
    for r in rows:
        by_item.setdefault(r["item_id"], set()).add(r["label"])
    assert all(len(v) == 1 for v in by_item.values())


# --------------------------------------------------------------------------- report vs libraries


@pytest.mark.slow
def test_label_report_figures_equal_scikit_learn_and_statsmodels_on_the_stored_rows(tmp_path):
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, precision_recall_fscore_support
    from statsmodels.stats.contingency_tables import cochrans_q, mcnemar

    from benchmark import report as rpt
    from benchmark.stats.label_synth import SynthLabelModel, synthetic_calls
    from benchmark.store import Store
    from benchmark.tasks.base import Item

    labels = ["spam", "ham"]
    models = [SynthLabelModel("ref", accuracy=0.8, invalid_rate=0.05), SynthLabelModel("cand", accuracy=0.7),
              SynthLabelModel("third", accuracy=0.75, family="other")]
    calls, items = synthetic_calls(models, n_items=60, n_iterations=3, labels=labels, priors=[0.7, 0.3], seed=5)
    task = {"name": "synth", "kind": "label", "item_noun": "text", "labels": labels, "positive": "spam",
            "betas": [0.5], "variants": [None]}
    with Store(tmp_path / "s.sqlite") as store:
        store.create_run("s", task="synth", seed=0, iterations=3, config_path=None, config_text="# synthetic",
                         settings={"compare": [["ref", "cand"]]}, versions={}, hardware={}, task_info=task,
                         items=[Item(id=r.item_id, text="t", label=r.target_label, split="test")
                                for r in items.itertuples()])
        rows = calls.assign(run_id="s", valid=calls["valid"].astype(int), prompt_style="few_shot",
                            backend="llamacpp", position=0, seed=0, finish_reason="stop")
        store.add_calls(rows.astype(object).where(rows.notna(), None).to_dict("records"))
        rep = rpt.build(store, "s")
        stored = pd.read_sql_query("SELECT c.model, c.item_id, c.iteration, c.valid, c.label, i.target_label "
                                   "FROM calls c JOIN items i USING (item_id)", store.db)
    d = rep.details.set_index("model")
    for name in ("ref", "cand", "third"):
        s = stored[stored.model == name]
        pred = s["label"].where(s["valid"] == 1, "(invalid)").fillna("(invalid)")
        assert d.loc[name, "accuracy"] == pytest.approx(accuracy_score(s["target_label"], pred))
        assert d.loc[name, "macro_f1"] == pytest.approx(f1_score(s["target_label"], pred, labels=labels,
                                                                 average="macro", zero_division=0))
        assert d.loc[name, "kappa"] == pytest.approx(cohen_kappa_score(s["target_label"], pred))
        p, r, f, n = precision_recall_fscore_support(s["target_label"], pred, labels=labels, zero_division=0)
        pc = rep.per_class[rep.per_class.model == name].set_index("class")
        assert list(pc.loc[labels, "precision"]) == pytest.approx(list(p))
        assert list(pc.loc[labels, "recall"]) == pytest.approx(list(r))
        assert list(pc.loc[labels, "f1"]) == pytest.approx(list(f))
        conf = rep.confusion[name]
        assert int(conf.loc["spam", "ham"]) == int(((s.target_label == "spam") & (pred == "ham")).sum())

    def vote(name):  # per item: (right by an untied majority of the valid answers, tied)
        s = stored[(stored.model == name) & (stored.valid == 1)]
        right, tied = {}, {}
        for item, g in stored[stored.model == name].groupby("item_id"):
            answers = s[s.item_id == item]["label"].tolist()
            counts = {k: answers.count(k) for k in labels}
            top = [k for k in labels if answers and counts[k] == max(counts.values())]
            tied[item] = len(top) > 1
            right[item] = len(top) == 1 and top[0] == g["target_label"].iloc[0]
        return pd.Series(right), pd.Series(tied)

    (a, ta), (b, tb) = vote("ref"), vote("cand")
    untied = ~(ta | tb)  # a tied vote has no binary outcome: McNemar leaves the item out
    table = pd.crosstab(a[untied], b[untied]).reindex(index=[True, False], columns=[True, False], fill_value=0)
    cmp = rep.sheet("Comparisons").table.iloc[0]
    assert cmp["mcnemar_p_exact"] == pytest.approx(mcnemar(table.to_numpy(), exact=True).pvalue)
    q = rep.sheet("Comparisons").appendix[0][2].iloc[0]
    votes = [vote(m) for m in ("ref", "cand", "third")]
    none_tied = ~pd.concat([t for _, t in votes], axis=1).any(axis=1)
    ref = cochrans_q(pd.concat([r for r, _ in votes], axis=1)[none_tied].astype(int).to_numpy())
    assert q["Q"] == pytest.approx(ref.statistic) and q["p"] == pytest.approx(ref.pvalue)


# --------------------------------------------------------------------------- the previous layout


@pytest.mark.slow
def test_a_database_of_the_previous_layout_migrates_resumes_and_reports(tmp_path, embedded_gguf):
    db = tmp_path / "results.sqlite"
    shutil.copy(ROOT / "tests" / "fixtures" / "v1" / "results.sqlite", db)
    old = sqlite3.connect(db)
    before = pd.read_sql_query("SELECT model, AVG(sentiment) AS mean FROM calls WHERE valid = 1 GROUP BY model", old)
    run_id = old.execute("SELECT run_id FROM runs").fetchone()[0]
    assert old.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 22
    old.close()
    (tmp_path / "config.yaml").write_text(
        "task: sentiment\nnews: {source: snapshot, max_articles: 3}\n"
        "run: {iterations: 2, temperature: 0.7, seed: 1234, num_predict: 256, database: results.sqlite}\n"
        "models:\n  - {name: gemma3-270m-q4_k_m, backend: llamacpp, path: embedded, family: gemma3-270m, "
        "quant: Q4_K_M, options: {chat_template: gemma}}\n")
    r = shootout("run", "-c", str(tmp_path / "config.yaml"), "--run-id", run_id, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"resuming run {run_id}: 4 calls already stored, 2 to go" in r.stderr  # its model's calls
    con = sqlite3.connect(db)
    from benchmark.store.migrations import VERSION

    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(VERSION)
    assert con.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 24
    fields = json.loads(con.execute("SELECT fields_json FROM items LIMIT 1").fetchone()[0])
    assert {"ticker", "company", "title", "url"} <= set(fields)
    answer = json.loads(con.execute("SELECT answer_json FROM calls WHERE valid = 1 LIMIT 1").fetchone()[0])
    assert set(answer) == {"reasoning", "sentiment", "confidence"}
    rep = shootout("report", "--db", str(db), "--out", str(tmp_path / "reports"))
    assert rep.returncode == 0, rep.stderr
    details = pd.read_csv(tmp_path / "reports" / run_id / "model_details.csv").set_index("model")
    for row in before.itertuples():
        if row.model != "gemma3-270m-q4_k_m":  # its two new calls changed its mean
            assert details.loc[row.model, "mean_value"] == pytest.approx(row.mean)
    exp = shootout("export-json", "--db", str(db), "--out", str(tmp_path / "sentiments"))
    assert exp.returncode == 0, exp.stderr
    assert len(list((tmp_path / "sentiments").rglob("*.json"))) > 0
