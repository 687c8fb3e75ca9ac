"""The JSON layouts: a list of records (or an object holding one list), JSON lines, and the
Alpaca and ShareGPT records of fine-tuning sets, each read into (where, record) rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.data.cells import decode_file, cell_text
from core.errors import ShootoutError

USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant", "model", "bot"}


class _KeyTwice(ValueError):
    pass


def _one_value_per_key(pairs: list) -> dict:
    """A JSON object as a dict, refusing a key given twice (``json`` would keep the last silently)."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _KeyTwice(k)
        out[k] = v
    return out


def read_json_records(p: Path, encoding: str, *, lines: bool) -> list[tuple[str, dict]]:
    s = decode_file(p, encoding)
    if not s.strip():
        raise ShootoutError(f"{p} is empty", "a JSON dataset is a list of records, or one record per line (JSONL)")
    if not lines:
        try:
            data = json.loads(s, object_pairs_hook=_one_value_per_key)
        except _KeyTwice as exc:
            raise ShootoutError(f"{p}: an object gives the key '{exc}' twice", "keep one of the two") from None
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # one object per line, under a .json name
                return _json_lines(p, s)
            raise ShootoutError(f"{p}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                                "fix the file, or give the right format (jsonl for one record per line)") from None
        except RecursionError:
            raise ShootoutError(f"{p}: JSON nested too deeply to read") from None
        return [(f"record {n}", rec) for n, rec in enumerate(_record_list(p, data), 1)]
    return _json_lines(p, s)


def _json_lines(p: Path, s: str) -> list[tuple[str, dict]]:
    rows = []
    # split on \n only: JSON strings may hold U+2028 and friends, which str.splitlines splits on
    for n, line in enumerate(s.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line, object_pairs_hook=_one_value_per_key)
        except _KeyTwice as exc:
            raise ShootoutError(f"{p}, line {n}: the object gives the key '{exc}' twice", "keep one of the two") from None
        except json.JSONDecodeError as exc:
            raise ShootoutError(f"{p}, line {n}: not valid JSON: {exc.msg} (column {exc.colno})",
                                "a JSONL file holds one JSON object per line") from None
        except RecursionError:
            raise ShootoutError(f"{p}, line {n}: JSON nested too deeply to read") from None
        if not isinstance(rec, dict):
            raise ShootoutError(f"{p}, line {n}: expected a JSON object, found {_json_type(rec)}",
                                "a JSONL file holds one JSON object per line")
        rows.append((f"line {n}", rec))
    if not rows:
        raise ShootoutError(f"{p} holds no records")
    return rows


def _record_list(p: Path, data: Any) -> list[dict]:
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            found = f"lists under {', '.join(map(repr, lists))}" if lists else "no list"
            raise ShootoutError(f"{p}: a JSON object dataset must hold exactly one list of records; found {found}",
                                "keep one list of records (e.g. {\"data\": [...]}) or write the list itself")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise ShootoutError(f"{p}: expected a list of records, found {_json_type(data)}")
    for n, rec in enumerate(data, 1):
        if not isinstance(rec, dict):
            raise ShootoutError(f"{p}, record {n}: expected a JSON object, found {_json_type(rec)}")
    if not data:
        raise ShootoutError(f"{p} holds no records")
    return data


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def from_alpaca(rec: dict, p: Path, where: str) -> dict:
    missing = [k for k in ("instruction", "output") if k not in rec]
    if missing:
        raise ShootoutError(f"{p}, {where}: an alpaca record needs instruction, input and output; "
                            f"'{missing[0]}' is missing", "check the format (sharegpt records hold 'conversations')")
    instruction, given = cell_text(rec.get("instruction"), p, where, "instruction"), \
        cell_text(rec.get("input"), p, where, "input")
    out = {k: v for k, v in rec.items() if k not in ("instruction", "input", "output")}
    if given is not None and given.strip():
        out["text"] = given
        out["instruction"] = instruction
    else:
        out["text"] = instruction
    out["label"] = rec.get("output")
    return out


def from_sharegpt(rec: dict, p: Path, where: str) -> dict:
    turns = rec.get("conversations", rec.get("messages"))
    if not isinstance(turns, list) or not turns:
        raise ShootoutError(f"{p}, {where}: a sharegpt record needs a 'conversations' list of turns",
                            "each turn is {\"from\": \"human\"|\"gpt\", \"value\": ...} or {\"role\", \"content\"}")
    parsed = []
    for t in turns:
        if not isinstance(t, dict):
            raise ShootoutError(f"{p}, {where}: a conversation turn is {_json_type(t)}, not an object")
        role = t.get("from", t.get("role"))
        content = t.get("value", t.get("content"))
        parsed.append((str(role).strip().lower(), content))
    last_asst = max((i for i, (r, _) in enumerate(parsed) if r in ASSISTANT_ROLES), default=None)
    if last_asst is None:
        raise ShootoutError(f"{p}, {where}: the conversation has no assistant (gpt) turn to take the label from")
    last_user = max((i for i, (r, _) in enumerate(parsed[:last_asst]) if r in USER_ROLES), default=None)
    if last_user is None:
        raise ShootoutError(f"{p}, {where}: the conversation has no human/user turn before its last assistant turn")
    out = {k: v for k, v in rec.items() if k not in ("conversations", "messages")}
    system = [c for r, c in parsed if r == "system"]
    if system:
        out["system"] = system[0]
    out["text"] = parsed[last_user][1]
    out["label"] = parsed[last_asst][1]
    return out

