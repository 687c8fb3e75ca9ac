"""`shootout view`: a local, read-only browser view over a results database, served by Datasette
(https://datasette.io) on 127.0.0.1 only.

Read-only by construction: Datasette opens the file as *immutable* (SQLite's ``immutable=1``: no
locks, no journal, no ``-wal`` or ``-shm`` file, no write possible through that connection), no
writable canned query is defined, and this module reads the file the same way before serving it.
Immutable means SQLite trusts the file not to change: while a run is still writing to it (a ``-wal``
file beside it) the view shows what was stored up to the last checkpoint, and says so at start.

Beside Datasette's own table browser (filters, facets, SQL, CSV/JSON of every page) the database
carries canned queries, each described in the page's metadata: runs, arms (with each arm's
reference), flips (calls whose answer differs from the reference's in the same iteration), flip
counts per arm, flips per item, answers that change across iterations, invalid replies, and one
item's drill-down (its text, gold and every reply). The references are resolved at start by the
report's own rule (``benchmark.stats.common.family_references`` with the run's stored report
settings) and written into the queries as a VALUES list, so the SQL a user sees is the SQL run.
Answers are compared as in the HTML explorer: a label, or a value's direction with the run's neutral
band (|x| < band: neutral); an invalid reply is '(invalid)'.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

from core.errors import ShootoutError

HOST = "127.0.0.1"
DEFAULT_PORT = 8001
SETTINGS = {"sql_time_limit_ms": 30_000, "max_returned_rows": 1000, "default_page_size": 100,
            "allow_facet": True, "suggest_facets": False}


def connect(path: Path) -> sqlite3.Connection:
    """A connection that cannot write and leaves no file beside the database (SQLite ``immutable=1``)."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?immutable=1", uri=True)


def check(path: Path) -> None:
    """Refuse, with one clear message, what the view cannot show (nothing is created or written)."""
    from benchmark.store import migrations

    path = Path(path)
    if not path.is_file():
        raise ShootoutError(f"results database not found: {path}", "pass the file a run wrote: --db RESULTS.sqlite")
    if any(ch in str(path.resolve()) for ch in "?#%"):
        raise ShootoutError(f"the path {path} holds '?', '#' or '%', which the viewer cannot open",
                            "copy or link the database to a plain file name")
    con = connect(path)
    try:
        found = migrations.version(con)
    except sqlite3.DatabaseError as exc:
        raise ShootoutError(f"{path} is not an SQLite database ({exc})", "pass the results file a run wrote") from None
    finally:
        con.close()
    if found is None or found == 0:
        raise ShootoutError(f"{path} holds no gguf-shootout results", "pass the results file a run wrote")
    if found != migrations.VERSION:
        raise ShootoutError(f"{path} has the results layout {found}; this version views layout {migrations.VERSION}",
                            f"run `shootout report --db {path}` once (it migrates the file), then view it"
                            if found < migrations.VERSION else "upgrade gguf-shootout")


def run_facts(path: Path) -> list[dict]:
    """Per run: its id, task kind, neutral band and arm -> reference (the report's rule)."""
    import pandas as pd

    from benchmark.report.references import resolve
    from benchmark.report.settings import Settings, stored_pairs, stored_settings
    from benchmark.stats import common

    con = connect(path)
    con.row_factory = sqlite3.Row
    try:
        out = []
        for run in con.execute("SELECT * FROM runs ORDER BY created_at, rowid").fetchall():
            task = json.loads(run["task_json"] or "{}")
            try:
                cfg = Settings.of(stored_settings(run))
            except ShootoutError:
                cfg = Settings()
            arms = pd.read_sql_query("SELECT model, family, quant, variant, MIN(id) AS first FROM calls "
                                     "WHERE run_id = ? GROUP BY model ORDER BY first", con, params=(run["run_id"],))
            refs = {}
            if len(arms):
                order = common.model_order(arms)
                frame = arms.set_index("model").loc[order].reset_index()
                refs = resolve(frame, cfg.reference, stored_pairs(run)).of  # the report's one resolver
            out.append({"run_id": run["run_id"], "kind": task.get("kind", "value"),
                        "band": float(cfg.neutral_band), "refs": refs})
        return out
    finally:
        con.close()


def _q(s) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _ctes(facts: list[dict]) -> str:
    refs = [f"({_q(f['run_id'])}, {_q(c)}, {_q(r)})" for f in facts for c, r in f["refs"].items()]
    runs = [f"({_q(f['run_id'])}, {_q(f['kind'])}, {f['band']!r})" for f in facts]
    ref_rows = ", ".join(refs) if refs else "(NULL, NULL, NULL)"
    run_rows = ", ".join(runs) if runs else "(NULL, NULL, NULL)"
    return (f"WITH refs(run_id, candidate, reference) AS (VALUES {ref_rows}),\n"
            f"     kinds(run_id, kind, band) AS (VALUES {run_rows})\n")


def _answer(c: str, k: str = "k") -> str:
    """A call's answer as text: its label, or its value's direction with the run's neutral band."""
    return (f"CASE WHEN {c}.valid = 0 THEN '(invalid)' WHEN {k}.kind = 'label' THEN coalesce({c}.label, '(invalid)') "
            f"WHEN {c}.value IS NULL THEN '(invalid)' WHEN abs({c}.value) < {k}.band THEN 'neutral' "
            f"WHEN {c}.value > 0 THEN 'positive' ELSE 'negative' END")


def queries(facts: list[dict]) -> dict[str, dict]:
    """The canned queries (Datasette metadata ``queries``): title, description and SQL of each."""
    w = _ctes(facts)
    a_c, a_r = _answer("c"), _answer("r")
    gold = "coalesce(i.target_label, CAST(i.target_value AS TEXT))"
    pair = (f"FROM calls c JOIN kinds k ON k.run_id = c.run_id\n"
            f"JOIN refs f ON f.run_id = c.run_id AND f.candidate = c.model\n"
            f"JOIN calls r ON r.run_id = c.run_id AND r.model = f.reference AND r.iteration = c.iteration "
            f"AND r.item_id = c.item_id\n")
    return {
        "runs": {
            "title": "Runs", "description": "Every run in the file: task, kind, iterations, calls and invalid replies.",
            "sql": "SELECT r.run_id, r.task, json_extract(r.task_json, '$.kind') AS kind, r.created_at, r.finished_at, "
                   "r.iterations, (SELECT count(*) FROM items i WHERE i.run_id = r.run_id) AS items, c.calls, "
                   "c.invalid FROM runs r LEFT JOIN (SELECT run_id, count(*) AS calls, sum(valid = 0) AS invalid "
                   "FROM calls GROUP BY run_id) c ON c.run_id = r.run_id ORDER BY r.created_at"},
        "arms": {
            "title": "Arms of a run", "description": "Each arm (model x prompt variant) of run :run_id with its "
                     "reference (the report's rule), calls, invalid replies and mean seconds per call.",
            "sql": w + "SELECT g.model, g.family, g.quant, g.variant, f.reference, g.calls, g.invalid, "
                   "g.invalid_rate, g.mean_seconds FROM (SELECT model, family, quant, variant, count(*) AS calls, "
                   "sum(valid = 0) AS invalid, round(avg(valid = 0), 4) AS invalid_rate, round(avg(wall_seconds), 4) "
                   "AS mean_seconds, min(id) AS first FROM calls WHERE run_id = :run_id GROUP BY model) g "
                   "LEFT JOIN refs f ON f.run_id = :run_id AND f.candidate = g.model ORDER BY g.first"},
        "flips": {
            "title": "Flips against the reference",
            "description": "Calls of run :run_id whose answer differs from their reference's answer in the same "
                           "iteration (same item, same sampling seed), with both replies; :model narrows to one "
                           "candidate arm (empty: all). The first 1,000 rows.",
            "sql": w + f"SELECT c.item_id, c.iteration, c.model AS candidate, {a_c} AS answer, f.reference, "
                   f"{a_r} AS reference_answer, {gold} AS gold, c.raw_text AS reply, r.raw_text AS reference_reply\n"
                   + pair + "LEFT JOIN items i ON i.run_id = c.run_id AND i.item_id = c.item_id\n"
                   f"WHERE c.run_id = :run_id AND (:model = '' OR c.model = :model) AND {a_c} <> {a_r}"},
        "flip_counts": {
            "title": "Flips per arm",
            "description": "Per candidate arm of run :run_id: matched calls (same item and iteration as its "
                           "reference), how many answer differently, and the share.",
            "sql": w + f"SELECT c.model AS candidate, f.reference, count(*) AS matched_calls, "
                   f"sum({a_c} <> {a_r}) AS flips, round(1.0 * sum({a_c} <> {a_r}) / count(*), 4) AS flip_rate\n"
                   + pair +
                   "WHERE c.run_id = :run_id GROUP BY c.model ORDER BY min(c.id)"},
        "flips_by_item": {
            "title": "Items by flips",
            "description": "Items of run :run_id ranked by the calls (all candidate arms, all iterations) that "
                           "answer differently from their reference; open one with the item query.",
            "sql": w + f"SELECT c.item_id, sum({a_c} <> {a_r}) AS flips, count(*) AS matched_calls\n" + pair +
                   "WHERE c.run_id = :run_id GROUP BY c.item_id HAVING flips > 0 ORDER BY flips DESC, c.item_id"},
        "changing_answers": {
            "title": "Answers that change across iterations",
            "description": "Per arm and item of run :run_id, where the answer is not the same in every iteration: "
                           "how many different answers, and each with the number of iterations that gave it; "
                           ":model narrows to one arm (empty: all).",
            "sql": w + "SELECT model, item_id, count(*) AS different_answers, group_concat(answer || ' x' || n, '; ') "
                   f"AS answers FROM (SELECT c.model, c.item_id, {a_c} AS answer, count(*) AS n FROM calls c JOIN "
                   "kinds k ON k.run_id = c.run_id WHERE c.run_id = :run_id AND (:model = '' OR c.model = :model) "
                   "GROUP BY c.model, c.item_id, answer) GROUP BY model, item_id HAVING different_answers > 1 "
                   "ORDER BY different_answers DESC, model, item_id"},
        "invalid_replies": {
            "title": "Invalid replies",
            "description": "Calls of run :run_id that gave no valid answer: the error, finish reason and the raw "
                           "reply; :model narrows to one arm (empty: all). The first 1,000 rows.",
            "sql": "SELECT model, item_id, iteration, error, finish_reason, completion_tokens, raw_text FROM calls "
                   "WHERE run_id = :run_id AND (:model = '' OR model = :model) AND valid = 0"},
        "item": {
            "title": "One item: text, gold and every reply",
            "description": "Item :item_id of run :run_id: its text and gold, then every arm's answer and raw reply "
                           "per iteration.",
            "sql": w + f"SELECT c.model, c.iteration, {a_c} AS answer, c.confidence, c.error, c.raw_text AS reply, "
                   f"{gold} AS gold, i.text FROM calls c JOIN kinds k ON k.run_id = c.run_id LEFT JOIN items i ON "
                   "i.run_id = c.run_id AND i.item_id = c.item_id WHERE c.run_id = :run_id AND c.item_id = :item_id "
                   "ORDER BY c.model, c.iteration"},
    }


TABLES = {
    "runs": ("One row per run: its config text, task, seed, iterations, stored settings, versions and hardware.", {
        "task_json": "the task's description (kind, labels, item noun, value name)",
        "settings_json": "stored settings: compare pairs and the report block"}),
    "items": ("The items a run asks about, in order, with their gold label or value.", {
        "target_label": "gold label (classification)", "target_value": "gold value (scored tasks)",
        "fields_json": "the item's other fields (title, ticker, url, ...)"}),
    "calls": ("One row per model call: the arm, iteration and item, the raw reply, whether it was valid, the "
              "parsed answer and timings.", {
        "model": "the arm (model, or model@prompt variant)", "iteration": "repetition of the item (same sampling "
        "seed for every arm)", "raw_text": "the reply as the model wrote it", "valid": "1 when the reply parsed "
        "into a valid answer", "error": "why a reply was invalid", "label": "the answered label (classification)",
        "value": "the answered value (scored tasks)", "confidence": "stated confidence or label probability",
        "wall_seconds": "wall clock around the call"}),
    "model_loads": ("One row per model load (per endpoint): load and warm-up time, engine facts, memory.", {}),
    "meta": ("The file's application and layout version.", {}),
}


def metadata(path: Path, facts: list[dict]) -> dict:
    name = Path(path).stem
    tables = {t: {"description": d, **({"columns": cols} if cols else {})} for t, (d, cols) in TABLES.items()}
    return {"title": f"gguf-shootout results: {Path(path).name} (read-only)",
            "description": "Runs, items and every model call of a gguf-shootout results database, opened immutable. "
                           "Start with the canned queries: runs, arms, flips, invalid replies, one item.",
            "databases": {name: {"tables": tables, "queries": queries(facts)}}}


def datasette(path: Path):
    """The Datasette instance serving ``path`` immutable with the metadata and canned queries."""
    from datasette.app import Datasette

    check(path)
    facts = run_facts(path)
    return Datasette(immutables=[str(Path(path).resolve())], metadata=metadata(path, facts), settings=SETTINGS)


def wal_note(path: Path) -> str | None:
    """What the view cannot show while a run writes to the file (its ``-wal`` holds calls not yet in it)."""
    wal = Path(str(path) + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        return (f"note: {wal.name} exists: a run is writing to {Path(path).name}, or did not close it; the view shows "
                "the calls stored up to the last checkpoint")
    return None


def serve(path: Path, port: int = DEFAULT_PORT, *, open_browser: bool = False, announce=print) -> None:
    """Serve ``path`` on http://127.0.0.1:``port`` until interrupted (port 0: any free port)."""
    try:
        import uvicorn
    except ImportError:
        raise ShootoutError("the viewer needs Datasette", "pip install 'gguf-shootout[view]'") from None
    path = Path(path)
    ds = datasette(path)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ShootoutError(f"cannot listen on {HOST}:{port} ({exc.strerror or exc})",
                            "pass another --port, or stop what uses this one") from None
    url = f"http://{HOST}:{sock.getsockname()[1]}/{path.stem}"
    note = wal_note(path)
    if note:
        announce(note)
    announce(f"read-only view of {path} at {url} (Ctrl-C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(ds.app(), log_level="warning", lifespan="on"))
    server.run(sockets=[sock])
