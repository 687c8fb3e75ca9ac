"""The results file as other processes and disks leave it: read-only files, folders and mounts,
damaged files, locks held by other processes, and the process writing each run.

- Read-only: ``not_writable`` names the true cause (no permission on the file, a folder where
  SQLite cannot create its ``-wal`` and ``-shm`` files, a read-only file system); reading goes
  through ``open_readonly`` (SQLite's ``mode=ro``, or ``immutable=1`` where not even the shared-memory
  file can be made), which writes nothing.
- Damage: ``inspect`` reads the layout on a read-only connection and runs ``PRAGMA quick_check``
  within a time bound before anything opens the file for writing.
- Locks: ``is_busy`` tells SQLite's "database is locked" apart; the store waits and says so.
- Disks: ``free_bytes`` and ``is_disk_full`` (SQLite's and the system's ways of saying so).
- Writers: ``alive`` tells whether the process that claimed a run is still running (same pid, same
  start time, on this host).
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path

from core.errors import ShootoutError

CHECK_SECONDS = 10.0  # the longest a quick_check may take on open; a larger file is opened unchecked


class StoreBusy(ShootoutError):
    """Another process held a write lock on the results file for longer than the store waits."""


class RunBusy(ShootoutError):
    """Another running process is writing this run."""


class Damaged(ShootoutError):
    """The results file is damaged: refused untouched, with the way to recover what is readable."""

    def __init__(self, path: Path, detail: str):
        super().__init__(f"{path} is damaged ({detail}); it is left untouched",
                         f"copy what is readable into a new file with `shootout recover {path} RECOVERED.sqlite`, "
                         "then use that file")
        self.path = path


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        _code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "database is locked" in str(exc))


def is_damage(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and (
        _code(exc) == sqlite3.SQLITE_CORRUPT or "malformed" in str(exc))


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def not_writable(path: Path) -> str | None:
    """Why SQLite could not write ``path`` (an existing file or one to create), or None."""
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if _read_only_fs(folder):
        return f"{path} is on a read-only file system"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is read-only (this user may not write it)"
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        return (f"the folder {folder} is read-only for this user: SQLite must create {path.name}-wal and "
                f"{path.name}-shm beside the results file")
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists() and not os.access(side, os.W_OK):
            return f"{side} (SQLite's file beside the results file) is read-only for this user"
    return None


def refuse_path(path: Path, create: bool) -> str | None:
    """What refuses ``path`` before anything is opened (not a file; not writable, for a run); the
    reason it cannot be written, where it is only read."""
    if path.exists() and not path.is_file():
        raise ShootoutError(f"results database {path} is a folder, not a file",
                            "point run.database (or --db) at a file")
    cause = not_writable(path)
    if create and cause:
        exists = "; `shootout report` can still read this one" if path.exists() else ""
        raise ShootoutError(f"cannot write the results: {cause}",
                            f"make it writable, or set run.database (or --db) to a file in a folder you can "
                            f"write{exists}")
    return cause


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


def _uri(path: Path, **params: str) -> str:
    return path.absolute().as_uri() + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def _wal_mode(path: Path) -> bool:
    """Whether the file's header says WAL journal (bytes 18 and 19 are 2)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18] == 2 and head[19] == 2


def open_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that writes nothing, to the file or beside it. A WAL file whose ``-wal`` is absent
    has no process writing it and nothing pending: read as it is (``immutable=1``), leaving no
    ``-wal``/``-shm`` behind; otherwise ``mode=ro`` (which reads what the WAL holds), or
    ``immutable=1`` where SQLite cannot open its shared-memory file (a read-only folder or mount)."""
    if _wal_mode(path) and not Path(str(path) + "-wal").exists():
        return sqlite3.connect(_uri(path, mode="ro", immutable="1"), uri=True, isolation_level=None)
    con = sqlite3.connect(_uri(path, mode="ro"), uri=True, timeout=timeout, isolation_level=None)
    try:
        con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.DatabaseError as exc:
        if _code(exc) not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR):
            return con  # the caller's first read reports it (not a database, damaged)
        con.close()
    return sqlite3.connect(_uri(path, mode="ro", immutable="1"), uri=True, isolation_level=None)


def quick_check(con: sqlite3.Connection, seconds: float = CHECK_SECONDS) -> str | None:
    """SQLite's quick_check within ``seconds``: the problems it found, or None when it found none
    (or ran out of time: a large file is not held up)."""
    deadline = time.monotonic() + seconds
    con.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        found = [r[0] for r in con.execute("PRAGMA quick_check(5)")]
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            return None
        raise
    finally:
        con.set_progress_handler(None, 0)
    if found == ["ok"]:
        return None
    problems = [line.strip() for f in found for line in f.splitlines() if line.strip() and not line.startswith("***")]
    return problems[0] if problems else found[0]


# ------------------------------------------------------------------ the process writing a run

HOST = socket.gethostname()


def started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), None if it is not running."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:  # running, but not ours to look at
        return -1.0


def me() -> tuple[int, str, float | None]:
    return os.getpid(), HOST, started(os.getpid())


def alive(pid: int, host: str, process_started: float | None) -> bool:
    """Whether the process that claimed a run still runs (a process on another host is assumed to)."""
    if host != HOST:
        return True
    now = started(pid)
    if now is None:
        return False
    return process_started is None or now < 0 or abs(now - process_started) < 1.0
