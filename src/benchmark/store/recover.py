"""Copy what is readable of a damaged results file into a new one (`shootout recover SRC DST`).

The damaged file is only read (SQLite's read-only mode; nothing is written to it or beside it where
the folder is read-only). Each table is read in rowid order; where a damaged page stops the scan,
the scan resumes at the next rowid that can be read, so only the rows on damaged pages are lost.
Runs whose row was read are kept with their items, calls, loads and arm facts; rows of runs whose
row was lost are left out (they could not be reported). The new file gets the damaged file's layout
and is then opened as any results file (migrated to the current layout, checked).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.store import files
from core.errors import ShootoutError

_MIN_ROWID, _MAX_ROWID = 0, (1 << 62)  # the tables' rowids count up from 1
_PAST_THE_END = 10_000  # rowids looked up past the last one found, for rows the damaged pages hid


@dataclass
class Recovered:
    runs: dict[str, int] = field(default_factory=dict)      # run id -> calls recovered
    rows: dict[str, int] = field(default_factory=dict)      # table -> rows copied
    damaged: dict[str, int] = field(default_factory=dict)   # table -> stretches of rows that could not be read


class _Watch:
    """Interrupts a statement that runs on without yielding a row (a damaged page can send SQLite's
    b-tree walk round in a loop): after ``budget`` progress calls (1,000 VM steps each) since the
    last ``reset``."""

    def __init__(self, con: sqlite3.Connection, budget: int = 20_000):
        self.count, self.budget = 0, budget
        con.set_progress_handler(self._tick, 1000)

    def _tick(self) -> int:
        self.count += 1
        return int(self.count > self.budget)

    def reset(self) -> None:
        self.count = 0


def _first_from(con: sqlite3.Connection, table: str, rowid: int, watch: _Watch) -> tuple[bool, int | None]:
    """(readable, the first rowid >= ``rowid``) where the seek to ``rowid`` meets no damaged page."""
    watch.reset()
    try:
        row = con.execute(f"SELECT rowid FROM {table} NOT INDEXED WHERE rowid >= ? ORDER BY rowid LIMIT 1", (rowid,)).fetchone()
        return True, None if row is None else row[0]
    except sqlite3.DatabaseError:
        return False, None


def _next_readable(con: sqlite3.Connection, table: str, after: int, watch: _Watch) -> int | None:
    """The first rowid past ``after`` that a seek can reach, or None: probes ever further ahead,
    then narrows down to the first probe past the damaged pages, so no readable row is skipped."""
    step = 1
    while after + step < _MAX_ROWID:
        ok, found = _first_from(con, table, after + step, watch)
        if ok:
            lo, hi = after + step // 2, after + step  # lo unreadable (or ``after``), hi readable
            while hi - lo > 1:
                mid = (lo + hi) // 2
                ok_mid, found_mid = _first_from(con, table, mid, watch)
                if ok_mid:
                    hi, found = mid, found_mid
                else:
                    lo = mid
            return found
        step *= 2
    return None


def _scan(con: sqlite3.Connection, table: str, out: Recovered, watch: _Watch):
    """(rowid, *columns) of the rows a rowid-ordered scan reaches, jumping over damaged pages."""
    last = start = _MIN_ROWID
    while True:
        watch.reset()
        try:
            for row in con.execute(f"SELECT rowid, * FROM {table} NOT INDEXED WHERE rowid >= ? ORDER BY rowid", (start,)):
                watch.reset()
                if row[0] <= last and last != _MIN_ROWID:  # a damaged page pointing back: the scan would loop
                    raise sqlite3.DatabaseError("rowids out of order")
                last = row[0]
                yield row
            return
        except sqlite3.DatabaseError:
            out.damaged[table] = out.damaged.get(table, 0) + 1
            after = max(last, start)  # past the last row read, or past a start that could not be read
            found = _next_readable(con, table, after, watch)
            if found is None or found <= after:
                return
            start = found


def _readable_rows(con: sqlite3.Connection, table: str, out: Recovered, watch: _Watch,
                   max_lookups: int = 1_000_000) -> list[tuple]:
    """Every row of ``table`` that can be read: the scan's, then, where the scan met damage, each
    rowid it did not reach looked up on its own (a damaged interior page misroutes a scan past rows
    that a lookup still finds), up to the largest rowid known and a stretch past it."""
    found = {row[0]: row for row in _scan(con, table, out, watch)}
    if not out.damaged.get(table):
        return [found[k] for k in sorted(found)]
    watch.reset()
    try:
        top = con.execute(f"SELECT max(rowid) FROM {table} NOT INDEXED").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = 0
    end = max([top, *found]) + _PAST_THE_END
    budget, misses = max_lookups, 0
    for rowid in range(1, end):
        if rowid in found:
            misses = 0
            continue
        if budget <= 0 or (rowid > top and misses > _PAST_THE_END):
            break
        budget -= 1
        watch.reset()
        try:
            row = con.execute(f"SELECT rowid, * FROM {table} NOT INDEXED WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is None:
            misses += 1
        else:
            found[rowid], misses = row, 0
    return [found[k] for k in sorted(found)]


def _schema(con: sqlite3.Connection) -> list[tuple[str, str, str]]:
    try:
        return con.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                           "AND name NOT LIKE 'sqlite_%' ORDER BY rowid").fetchall()
    except sqlite3.DatabaseError as exc:
        raise ShootoutError(f"nothing of the file's layout can be read ({exc}); nothing to recover",
                            "restore the file from a backup") from None


def recover(src: str | Path, dst: str | Path) -> Recovered:
    """Copy the readable runs (runs, items, calls, model loads, arm facts) of ``src`` into the new
    file ``dst``; ``src`` is left as it is."""
    from benchmark.store import Store

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ShootoutError(f"results database not found: {src}", "pass the damaged results file")
    if dst.exists():
        raise ShootoutError(f"{dst} already exists", "name a new file: recover never writes into an existing one")
    source = files.open_readonly(src, timeout=5)
    watch = _Watch(source)
    out = Recovered()
    try:
        schema = _schema(source)
        names = [name for kind, name, _ in schema if kind == "table"]
        if not {"runs", "meta"} <= set(names):
            raise ShootoutError(f"{src} holds no readable gguf-shootout runs (tables found: {', '.join(names) or 'none'})",
                                "restore the file from a backup")
        dst.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(dst, isolation_level=None)
        try:
            target.execute("BEGIN")
            for kind, name, sql in schema:
                if kind == "table":
                    target.execute(sql)
            for name in names:
                cols = [c[1] for c in source.execute(f"PRAGMA table_info({name})")]
                insert = (f"INSERT OR IGNORE INTO {name} (rowid, {', '.join(cols)}) "
                          f"VALUES ({', '.join('?' * (len(cols) + 1))})")
                n = 0
                for row in _readable_rows(source, name, out, watch):
                    n += target.execute(insert, row).rowcount
                out.rows[name] = n
            runs = [r[0] for r in target.execute("SELECT run_id FROM runs")]
            for name in names:
                if name in ("runs", "meta"):
                    continue
                if "run_id" in [c[1] for c in target.execute(f"PRAGMA table_info({name})")]:
                    target.execute(f"DELETE FROM {name} WHERE run_id NOT IN (SELECT run_id FROM runs)")
            if "writers" in names:
                target.execute("DELETE FROM writers")  # no process writes the recovered copy
            for kind, name, sql in schema:
                if kind in ("index", "trigger", "view"):
                    target.execute(sql)
            for run_id in runs:
                out.runs[run_id] = target.execute("SELECT COUNT(*) FROM calls WHERE run_id=?", (run_id,)).fetchone()[0]
            target.execute("COMMIT")
        except BaseException:
            target.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(dst) + suffix).unlink(missing_ok=True)
            raise
        target.close()
    finally:
        source.close()
    Store(dst).close()  # the current layout, and the checks every results file passes
    return out
