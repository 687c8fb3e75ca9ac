"""SQLite results store: one row per model call, one transaction per call, WAL journal.

A run row keeps the config text, package versions and hardware. The (run, model, iteration,
article) key is unique, so a resumed run can never store a call twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    task TEXT NOT NULL,
    seed INTEGER NOT NULL,
    iterations INTEGER NOT NULL,
    config_path TEXT,
    config_text TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    versions_json TEXT NOT NULL,
    hardware_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS articles (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    article_id TEXT NOT NULL,
    ticker TEXT, company TEXT, title TEXT, url TEXT, published TEXT,
    text TEXT NOT NULL,
    expected_sentiment REAL,
    PRIMARY KEY (run_id, article_id)
);
CREATE TABLE IF NOT EXISTS model_loads (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    load_seconds REAL,
    warmup_seconds REAL,
    warmup_prompt_tokens INTEGER,
    engine_json TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    model TEXT NOT NULL,
    family TEXT, quant TEXT, backend TEXT, prompt_style TEXT,
    iteration INTEGER NOT NULL,
    article_id TEXT NOT NULL,
    position INTEGER,
    seed INTEGER,
    raw_text TEXT,
    valid INTEGER NOT NULL,
    error TEXT,
    reasoning TEXT, sentiment REAL, confidence REAL,
    finish_reason TEXT,
    prompt_tokens INTEGER, cached_tokens INTEGER, completion_tokens INTEGER,
    prompt_seconds REAL, gen_seconds REAL, wall_seconds REAL,
    created_at TEXT NOT NULL,
    UNIQUE (run_id, model, iteration, article_id)
);
CREATE INDEX IF NOT EXISTS calls_run_model ON calls(run_id, model);
"""

CALL_FIELDS = ("run_id", "model", "family", "quant", "backend", "prompt_style", "iteration", "article_id",
               "position", "seed", "raw_text", "valid", "error", "reasoning", "sentiment", "confidence",
               "finish_reason", "prompt_tokens", "cached_tokens", "completion_tokens", "prompt_seconds",
               "gen_seconds", "wall_seconds", "created_at")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(DDL)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- runs
    def create_run(self, run_id: str, *, task: str, seed: int, iterations: int, config_path: str | None,
                   config_text: str, settings: dict, versions: dict, hardware: dict,
                   articles: Iterable[Any]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO runs (run_id, created_at, task, seed, iterations, config_path, config_text,"
                " settings_json, versions_json, hardware_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, now_iso(), task, seed, iterations, config_path, config_text, json.dumps(settings),
                 json.dumps(versions), json.dumps(hardware)))
            self.db.executemany(
                "INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?)",
                [(run_id, a.id, a.ticker, a.company, a.title, a.url, a.published, a.text, a.expected_sentiment)
                 for a in articles])

    def run(self, run_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()

    def latest_run_id(self) -> str | None:
        row = self.db.execute("SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY created_at, rowid")]

    def finish_run(self, run_id: str) -> None:
        self.db.execute("UPDATE runs SET finished_at=? WHERE run_id=?", (now_iso(), run_id))

    def articles(self, run_id: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM articles WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall()

    # ----------------------------------------------------------------- calls
    def done_keys(self, run_id: str, model: str) -> set[tuple[int, str]]:
        rows = self.db.execute("SELECT iteration, article_id FROM calls WHERE run_id=? AND model=?",
                               (run_id, model))
        return {(r[0], r[1]) for r in rows}

    def add_call(self, row: dict[str, Any]) -> bool:
        """Store one call in its own transaction; False if that call was already stored."""
        row = {**row, "created_at": row.get("created_at") or now_iso()}
        values = [row.get(k) for k in CALL_FIELDS]
        cur = self.db.execute(
            f"INSERT OR IGNORE INTO calls ({', '.join(CALL_FIELDS)}) VALUES ({', '.join('?' * len(CALL_FIELDS))})",
            values)
        return cur.rowcount == 1

    def add_model_load(self, run_id: str, model: str, backend: str, load_seconds: float | None,
                       warmup_seconds: float | None, warmup_prompt_tokens: int | None, engine: dict) -> None:
        self.db.execute(
            "INSERT INTO model_loads (run_id, model, backend, load_seconds, warmup_seconds, warmup_prompt_tokens,"
            " engine_json, created_at) VALUES (?,?,?,?,?,?,?,?)",
            (run_id, model, backend, load_seconds, warmup_seconds, warmup_prompt_tokens, json.dumps(engine),
             now_iso()))

    def calls(self, run_id: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM calls WHERE run_id=? ORDER BY id", (run_id,)).fetchall()

    def count_calls(self, run_id: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM calls WHERE run_id=?", (run_id,)).fetchone()[0]
