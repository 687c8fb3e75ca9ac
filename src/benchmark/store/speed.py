"""The speed facts of a run in the results file: the order its arms ran in, the machine's memory
bandwidth (``run_speed``) and the llama-bench-comparable figures of its in-process models
(``speed_bench``). One part of ``Store`` (``self.db``, ``self._write``)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Iterable

from benchmark.store import rows
from benchmark.store.rows import BenchRow, RunSpeedRow


class SpeedFacts:
    """The writing and reading of a run's speed facts."""

    def set_order(self, run_id: str, order: dict) -> None:
        """The run's order (``benchmark.run.order``), stored once: a resumed run keeps the first."""
        def work():
            self.db.execute(rows.insert_sql("run_speed", RunSpeedRow, verb="INSERT OR IGNORE"),
                            rows.values(RunSpeedRow(run_id=run_id), RunSpeedRow))
            self.db.execute("UPDATE run_speed SET order_json = COALESCE(order_json, ?) WHERE run_id=?",
                            (json.dumps(order), run_id))
        self._write(work)

    def order(self, run_id: str) -> dict | None:
        row = self.db.execute("SELECT order_json FROM run_speed WHERE run_id=?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def set_bandwidth(self, run_id: str, gbs: float, how: dict) -> None:
        def work():
            self.db.execute(rows.insert_sql("run_speed", RunSpeedRow, verb="INSERT OR IGNORE"),
                            rows.values(RunSpeedRow(run_id=run_id), RunSpeedRow))
            self.db.execute("UPDATE run_speed SET bandwidth_gbs=?, bandwidth_json=? WHERE run_id=?",
                            (gbs, json.dumps(how), run_id))
        self._write(work)

    def bandwidth(self, run_id: str) -> tuple[float, dict] | None:
        """(GB/s, how it was measured) of the run's copy test, or None."""
        row = self.db.execute("SELECT bandwidth_gbs, bandwidth_json FROM run_speed WHERE run_id=?",
                              (run_id,)).fetchone()
        return (float(row[0]), json.loads(row[1] or "{}")) if row and row[0] is not None else None

    def add_bench(self, bench: Iterable[BenchRow | dict]) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"  # as ``db.now_iso``
        values = []
        for b in bench:
            b = rows.row_of(BenchRow, b)
            values.append([stamp if n == "created_at" and v is None else v
                           for n, v in zip(rows.names(BenchRow), rows.values(b, BenchRow))])
        self._write(lambda: self.db.executemany(rows.insert_sql("speed_bench", BenchRow), values))

    def bench_rows(self, run_id: str) -> list[BenchRow]:
        cols = rows.names(BenchRow)
        return [BenchRow(**dict(zip(cols, r))) for r in self.db.execute(
            f"SELECT {', '.join(cols)} FROM speed_bench WHERE run_id=? ORDER BY rowid", (run_id,))]

    def speed_facts(self, run_id: str) -> dict:
        """The run's order, bandwidth and speed blocks, to be kept in another file (``keep_speed_facts``)."""
        return {"order": self.order(run_id), "bandwidth": self.bandwidth(run_id),
                "bench": [dataclasses.asdict(b) for b in self.bench_rows(run_id)]}

    def keep_speed_facts(self, run_id: str, facts: dict) -> None:
        """One box's speed facts (``speed_facts``) into ``run_id`` here, as a merge keeps them: the first
        box's order and bandwidth, every box's speed blocks."""
        if facts.get("order") and not self.order(run_id):
            self.set_order(run_id, facts["order"])
        if facts.get("bandwidth") and not self.bandwidth(run_id):
            self.set_bandwidth(run_id, *facts["bandwidth"])
        self.add_bench([{**b, "run_id": run_id} for b in facts.get("bench") or []])

    def benched(self, run_id: str) -> set[str]:
        """The models (entries) whose figures the run holds."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT model FROM speed_bench WHERE run_id=?", (run_id,))}
