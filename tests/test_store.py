"""The results store in process, on real SQLite files: facts of a run come from the run (sizes,
quant, family, location of each arm), one call row declared once, frames read through the store,
and runs that stored no call. The runner is driven by a scripted backend (no model)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from benchmark.config import load_config
from benchmark.run.runner import Runner
from benchmark.store import Store
from benchmark.store.rows import ARM_FACT_COLUMNS
from engine.types import Reply
from tests.conftest import ROOT

V1 = ROOT / "tests" / "fixtures" / "v1" / "results.sqlite"
ANSWER = json.dumps({"reasoning": "Orders rose.", "sentiment": 0.5, "confidence": 0.8})


class Scripted:
    """A backend that answers every call with ``text``; its engine facts are ``engine``."""

    def __init__(self, entry, text: str = ANSWER, engine: dict | None = None):
        self.name = entry.name
        self.text = text
        self.engine = engine or {}
        self.calls = 0

    def load(self) -> float:
        return 0.01

    def engine_info(self) -> dict:
        return dict(self.engine)

    def memory_facts(self) -> dict:  # the entries are llamacpp ones, whose backend declares memory facts
        return {}

    def close(self) -> None:
        pass

    def chat(self, messages, **kw) -> Reply:
        self.calls += 1
        return Reply(text=self.text, finish_reason="stop", prompt_tokens=40, completion_tokens=12,
                     prompt_seconds=0.001, gen_seconds=0.002, wall_seconds=0.003)


def _config(folder: Path, *, models: str | None = None, run: str = "", task: str = "task: sentiment\n") -> Path:
    gguf = folder / "models" / "tiny.Q4_K_M.gguf"
    gguf.parent.mkdir(exist_ok=True)
    gguf.write_bytes(b"GGUF" + b"\0" * 1234)
    models = models or (
        "  - {name: local, backend: llamacpp, path: models/tiny.Q4_K_M.gguf, family: tiny, quant: Q4_K_M,"
        " checkpoint: 30}\n"
        "  - {name: served, backend: openai, base_url: 'http://127.0.0.1:9/v1', family: big, quant: Q8_0,"
        " prompt_style: zero_shot}\n")
    path = folder / "config.yaml"
    path.write_text(f"{task}news: {{source: snapshot, max_articles: 2}}\n"
                    f"run: {{iterations: 2, warmup: false, seed: 3, database: results.sqlite{run}}}\n"
                    f"models:\n{models}")
    return path


def _run(config: Path, run_id: str = "r1", factory=None, **kw):
    cfg = load_config(config, check_files=False)
    engines = {"local": {"model_bytes": 999}, "served": {"model_file_bytes": 7_000_000, "digest": "sha256:abc"}}
    factory = factory or (lambda entry, cfg_, endpoint=None: Scripted(entry, engine=engines.get(entry.name)))
    with Store(cfg.resolve(cfg.run.database)) as store:
        return Runner(cfg, store, run_id=run_id, progress=False, backend_factory=factory, **kw).run()


# --------------------------------------------------------------------------- facts of a run


def test_arm_facts_are_stored_at_run_time_and_read_without_the_model_files(tmp_path):
    config = _config(tmp_path)
    _run(config)
    shutil.rmtree(tmp_path / "models")  # the report runs where the GGUF is not
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(tmp_path / "results.sqlite", moved / "copy.sqlite")
    with Store(moved / "copy.sqlite", create=False) as store:
        facts = store.arm_facts("r1")
    assert list(facts.columns) == list(ARM_FACT_COLUMNS)
    local, served = (facts.set_index("model").loc[m] for m in ("local", "served"))
    # the GGUF's size on disk when it ran (not the engine's tensor bytes), its resolved path, the checkpoint
    assert local["model_bytes"] == 4 + 1234 and local["location"] == str(tmp_path / "models" / "tiny.Q4_K_M.gguf")
    assert (local["entry"], local["backend"], local["family"], local["quant"], local["prompt_style"]) == \
        ("local", "llamacpp", "tiny", "Q4_K_M", "few_shot")
    assert local["checkpoint"] == 30.0 and pd.isna(local["variant"])
    # a server's model: what the server reported of its file, where it is
    assert served["model_bytes"] == 7_000_000 and served["location"] == "http://127.0.0.1:9/v1"
    assert (served["family"], served["quant"], served["prompt_style"]) == ("big", "Q8_0", "zero_shot")
    assert pd.isna(served["checkpoint"])


def test_arm_facts_name_each_prompt_variant_as_its_own_arm(tmp_path):
    data = tmp_path / "texts.csv"
    data.write_text("text,label\n" + "".join(f"text {i},{'spam' if i % 2 else 'ham'}\n" for i in range(6)))
    task = ("task:\n  name: spam\n  labels: [spam, ham]\n  data: {path: texts.csv, splits: {train: 0.5, test: 0.5}}\n  few_shot: {k: 0}\n"
            "  kind: classify\n  variants: {plain: {}, strict: {append: 'One word.'}}\n")
    config = _config(tmp_path, task=task, models="  - {name: local, backend: llamacpp, path: models/tiny.Q4_K_M.gguf,"
                                                  " family: tiny, quant: Q4_K_M}\n")
    factory = lambda entry, cfg_, endpoint=None: Scripted(entry, text='{"label": "spam"}')  # noqa: E731
    _run(config, factory=factory)
    with Store(tmp_path / "results.sqlite", create=False) as store:
        facts = store.arm_facts("r1")
    assert sorted(zip(facts["model"], facts["entry"], facts["variant"])) == [
        ("local@plain", "local", "plain"), ("local@strict", "local", "strict")]
    assert set(facts["model_bytes"]) == {1238.0}


def test_a_layout_1_database_gets_its_arm_facts_back_filled_from_what_it_holds(tmp_path):
    db = tmp_path / "results.sqlite"
    shutil.copy(V1, db)
    with Store(db, create=False) as store:
        run_id = store.latest_run_id()
        facts = store.arm_facts(run_id).set_index("model")
    assert list(facts.index) == ["gemma3-270m-f16", "gemma3-270m-q8_0", "gemma3-270m-q5_k_m", "gemma3-270m-q4_k_m"]
    assert list(facts["quant"]) == ["F16", "Q8_0", "Q5_K_M", "Q4_K_M"]
    assert set(facts["family"]) == {"gemma3-270m"} and set(facts["backend"]) == {"llamacpp"}
    # the sizes the engine reported at load time (layout 1 stored them in model_loads.engine_json)
    assert list(facts["model_bytes"]) == [536308224, 285018624, 253499904, 246587904]
    # the paths of the stored config, resolved from that config's folder as the run resolved them
    assert facts.loc["gemma3-270m-q8_0", "location"] == str(Path("/tmp/v1demo/models/gemma3-270m.Q8_0.gguf"))
    # back-filled into the file by the migration: a plain SQL reader sees them too
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*), SUM(model_bytes) FROM arms").fetchone() == (4, 1321414656)
    con.close()


def test_a_run_that_stored_calls_only_gets_arm_facts_from_its_calls(tmp_path):
    from benchmark.synthetic import SynthModel, write_db

    db = tmp_path / "s.sqlite"
    write_db(db, [SynthModel("a-f16", family="a", quant="F16"), SynthModel("a-q4", family="a", quant="Q4_K_M")], 6, 2)
    with Store(db, create=False) as store:
        facts = store.arm_facts("synthetic")
    assert list(facts["model"]) == ["a-f16", "a-q4"] and list(facts["quant"]) == ["F16", "Q4_K_M"]
    assert facts["model_bytes"].isna().all() and facts["location"].isna().all()


# --------------------------------------------------------------------------- one call row, frames


def test_frames_are_the_declared_columns_of_every_stored_call(tmp_path):
    from benchmark.store.rows import CallRow, frame_names

    _run(_config(tmp_path))
    with Store(tmp_path / "results.sqlite", create=False) as store:
        calls, items, loads = store.frames("r1")
        stored = store.count_calls("r1")
    assert list(calls.columns) == list(frame_names(CallRow)) and len(calls) == stored == 2 * 2 * 2
    assert calls["valid"].dtype == bool and calls["valid"].all() and set(calls["value"]) == {0.5}
    assert sorted(calls["model"].unique()) == ["local", "served"]
    assert list(items["position"]) == [0, 1] and {"ticker", "title"} <= set(items.columns)  # fields as columns
    # in process: loaded once per iteration block (the run's counterbalanced order); a server: once
    assert sorted(loads["model"]) == ["local", "local", "served"] and "engine_json" in loads


@pytest.mark.parametrize("setting, cap", [("", 96 * 16), (", max_reply_chars: 500", 500)])
def test_a_huge_reply_is_stored_cut_with_its_full_length(tmp_path, setting, cap):
    """1 MB replies (a server that ignores num_predict) are stored cut to the cap, their length kept:
    one valid (an answer, then a megabyte of blanks), one not (a megabyte of reasoning)."""
    padded = ANSWER + " " * 1_000_000
    rambling = json.dumps({"reasoning": "x" * 1_000_000, "sentiment": 0.25, "confidence": 0.5})
    replies = iter([padded, rambling] * 4)

    class Alternating(Scripted):
        def chat(self, messages, **kw):
            self.text = next(replies)
            return super().chat(messages, **kw)

    _run(_config(tmp_path, run=", num_predict: 96" + setting),
         factory=lambda entry, cfg_, endpoint=None: Alternating(entry))
    con = sqlite3.connect(tmp_path / "results.sqlite")
    rows = con.execute("SELECT raw_text, raw_chars, valid, value, error FROM calls ORDER BY id").fetchall()
    con.close()
    assert len(rows) == 8
    for k, (text, chars, valid, value, error) in enumerate(rows):
        full = padded if k % 2 == 0 else rambling
        assert text == full[:cap] and chars == len(full)
        if k % 2 == 0:
            assert valid == 1 and value == 0.5  # the parse saw the whole reply
        else:
            assert valid == 0 and "at most 200 characters" in error
    assert (tmp_path / "results.sqlite").stat().st_size < 1_000_000


# --------------------------------------------------------------------------- runs that stored no call


def test_a_run_that_failed_before_its_first_call_is_counted_and_not_picked_by_default(tmp_path):
    from core.errors import ShootoutError

    config = _config(tmp_path)
    _run(config, run_id="good")

    class Unreachable(Scripted):
        def load(self):
            raise ShootoutError("no server answers")

    with pytest.raises(ShootoutError, match="no server answers"):
        _run(config, run_id="failed", factory=lambda entry, cfg_, endpoint=None: Unreachable(entry))
    with Store(tmp_path / "results.sqlite", create=False) as store:
        summaries = {s.run_id: s for s in store.run_summaries()}
        assert store.latest_run_id() == "failed"  # the newest row ...
        assert store.latest_run_id(with_calls=True) == "good"  # ... but the newest run with something to report
    assert (summaries["good"].calls, summaries["good"].state) == (8, "finished")
    assert (summaries["failed"].calls, summaries["failed"].state) == (0, "no calls (stopped before its first call)")
    assert list(summaries) == ["good", "failed"]


def test_no_run_with_calls_means_no_default_run(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.create_run("empty", task="sentiment", seed=1, iterations=1, config_path=None, config_text="",
                         settings={}, versions={}, hardware={}, items=[])
        assert store.latest_run_id(with_calls=True) is None and store.latest_run_id() == "empty"
