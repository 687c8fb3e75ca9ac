"""Broken datasets and settings through `shootout validate`, each a copy of the sst2 example with one
thing wrong: one message naming it (and a fix), exit code 2, no traceback, and nothing hangs (a pipe
or a device where a file belongs is refused before it is read). What `run` would refuse at its start
(a results file that is a folder or another program's, an output folder that is a file) is found by
`validate` too."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, shootout

EXAMPLE = ROOT / "examples" / "sst2"


def _config(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE / "data", tmp_path / "data")
    cfg = tmp_path / "config.yaml"
    cfg.write_text((EXAMPLE / "config.yaml").read_text())
    return cfg


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _fifo(d: Path) -> None:
    (d / "data" / "dev.tsv").unlink()
    os.mkfifo(d / "data" / "dev.tsv")


CASES = {
    # the data
    "a pipe where the file belongs": (_fifo, "is not a regular file"),
    "a NUL character in a file": (lambda d: _edit(d / "data" / "dev.tsv", "never builds", "never\x00 builds"),
                                  "holds a NUL character on line 2"),
    "a column named twice": (lambda d: _edit(d / "data" / "dev.tsv", "sentence\tlabel", "sentence\tsentence\tlabel"),
                             "names the column(s) 'sentence' more than once"),
    "a TSV that is CSV": (lambda d: (d / "data" / "dev.tsv").write_text("sentence,label\nfine film,1\nbad,0\n"),
                          "set the dataset's format to csv"),
    "a row missing a field": (lambda d: _edit(d / "data" / "dev.tsv", "never builds any real suspense\t0",
                                              "never builds any real suspense"), "row 1 has 1 field(s), the header 2"),
    "a text of zero-width spaces": (lambda d: _edit(d / "data" / "dev.tsv", "never builds any real suspense",
                                                    "\u200b \u200b \u200b"), "row 1: the text ('sentence') is empty"),
    # the settings
    "a split evaluated twice": (lambda d: _edit(d / "config.yaml", "evaluate: validation", "evaluate: [validation, validation]"),
                                "task.data.evaluate"),
    "no split evaluated": (lambda d: _edit(d / "config.yaml", "evaluate: validation", "evaluate: []"), "names no split"),
    "the label column is the text": (lambda d: _edit(d / "config.yaml", "label: label", "label: sentence"),
                                     "the model would be shown the answer"),
    "labels that differ in case": (lambda d: _edit(d / "config.yaml", "labels: [negative, positive]",
                                                   "labels: [negative, positive, Positive]"), "differ only in case"),
    "few-shot examples from the evaluated split": (lambda d: _edit(d / "config.yaml", "few_shot: {k: 2, seed: 0}",
                                                                   "few_shot: {k: 2, seed: 0, split: validation}"),
                                                   "also an evaluated split"),
    "an iteration count beyond 64 bits": (lambda d: _edit(d / "config.yaml", "iterations: 3",
                                                          "iterations: 100000000000000000000"), "is too large"),
    # where the results go
    "a results file that is a folder": (lambda d: (d / "results.sqlite").mkdir(), "is a folder, not a file"),
    "a results file that is not SQLite": (lambda d: (d / "results.sqlite").write_text("notes\n"),
                                          "is not an SQLite database"),
    "a reports folder that is a file": (lambda d: (d / "reports").write_text("x"), "output.reports_dir"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_names_what_is_wrong_and_exits_2(tmp_path, case):
    cfg = _config(tmp_path)
    assert shootout("validate", "-c", str(cfg)).returncode == 0  # the copy is fine before the change
    change, needle = CASES[case]
    change(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = shootout("validate", "-c", str(cfg), timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "Traceback" not in out and needle in " ".join(out.split()), out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # validate creates nothing


def test_validate_warns_of_repeated_texts_and_of_a_text_too_long_for_the_context(tmp_path):
    """Not refused (a run can go on), but said: the same text twice with different gold labels, and a
    text of about 3,000 tokens where the context holds 2,048 (its calls would fail)."""
    cfg = _config(tmp_path)
    dev = tmp_path / "data" / "dev.tsv"
    rows = dev.read_text().splitlines()
    text, label = rows[1].split("\t")
    dev.write_text("\n".join(rows + [f"{text}\t{1 - int(label)}", f"{'word ' * 2400}\t1"]) + "\n")
    res = shootout("validate", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split())
    assert "1 text(s) occur more than once in the data (1 with different labels" in said
    assert "the longest text (12,000 characters" in said and "over run.num_ctx (2,048)" in said


def test_a_json_object_giving_a_key_twice_is_refused_not_read_as_its_last_value(tmp_path):
    """Python's json keeps the last of two values for one key: a record with two labels would be read as
    whichever came second. validate names the line and the key."""
    shutil.copytree(ROOT / "examples" / "sarcasm", tmp_path / "ex")
    data = tmp_path / "ex" / "data" / "headlines.jsonl"
    lines = data.read_text().splitlines()
    lines[2] = lines[2].rstrip("}") + ', "is_sarcastic": 1}'
    data.write_text("\n".join(lines) + "\n")
    res = shootout("validate", "-c", str(tmp_path / "ex" / "config.yaml"))
    said = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 2 and "line 3: the object gives the key 'is_sarcastic' twice" in said, said
    assert "Traceback" not in said


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_other_line_endings_read_as_the_same_items(tmp_path, ending):
    """Windows (CRLF) and old Mac (CR) line endings: the same items as the file as it ships."""
    cfg = _config(tmp_path)
    before = shootout("validate", "-c", str(cfg))
    for name in ("dev.tsv", "train.tsv"):
        f = tmp_path / "data" / name
        f.write_bytes(f.read_bytes().replace(b"\n", ending.encode()))
    after = shootout("validate", "-c", str(cfg))
    assert before.returncode == after.returncode == 0, after.stderr
    assert after.stdout == before.stdout  # "ok (...; items train 40, validation 40)"
