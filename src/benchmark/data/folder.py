"""The folder layout: one subfolder per class, named as the label, one item per file inside it
(optionally with header lines, as the livedoor news corpus has)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Sequence

from benchmark.data.cells import decode_file, hash_id, is_blank
from benchmark.data.items import Item
from core.errors import ShootoutError

LIVEDOOR_HEADER = ("url", "date", "title")
FOLDER_IGNORE = ("LICENSE*", "README*")


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_folder(root: Path, *, encoding: str, header_lines: int, header_names: Sequence[str],
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
        nested = sorted(x.name for x in d.iterdir() if x.is_dir() and not x.name.startswith("."))
        if nested:
            raise ShootoutError(f"{d} holds subfolder(s) {', '.join(nested[:5])}: the folder format reads the files "
                                "directly inside each class folder", "move their files up into the class folder, or "
                                "remove the subfolders")
        files = sorted((f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")
                        and not any(fnmatch.fnmatch(f.name.lower(), g) for g in patterns)),
                       key=lambda f: _natural_key(f.name))
        if not files:
            raise ShootoutError(f"{d} holds no files", "remove the empty class folder, or add its items")
        for f in files:
            rel = f.relative_to(root).as_posix()
            lines = decode_file(f, encoding).replace("\r\n", "\n").split("\n")
            head = [line.strip() for line in lines[:header_lines]]
            body = "\n".join(lines[header_lines:]).strip()
            if len(head) < header_lines or is_blank(body):
                what = f"after its {header_lines} header lines" if header_lines else ""
                raise ShootoutError(f"{f}: no text {what}".rstrip(),
                                    "remove the file, or check header_lines" if header_lines else "remove the file")
            extra: dict[str, Any] = {"file": rel, **dict(zip(names, head))}
            if title_in_text and extra["title"]:
                body = f"{extra['title']}\n{body}"
            items.append(Item(id=hash_id(rel), text=body, label=d.name, fields=extra))
    return items
