"""SQLite results store: one row per model call, one transaction per call, WAL journal. This module
opens the file and writes it; ``reads`` holds what is read, ``files`` what other processes and
disks do to the file (read-only, damaged, locked), ``rows`` the rows, ``migrations`` the layouts.

A run row keeps the config text, the task's description, package versions and hardware; the
items a run asks about and the facts of its arms are stored with it, so a report never depends on
files that may change. The (run, model, iteration, item) key is unique, so a resumed run can never
store a call twice, and a run has one writing process at a time (``claim_run``).
Opening a database migrates it to the current layout (``benchmark.store.migrations``); a file that is
not a gguf-shootout database (not SQLite, another program's SQLite, or an empty one opened for
reading), a newer or a damaged one is refused before anything is written to it: no table, no WAL switch.

A full disk: opening for writing first checks that ``min_free_bytes`` are free (nothing is
created otherwise, and a new file that cannot be set up is removed again); a write that finds
the disk full raises :class:`DiskFull`, one message, the failed call rolled back and every call
stored before it kept, so the run resumes once space is freed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmark.store import files, migrations, rows
from benchmark.store.files import free_bytes, is_disk_full
from benchmark.store.reads import RunSummary, StoreReads
from benchmark.store.rows import ArmFacts, CallRow, ItemRow, LoadRow, WriterRow
from benchmark.store.speed import SpeedFacts
from core.errors import DiskFull, ShootoutError

MIN_FREE_BYTES = 16_000_000  # a call takes a few KB; below this much free space a run does not start
LOCK_WAIT_S = 60.0    # how long a write waits while another process holds the file (run.lock_wait_s)
_BUSY_STEP_S = 0.5    # SQLite's own wait per attempt; progress is told between attempts
_TELL_EVERY_S = 5.0

CALL_FIELDS = rows.names(CallRow)  # the columns a call row gives, in insert order


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _print_wait(path: Path, waited: float, limit: float) -> None:
    """The default progress while another process holds the file: a line now and then on stderr."""
    print(f"waiting for {path}: another process holds a write lock ({waited:.0f} s; giving up after {limit:.0f} s)",
          file=sys.stderr, flush=True)


class Store(StoreReads, SpeedFacts):
    """The results file. ``create``: open for writing (made if missing); otherwise for reading: a
    file this user cannot write (a read-only file, folder or mount) is then read without writing
    anything (an older layout migrated in memory). Before a file is opened for writing, its layout is
    read and ``PRAGMA quick_check`` run on a read-only connection: a damaged, foreign or newer file is
    refused untouched. A write waits up to ``lock_wait_s`` while another process holds the file,
    telling ``on_wait(seconds waited, limit)`` now and then."""

    def __init__(self, path: str | Path, *, create: bool = True, min_free_bytes: int = MIN_FREE_BYTES,
                 lock_wait_s: float = LOCK_WAIT_S, on_wait: Callable[[Path, float, float], None] | None = None,
                 check_s: float = files.CHECK_SECONDS):
        self.path = Path(path)
        self.lock_wait_s = lock_wait_s
        self.on_wait = on_wait or _print_wait
        self.readonly = False
        self._claims: set[str] = set()
        if not create and not self.path.is_file():
            raise ShootoutError(f"results database not found: {self.path}", "pass the file a run wrote (run.database)")
        cause = files.refuse_path(self.path, create)
        if create:  # preflight: nothing is created on a disk too full to hold a run
            free = free_bytes(self.path.parent)
            if free is not None and free < min_free_bytes:
                raise DiskFull(self.path, f"only {_mb(free)} free on the disk holding {self.path}; a run needs at "
                                          f"least {_mb(min_free_bytes)}",
                               "free some space, or set run.database to a file on another disk")
        existed = self.path.exists()
        if existed:
            probe = files.open_readonly(self.path, timeout=lock_wait_s)
            try:
                found = self._inspect(self.path, probe, create, check_s, lock_wait_s)
                if not create and cause:  # read where it lies, writing nothing
                    self.readonly = True
                    self.db = self._readable(probe, found)
                    return
            finally:
                if not self.readonly:
                    probe.close()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.path, f"the disk holding {self.path} is full ({exc.strerror})") from None
            raise ShootoutError(f"cannot create the folder of {self.path} ({exc.strerror or exc})",
                                "point run.database (or --db) at a file in a folder you can write") from None
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=_BUSY_STEP_S)
        self.db.row_factory = sqlite3.Row
        try:
            self._open(create)
        except BaseException:
            self.close()
            if not existed:  # no empty or half-made results file is left behind
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(str(self.path) + suffix).unlink(missing_ok=True)
            raise

    @classmethod
    def preflight(cls, path: str | Path, *, lock_wait_s: float = LOCK_WAIT_S,
                  check_s: float = files.CHECK_SECONDS) -> None:
        """Every refusal a run's opening of ``path`` would make, found without creating or changing
        anything (``shootout validate``)."""
        path = Path(path)
        files.refuse_path(path, True)
        if path.exists():
            probe = files.open_readonly(path, timeout=lock_wait_s)
            try:
                cls._inspect(path, probe, True, check_s, lock_wait_s)
            finally:
                probe.close()

    @staticmethod
    def _inspect(path: Path, con: sqlite3.Connection, create: bool, check_s: float, lock_wait_s: float) -> int:
        """The layout of the existing file ``path`` (open read-only on ``con``), read without writing;
        refuses what must not be opened."""
        try:
            found = migrations.version(con)
            problem = files.quick_check(con, check_s) if found else None
        except sqlite3.DatabaseError as exc:
            if files.is_damage(exc):
                raise files.Damaged(path, str(exc)) from None
            if files.is_busy(exc):
                raise files.StoreBusy(f"{path} stayed locked by another process for {lock_wait_s:.0f} s",
                                      "let the other process finish, then run the command again") from None
            raise ShootoutError(f"{path} is not an SQLite database ({exc})",
                                "pass the results file a run wrote (run.database), or a new file name") from None
        if problem:
            raise files.Damaged(path, f"quick_check: {problem}")
        if found is None:
            raise ShootoutError(f"{path} is an SQLite database of another program; gguf-shootout leaves it "
                                "untouched", "name a new file (run.database or --db) for the results")
        if found == 0 and not create:
            raise ShootoutError(f"{path} holds no gguf-shootout results (an empty database); it is left untouched",
                                "pass the results file a run wrote (run.database)")
        try:
            migrations.check(found)
        except ValueError as exc:
            raise ShootoutError(f"{path}: {exc}", "upgrade gguf-shootout, or name a new results file") from None
        return found

    @staticmethod
    def _readable(con: sqlite3.Connection, found: int) -> sqlite3.Connection:
        """A read-only file as this version reads it: as it is, or an older layout migrated in memory."""
        if found < migrations.VERSION:
            mem = sqlite3.connect(":memory:", isolation_level=None)
            con.backup(mem)
            con.close()
            migrations.migrate(mem)
            con = mem
        con.row_factory = sqlite3.Row
        return con

    def _open(self, create: bool) -> None:
        """WAL journal, full sync, foreign keys, and the current layout (the file was inspected)."""
        def setup() -> None:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            try:
                migrations.migrate(self.db)
            except ValueError as exc:
                raise ShootoutError(f"{self.path}: {exc}", "upgrade gguf-shootout, or name a new results file") from None

        with self._disk_guard():
            self._retrying(setup)

    # ----------------------------------------------------------------- writing
    def _retrying(self, work):
        """``work()``, again while another process holds the file, up to ``lock_wait_s``."""
        start = time.monotonic()
        told = -_TELL_EVERY_S
        while True:
            try:
                return work()
            except sqlite3.OperationalError as exc:
                if not files.is_busy(exc):
                    raise
                self._rollback()
                waited = time.monotonic() - start
                if waited >= self.lock_wait_s:
                    raise files.StoreBusy(
                        f"{self.path} stayed locked by another process for {self.lock_wait_s:g} s (it holds a write "
                        "transaction open); nothing more was written",
                        "let the other process finish (another `shootout run` on this file?), or raise "
                        "run.lock_wait_s; every call stored so far is kept") from None
                if waited - told >= _TELL_EVERY_S:
                    told = waited
                    self.on_wait(self.path, waited, self.lock_wait_s)
                time.sleep(min(_BUSY_STEP_S, max(0.0, self.lock_wait_s - waited)))

    def _write(self, work):
        """``work()`` in one transaction that holds the write lock from its start (BEGIN IMMEDIATE):
        waits while another process holds the file; a full disk becomes DiskFull (the failed
        transaction rolled back, the rest kept)."""
        if self.readonly:
            raise ShootoutError(f"{self.path} was opened read-only; nothing can be stored in it",
                                "make the file and its folder writable, or write to another file")

        def transaction():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                out = work()
                self.db.execute("COMMIT")
                return out
            except BaseException:
                self._rollback()
                raise

        with self._disk_guard():
            return self._retrying(transaction)

    @contextlib.contextmanager
    def _disk_guard(self):
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
        if not hasattr(self, "db"):
            return
        for run_id in list(self._claims):
            self.release_run(run_id)
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
                   task_info: dict | None = None, claim: bool = False) -> None:
        """A new run with its items; ``claim``: this process becomes the run's writer in the same
        transaction (``claim_run``), so that two processes starting one run id never both write it."""
        item_rows = [rows.values(ItemRow(run_id=run_id, item_id=it.id, position=pos, split=it.split, text=it.text,
                                         target_label=it.label, target_value=it.value,
                                         fields_json=json.dumps(it.fields, ensure_ascii=False)), ItemRow)
                     for pos, it in enumerate(items)]

        def work() -> None:
            if claim:
                self._take(run_id)
            if self.db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone():
                raise ShootoutError(f"run {run_id} was started by another process a moment ago",
                                    f"run the command again to resume it, or pick another run id")
            self.db.execute(
                "INSERT INTO runs (run_id, created_at, task, seed, iterations, config_path, config_text,"
                " settings_json, versions_json, hardware_json, task_json) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, now_iso(), task, seed, iterations, config_path, config_text, json.dumps(settings),
                 json.dumps(versions), json.dumps(hardware), json.dumps(task_info or {})))
            self.db.executemany(rows.insert_sql("items", ItemRow), item_rows)

        self._write(work)

    # a run has one writer: the process that claimed it, while it runs
    def _take(self, run_id: str) -> None:
        """Inside a write transaction: make this process the run's writer, or raise RunBusy."""
        pid, host, began = files.me()
        held = self.db.execute("SELECT pid, host, process_started, claimed_at FROM writers WHERE run_id=?",
                               (run_id,)).fetchone()
        if held is not None and (held[0], held[1]) != (pid, host) and files.alive(held[0], held[1], held[2]):
            where = "" if held[1] == files.HOST else f" on {held[1]}"
            raise files.RunBusy(
                f"run {run_id} is being written by another process (pid {held[0]}{where}, since {held[3]})",
                "let it finish, or start another run (leave out --run-id)" + (
                    "" if held[1] == files.HOST else f"; if nothing runs there any more: sqlite3 {self.path} "
                                                     f"\"DELETE FROM writers WHERE run_id='{run_id}'\""))
        self.db.execute(rows.insert_sql("writers", WriterRow, verb="INSERT OR REPLACE"),
                        rows.values(WriterRow(run_id=run_id, pid=pid, host=host, process_started=began,
                                              claimed_at=now_iso()), WriterRow))
        self._claims.add(run_id)

    def claim_run(self, run_id: str) -> None:
        """This process becomes the writer of ``run_id``; RunBusy (exit 2) names the process that is
        writing it. A claim whose process has ended is taken over (a killed run resumes)."""
        self._write(lambda: self._take(run_id))

    def release_run(self, run_id: str) -> None:
        """The run is no longer written by this process (best effort: a claim left behind dies with us)."""
        self._claims.discard(run_id)
        if self.readonly:
            return
        pid, host, _ = files.me()
        try:
            with self._disk_guard():
                self.db.execute("DELETE FROM writers WHERE run_id=? AND pid=? AND host=?", (run_id, pid, host))
        except (sqlite3.Error, ShootoutError):
            pass

    def finish_run(self, run_id: str) -> None:
        self._write(lambda: self.db.execute("UPDATE runs SET finished_at=? WHERE run_id=?", (now_iso(), run_id)))

    # ----------------------------------------------------------------- calls and loads
    @staticmethod
    def _call_values(row: CallRow | dict[str, Any], stamp: str) -> list[Any]:
        call = rows.row_of(CallRow, row)
        if call.created_at is None:
            call = dataclasses.replace(call, created_at=stamp)
        return rows.values(call, CallRow)

    def add_call(self, row: CallRow | dict[str, Any], *, over_failed: bool = False) -> bool:
        """Store one call in its own transaction; False if that call was already stored. ``over_failed``:
        a call stored as failed (finish_reason "failed") is replaced by this one (`run --retry-failed`)."""
        values = self._call_values(row, now_iso())
        sql = rows.insert_sql("calls", CallRow, verb="INSERT OR IGNORE")
        if over_failed:
            cols = [c for c in CALL_FIELDS if c not in ("run_id", "model", "iteration", "item_id")]
            sql = (rows.insert_sql("calls", CallRow) + " ON CONFLICT (run_id, model, iteration, item_id) DO UPDATE SET "
                   + ", ".join(f"{c} = excluded.{c}" for c in cols) + " WHERE calls.finish_reason = 'failed'")
        cur = self._write(lambda: self.db.execute(sql, values))
        return cur.rowcount == 1

    def add_calls(self, calls: Iterable[CallRow | dict[str, Any]]) -> None:
        """Many calls in one transaction (synthetic results, merges)."""
        stamp = now_iso()
        values = [self._call_values(r, stamp) for r in calls]
        self._write(lambda: self.db.executemany(rows.insert_sql("calls", CallRow), values))

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
        self._write(lambda: self.db.executemany(rows.insert_sql("model_loads", LoadRow), values))

    # ----------------------------------------------------------------- arms
    def add_arms(self, arms: Iterable[ArmFacts]) -> None:
        """The facts of arms as a run starts them; an arm already stored keeps its facts."""
        values = [rows.values(a, ArmFacts) for a in arms]
        self._write(lambda: self.db.executemany(rows.insert_sql("arms", ArmFacts, verb="INSERT OR IGNORE"), values))

    def complete_arm(self, run_id: str, model: str, *, model_bytes: int | None = None,
                     digest: str | None = None) -> None:
        """What a load tells about an arm (the server's model size, a digest) where it was not known."""
        self._write(lambda: self.db.execute(
            "UPDATE arms SET model_bytes = COALESCE(model_bytes, ?), digest = COALESCE(?, digest) "
            "WHERE run_id=? AND model=?", (model_bytes, digest, run_id, model)))

