"""The layouts of the results database as ordered migrations, applied from an empty database: a new
database is built by running them all, an older one by running those it misses. Each runs in one
transaction with the layout's stamp, so a database is never left half-migrated.

1. The first released layout (sentiment only: ``articles``, calls with ``sentiment`` and
   ``reasoning``). History: written before the row declarations, kept as it was.
2. Task-generic: ``items`` (text, gold label or value, split, fields as JSON); calls keep the whole
   validated answer as JSON beside the parsed label or value; articles become items.
3. Many endpoints: per call the endpoint, concurrency, start time and energy; per load the memory.
4. Facts of a run from the run: ``arms`` (size, quant, family, location, checkpoint of each arm,
   back-filled for older runs from their calls, loads and stored config); the reply's length before
   the cap (``calls.raw_chars``); ``writers``, the process writing each run.

5. Server calls under one failure policy and under load: per call the requests it took
   (``attempts``), the concurrency it ran under (a sweep's level), and for streamed calls the time to
   the first content token, the inter-token gaps (mean and each, in ms) and the end-to-end time.

6. Speed with the same rigour as quality: per call its iteration block and its arm's place in the
   block's order; ``run_speed`` (the run's order and the machine's measured memory bandwidth) and
   ``speed_bench`` (llama-bench-comparable figures of each in-process model).

Every table and column added from layout 2 on is derived from ``benchmark.store.rows``.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from benchmark.store import rows
from benchmark.store.rows import ArmFacts, BenchRow, CallRow, ItemRow, LoadRow, RunSpeedRow, WriterRow

APPLICATION = "gguf-shootout"

LAYOUT_1 = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE runs (
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
)""",
    """CREATE TABLE articles (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    article_id TEXT NOT NULL,
    ticker TEXT, company TEXT, title TEXT, url TEXT, published TEXT,
    text TEXT NOT NULL,
    expected_sentiment REAL,
    PRIMARY KEY (run_id, article_id)
)""",
    """CREATE TABLE model_loads (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    load_seconds REAL,
    warmup_seconds REAL,
    warmup_prompt_tokens INTEGER,
    engine_json TEXT,
    created_at TEXT NOT NULL
)""",
    """CREATE TABLE calls (
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
)""",
    "CREATE INDEX calls_run_model ON calls(run_id, model)",
]


def _layout_1(db: sqlite3.Connection) -> None:
    for sql in LAYOUT_1:
        db.execute(sql)


def _layout_2(db: sqlite3.Connection) -> None:
    """Articles become items (the hand label is the gold value; ticker, company, title, url and
    published go to fields); each valid call's reply is rebuilt as its answer JSON; sentiment becomes
    the generic value column."""
    db.execute(rows.create_table("items", ItemRow, upto=2, constraints=["PRIMARY KEY (run_id, item_id)"]))
    db.execute("""INSERT INTO items (run_id, item_id, position, split, text, target_label, target_value, fields_json)
        SELECT run_id, article_id, rowid, NULL, text, NULL, expected_sentiment,
               json_object('ticker', ticker, 'company', company, 'title', title, 'url', url, 'published', published)
        FROM articles""")
    db.execute("DROP TABLE articles")
    db.execute("ALTER TABLE runs ADD COLUMN task_json TEXT")
    db.execute("""UPDATE runs SET task_json = json_object('name', 'sentiment', 'kind', 'value', 'item_noun', 'article',
                                            'value_name', 'sentiment', 'labels', json_array(),
                                            'variants', json_array(NULL))
        WHERE task = 'sentiment'""")
    db.execute("ALTER TABLE calls RENAME COLUMN article_id TO item_id")
    db.execute("ALTER TABLE calls RENAME COLUMN sentiment TO value")
    for sql in rows.add_columns("calls", CallRow, 2):
        db.execute(sql)
    db.execute("UPDATE calls SET answer_json = json_object('reasoning', reasoning, 'sentiment', value, "
               "'confidence', confidence) WHERE valid = 1")
    db.execute("ALTER TABLE calls DROP COLUMN reasoning")


def _layout_3(db: sqlite3.Connection) -> None:
    """Per call the endpoint that answered, how many calls it had in flight, when it started (for
    throughput) and the energy it used where NVML reports it; per model load the endpoint and memory."""
    for sql in rows.add_columns("calls", CallRow, 3) + rows.add_columns("model_loads", LoadRow, 3):
        db.execute(sql)


def _layout_4(db: sqlite3.Connection) -> None:
    """Arms with their facts (older runs back-filled from what they hold), the reply's length before
    the cap, and the process writing each run."""
    from benchmark.store.facts import derive_arms

    db.execute(rows.create_table("arms", ArmFacts, upto=4, constraints=["PRIMARY KEY (run_id, model)"]))
    db.execute(rows.create_table("writers", WriterRow, upto=4))
    for sql in rows.add_columns("calls", CallRow, 4):
        db.execute(sql)
    for (run_id,) in db.execute("SELECT run_id FROM runs ORDER BY rowid").fetchall():
        db.executemany(rows.insert_sql("arms", ArmFacts), [rows.values(a, ArmFacts) for a in derive_arms(db, run_id)])


def _layout_5(db: sqlite3.Connection) -> None:
    """Per call: attempts, concurrency and the streamed timings (empty for calls stored before)."""
    for sql in rows.add_columns("calls", CallRow, 5):
        db.execute(sql)


def _layout_6(db: sqlite3.Connection) -> None:
    """Per call its block and slot (empty for calls stored before: the order they ran in was grouped or
    unknown); the run's order and bandwidth; the llama-bench-comparable figures."""
    for sql in rows.add_columns("calls", CallRow, 6):
        db.execute(sql)
    db.execute(rows.create_table("run_speed", RunSpeedRow, upto=6))
    db.execute(rows.create_table("speed_bench", BenchRow, upto=6))
    db.execute("CREATE INDEX speed_bench_run ON speed_bench(run_id, model)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_layout_1, _layout_2, _layout_3, _layout_4, _layout_5,
                                                          _layout_6]
VERSION = len(MIGRATIONS)


def tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def version(db: sqlite3.Connection) -> int | None:
    """The layout version of a gguf-shootout database; 0 for an empty one; None for a foreign one."""
    names = tables(db)
    if not names:
        return 0
    if "meta" not in names:
        return None
    found = dict(db.execute("SELECT key, value FROM meta").fetchall())
    app = found.get("application")
    if app is not None and app != APPLICATION:
        return None
    if app is None and not {"runs", "calls"} <= names:  # version 1 wrote no application key
        return None
    try:
        return int(found.get("schema_version", "0"))
    except ValueError:
        return None


def check(found: int | None) -> None:
    """Refuse a database this version cannot bring to its layout (ValueError naming why)."""
    if found is None:
        raise ValueError("not a gguf-shootout results database")
    if found > VERSION:
        raise ValueError(f"written by a newer gguf-shootout (layout {found}; this version reads up to {VERSION})")


def migrate(db: sqlite3.Connection) -> tuple[int, int]:
    """Bring ``db`` to the current layout, one transaction per migration; (version found, version now)."""
    found = version(db)
    check(found)
    for target in range(found + 1, VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if (version(db) or 0) >= target:  # another process migrated it while this one waited for the lock
                db.execute("COMMIT")
                continue
            MIGRATIONS[target - 1](db)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('application', ?)", (APPLICATION,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(target),))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return found, VERSION
