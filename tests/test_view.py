"""`shootout view`'s library side (benchmark.report.view): Datasette over a results database, read-only,
on 127.0.0.1, with canned queries whose answers are checked against the calls themselves."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT

pytest.importorskip("datasette", reason="the viewer needs Datasette: pip install 'gguf-shootout[view]'")
httpx = pytest.importorskip("httpx")


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _beside(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.glob(db.name + "-*"))


class Viewer:
    """`serve` in its own process (as `shootout view` runs it), on a free port chosen by the OS."""

    def __init__(self, db: Path, port: int = 0):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", "import sys; from benchmark.report.view import serve; "
                                      "serve(sys.argv[1], int(sys.argv[2]))", str(db), str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("the viewer ended: " + "".join(self.lines))
            self.lines.append(line)
            m = re.search(r"at (http://\S+) \(Ctrl-C", line)
            if m:
                self.url = m.group(1)
                break
        self.client = httpx.Client(timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get(self.url.rsplit("/", 1)[0] + "/-/versions.json").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the viewer never answered")

    def query(self, name: str, **params) -> list[dict]:
        r = self.client.get(f"{self.url}/{name}.json", params={**params, "_shape": "objects"})
        r.raise_for_status()
        body = r.json()
        assert body.get("ok", True), body
        return body["rows"]

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def label_db(tmp_path) -> Path:
    from benchmark.stats.label_synth import SynthLabelModel
    from benchmark.synthetic import write_label_db

    db = tmp_path / "results.sqlite"
    write_label_db(db, [SynthLabelModel("fam-f16", 0.8, quant="F16", invalid_rate=0.05),
                        SynthLabelModel("fam-q4", 0.7, quant="Q4_K_M", invalid_rate=0.1),
                        SynthLabelModel("fam-q8", 0.75, quant="Q8_0")], 40, 3, ["neg", "neu", "pos"], seed=4,
                   run_id="lab")
    return db


def _answers(db: Path, run_id: str) -> pd.DataFrame:
    con = sqlite3.connect(db)
    calls = pd.read_sql_query("SELECT model, iteration, item_id, valid, label, raw_text FROM calls WHERE run_id = ?",
                              con, params=(run_id,))
    con.close()
    calls["answer"] = np.where(calls["valid"] == 1, calls["label"].fillna("(invalid)"), "(invalid)")
    return calls


@pytest.mark.slow
def test_canned_queries_answer_from_the_calls_and_leave_the_file_untouched(label_db, tmp_path):
    copy = tmp_path / "copy" / "results.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(label_db, copy)
    before = _sha(copy)
    assert _beside(copy) == []
    viewer = Viewer(copy)
    try:
        assert viewer.url.startswith("http://127.0.0.1:")
        # arms, with each arm's reference by the report's rule (the family's widest quant)
        arms = {r["model"]: r for r in viewer.query("arms", run_id="lab")}
        assert {m: a["reference"] for m, a in arms.items()} == {"fam-f16": None, "fam-q4": "fam-f16",
                                                                "fam-q8": "fam-f16"}
        calls = _answers(label_db, "lab")
        assert {m: a["invalid"] for m, a in arms.items()} == \
            (calls["valid"] == 0).groupby(calls["model"]).sum().to_dict()
        # flips per arm: the same item and iteration answered differently from the reference
        ref = calls[calls["model"] == "fam-f16"].set_index(["item_id", "iteration"])["answer"]
        counts = {r["candidate"]: r for r in viewer.query("flip_counts", run_id="lab")}
        for cand in ("fam-q4", "fam-q8"):
            c = calls[calls["model"] == cand].set_index(["item_id", "iteration"])["answer"]
            differ = int((c != ref.reindex(c.index)).sum())
            assert differ > 0
            assert (counts[cand]["matched_calls"], counts[cand]["flips"]) == (len(c), differ)
        rows = viewer.query("flips", run_id="lab", model="fam-q4")
        assert len(rows) == counts["fam-q4"]["flips"]
        assert all(r["answer"] != r["reference_answer"] and r["reference"] == "fam-f16" for r in rows)
        # invalid replies, and one item's drill-down: every arm x iteration with its answer and gold
        assert len(viewer.query("invalid_replies", run_id="lab", model="")) == int((calls["valid"] == 0).sum())
        item = viewer.query("item", run_id="lab", item_id="item000007")
        want = calls[calls["item_id"] == "item000007"].sort_values(["model", "iteration"])
        assert [(r["model"], r["iteration"], r["answer"]) for r in item] == \
            list(zip(want["model"], want["iteration"], want["answer"]))
        con = sqlite3.connect(label_db)
        gold = con.execute("SELECT target_label FROM items WHERE item_id = 'item000007'").fetchone()[0]
        con.close()
        assert {r["gold"] for r in item} == {gold}
        # answers changing across iterations: exactly the (arm, item) pairs with more than one answer
        changing = {(r["model"], r["item_id"]) for r in viewer.query("changing_answers", run_id="lab", model="")}
        n = calls.groupby(["model", "item_id"])["answer"].nunique()
        assert changing == set(n[n > 1].index)
        # the metadata describes the tables and the canned queries
        meta = viewer.client.get(viewer.url + ".json").json()
        assert {"flips", "flip_counts", "invalid_replies", "item"} <= {q["name"] for q in meta["queries"]}
        # a statement that writes is refused
        r = viewer.client.get(viewer.url + ".json", params={"sql": "DELETE FROM calls"})
        assert r.status_code == 400 and "SELECT" in r.text
    finally:
        viewer.close()
    assert _sha(copy) == before
    assert _beside(copy) == []


@pytest.mark.slow
def test_flips_agree_with_the_html_explorer_on_a_value_run(tmp_path):
    """Two implementations of one definition (SQL in the viewer, numpy in the explorer): the neutral band
    and invalid replies included, they count the same flips per arm."""
    from benchmark import report as rpt
    from benchmark.report import html_data
    from benchmark.report.html import inputs_from_report
    from benchmark.store import Store
    from benchmark.synthetic import SynthModel, write_db

    db = tmp_path / "v.sqlite"
    write_db(db, [SynthModel("a", family="f", quant="F16"), SynthModel("b", family="f", quant="Q8_0", shift=0.05),
                  SynthModel("c", family="f", quant="Q4_K_M", invalid_rate=0.1)], 30, 3, seed=2, run_id="v",
             report={"neutral_band": 0.15})
    with Store(db, create=False) as store:
        rep = rpt.build(store, "v")
        inputs = inputs_from_report(rep, store, charts=[])
    fl = html_data.flags(inputs, html_data.cube(inputs))
    explorer = {a: int(fl["flip"][:, m].sum()) for m, a in enumerate(inputs.arms) if a in inputs.references}
    viewer = Viewer(db)
    try:
        counts = {r["candidate"]: r["flips"] for r in viewer.query("flip_counts", run_id="v")}
    finally:
        viewer.close()
    assert counts == explorer and min(counts.values()) > 0


def test_what_the_viewer_cannot_show_is_refused_and_left_untouched(tmp_path):
    from benchmark.report.view import check
    from core.errors import ShootoutError

    with pytest.raises(ShootoutError, match="not found"):
        check(tmp_path / "missing.sqlite")
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, but long enough to have a header " * 10)
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    old = tmp_path / "old.sqlite"
    shutil.copyfile(ROOT / "tests" / "fixtures" / "v1" / "results.sqlite", old)
    for path, message in ((text, "not an SQLite database"), (foreign, "no gguf-shootout results"),
                          (old, "results layout 1")):
        before = _sha(path)
        with pytest.raises(ShootoutError, match=message) as err:
            check(path)
        assert _sha(path) == before and _beside(path) == []
        if path is old:
            assert "shootout report --db" in err.value.hint


def test_a_port_in_use_is_one_clear_error(label_db):
    from benchmark.report.view import serve
    from core.errors import ShootoutError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ShootoutError, match=r"cannot listen on 127\.0\.0\.1:\d+") as err:
            serve(label_db, busy.getsockname()[1], announce=lambda *_: None)
    assert "--port" in err.value.hint


def test_a_file_a_run_is_writing_to_is_viewed_with_a_note(label_db):
    from benchmark.report.view import check, run_facts, wal_note
    from benchmark.store import Store

    assert wal_note(label_db) is None
    with Store(label_db, create=False) as store:   # a run holding the file open: its -wal beside it
        store.finish_run("lab")
        assert "a run is writing to results.sqlite" in wal_note(label_db)
        check(label_db)
        assert [f["run_id"] for f in run_facts(label_db)] == ["lab"]
    assert wal_note(label_db) is None
