"""`validate` refuses exactly what `run` refuses, before any call, each problem at the field and line the
user wrote: broken copies of the classification examples (few-shot k larger than a class, an unknown
evaluated or few-shot split, a positive class on a three-class task, a negative beta, duplicate
labels, an unknown key under a variant, a variant's k too large, log-probability decoding on a backend
that cannot score labels). The run path is the command's own: load the config, then the runner over a
real results file; a refused run leaves no run row and no call."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from benchmark.config import load_config
from core.errors import ConfigError, ShootoutError
from tests.conftest import ROOT, shootout

EXAMPLES = ROOT / "examples"

# name -> (example, edit of its config.yaml, the field path reported, words the message must hold)
BROKEN = {
    "few-shot k above a class": ("spam", ("few_shot: {k: 2, seed: 0}", "few_shot: {k: 20, seed: 0}"),
                                 "task.few_shot.k (line 23)", "too few items for 'spam' (12), 'ham' (12)"),
    "unknown evaluated split": ("spam", ("    evaluate: test", "    evaluate: dev"),
                                "task.data.evaluate (line 22)", "no items in the split 'dev'"),
    "unknown few-shot split": ("spam", ("few_shot: {k: 2, seed: 0}", "few_shot: {k: 2, seed: 0, split: validation}"),
                               "task.few_shot.split (line 23)", "no items in the split 'validation' to draw few-shot"),
    "positive class on three labels": ("stance", ("  labels:", "  positive: for\n  labels:"),
                                       "task.positive (line 9)", "needs a task of two labels; this one has 3"),
    "negative beta": ("spam", ("  answer: text", "  betas: [0.5, -1]\n  answer: text"),
                      "task.betas (line 27)", "beta -1 is not a positive number"),
    "duplicate labels": ("sst2", ("labels: [negative, positive]", "labels: [negative, positive, negative]"),
                         "task.labels (line 6)", "'negative' is listed twice"),
    "unknown key under a variant": ("spam", ("one_word: {append: Answer with one word.}",
                                             "one_word: {append: Answer with one word., few_shot: 3}"),
                                    "task.variants.one_word.few_shot (line 26)",
                                    "Allowed keys here: instruction, append, definitions, few_shot_k"),
    "a variant's k above a class": ("spam", ("one_word: {append: Answer with one word.}",
                                             "one_word: {append: Answer with one word., few_shot_k: 30}"),
                                    "task.variants.one_word.few_shot_k (line 26)", "few-shot needs 30 examples"),
}


def broken_copy(tmp_path: Path, example: str, edit: tuple[str, str]) -> Path:
    """A copy of an example's folder (config and data) with one edit to its config.yaml."""
    folder = tmp_path / example
    shutil.copytree(EXAMPLES / example, folder)
    text = (folder / "config.yaml").read_text()
    assert edit[0] in text, f"{example}: the edit's anchor is not in its config"
    (folder / "config.yaml").write_text(text.replace(edit[0], edit[1], 1))
    return folder / "config.yaml"


def _validate(path: Path) -> list[str]:
    """What `shootout validate` refuses (its library path): the problems, or [] when it passes."""
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


def _run(path: Path) -> tuple[list[str], int, int]:
    """What `shootout run` refuses (its path: the config, then the runner over the run's results file):
    (the problems, run rows, calls stored)."""
    from benchmark.run.runner import Runner
    from benchmark.store import Store

    problems: list[str] = []
    try:
        cfg = load_config(path)
        with Store(cfg.resolve(cfg.run.database)) as store:
            Runner(cfg, store, progress=False).run()
    except ConfigError as exc:
        problems = exc.problems
    except ShootoutError as exc:  # refused, but not by the config check: not what validate says
        problems = [f"(run only) {exc.message}"]
    db = path.parent / "results.sqlite"
    if not db.exists():
        return problems, 0, 0
    con = sqlite3.connect(db)
    try:
        runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        calls = con.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    finally:
        con.close()
    return problems, runs, calls


@pytest.mark.parametrize("case", list(BROKEN))
def test_validate_refuses_exactly_what_run_refuses_before_any_call(tmp_path, case):
    example, edit, where, words = BROKEN[case]
    path = broken_copy(tmp_path, example, edit)
    said = _validate(path)
    assert len(said) == 1, said
    assert said[0].startswith(f"{where}: ") and words in said[0], said[0]
    assert "function-after" not in said[0] and "ClassifySpec" not in said[0]
    refused, runs, calls = _run(path)
    assert refused == said
    assert (runs, calls) == (0, 0)  # refused before any call: no run row, no call


def test_logprob_decoding_on_a_backend_that_cannot_score_labels_is_refused_by_both(tmp_path, monkeypatch):
    import dataclasses

    from benchmark.backends import BACKENDS

    # every shipped backend scores labels: the openai one, with its capability turned off, stands for one that cannot
    spec = BACKENDS["openai"]
    monkeypatch.setitem(BACKENDS, "openai", dataclasses.replace(
        spec, capabilities=dataclasses.replace(spec.capabilities, label_scores=False)))
    path = broken_copy(tmp_path, "spam", ("  answer: text", "  answer: text\n  decoding: logprob"))
    text = path.read_text().replace("    backend: llamacpp\n    path: embedded",
                                    "    backend: openai\n    base_url: http://127.0.0.1:9/v1")
    text = text.replace("    options: {chat_template: gemma}\n", "")  # an option of llamacpp's only
    path.write_text(text)
    said = _validate(path)
    assert said and "task.decoding" in said[0] and "no Ollama server" not in said[0]
    refused, runs, calls = _run(path)
    assert refused == said and (runs, calls) == (0, 0)


@pytest.mark.slow
def test_the_command_line_refuses_a_negative_beta_and_a_three_class_positive_before_any_call(tmp_path):
    for case in ("negative beta", "positive class on three labels"):
        example, edit, where, words = BROKEN[case]
        path = broken_copy(tmp_path / case.replace(" ", "_"), example, edit)
        v = shootout("validate", "-c", str(path))
        r = shootout("run", "-c", str(path), "--no-progress")
        for done in (v, r):
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert where in done.stderr and words in done.stderr
        problem = next(line for line in v.stderr.splitlines() if where in line)
        assert problem in r.stderr.splitlines()  # the same line from both commands
        assert not (path.parent / "results.sqlite").exists()  # not a row written, let alone a call


def test_a_valid_example_still_validates_with_its_item_counts(tmp_path):
    r = shootout("validate", "-c", str(EXAMPLES / "stance" / "config.yaml"))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "items" in r.stdout


def test_zero_shot_models_draw_no_examples_so_few_shot_is_not_checked(tmp_path):
    """Run refuses only what it would fail on: with every model zero-shot, no few-shot example is drawn."""
    example, edit, _, _ = BROKEN["unknown few-shot split"]
    path = broken_copy(tmp_path, example, edit)
    path.write_text(path.read_text().replace("prompt_style: few_shot", "prompt_style: zero_shot"))
    assert _validate(path) == []
