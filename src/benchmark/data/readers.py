"""Reading labelled datasets: the common layouts into ``Item`` s.

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

import io
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.data.cells import cell_text, decode_file, hash_id, is_blank, regular_file
from benchmark.data.folder import FOLDER_IGNORE, LIVEDOOR_HEADER, read_folder
from benchmark.data.items import Item
from benchmark.data.records import from_alpaca, from_sharegpt, read_json_records
from benchmark.data.splits import SPLIT_ALIASES
from core.errors import ShootoutError

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "alpaca", "sharegpt", "folder")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


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
        items = read_folder(p, encoding=encoding, header_lines=header_lines, header_names=header_names,
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
        rows = read_json_records(p, encoding, lines=lines)
        if fmt == "alpaca":
            rows = [(where, from_alpaca(rec, p, where)) for where, rec in rows]
        elif fmt == "sharegpt":
            rows = [(where, from_sharegpt(rec, p, where)) for where, rec in rows]
        columns = list(dict.fromkeys(k for _, rec in rows for k in rec))
    optional = {"alpaca": ("instruction",), "sharegpt": ("system",)}.get(fmt, ())
    items = _items_from_rows(p, columns, rows, text=text, label=label, id_col=id, split_col=split,
                             fields=fields, optional_fields=optional)
    return _apply_label_map(items, label_map, p)


def _format_of(p: Path, format: str | None) -> str:
    if not p.exists():
        raise ShootoutError(f"dataset {p} not found", "check the path (relative paths are relative to the config file)")
    regular_file(p)
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


def _read_delimited(p: Path, fmt: str, encoding: str) -> tuple[list[str], list[tuple[str, dict]]]:
    import csv

    import pandas as pd

    s = decode_file(p, encoding)
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
    # the rows again as the csv module reads them (any line ending; blank lines skipped), for what pandas
    # does not say: a header naming a column twice, a file of the other separator, a short row
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    try:
        records = [r for r in csv.reader(io.StringIO(s.lstrip("\ufeff"), newline=None), **dialect) if r]
    except csv.Error:  # pandas read it: leave the finer checks out
        records = []
    header, records = (records[0], records[1:]) if records else ([], [])
    twice = sorted({c.strip() for c in header if [h.strip() for h in header].count(c.strip()) > 1})
    if twice:
        raise ShootoutError(f"{p}: the header names the column(s) {', '.join(repr(c) for c in twice)} more than once",
                            "give every column of the header its own name")
    if len(header) == 1 and ("," if fmt == "tsv" else "\t") in header[0]:
        other = "csv" if fmt == "tsv" else "tsv"
        raise ShootoutError(f"{p}: read as {fmt.upper()}, its header is one column '{header[0][:80]}'",
                            f"the file looks like {other.upper()}: set the dataset's format to {other} (or fix the "
                            f"file's separators)")
    short = next(((n, len(r)) for n, r in enumerate(records, 1) if len(r) < len(header)), None)
    if short:  # pandas fills a short row's last columns with empty cells: name the row instead
        raise ShootoutError(f"{p}: row {short[0]} has {short[1]} field(s), the header {len(header)}",
                            "give every row as many fields as the header (an empty field still needs its separator)")
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
        if isinstance(t, bool):
            raise ShootoutError(f"{p}, {where}: the text ('{text}') is {str(t).lower()}, a yes/no, not a text",
                                "point the text column at the column holding the text")
        t = cell_text(t, p, where, text)
        if t is None or is_blank(t):
            raise ShootoutError(f"{p}, {where}: the text ('{text}') is empty",
                                "remove the row, or point the text column at the column holding the text")
        lab = None
        if label is not None:
            lab = cell_text(cell(label, "label"), p, where, label)
            lab = lab.strip() if lab is not None else None
            if not lab:
                raise ShootoutError(f"{p}, {where}: the label ('{label}') is empty",
                                    "label every row, or read the set unlabelled (no label column)")
        if id_col is not None:
            iid = (cell_text(cell(id_col, "id"), p, where, id_col) or "").strip()
            if not iid:
                raise ShootoutError(f"{p}, {where}: the id ('{id_col}') is empty")
            if iid in seen:
                raise ShootoutError(f"{p}: duplicate id '{iid}' ({seen[iid]} and {where})",
                                    f"ids in the '{id_col}' column must be unique; leave the id column unset to "
                                    "have ids made from the text")
            seen[iid] = where
        else:
            iid = hash_id(f"{n}\x00{t}")
        sp = None
        if split_col is not None:
            sp = (cell_text(cell(split_col, "split"), p, where, split_col) or "").strip().lower() or None
            sp = SPLIT_ALIASES.get(sp, sp)
        extra = {f: rec.get(f) for f in fields}
        extra.update((f, rec[f]) for f in optional_fields if rec.get(f) is not None and f not in extra)
        items.append(Item(id=iid, text=t, label=lab, split=sp, fields=extra))
    return items



def _apply_label_map(items: list[Item], label_map: Mapping[Any, str] | None, p: Path) -> list[Item]:
    if label_map is None:
        return items
    m = {(cell_text(k, p, "label_map", "label") or "").strip(): str(v).strip() for k, v in label_map.items()}
    if any(not v for v in m.values()):
        raise ShootoutError(f"label_map for {p} maps a label to an empty name")
    unmapped = Counter(it.label for it in items if it.label is not None and it.label not in m)
    if unmapped:
        listed = ", ".join(f"'{lab}' ({c}x)" for lab, c in sorted(unmapped.items()))
        raise ShootoutError(f"{p}: label_map does not map the raw label(s) {listed}",
                            f"add them to label_map (it maps: {', '.join(repr(k) for k in m)})")
    return [it if it.label is None else it.model_copy(update={"label": m[it.label]}) for it in items]
