"""What reports, merges and resumes read from the results file: runs (with their call counts), items,
calls, loads, the facts of each arm and the frames the statistics read. A damaged page met while
reading (past the check on open) is one message (``files.Damaged``), never a traceback."""

from __future__ import annotations

import functools
import json
import sqlite3
from typing import NamedTuple

from benchmark.store import files, rows
from benchmark.store.rows import ARM_FACT_COLUMNS, ArmFacts, LoadRow


class RunSummary(NamedTuple):
    run_id: str
    created_at: str
    finished_at: str | None
    task: str
    calls: int  # 0: the run failed before its first call

    @property
    def state(self) -> str:
        """What `shootout runs` says of it: finished, unfinished, or no calls stored."""
        if self.calls == 0:
            return "no calls (stopped before its first call)"
        return "finished" if self.finished_at else "unfinished"



def _guarded(method):
    """A read that finds a damaged page (past the check on open) raises Damaged: one message."""
    @functools.wraps(method)
    def read(self, *args, **kw):
        try:
            return method(self, *args, **kw)
        except sqlite3.DatabaseError as exc:
            if files.is_damage(exc):
                raise files.Damaged(self.path, str(exc)) from None
            raise
    return read


class StoreReads:
    """The reading half of ``Store`` (``self.db``: the connection, ``self.path``: the file)."""

    db: sqlite3.Connection

    @_guarded
    def run(self, run_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()

    def task_info(self, run_id: str) -> dict:
        row = self.run(run_id)
        return json.loads(row["task_json"] or "{}") if row else {}

    @_guarded
    def latest_run_id(self, with_calls: bool = False) -> str | None:
        """The newest run; ``with_calls``: the newest that stored at least one call."""
        where = " WHERE EXISTS (SELECT 1 FROM calls c WHERE c.run_id = runs.run_id)" if with_calls else ""
        row = self.db.execute(f"SELECT run_id FROM runs{where} ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    @_guarded
    def run_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY created_at, rowid")]

    @_guarded
    def run_summaries(self) -> list[RunSummary]:
        """Every run, oldest first, with its call count (0: it failed before its first call)."""
        found = self.db.execute(
            "SELECT r.run_id, r.created_at, r.finished_at, r.task, (SELECT COUNT(*) FROM calls c WHERE c.run_id = "
            "r.run_id) FROM runs r ORDER BY r.created_at, r.rowid").fetchall()
        return [RunSummary(*r) for r in found]

    @_guarded
    def items(self, run_id: str) -> list:
        """The run's items, in their stored order."""
        from benchmark.data.items import Item

        found = self.db.execute("SELECT * FROM items WHERE run_id=? ORDER BY position", (run_id,)).fetchall()
        return [Item(id=r["item_id"], text=r["text"], label=r["target_label"], value=r["target_value"],
                     split=r["split"], fields=json.loads(r["fields_json"] or "{}")) for r in found]

    @_guarded
    def done_keys(self, run_id: str, model: str, *, but_failed: bool = False) -> set[tuple[int, str]]:
        """(iteration, item) of the calls stored for a model; ``but_failed``: leaving out those stored as
        failed (finish_reason "failed": no usable answer from the server), to ask them again."""
        where = " AND finish_reason IS NOT 'failed'" if but_failed else ""
        found = self.db.execute(f"SELECT iteration, item_id FROM calls WHERE run_id=? AND model=?{where}",
                                (run_id, model))
        return {(r[0], r[1]) for r in found}

    @_guarded
    def failed_calls(self, run_id: str) -> int:
        """Calls of a run stored as failed (no usable answer from the server)."""
        return self.db.execute("SELECT COUNT(*) FROM calls WHERE run_id=? AND finish_reason='failed'",
                               (run_id,)).fetchone()[0]

    @_guarded
    def loads(self, run_id: str) -> list[LoadRow]:
        cols = rows.names(LoadRow)
        return [LoadRow(**dict(zip(cols, r))) for r in
                self.db.execute(f"SELECT {', '.join(cols)} FROM model_loads WHERE run_id=? ORDER BY id", (run_id,))]

    @_guarded
    def calls(self, run_id: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM calls WHERE run_id=? ORDER BY id", (run_id,)).fetchall()

    @_guarded
    def count_calls(self, run_id: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM calls WHERE run_id=?", (run_id,)).fetchone()[0]

    @_guarded
    def frames(self, run_id: str):
        """(calls, items, loads) of a run as DataFrames (``benchmark.store.frames``)."""
        from benchmark.store.frames import read_frames

        return read_frames(self.db, run_id)

    @_guarded
    def arm_rows(self, run_id: str) -> list[ArmFacts]:
        """Every arm of a run with its facts: stored ones, then those rebuilt from calls and loads for
        arms that stored none (older runs, synthetic ones)."""
        from benchmark.store.facts import derive_arms

        cols = rows.names(ArmFacts)
        stored = [ArmFacts(**dict(zip(cols, r))) for r in
                  self.db.execute(f"SELECT {', '.join(cols)} FROM arms WHERE run_id=? ORDER BY rowid", (run_id,))]
        return stored + derive_arms(self.db, run_id, skip={a.model for a in stored})

    def arm_facts(self, run_id: str):
        """One row per arm: model, entry, variant, backend, family, quant, prompt_style, model_bytes
        (the model file's size in bytes, or what the server reported; a float, NaN where unknown),
        location (GGUF path, tag or base URL), checkpoint."""
        import pandas as pd

        facts = [{c: getattr(a, c) for c in ARM_FACT_COLUMNS} for a in self.arm_rows(run_id)]
        out = pd.DataFrame(facts, columns=list(ARM_FACT_COLUMNS))
        out["model_bytes"] = out["model_bytes"].astype(float)
        out["checkpoint"] = out["checkpoint"].astype(float)
        return out
