"""`shootout merge` in process on real files: shards of one grid, run by the runner on a scripted
backend, merged into one run whose calls, loads and arm facts are the shards' own."""

from __future__ import annotations

import sqlite3

import pytest

from benchmark.run.merge import merge
from benchmark.store import Store
from core.errors import ShootoutError
from tests.test_store import _config, _run


def _calls(db, run_id):
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT model, iteration, item_id, position, seed, raw_text, raw_chars, valid, "
                                  "value, family, quant, backend, prompt_style FROM calls WHERE run_id=?",
                                  (run_id,)).fetchall())
    finally:
        con.close()


def test_shards_merge_into_the_calls_loads_and_arm_facts_of_the_whole_grid(tmp_path):
    full, s1, s2 = (tmp_path / n for n in ("full", "s1", "s2"))
    for folder in (full, s1, s2):
        folder.mkdir()
    _run(_config(full), run_id="all")
    _run(_config(s1), run_id="a", shard=(1, 2, "model"))
    _run(_config(s2), run_id="b", shard=(2, 2, "model"))
    out = tmp_path / "merged.sqlite"
    res = merge([str(s1 / "results.sqlite"), str(s2 / "results.sqlite")], out, run_id="m")
    assert (res.run_id, res.calls, res.finished) == ("m", 8, True)
    assert _calls(out, "m") == _calls(full / "results.sqlite", "all")
    with Store(out, create=False) as merged, Store(full / "results.sqlite", create=False) as whole:
        facts, expected = merged.arm_facts("m"), whole.arm_facts("all")
        assert sorted(l.model for l in merged.loads("m")) == ["local", "served"]
        assert merged.run("m")["finished_at"] is not None
    by = ["model", "entry", "backend", "family", "quant", "model_bytes", "checkpoint"]
    assert facts.sort_values("model")[by].reset_index(drop=True).equals(
        expected.sort_values("model")[by].reset_index(drop=True))


def test_a_call_stored_by_two_shards_is_refused_and_nothing_is_written(tmp_path):
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    s1.mkdir(), s2.mkdir()
    _run(_config(s1), run_id="a")
    _run(_config(s2), run_id="b", shard=(2, 2, "model"))
    out = tmp_path / "merged.sqlite"
    with pytest.raises(ShootoutError, match="is stored in both"):
        merge([str(s1 / "results.sqlite"), str(s2 / "results.sqlite")], out)
    assert not out.exists()
