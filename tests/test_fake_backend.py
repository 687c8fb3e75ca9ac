"""The scripted fake backend itself: what it answers, in which order, and that it answers the same
every run (runs in process through the real Runner and store)."""

from __future__ import annotations

import json

import pytest

from benchmark.backends import fake, make_backend
from benchmark.config import load_config
from benchmark.run.runner import Runner
from benchmark.store import Store
from tests.fake_configs import LABELS, classify_config, sentiment_config


def _rows(config, db, **kw):
    with Store(db) as store:
        Runner(load_config(config), store, run_id="r", progress=False, **kw).run()
        return sorted((dict(r) for r in store.calls("r")), key=lambda r: r["id"])


def test_scripted_replies_by_item_then_in_turn_then_the_gold(tmp_path):
    models = ("  - {name: turns, backend: fake, family: f, quant: q, "
              "options: {replies: ['{\"label\": \"negative\"}', 'no idea'], by_item: {t01: '{\"label\": \"positive\"}'}}}\n"
              "  - {name: gold, backend: fake, family: f, quant: q}\n")
    config = classify_config(tmp_path, models=models, n_items=4, iterations=1)
    rows = _rows(config, tmp_path / "results.sqlite")
    turns = [r for r in rows if r["model"] == "turns"]
    # call by call, the warm-up first, the list in turn; an item with its own reply takes that instead
    replies = ['{"label": "negative"}', "no idea"]
    for k, r in enumerate(turns, start=1):
        if r["item_id"] == "t01":
            assert r["raw_text"] == '{"label": "positive"}' and r["label"] == "positive"
        else:
            assert r["raw_text"] == replies[k % 2] and r["valid"] == (k % 2 == 0)
    for r in (r for r in rows if r["model"] == "gold"):
        assert r["valid"] == 1 and r["label"] == LABELS[int(r["item_id"][1:]) % 2]


def test_a_script_sees_the_item_and_seed_and_plants_its_answer(tmp_path):
    seen = []

    def script(call: fake.FakeCall):
        seen.append((call.item.id if call.item else None, call.seed, call.endpoint))
        if call.item is not None and call.item.id == "t02":
            return '{"label": "oops"}'
        return None

    config = classify_config(tmp_path, models="  - {name: m, backend: fake, family: f, quant: q}\n", n_items=4,
                             iterations=2)
    rows = _rows(config, tmp_path / "results.sqlite", backend_factory=fake.scripted(script))
    assert seen[0][0] == "warmup" and {s[0] for s in seen[1:]} == {"t00", "t01", "t02", "t03"}
    assert sorted((r["item_id"], r["seed"]) for r in rows) == sorted(s[:2] for s in seen[1:])
    bad = [r for r in rows if r["item_id"] == "t02"]
    assert len(bad) == 2 and all(r["valid"] == 0 and "label" in r["error"] for r in bad)


def test_the_same_config_gives_the_same_answers_every_run(tmp_path):
    models = ("  - {name: a, backend: fake, family: f, quant: q, options: {accuracy: 0.6, invalid_rate: 0.1}}\n"
              "  - {name: b, backend: fake, family: f, quant: q, options: {accuracy: 0.6, invalid_rate: 0.1}}\n")
    runs = []
    for k in range(2):
        folder = tmp_path / str(k)
        folder.mkdir()
        rows = _rows(classify_config(folder, models=models, n_items=20, iterations=3), folder / "results.sqlite")
        runs.append({(r["model"], r["iteration"], r["item_id"]): r["raw_text"] for r in rows})
    assert runs[0] == runs[1]
    a = [v for (m, _, _), v in sorted(runs[0].items()) if m == "a"]
    b = [v for (m, _, _), v in sorted(runs[0].items()) if m == "b"]
    assert a != b  # the draws depend on the model's name as well as the call's seed
    right = sum(v == json.dumps({"label": LABELS[int(i[1:]) % 2]}) for (m, _, i), v in runs[0].items() if m == "a")
    assert 0.3 < right / 60 < 0.8 and sum(v == fake.NOT_JSON for v in a) > 0


def test_gold_values_of_a_value_task_and_the_label_scores_of_a_label_task(tmp_path):
    rows = _rows(sentiment_config(tmp_path, articles=3, iterations=1), tmp_path / "results.sqlite")
    with Store(tmp_path / "results.sqlite") as store:
        gold = {i.id: i.value for i in store.items("r")}
    assert all(r["valid"] and r["value"] == pytest.approx(gold[r["item_id"]], abs=1e-3) for r in rows)
    config = classify_config(tmp_path, models="  - {name: m, backend: fake, family: f, quant: q}\n")
    cfg = load_config(config)
    b = make_backend(cfg.models[0], cfg)
    b.load()
    from benchmark.tasks import task_for

    task = task_for(cfg)
    item = next(i for i in task.load_items(cfg, warn=print) if i.label == "positive")
    scores = b.score_choices(task.messages(item, "few_shot"), task.choices())
    assert scores.probs == pytest.approx({"positive": 0.9, "negative": 0.1})
    assert scores.reply.text == '{"label": "positive"}' and scores.reply.prompt_tokens > scores.reply.cached_tokens
