"""Labelled datasets for classification studies: read the common layouts into ``Item`` s, merge
labels, split (stratified), draw few-shot examples and count what there is.

``read_items`` reads one file or folder. ``format`` is one of ``FORMATS``; left out, it follows the
extension (.csv .tsv .jsonl .json .parquet) or, for a directory, ``folder``.

- ``csv``: comma-separated with a header row and standard quoting (pandas).
- ``tsv``: tab-separated with a header row and *no* quoting: quote characters are part of the text
  (the GLUE / SST-2 convention), so a field cannot hold a tab or a line break.
- ``jsonl``: one JSON object per line; blank lines are skipped.
- ``json``: a list of objects, or an object holding exactly one list of objects under some key
  (``{"data": [...]}``). A .json file that is really JSON lines (the Kaggle sarcasm headlines file
  is) is read as JSON lines.
- ``parquet``: read with pyarrow.
- ``alpaca``: objects with ``instruction``, ``input``, ``output`` (.json list or .jsonl): the text is
  ``input`` (``instruction`` when ``input`` is empty; the instruction goes to ``fields`` otherwise),
  the label is ``output``, stripped.
- ``sharegpt``: objects with ``conversations`` (or ``messages``), turns as ``from``/``value``
  (human/gpt) or ``role``/``content`` (user/assistant): the label is the final assistant turn, the
  text the last human/user turn before it; a system turn goes to ``fields["system"]``.
- ``folder``: one subfolder per class, named as the label, one item per regular file inside it.
  Files at the top level (LICENSE.txt, README), hidden files and folders, subfolders of a class
  folder and files matching ``ignore`` (default ``LICENSE*``, ``README*``, case-insensitive) are
  skipped. ``header_lines=N`` moves each file's first N lines into ``fields`` under
  ``header_names`` (default ``url``, ``date``, ``title``: the livedoor news corpus) and keeps the
  rest as the text; ``title_in_text=True`` puts the ``title`` line back in front of the body
  (``title + "\\n" + body``). ``fields["file"]`` is the file's path relative to the folder.

For the tabular and JSON formats, ``text``, ``label``, ``id`` and ``split`` name the columns (keys)
to read, and ``fields`` the extra columns copied into ``Item.fields``; ``label=None`` reads an
unlabelled set. Labels are strings, stripped (a 0/1 column gives "0"/"1"; 1.0 gives "1");
``label_map`` then maps raw labels to names, and a raw label it does not map is an error. Split
values are lower-cased, with dev/val/valid read as ``validation``; an empty split cell leaves the
item for ``split_items`` to place.

Ids: the ``id`` column when given (each must be unique), else a stable hash: of the file's path
relative to the folder (``folder``), or of the row number and the text (every other format), so
the same file always gives the same ids.

Text is kept exactly as written (only a folder file's body is stripped of surrounding blank lines);
a text that is empty or only whitespace is an error naming the row. Every problem a user can cause
is a ``ShootoutError`` naming the file and, where there is one, the row and column.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import math
import os
import random
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.tasks.base import Item
from core.errors import ShootoutError

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "alpaca", "sharegpt", "folder")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation",
                 "training": "train", "testing": "test"}
DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
LIVEDOOR_HEADER = ("url", "date", "title")
FOLDER_IGNORE = ("LICENSE*", "README*")

USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant", "model", "bot"}


# --------------------------------------------------------------------------- reading


def read_items(path: str | os.PathLike, *, format: str | None = None, text: str = "text",
               label: str | None = "label", id: str | None = None, split: str | None = None,
               fields: Sequence[str] = (), encoding: str = "utf-8",
               label_map: Mapping[Any, str] | None = None, header_lines: int = 0,
               header_names: Sequence[str] = LIVEDOOR_HEADER, title_in_text: bool = False,
               ignore: Sequence[str] = FOLDER_IGNORE) -> list[Item]:
    """The items of one dataset file (or class folder); see the module docstring for the formats.

    ``text``/``label``/``id``/``split``: the columns holding the text, the gold label (None: no
    label), a unique id and the split; ``fields``: more columns copied into ``Item.fields``.
    ``label_map``: raw label -> name (keys compared as stripped strings, so ``{0: "negative"}`` and
    ``{"0": "negative"}`` are the same). ``encoding``: how the file's bytes are decoded (a leading
    byte-order mark is dropped). ``header_lines``, ``header_names``, ``title_in_text`` and
    ``ignore`` apply to ``folder`` only.
    """
    p = Path(path)
    fmt = _format_of(p, format)
    if isinstance(fields, str):
        fields = (fields,)
    fields = tuple(fields)
    if fmt != "folder" and (header_lines or title_in_text):
        raise ShootoutError(f"{p}: header_lines and title_in_text apply to the folder format only, not {fmt}",
                            "leave them out, or point at a folder of class subfolders")
    if fmt == "folder":
        if id is not None or split is not None or fields:
            raise ShootoutError(f"{p}: the folder format takes no id, split or fields columns",
                                "folder items get their label from the subfolder and their id from the file path")
        items = _read_folder(p, encoding=encoding, header_lines=header_lines, header_names=header_names,
                             title_in_text=title_in_text, ignore=ignore)
        return _apply_label_map(items, label_map, p)

    if fmt in ("csv", "tsv"):
        columns, rows = _read_delimited(p, fmt, encoding)
    elif fmt == "parquet":
        columns, rows = _read_parquet(p)
    else:
        if fmt in ("alpaca", "sharegpt") and (text != "text" or label != "label"):
            raise ShootoutError(f"{p}: the {fmt} format sets the text and the label itself",
                                "leave the text and label columns unset for alpaca and sharegpt files")
        lines = fmt == "jsonl" or (fmt in ("alpaca", "sharegpt") and p.suffix.lower() == ".jsonl")
        rows = _read_json_records(p, encoding, lines=lines)
        if fmt == "alpaca":
            rows = [(where, _from_alpaca(rec, p, where)) for where, rec in rows]
        elif fmt == "sharegpt":
            rows = [(where, _from_sharegpt(rec, p, where)) for where, rec in rows]
        columns = list(dict.fromkeys(k for _, rec in rows for k in rec))
    optional = {"alpaca": ("instruction",), "sharegpt": ("system",)}.get(fmt, ())
    items = _items_from_rows(p, columns, rows, text=text, label=label, id_col=id, split_col=split,
                             fields=fields, optional_fields=optional)
    return _apply_label_map(items, label_map, p)


def _format_of(p: Path, format: str | None) -> str:
    if not p.exists():
        raise ShootoutError(f"dataset {p} not found", "check the path (relative paths are relative to the config file)")
    if format is not None:
        fmt = format.lower().lstrip(".")
        if fmt not in FORMATS:
            raise ShootoutError(f"{p}: unknown dataset format '{format}'", f"use one of: {', '.join(FORMATS)}")
        if (fmt == "folder") != p.is_dir():
            what = "a folder" if p.is_dir() else "a file"
            raise ShootoutError(f"{p} is {what}, which the {fmt} format cannot read",
                                "the folder format reads a folder of class subfolders; every other format one file")
        return fmt
    if p.is_dir():
        return "folder"
    fmt = EXTENSIONS.get(p.suffix.lower())
    if fmt is None:
        raise ShootoutError(f"{p}: cannot tell the dataset format from the extension '{p.suffix}'",
                            f"give the format explicitly (one of: {', '.join(FORMATS)})")
    return fmt


def _decode(p: Path, encoding: str) -> str:
    """The file's text; a decoding problem names the file, the line and the encoding option."""
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ShootoutError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        s = raw.decode(encoding)
    except LookupError:
        raise ShootoutError(f"{p}: unknown encoding '{encoding}'",
                            "use a Python codec name such as utf-8, cp1252, shift_jis or latin-1") from None
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ShootoutError(
            f"{p} is not valid {encoding}: byte {raw[exc.start:exc.start + 1]!r} on line {line} cannot be decoded",
            "save the file as UTF-8, or set the dataset's encoding option to the file's encoding "
            "(e.g. cp1252, latin-1, shift_jis)") from None
    return s[1:] if s.startswith("\ufeff") else s


def _read_delimited(p: Path, fmt: str, encoding: str) -> tuple[list[str], list[tuple[str, dict]]]:
    import csv

    import pandas as pd

    s = _decode(p, encoding)
    if not s.strip():
        raise ShootoutError(f"{p} is empty", "a CSV/TSV dataset needs a header row and one row per item")
    opts = {"sep": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"sep": ","}
    try:
        with warnings.catch_warnings():
            # with more fields in a row than in the header pandas would take the first column as the
            # index (or, with index_col=False, drop the extra fields with a warning): make it an error
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.StringIO(s), dtype=str, keep_default_na=False, na_filter=False, index_col=False,
                             engine="c", **opts)
    except Exception as exc:  # pandas raises ParserError, EmptyDataError, csv.Error, ValueError ...
        msg = str(exc).strip() or type(exc).__name__
        if isinstance(exc, pd.errors.ParserWarning):
            msg = "a row has more fields than the header"
        hint = ("TSV fields are not quoted: a tab inside a text splits it; save it as CSV instead"
                if fmt == "tsv" else "check the quoting of the row named above (a text with commas "
                                     "needs double quotes around it)")
        raise ShootoutError(f"{p}: cannot parse it as {fmt.upper()}: {msg}", hint) from None
    df.columns = [str(c).strip() for c in df.columns]
    rows = [(f"row {n}", rec) for n, rec in enumerate(df.to_dict("records"), 1)]
    return list(df.columns), rows


def _read_parquet(p: Path) -> tuple[list[str], list[tuple[str, dict]]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(p)
        records = table.to_pylist()
    except ImportError:
        raise ShootoutError("reading Parquet needs pyarrow", "pip install pyarrow") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid, ArrowIOError, OSError ...
        raise ShootoutError(f"{p}: cannot read it as Parquet: {exc}",
                            "check that the file is a Parquet file (not CSV or JSON renamed)") from None
    return [str(c) for c in table.column_names], [(f"row {n}", rec) for n, rec in enumerate(records, 1)]


def _read_json_records(p: Path, encoding: str, *, lines: bool) -> list[tuple[str, dict]]:
    s = _decode(p, encoding)
    if not s.strip():
        raise ShootoutError(f"{p} is empty", "a JSON dataset is a list of records, or one record per line (JSONL)")
    if not lines:
        try:
            data = json.loads(s)
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
            rec = json.loads(line)
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


def _from_alpaca(rec: dict, p: Path, where: str) -> dict:
    missing = [k for k in ("instruction", "output") if k not in rec]
    if missing:
        raise ShootoutError(f"{p}, {where}: an alpaca record needs instruction, input and output; "
                            f"'{missing[0]}' is missing", "check the format (sharegpt records hold 'conversations')")
    instruction, given = _scalar(rec.get("instruction"), p, where, "instruction"), \
        _scalar(rec.get("input"), p, where, "input")
    out = {k: v for k, v in rec.items() if k not in ("instruction", "input", "output")}
    if given is not None and given.strip():
        out["text"] = given
        out["instruction"] = instruction
    else:
        out["text"] = instruction
    out["label"] = rec.get("output")
    return out


def _from_sharegpt(rec: dict, p: Path, where: str) -> dict:
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


def _scalar(v: Any, p: Path, where: str, column: str) -> str | None:
    """A cell as a string: None for missing/NaN, integral floats without '.0', no lists or objects."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return str(int(v)) if v.is_integer() else str(v)
    if isinstance(v, (list, dict, tuple)):
        what = "an object" if isinstance(v, dict) else "a list"
        raise ShootoutError(f"{p}, {where}: column '{column}' holds {what}, not a single value",
                            "point the column mapping at a column of plain values")
    try:  # numpy scalars, decimals, dates from Parquet
        f = float(v)
        return str(int(f)) if f.is_integer() else str(v)
    except (TypeError, ValueError, OverflowError):
        return str(v)


def _items_from_rows(p: Path, columns: list[str], rows: list[tuple[str, dict]], *, text: str, label: str | None,
                     id_col: str | None, split_col: str | None, fields: tuple[str, ...],
                     optional_fields: tuple[str, ...] = ()) -> list[Item]:
    roles = [("text", text), ("label", label), ("id", id_col), ("split", split_col)] + [("fields", f) for f in fields]
    for role, col in roles:
        if col is not None and col not in columns:
            shown = ", ".join(repr(c) for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
            raise ShootoutError(f"{p} has no column '{col}' (the {role} column); its columns are: {shown}",
                                f"set the {role} column to one of the file's columns")
    if not rows:
        raise ShootoutError(f"{p} holds no items (only a header?)")
    items, seen = [], {}
    for n, (where, rec) in enumerate(rows):
        def cell(col, role):
            if col not in rec:
                raise ShootoutError(f"{p}, {where}: no '{col}' (the {role} column)",
                                    "every record needs the text and label fields")
            return rec[col]

        t = cell(text, "text")
        if not isinstance(t, str):
            t = _scalar(t, p, where, text)
        if t is None or not t.strip():
            raise ShootoutError(f"{p}, {where}: the text ('{text}') is empty",
                                "remove the row, or point the text column at the column holding the text")
        lab = None
        if label is not None:
            lab = _scalar(cell(label, "label"), p, where, label)
            lab = lab.strip() if lab is not None else None
            if not lab:
                raise ShootoutError(f"{p}, {where}: the label ('{label}') is empty",
                                    "label every row, or read the set unlabelled (no label column)")
        if id_col is not None:
            iid = (_scalar(cell(id_col, "id"), p, where, id_col) or "").strip()
            if not iid:
                raise ShootoutError(f"{p}, {where}: the id ('{id_col}') is empty")
            if iid in seen:
                raise ShootoutError(f"{p}: duplicate id '{iid}' ({seen[iid]} and {where})",
                                    f"ids in the '{id_col}' column must be unique; leave the id column unset to "
                                    "have ids made from the text")
            seen[iid] = where
        else:
            iid = _hash_id(f"{n}\x00{t}")
        sp = None
        if split_col is not None:
            sp = (_scalar(cell(split_col, "split"), p, where, split_col) or "").strip().lower() or None
            sp = SPLIT_ALIASES.get(sp, sp)
        extra = {f: rec.get(f) for f in fields}
        extra.update((f, rec[f]) for f in optional_fields if rec.get(f) is not None and f not in extra)
        items.append(Item(id=iid, text=t, label=lab, split=sp, fields=extra))
    return items


def _hash_id(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_folder(root: Path, *, encoding: str, header_lines: int, header_names: Sequence[str],
                 title_in_text: bool, ignore: Sequence[str]) -> list[Item]:
    header_names = tuple(header_names)
    if header_lines < 0 or header_lines > len(header_names):
        raise ShootoutError(f"{root}: header_lines={header_lines} needs as many header_names "
                            f"(have {len(header_names)}: {', '.join(header_names) or 'none'})",
                            "name every header line, e.g. header_names: [url, date, title]")
    names = header_names[:header_lines]
    if title_in_text and "title" not in names:
        raise ShootoutError(f"{root}: title_in_text needs a header line named 'title' (header names: "
                            f"{', '.join(names) or 'none'})", "set header_lines (3 for the livedoor layout)")
    patterns = [g.lower() for g in ignore]
    classes = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                     key=lambda d: _natural_key(d.name))
    if not classes:
        raise ShootoutError(f"{root} has no class subfolders",
                            "the folder format reads one subfolder per label, each holding one file per item")
    items = []
    for d in classes:
        files = sorted((f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")
                        and not any(fnmatch.fnmatch(f.name.lower(), g) for g in patterns)),
                       key=lambda f: _natural_key(f.name))
        if not files:
            raise ShootoutError(f"{d} holds no files", "remove the empty class folder, or add its items")
        for f in files:
            rel = f.relative_to(root).as_posix()
            lines = _decode(f, encoding).replace("\r\n", "\n").split("\n")
            head = [line.strip() for line in lines[:header_lines]]
            body = "\n".join(lines[header_lines:]).strip()
            if len(head) < header_lines or not body:
                what = f"after its {header_lines} header lines" if header_lines else ""
                raise ShootoutError(f"{f}: no text {what}".rstrip(),
                                    "remove the file, or check header_lines" if header_lines else "remove the file")
            extra: dict[str, Any] = {"file": rel, **dict(zip(names, head))}
            if title_in_text and extra["title"]:
                body = f"{extra['title']}\n{body}"
            items.append(Item(id=_hash_id(rel), text=body, label=d.name, fields=extra))
    return items


def _apply_label_map(items: list[Item], label_map: Mapping[Any, str] | None, p: Path) -> list[Item]:
    if label_map is None:
        return items
    m = {(_scalar(k, p, "label_map", "label") or "").strip(): str(v).strip() for k, v in label_map.items()}
    if any(not v for v in m.values()):
        raise ShootoutError(f"label_map for {p} maps a label to an empty name")
    unmapped = Counter(it.label for it in items if it.label is not None and it.label not in m)
    if unmapped:
        listed = ", ".join(f"'{lab}' ({c}x)" for lab, c in sorted(unmapped.items()))
        raise ShootoutError(f"{p}: label_map does not map the raw label(s) {listed}",
                            f"add them to label_map (it maps: {', '.join(repr(k) for k in m)})")
    return [it if it.label is None else it.model_copy(update={"label": m[it.label]}) for it in items]


# --------------------------------------------------------------------------- labels


def merge_labels(items: Iterable[Item], mapping: Mapping[str, Any], *, keep_unmapped: bool = False) -> list[Item]:
    """Items with their labels merged (e.g. seven stance labels into three).

    ``mapping`` is either old -> new (``{"strongly_for": "for", "somewhat_for": "for", ...}``) or
    new -> list of old (``{"for": ["strongly_for", "for", "somewhat_for"], ...}``). A label the map
    does not name is kept as it is when ``keep_unmapped``; otherwise it is an error listing every
    such label. The label before the merge is kept in ``fields["original_label"]``; unlabelled
    items pass through.
    """
    items = list(items)
    old_to_new = _merge_map(mapping)
    unmapped = Counter(it.label for it in items if it.label is not None and it.label not in old_to_new)
    if unmapped and not keep_unmapped:
        listed = ", ".join(f"'{lab}' ({c}x)" for lab, c in sorted(unmapped.items()))
        raise ShootoutError(f"the label merge map does not cover {listed}",
                            "add them to the merge map, or keep unmapped labels as they are")
    out = []
    for it in items:
        if it.label is None or it.label not in old_to_new:
            out.append(it)
        else:
            out.append(it.model_copy(update={"label": old_to_new[it.label],
                                             "fields": {**it.fields, "original_label": it.label}}))
    return out


def _merge_map(mapping: Mapping[str, Any]) -> dict[str, str]:
    if not mapping:
        raise ShootoutError("the label merge map is empty")
    grouped = [isinstance(v, (list, tuple, set)) for v in mapping.values()]
    if any(grouped) and not all(grouped):
        raise ShootoutError("the label merge map mixes the two forms",
                            "write either old: new for every label, or new: [old, ...] for every group")
    if not any(grouped):
        return {str(k).strip(): str(v).strip() for k, v in mapping.items()}
    out: dict[str, str] = {}
    for new, olds in mapping.items():
        for old in olds:
            old = str(old).strip()
            if old in out and out[old] != str(new).strip():
                raise ShootoutError(f"the label merge map puts '{old}' into both '{out[old]}' and '{new}'")
            out[old] = str(new).strip()
    return out


# --------------------------------------------------------------------------- splits


def split_items(items: Iterable[Item], fractions: Mapping[str, float] | None = None, seed: int = 0) -> list[Item]:
    """The items with every unsplit item placed in a split, stratified by label.

    ``fractions`` (default train .8, validation .1, test .1) must sum to 1; a zero fraction is
    allowed. Items that already carry a split (from a split column) keep it; the others are cut in
    the order of ``fractions`` with scikit-learn's ``train_test_split(stratify=labels,
    random_state=seed)``: the first split takes round(n * its fraction) of them, the next one its
    share of the rest, the last split what remains. Chained cuts can leave a class off by more
    than one item in a later split, so a last pass moves single items of that class (drawn with
    the seed) between splits until every class has, in every split, its share of the class give or
    take one item (split sizes may then differ from the rounded fractions by an item or two). The
    same items, fractions and seed give the same splits; the input order is kept.

    Small classes: stratifying a cut needs two items of every class and room for every class on
    both sides. A class with a single item in a cut is pooled with the other single-item classes
    (a lone one rides with the largest class); a cut still too small to hold every class (say a
    validation share of 2 items for 3 classes) is made unstratified, shuffled with the same seed.
    The last pass then brings every class back within one item of its share, so tiny classes end
    up mostly in the largest split and a class of 1 to 3 items may be absent from the others
    (``summarize`` shows it).
    """
    items = list(items)
    fr = _check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    names = [k for k, v in fr.items() if v > 0]
    remaining = [i for i, it in enumerate(items) if it.split is None]
    placed: dict[int, str] = {}
    left = 1.0
    for name in names[:-1]:
        share = min(1.0, fr[name] / left) if left > 0 else 1.0
        n_take = int(math.floor(len(remaining) * share + 0.5))
        taken, remaining = _cut([items[i].label for i in remaining], remaining, n_take, seed)
        placed.update((i, name) for i in taken)
        left -= fr[name]
    placed.update((i, names[-1]) for i in remaining)
    _rebalance([it.label for it in items], placed, fr, names, seed)
    return [it.model_copy(update={"split": placed[i]}) if i in placed else it for i, it in enumerate(items)]


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    try:
        fr = {str(k): float(v) for k, v in fractions.items()}
    except (TypeError, ValueError, AttributeError):
        raise ShootoutError(f"split fractions must map split names to numbers, got {fractions!r}") from None
    if not fr:
        raise ShootoutError("no split fractions given", "e.g. train: 0.8, validation: 0.1, test: 0.1")
    bad = [k for k, v in fr.items() if not (0 <= v <= 1)]
    if bad:
        raise ShootoutError(f"split fraction for '{bad[0]}' is {fr[bad[0]]}; fractions lie between 0 and 1")
    total = sum(fr.values())
    if abs(total - 1) > 1e-6:
        shown = ", ".join(f"{k} {v:g}" for k, v in fr.items())
        raise ShootoutError(f"split fractions must sum to 1; {shown} sum to {total:g}",
                            "e.g. train: 0.8, validation: 0.1, test: 0.1")
    return fr


def _cut(labels: list[str | None], idx: list[int], n_take: int, seed: int) -> tuple[list[int], list[int]]:
    """Split ``idx`` into n_take items and the rest, stratified by label where the classes allow."""
    from sklearn.model_selection import train_test_split

    if n_take <= 0:
        return [], idx
    if n_take >= len(idx):
        return idx, []
    strata = ["" if lab is None else lab for lab in labels]
    counts = Counter(strata)
    rare = {s for s, c in counts.items() if c < 2}
    if rare:
        pooled = "\x00rare"
        if len(rare) == 1:  # a pool of one cannot be stratified either: it rides with the largest class
            pooled = max((s for s in counts if s not in rare), key=lambda s: (counts[s], s), default=pooled)
        strata = [pooled if s in rare else s for s in strata]
    sizes = {"train_size": n_take, "test_size": len(idx) - n_take, "random_state": seed}
    try:
        take, rest = train_test_split(idx, stratify=strata, **sizes)
    except ValueError:  # a side too small to hold one item of every class
        take, rest = train_test_split(idx, **sizes)
    return sorted(take), sorted(rest)


def _rebalance(labels: list[str | None], placed: dict[int, str], fr: dict[str, float], names: list[str],
               seed: int) -> None:
    """Move single items between splits until every class is within one item of its share in each."""
    rng = random.Random(seed)
    by_class: dict[str | None, dict[str, list[int]]] = defaultdict(lambda: {s: [] for s in names})
    for i in sorted(placed):
        by_class[labels[i]][placed[i]].append(i)
    for c in sorted(by_class, key=lambda c: (c is None, c or "")):
        groups = by_class[c]
        n = sum(len(g) for g in groups.values())
        target = {s: n * fr[s] for s in names}

        def dev(s):
            return len(groups[s]) - target[s]

        while True:  # each move lowers the sum of squared deviations, so this ends
            over = [s for s in names if dev(s) > 1 + 1e-9]
            under = [s for s in names if dev(s) < -1 - 1e-9]
            if over:
                src, dst = over[0], min(names, key=dev)
            elif under:
                src, dst = max(names, key=dev), under[0]
            else:
                break
            i = groups[src].pop(rng.randrange(len(groups[src])))
            groups[dst].append(i)
            placed[i] = dst


# --------------------------------------------------------------------------- few-shot


def few_shot(items: Iterable[Item], k: int, seed: int, labels: Sequence[str] | None = None) -> list[Item]:
    """``k`` examples of every class, drawn with ``seed`` from ``items`` (normally the train split).

    ``labels``: the classes to draw (default: every label present, sorted). The examples come in
    rounds: each round holds one example of every class in a seeded order, and a round never starts
    with the class that ended the previous one. The draw does not depend on the order of
    ``items`` (each class's pool is sorted by id first). A class with fewer than k items is an
    error naming it.
    """
    if k < 0:
        raise ShootoutError(f"few-shot k must be 0 or more, got {k}")
    pools: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if it.label is not None:
            pools[it.label].append(it)
    classes = list(labels) if labels is not None else sorted(pools)
    if not classes:
        raise ShootoutError("no labelled items to draw few-shot examples from")
    short = [f"'{c}' ({len(pools.get(c, []))})" for c in classes if len(pools.get(c, [])) < k]
    if short:
        raise ShootoutError(f"few-shot needs {k} examples per class; too few items for {', '.join(short)}",
                            "lower k, or add labelled items for those classes to the training data")
    rng = random.Random(seed)
    drawn = {c: rng.sample(sorted(pools[c], key=lambda it: it.id), k) for c in classes}
    out: list[Item] = []
    prev = None
    for r in range(k):
        order = list(classes)
        rng.shuffle(order)
        if len(order) > 1 and order[0] == prev:
            order.append(order.pop(0))
        out.extend(drawn[c][r] for c in order)
        prev = order[-1]
    return out


def stratified_sample(items: Iterable[Item], n: int, seed: int = 0) -> list[Item]:
    """``n`` of ``items``, each label keeping its share (as near as whole items allow), drawn with
    ``seed``; the items keep their order. All of them when there are no more than ``n``."""
    items = list(items)
    if n >= len(items):
        return items
    pools: dict[str | None, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        pools[it.label].append(i)
    # largest-remainder quotas, so the sample has exactly n items
    exact = {c: n * len(ix) / len(items) for c, ix in pools.items()}
    quota = {c: int(q) for c, q in exact.items()}
    for c in sorted(exact, key=lambda c: (-(exact[c] - quota[c]), str(c)))[: n - sum(quota.values())]:
        quota[c] += 1
    rng = random.Random(seed)
    keep = {i for c, ix in pools.items() for i in rng.sample(ix, quota[c])}
    return [it for i, it in enumerate(items) if i in keep]


# --------------------------------------------------------------------------- summary


def summarize(items: Iterable[Item]) -> dict[str, Any]:
    """Counts for messages: ``{"items": n, "labels": {label: n}, "splits": {split: {"items": n,
    "labels": {label: n}}}}``. Splits come train, validation, test, then others by name; items
    without a split count under ``"unsplit"``, items without a label under ``"unlabelled"``."""
    items = list(items)

    def labels_of(group):
        return dict(sorted(Counter(it.label if it.label is not None else "unlabelled" for it in group).items()))

    by_split: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_split[it.split or "unsplit"].append(it)
    order = sorted(by_split, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
    return {"items": len(items), "labels": labels_of(items),
            "splits": {s: {"items": len(by_split[s]), "labels": labels_of(by_split[s])} for s in order}}
