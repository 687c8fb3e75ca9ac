"""The label report a reader acts on, from stored runs: invalid replies shown as such on the per-item sheet,
vote ties as their own outcome with the tie rule stated, every model tested against the trivial
baselines in the Decision and the console (the spam example's items: 78% spam), the baselines on the
per-class chart, what log-probability mode measured in the console, and a run stored with settings the
config check now refuses (a positive class on three labels, a negative beta) still reported, saying
which figure it could not compute and why."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark import report as rpt
from benchmark.config import load_config
from benchmark.store import Store
from benchmark.tasks import task_for
from benchmark.tasks.base import Item
from tests.conftest import ROOT


def spam_items() -> list[Item]:
    """The spam example's 50 evaluated messages (39 spam, 11 ham)."""
    return task_for(load_config(ROOT / "examples" / "spam" / "config.yaml")).load_items()


def store_run(path, items: list[Item], task: dict, answers: dict[str, list[list]], probs: dict | None = None,
              run_id: str = "r") -> None:
    """A stored label run: ``answers[model][iteration][item]`` is a label or None (an invalid reply)."""
    with Store(path) as store:
        store.create_run(run_id, task=task["name"], seed=0, iterations=len(next(iter(answers.values()))),
                         config_path=None, config_text="# stored", settings={}, versions={}, hardware={},
                         task_info=task, items=items)
        rows = []
        for model, per_it in answers.items():
            variant = model.split("@")[1] if "@" in model else None
            for it, labels in enumerate(per_it):
                for pos, (item, lab) in enumerate(zip(items, labels)):
                    row = {"run_id": run_id, "model": model, "family": "gemma3-270m", "quant": "Q4_K_M",
                           "variant": variant, "backend": "llamacpp", "prompt_style": "few_shot", "iteration": it,
                           "item_id": item.id, "position": pos, "seed": it, "raw_text": lab or "perhaps",
                           "valid": int(lab is not None), "label": lab, "finish_reason": "stop",
                           "prompt_tokens": 100, "completion_tokens": 2, "prompt_seconds": 0.1,
                           "gen_seconds": 0.05, "wall_seconds": 0.2}
                    if probs is not None:
                        row["label_probs_json"] = json.dumps(probs[model][it][pos])
                    rows.append(row)
        store.add_calls(rows)


SPAM_TASK = {"name": "spam", "kind": "label", "item_noun": "message", "labels": ["spam", "ham"], "positive": "spam",
             "betas": [], "variants": ["trained", "one_word"]}


@pytest.fixture(scope="module")
def spam_report(tmp_path_factory):
    """Two prompt variants on the spam example's messages, both far below always answering spam (78%):
    about 47% right, some replies invalid, two iterations (votes tie)."""
    items = spam_items()
    gold = [i.label for i in items]
    rng = np.random.default_rng(7)
    answers = {}
    for model, acc in (("gemma3-270m@trained", 0.47), ("gemma3-270m@one_word", 0.45)):
        per_it = []
        for it in range(2):
            right = rng.random(len(items)) < acc
            labs = [g if r else ("ham" if g == "spam" else "spam") for g, r in zip(gold, right)]
            labs = [None if (it == 1 and k % 9 == 0 and model.endswith("trained")) else lab
                    for k, lab in enumerate(labs)]
            per_it.append(labs)
        answers[model] = per_it
    path = tmp_path_factory.mktemp("spam") / "spam.sqlite"
    store_run(path, items, SPAM_TASK, answers)
    with Store(path) as store:
        rep = rpt.build(store, "r")
    return rep, answers, items


@pytest.mark.slow
def test_the_per_item_sheet_shows_invalid_replies_and_ties_as_such(spam_report):
    rep, answers, items = spam_report
    pi = rep.sheet("Per Message").table
    assert not pi["answers"].str.contains("nan").any()
    trained = pi[pi["model"] == "gemma3-270m@trained"].set_index("item_id")
    for k, item in enumerate(items):
        shown = [a if a is not None else "(invalid)" for a in (answers["gemma3-270m@trained"][0][k],
                                                               answers["gemma3-270m@trained"][1][k])]
        assert trained.loc[item.id, "answers"] == ", ".join(shown)
        valid = [a for a in shown if a != "(invalid)"]
        if len(set(valid)) == 2:  # one of each: a tie, credited 1/2 when gold is among them
            assert trained.loc[item.id, "vote"] == "(tie: spam, ham)"
            assert trained.loc[item.id, "vote_credit"] == 0.5
    assert "(invalid)" in " ".join(trained["answers"])
    note = rep.sheet("Per Message").note
    assert "'(invalid)'" in note and "1/t" in note


def test_vote_ties_are_counted_and_the_vote_gain_is_honest(spam_report):
    rep, answers, items = spam_report
    d = rep.details.set_index("model")
    gain = rep.sheet("Model Details").appendix[0][2].set_index("model")
    # one_word: two iterations, no invalid reply: the vote gains exactly nothing over one call
    assert d.loc["gemma3-270m@one_word", "vote_accuracy"] == pytest.approx(d.loc["gemma3-270m@one_word", "accuracy"])
    assert gain.loc["gemma3-270m@one_word", "vote_gain"] == pytest.approx(0.0, abs=1e-12)
    ties = sum(len({a[0][k], a[1][k]}) == 2 for a in [answers["gemma3-270m@one_word"]] for k in range(len(items)))
    assert d.loc["gemma3-270m@one_word", "vote_ties"] == ties == gain.loc["gemma3-270m@one_word", "vote_ties"]
    assert "vote_ties" in rep.sheet("Summary").table
    assert "never broken by the label order" in rep.sheet("Summary").note


def test_the_decision_and_console_say_no_better_than_always_answering_spam(spam_report):
    from benchmark.report.console import verdict_lines

    rep, _, _ = spam_report
    dec = rep.decision.set_index("model")
    for model in ("gemma3-270m@trained", "gemma3-270m@one_word"):
        line = dec.loc[model, "baseline"]
        assert line.startswith(f"{model}: no better than always answering spam (78.0%)")
        assert "one-sided p" in line and "paired t over 50 messages" in line
        assert line in dec.loc[model, "what_it_means"]
    lines = verdict_lines(rep)
    assert sum("no better than always answering spam" in x for x in lines) == 2
    tests = dict((csv, t) for _, csv, t in rep.sheet("Decision").appendix)["baselines"]
    row = tests[(tests["model"] == "gemma3-270m@trained") & (tests["strategy"] == "majority")].iloc[0]
    assert row["baseline_accuracy"] == pytest.approx(39 / 50) and not row["better"] and row["diff"] < -0.2


@pytest.mark.slow
def test_the_per_class_chart_marks_the_baselines(spam_report, tmp_path):
    from benchmark.report.charts import per_class_heatmap, per_class_table

    rep, _, _ = spam_report
    table = per_class_table(rep)
    assert "baseline: majority (spam)" in table and "baseline: stratified random" in table
    # always answering spam: F1 of spam 2 x 0.78 / 1.78, of ham 0
    assert table.loc["spam", "baseline: majority (spam)"] == pytest.approx(2 * 0.78 / 1.78)
    assert table.loc["ham", "baseline: majority (spam)"] == 0.0
    assert per_class_heatmap(rep, tmp_path / "pc.png").stat().st_size > 0


@pytest.mark.slow
def test_the_console_shows_what_log_probability_mode_measured(tmp_path):
    from benchmark.report.console import model_summary

    items = spam_items()[:24]
    rng = np.random.default_rng(1)
    answers, probs = {}, {}
    for model in ("gemma3-270m@trained", "gemma3-270m@one_word"):
        p_ham = rng.uniform(0.5, 0.9, (2, len(items)))  # a model that answers ham to everything
        answers[model] = [["ham"] * len(items)] * 2
        probs[model] = [[{"spam": 1 - p, "ham": p} for p in row] for row in p_ham]
    store_run(tmp_path / "lp.sqlite", items, SPAM_TASK, answers, probs)
    with Store(tmp_path / "lp.sqlite") as store:
        task, rows = model_summary(store, "r")
        rep = rpt.build(store, "r")
    from benchmark import conventions as CV

    assert CV.say("label_prob", noun="message") in rep.sheet("Summary").note
    assert rows and "gen_tok_s" not in rows[0]  # it generated nothing: no token rate
    assert {"label_prob", "label_prob_margin", "s_per_sample"} <= set(rows[0])
    flat = [p["ham"] for row in probs["gemma3-270m@trained"] for p in row]
    assert rows[0]["label_prob"] == pytest.approx(np.mean(flat))
    assert rows[0]["label_prob_margin"] == pytest.approx(np.mean([2 * p - 1 for p in flat]))


@pytest.mark.slow
def test_a_run_stored_with_a_three_class_positive_and_a_negative_beta_still_reports(tmp_path):
    """Runs stored before the config check refused these report every other figure, and say which they
    could not compute and why (they used to end in a traceback, after every call of the run)."""
    labels = ["for", "neutral", "against"]
    items = [Item(id=f"s{k}", text="t", label=labels[k % 3], split="test") for k in range(30)]
    rng = np.random.default_rng(3)
    answers = {m: [[labels[j] for j in rng.integers(0, 3, 30)] for _ in range(2)] for m in ("a-f16", "a-q4")}
    task = {"name": "stance", "kind": "label", "item_noun": "sentence", "labels": labels, "positive": "for",
            "betas": [0.5, -1.0], "variants": [None]}
    store_run(tmp_path / "old.sqlite", items, task, answers)
    with Store(tmp_path / "old.sqlite") as store:
        rep = rpt.build(store, "r")
    summary = rep.sheet("Summary")
    assert "precision" not in summary.table and "f_beta_-1" not in summary.table and "f_beta_0.5" in summary.table
    assert "precision, recall and F1 of the positive class 'for': not computed, the task has 3 labels" in summary.note
    assert "F-beta at beta -1: not computed, beta must be a positive number" in summary.note
    assert rpt.write_workbook(rep, tmp_path / "old.xlsx").stat().st_size > 0


def test_every_sheet_states_the_conventions_of_its_figures(spam_report):
    from benchmark import conventions as CV

    rep, _, _ = spam_report
    notes = {s.title: s.note for s in rep.sheets}
    said = lambda key: CV.say(key, noun="message")  # noqa: E731
    assert said("mcnemar") in notes["Comparisons"] and said("accuracy_difference") in notes["Comparisons"]
    assert said("jackknife") in notes["Comparisons"] and said("token_rates") in notes["Summary"]
    assert said("vote") in notes["Summary"] and said("baselines") in notes["Decision"]
    assert said("items_to_decide") in notes["Decision"] and said("zero_spread") in notes["Decision"]
    cal = rep.calibration
    assert cal.empty or "accuracy_answered" in cal


def test_every_convention_is_stated_by_some_sheet(spam_report, tmp_path):
    """One place for the conventions (benchmark.conventions): each is stated by at least one sheet of a
    value report or a label report, in the words kept there."""
    import re

    from benchmark import conventions as CV
    from benchmark.synthetic import SynthModel, write_db

    rep, _, _ = spam_report
    write_db(tmp_path / "v.sqlite", [SynthModel("v-f16", family="v", quant="F16"),
                                     SynthModel("v-q4", family="v", quant="Q4_K_M", shift=0.1)], 30, 3, run_id="v")
    with Store(tmp_path / "v.sqlite") as store:
        value_rep = rpt.build(store, "v")
    notes = " ".join(s.note for r in (rep, value_rep) for s in r.sheets)
    for key, text in CV.CONVENTIONS.items():
        if key == "label_prob":  # a log-probability run's: checked with one (above)
            continue
        fixed = max(re.split(r"\{[^}]*\}", text), key=len)  # the longest stretch without a placeholder
        assert fixed.strip() in notes, key
