"""Numbered migrations of the results database, applied in order when a database is opened.

Version 1 is the first released layout (sentiment only: ``articles``, calls with ``sentiment``
and ``reasoning`` columns). Version 2 is task-generic: ``items`` (text, gold label or value,
split, fields as JSON) and calls keeping the whole validated answer as JSON beside the parsed
label or value. Version 3 records the endpoint, concurrency, start time and energy of each call
and the memory of each model load. Each migration runs in one transaction; a database is never left half-migrated.
"""

from __future__ import annotations

import sqlite3

APPLICATION = "gguf-shootout"

# the items a run asks about (layout 2 on)
ITEMS_TABLE = """
CREATE TABLE items (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    item_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    split TEXT,
    text TEXT NOT NULL,
    target_label TEXT,
    target_value REAL,
    fields_json TEXT,
    PRIMARY KEY (run_id, item_id)
);
"""

# the current layout, for a new database
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs (
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
    hardware_json TEXT NOT NULL,
    task_json TEXT
);
""" + ITEMS_TABLE + """
CREATE TABLE model_loads (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    load_seconds REAL,
    warmup_seconds REAL,
    warmup_prompt_tokens INTEGER,
    engine_json TEXT,
    created_at TEXT NOT NULL,
    endpoint TEXT, rss_mb REAL, kv_cache_mb REAL, vram_mb REAL
);
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    model TEXT NOT NULL,
    family TEXT, quant TEXT, backend TEXT, prompt_style TEXT, variant TEXT,
    iteration INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    position INTEGER,
    seed INTEGER,
    raw_text TEXT,
    valid INTEGER NOT NULL,
    error TEXT,
    answer_json TEXT,
    label TEXT, value REAL, confidence REAL,
    label_probs_json TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER, cached_tokens INTEGER, completion_tokens INTEGER,
    prompt_seconds REAL, gen_seconds REAL, wall_seconds REAL,
    created_at TEXT NOT NULL,
    endpoint TEXT, in_flight INTEGER, started_at REAL, energy_j REAL,
    UNIQUE (run_id, model, iteration, item_id)
);
CREATE INDEX calls_run_model ON calls(run_id, model);
"""
VERSION = 3


# Sentiment-only layout -> task-generic layout. Articles become items (the hand label is the gold
# value; ticker, company, title, url and published go to fields); each valid call's reply is
# rebuilt as its answer JSON; sentiment becomes the generic value column.
V1_TO_V2 = """
    """ + ITEMS_TABLE + """
    INSERT INTO items (run_id, item_id, position, split, text, target_label, target_value, fields_json)
        SELECT run_id, article_id, rowid, NULL, text, NULL, expected_sentiment,
               json_object('ticker', ticker, 'company', company, 'title', title, 'url', url, 'published', published)
        FROM articles;
    DROP TABLE articles;
    ALTER TABLE runs ADD COLUMN task_json TEXT;
    UPDATE runs SET task_json = json_object('name', 'sentiment', 'kind', 'value', 'item_noun', 'article',
                                            'value_name', 'sentiment', 'labels', json_array(),
                                            'variants', json_array(NULL))
        WHERE task = 'sentiment';
    ALTER TABLE calls RENAME COLUMN article_id TO item_id;
    ALTER TABLE calls RENAME COLUMN sentiment TO value;
    ALTER TABLE calls ADD COLUMN variant TEXT;
    ALTER TABLE calls ADD COLUMN answer_json TEXT;
    ALTER TABLE calls ADD COLUMN label TEXT;
    ALTER TABLE calls ADD COLUMN label_probs_json TEXT;
    UPDATE calls SET answer_json = json_object('reasoning', reasoning, 'sentiment', value, 'confidence', confidence)
        WHERE valid = 1;
    ALTER TABLE calls DROP COLUMN reasoning;
"""

# Many endpoints and several boxes: per call the endpoint that answered, how many calls it had in
# flight, when the call started (for throughput) and the energy it used where NVML reports it; per
# model load the endpoint and the memory it took.
V2_TO_V3 = """
    ALTER TABLE calls ADD COLUMN endpoint TEXT;
    ALTER TABLE calls ADD COLUMN in_flight INTEGER;
    ALTER TABLE calls ADD COLUMN started_at REAL;
    ALTER TABLE calls ADD COLUMN energy_j REAL;
    ALTER TABLE model_loads ADD COLUMN endpoint TEXT;
    ALTER TABLE model_loads ADD COLUMN rss_mb REAL;
    ALTER TABLE model_loads ADD COLUMN kv_cache_mb REAL;
    ALTER TABLE model_loads ADD COLUMN vram_mb REAL;
"""

MIGRATIONS = {2: V1_TO_V2, 3: V2_TO_V3}  # target version -> SQL from the version before


def tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def version(db: sqlite3.Connection) -> int | None:
    """The layout version of a gguf-shootout database; 0 for an empty one; None for a foreign one."""
    names = tables(db)
    if not names:
        return 0
    if "meta" not in names:
        return None
    rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
    app = rows.get("application")
    if app is not None and app != APPLICATION:
        return None
    if app is None and not {"runs", "calls"} <= names:  # version 1 wrote no application key
        return None
    try:
        return int(rows.get("schema_version", "0"))
    except ValueError:
        return None


def migrate(db: sqlite3.Connection) -> tuple[int, int]:
    """Bring ``db`` to the current layout; (version found, version now)."""
    found = version(db)
    if found is None:
        raise ValueError("not a gguf-shootout results database")
    if found > VERSION:
        raise ValueError(f"written by a newer gguf-shootout (layout {found}; this version reads up to {VERSION})")
    steps = [(VERSION, SCHEMA)] if found == 0 else [(t, MIGRATIONS[t]) for t in range(found + 1, VERSION + 1)]
    for target, sql in steps:
        # one script, one transaction (executescript would commit a transaction opened outside it)
        stamp = (f"INSERT OR REPLACE INTO meta VALUES ('application', '{APPLICATION}');"
                 f"INSERT OR REPLACE INTO meta VALUES ('schema_version', '{target}');")
        try:
            db.executescript("BEGIN;" + sql + ";" + stamp + "COMMIT;")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return found, VERSION
