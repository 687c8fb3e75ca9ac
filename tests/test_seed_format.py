"""The older tool's JSON layout, from a results store built by hand."""

from __future__ import annotations

import json

from benchmark.synthetic import SENTIMENT_TASK
from benchmark.tasks.base import Item
from benchmark.report.seed_json import export_seed_format, weighted_average
from benchmark.store import Store


def _call(model, it, aid, sentiment, confidence, valid=True, wall=1.0):
    return {"run_id": "r", "model": model, "family": "f", "quant": "Q4_K_M", "backend": "llamacpp",
            "prompt_style": "few_shot", "iteration": it, "item_id": aid, "position": 0, "seed": 1,
            "raw_text": "{}" if valid else "oops", "valid": int(valid), "error": None if valid else "not JSON",
            "answer_json": json.dumps({"reasoning": "r", "sentiment": sentiment, "confidence": confidence})
            if valid else None, "value": sentiment if valid else None,
            "confidence": confidence if valid else None, "finish_reason": "stop", "prompt_tokens": 10,
            "cached_tokens": 0, "completion_tokens": 5, "prompt_seconds": 0.1, "gen_seconds": 0.5,
            "wall_seconds": wall}


def test_layout_and_weighted_average(tmp_path):
    arts = [Item(id=f"a{i}", text="x", fields={"ticker": "NVDA", "company": "Nvidia", "title": "t", "url": f"u{i}"})
            for i in range(3)]
    with Store(tmp_path / "r.sqlite") as store:
        store.create_run("r", task="sentiment", seed=1, iterations=1, config_path=None, config_text="",
                         settings={}, versions={}, hardware={}, items=arts, task_info=SENTIMENT_TASK)
        store.add_call(_call("m:1", 0, "a0", 0.8, 0.5, wall=1.5))
        store.add_call(_call("m:1", 0, "a1", -0.2, 1.0, wall=2.0))
        store.add_call(_call("m:1", 0, "a2", None, None, valid=False, wall=0.5))
        assert not store.add_call(_call("m:1", 0, "a2", None, None, valid=False))  # never stored twice
        files = export_seed_format(store, "r", tmp_path / "out")
    assert [f.relative_to(tmp_path / "out").as_posix() for f in files] == ["m_1/NVDA_0.json"]
    data = json.loads(files[0].read_text())
    assert data["average_sentiment"] == round((0.8 * 0.5 - 0.2 * 1.0) / 1.5, 2) == 0.13
    assert data["time_taken"] == 4.0
    assert data["sentiments"]["a2"]["valid"] is False and data["sentiments"]["a2"]["raw_text"] == "oops"
    assert data["sentiments"]["a0"]["reasoning"] == "r" and data["sentiments"]["a0"]["url"] == "u0"


def test_zero_sentiments_are_left_out_of_the_average_as_in_the_older_tool():
    items = [{"valid": True, "sentiment": 0.0, "confidence": 1.0}, {"valid": True, "sentiment": 0.5, "confidence": 0.5}]
    assert weighted_average(items) == 0.5
    assert weighted_average([]) == 0.0
