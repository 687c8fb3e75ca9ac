"""SQLite results store: one row per model call, one transaction per call, WAL journal.

A run row keeps the config text, the task's description, package versions and hardware; the
items a run asks about are stored with it, so a report never depends on files that may change.
The (run, model, iteration, item) key is unique, so a resumed run can never store a call twice.
Opening a database migrates it to the current layout (``benchmark.store.migrations``); a file that is
not a gguf-shootout database (not SQLite, another program's SQLite, or an empty one opened for
reading) is refused before anything is written to it: no table, no WAL switch.

A full disk: opening for writing first checks that ``min_free_bytes`` are free (nothing is
created otherwise, and a new file that cannot be set up is removed again); a write that finds
the disk full raises :class:`DiskFull`, one message, the failed call rolled back and every call
stored before it kept, so the run resumes once space is freed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from benchmark.store import migrations, rows
from benchmark.store.rows import ARM_FACT_COLUMNS, ArmFacts, CallRow, ItemRow, LoadRow
from core.errors import DiskFull, ShootoutError

MIN_FREE_BYTES = 16_000_000  # a call takes a few KB; below this much free space a run does not start

CALL_FIELDS = rows.names(CallRow)  # the columns a call row gives, in insert order


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the disk holding ``path`` (its nearest existing folder); None if unknown."""
    p = Path(path).absolute()
    for folder in (p, *p.parents):
        if folder.is_dir():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def is_disk_full(exc: BaseException, path: str | Path | None = None) -> bool:
    """Whether an SQLite or OS error means the disk (or the quota) is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return True
    if "disk is full" in str(exc).lower():
        return True
    # an I/O error while writing on a disk with (almost) nothing left is the same thing
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR and path is not None:
        free = free_bytes(Path(path).parent)
        return free is not None and free < (1 << 20)
    return False


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class Store:
    def __init__(self, path: str | Path, *, create: bool = True, min_free_bytes: int = MIN_FREE_BYTES):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ShootoutError(f"results database not found: {self.path}", "pass the file a run wrote (run.database)")
        if self.path.exists() and not self.path.is_file():
            raise ShootoutError(f"results database {self.path} is a folder, not a file",
                                "point run.database (or --db) at a file")
        if create:  # preflight: nothing is created on a disk too full to hold a run
            free = free_bytes(self.path.parent)
            if free is not None and free < min_free_bytes:
                raise DiskFull(self.path, f"only {_mb(free)} free on the disk holding {self.path}; a run needs at "
                                          f"least {_mb(min_free_bytes)}",
                               "free some space, or set run.database to a file on another disk")
        existed = self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.path, f"the disk holding {self.path} is full ({exc.strerror})") from None
            raise ShootoutError(f"cannot create the folder of {self.path} ({exc.strerror or exc})",
                                "point run.database (or --db) at a file in a folder you can write") from None
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        try:
            self._open(create)
        except BaseException:
            self.close()
            if not existed:  # no empty or half-made results file is left behind
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(str(self.path) + suffix).unlink(missing_ok=True)
            raise

    def _open(self, create: bool) -> None:
        try:
            found = migrations.version(self.db)
        except sqlite3.DatabaseError as exc:
            raise ShootoutError(f"{self.path} is not an SQLite database ({exc})",
                                "pass the results file a run wrote (run.database), or a new file name") from None
        if found is None:
            raise ShootoutError(f"{self.path} is an SQLite database of another program; gguf-shootout leaves it "
                                "untouched", "name a new file (run.database or --db) for the results")
        if found == 0 and not create:
            raise ShootoutError(f"{self.path} holds no gguf-shootout results (an empty database); it is left untouched",
                                "pass the results file a run wrote (run.database)")
        with self._writing():
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            try:
                migrations.migrate(self.db)
            except ValueError as exc:
                raise ShootoutError(f"{self.path}: {exc}", "upgrade gguf-shootout, or name a new results file") from None

    @contextlib.contextmanager
    def _writing(self):
        """A write; a full disk becomes DiskFull (the failed transaction rolled back, the rest kept)."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if not is_disk_full(exc, self.path):
                raise
            self._rollback()
            raise DiskFull(self.path, f"the disk holding {self.path} is full ({exc}); every call stored before "
                                      "this one is kept") from None

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:  # a full disk can fail the closing checkpoint; the WAL keeps every commit
            pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- runs
    def create_run(self, run_id: str, *, task: str, seed: int, iterations: int, config_path: str | None,
                   config_text: str, settings: dict, versions: dict, hardware: dict, items: Iterable[Any],
                   task_info: dict | None = None) -> None:
        item_rows = [rows.values(ItemRow(run_id=run_id, item_id=it.id, position=pos, split=it.split, text=it.text,
                                         target_label=it.label, target_value=it.value,
                                         fields_json=json.dumps(it.fields, ensure_ascii=False)), ItemRow)
                     for pos, it in enumerate(items)]

        def work() -> None:
            self.db.execute(
                "INSERT INTO runs (run_id, created_at, task, seed, iterations, config_path, config_text,"
                " settings_json, versions_json, hardware_json, task_json) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, now_iso(), task, seed, iterations, config_path, config_text, json.dumps(settings),
                 json.dumps(versions), json.dumps(hardware), json.dumps(task_info or {})))
            self.db.executemany(rows.insert_sql("items", ItemRow), item_rows)

        with self._writing():
            self._transaction(work)

    def _transaction(self, work) -> None:
        self.db.execute("BEGIN")
        try:
            work()
            self.db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def run(self, run_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()

    def task_info(self, run_id: str) -> dict:
        row = self.run(run_id)
        return json.loads(row["task_json"] or "{}") if row else {}

    def latest_run_id(self) -> str | None:
        row = self.db.execute("SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY created_at, rowid")]

    def finish_run(self, run_id: str) -> None:
        with self._writing():
            self.db.execute("UPDATE runs SET finished_at=? WHERE run_id=?", (now_iso(), run_id))

    def items(self, run_id: str) -> list:
        """The run's items, in their stored order."""
        from benchmark.tasks.base import Item

        rows = self.db.execute("SELECT * FROM items WHERE run_id=? ORDER BY position", (run_id,)).fetchall()
        return [Item(id=r["item_id"], text=r["text"], label=r["target_label"], value=r["target_value"],
                     split=r["split"], fields=json.loads(r["fields_json"] or "{}")) for r in rows]

    # ----------------------------------------------------------------- calls
    def done_keys(self, run_id: str, model: str) -> set[tuple[int, str]]:
        rows = self.db.execute("SELECT iteration, item_id FROM calls WHERE run_id=? AND model=?", (run_id, model))
        return {(r[0], r[1]) for r in rows}

    @staticmethod
    def _call_values(row: CallRow | dict[str, Any], stamp: str) -> list[Any]:
        call = rows.row_of(CallRow, row)
        if call.created_at is None:
            call = dataclasses.replace(call, created_at=stamp)
        return rows.values(call, CallRow)

    def add_call(self, row: CallRow | dict[str, Any]) -> bool:
        """Store one call in its own transaction; False if that call was already stored."""
        values = self._call_values(row, now_iso())
        with self._writing():
            cur = self.db.execute(rows.insert_sql("calls", CallRow, verb="INSERT OR IGNORE"), values)
        return cur.rowcount == 1

    def add_calls(self, calls: Iterable[CallRow | dict[str, Any]]) -> None:
        """Many calls in one transaction (synthetic results, merges)."""
        stamp = now_iso()
        values = [self._call_values(r, stamp) for r in calls]
        with self._writing():
            self._transaction(lambda: self.db.executemany(rows.insert_sql("calls", CallRow), values))

    def add_model_load(self, run_id: str, model: str, backend: str, load_seconds: float | None,
                       warmup_seconds: float | None, warmup_prompt_tokens: int | None, engine: dict, *,
                       endpoint: str | None = None, memory: dict | None = None) -> None:
        """One model load (per endpoint), with the engine's facts and the memory it took
        (``memory``: rss_mb, kv_cache_mb, vram_mb, where known)."""
        mem = memory or {}
        self.add_loads([LoadRow(run_id=run_id, model=model, backend=backend, load_seconds=load_seconds,
                                warmup_seconds=warmup_seconds, warmup_prompt_tokens=warmup_prompt_tokens,
                                engine_json=json.dumps(engine), created_at=now_iso(), endpoint=endpoint,
                                rss_mb=mem.get("rss_mb"), kv_cache_mb=mem.get("kv_cache_mb"),
                                vram_mb=mem.get("vram_mb"))])

    def add_loads(self, loads: Iterable[LoadRow | dict[str, Any]]) -> None:
        values = [rows.values(rows.row_of(LoadRow, r), LoadRow) for r in loads]
        with self._writing():
            self._transaction(lambda: self.db.executemany(rows.insert_sql("model_loads", LoadRow), values))

    def loads(self, run_id: str) -> list[LoadRow]:
        cols = rows.names(LoadRow)
        return [LoadRow(**dict(zip(cols, r))) for r in
                self.db.execute(f"SELECT {', '.join(cols)} FROM model_loads WHERE run_id=? ORDER BY id", (run_id,))]

    # ----------------------------------------------------------------- arms
    def add_arms(self, arms: Iterable[ArmFacts]) -> None:
        """The facts of arms as a run starts them; an arm already stored keeps its facts."""
        values = [rows.values(a, ArmFacts) for a in arms]
        with self._writing():
            self._transaction(lambda: self.db.executemany(rows.insert_sql("arms", ArmFacts, verb="INSERT OR IGNORE"),
                                                          values))

    def complete_arm(self, run_id: str, model: str, *, model_bytes: int | None = None,
                     digest: str | None = None) -> None:
        """What a load tells about an arm (the server's model size, a digest) where it was not known."""
        with self._writing():
            self.db.execute("UPDATE arms SET model_bytes = COALESCE(model_bytes, ?), digest = COALESCE(?, digest) "
                            "WHERE run_id=? AND model=?", (model_bytes, digest, run_id, model))

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
        (the model file's size in bytes, or what the server reported; NaN where unknown; a float), location
        (GGUF path, tag or base URL), checkpoint."""
        import pandas as pd

        facts = [{c: getattr(a, c) for c in ARM_FACT_COLUMNS} for a in self.arm_rows(run_id)]
        out = pd.DataFrame(facts, columns=list(ARM_FACT_COLUMNS))
        out["model_bytes"] = out["model_bytes"].astype(float)
        out["checkpoint"] = out["checkpoint"].astype(float)
        return out

    def frames(self, run_id: str):
        """(calls, items, loads) of a run as DataFrames (``benchmark.store.frames``)."""
        from benchmark.store.frames import read_frames

        return read_frames(self.db, run_id)

    def calls(self, run_id: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM calls WHERE run_id=? ORDER BY id", (run_id,)).fetchall()

    def count_calls(self, run_id: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM calls WHERE run_id=?", (run_id,)).fetchone()[0]
