"""Migrations as ordered functions from an empty database: a database of layout 1 (the fixture an old
release wrote) migrated to today's layout has exactly the schema of a new one, and the tables carry
exactly the columns the row declarations say. Files that are not ours, or newer, are refused."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from benchmark.store import Store, migrations, rows
from benchmark.store.rows import ArmFacts, CallRow, ItemRow, LoadRow, WriterRow
from core.errors import ShootoutError
from tests.conftest import ROOT

V1 = ROOT / "tests" / "fixtures" / "v1" / "results.sqlite"


def schema(path) -> dict:
    """Everything SQLite says about a database's layout: sqlite_master's entries (their SQL text),
    and per table its columns (type, NOT NULL, default, key), indexes (unique, origin, columns) and
    foreign keys."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        master = sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(),
                        key=lambda r: (r[0], r[1]))
        tables = [r[1] for r in master if r[0] == "table"]
        out = {"master": master}
        for t in tables:
            out[t] = {
                "columns": con.execute(f"PRAGMA table_xinfo({t})").fetchall(),
                "indexes": sorted((name, unique, origin, partial,
                                   con.execute(f"PRAGMA index_xinfo({name})").fetchall())
                                  for _, name, unique, origin, partial in con.execute(f"PRAGMA index_list({t})")),
                "foreign_keys": con.execute(f"PRAGMA foreign_key_list({t})").fetchall(),
            }
        return out
    finally:
        con.close()


def test_a_database_migrated_from_layout_1_has_exactly_the_schema_of_a_new_one(tmp_path):
    old = tmp_path / "old.sqlite"
    shutil.copy(V1, old)
    Store(old).close()
    Store(tmp_path / "new.sqlite").close()
    migrated, new = schema(old), schema(tmp_path / "new.sqlite")
    assert migrated == new
    assert {"runs", "items", "calls", "model_loads", "arms", "writers", "meta", "run_speed", "speed_bench"} == {
        r[1] for r in new["master"] if r[0] == "table"}
    assert "articles" not in migrated  # layout 1's table is gone
    con = sqlite3.connect(old)
    assert dict(con.execute("SELECT key, value FROM meta")) == {"application": "gguf-shootout",
                                                                "schema_version": str(migrations.VERSION)}
    con.close()


def test_layout_1_as_the_first_migration_writes_it_is_the_layout_the_old_release_wrote(tmp_path):
    db = sqlite3.connect(tmp_path / "one.sqlite", isolation_level=None)
    migrations.MIGRATIONS[0](db)
    db.close()
    assert schema(tmp_path / "one.sqlite")["master"] == [r for r in schema(V1)["master"]]


@pytest.mark.parametrize("table, cls", [("calls", CallRow), ("model_loads", LoadRow), ("items", ItemRow),
                                        ("arms", ArmFacts), ("writers", WriterRow)])
def test_each_table_has_exactly_the_columns_its_row_declares(tmp_path, table, cls):
    Store(tmp_path / "new.sqlite").close()
    cols = {c[1]: (c[2], bool(c[3])) for c in schema(tmp_path / "new.sqlite")[table]["columns"]}
    cols.pop("id", None)  # the rowid alias of calls and model_loads
    declared = {f.name: (f.metadata["sql"].split()[0], "NOT NULL" in f.metadata["sql"]) for f in rows.columns(cls)}
    assert cols == declared


def test_the_frames_columns_and_the_inserts_come_from_the_call_row():
    from benchmark.store import CALL_FIELDS

    assert CALL_FIELDS == tuple(f.name for f in rows.columns(CallRow))
    assert rows.insert_sql("calls", CallRow).count("?") == len(CALL_FIELDS)
    assert "raw_chars" in rows.frame_names(CallRow) and "raw_text" not in rows.frame_names(CallRow)


def test_a_failing_migration_leaves_the_file_at_its_layout(tmp_path, monkeypatch):
    db = tmp_path / "old.sqlite"
    shutil.copy(V1, db)

    def broken(con):
        con.execute("CREATE TABLE half (x)")
        raise sqlite3.OperationalError("interrupted")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS[:3], broken])
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(sqlite3.connect(db, isolation_level=None))
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
    assert "half" not in migrations.tables(con) and "items" in migrations.tables(con)
    con.close()


def _with_version(path, version: str) -> None:
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    con.commit()
    con.close()


@pytest.mark.parametrize("create", [True, False])
def test_a_file_of_a_newer_layout_is_refused_untouched(tmp_path, create):
    db = tmp_path / "newer.sqlite"
    _with_version(db, str(migrations.VERSION + 1))
    before = db.read_bytes()
    with pytest.raises(ShootoutError) as err:
        Store(db, create=create)
    assert f"written by a newer gguf-shootout (layout {migrations.VERSION + 1}" in err.value.message
    assert db.read_bytes() == before


def test_an_empty_file_is_refused_for_reading_and_becomes_a_database_for_writing(tmp_path):
    db = tmp_path / "empty.sqlite"
    db.write_bytes(b"")
    with pytest.raises(ShootoutError, match="holds no gguf-shootout results"):
        Store(db, create=False)
    assert db.read_bytes() == b""
    Store(db).close()
    assert schema(db) == schema(_new(tmp_path))


def _new(tmp_path):
    path = tmp_path / "fresh.sqlite"
    Store(path).close()
    return path
