"""One reference everywhere: the Decision, the Comparisons sheet, the console verdicts, the heatmaps'
colours and the planner compare each candidate with the same reference, with the same sign, and each
says which reference and which sign it uses."""

from __future__ import annotations

import io
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import report as rpt
from benchmark.store import Store
from tests.report_runs import store_run

ROOT = Path(__file__).resolve().parents[1]
STANCE = ROOT / "examples" / "stance" / "config.yaml"
WITH, WITHOUT = "gemma3-270m@definitions", "gemma3-270m@no_definitions"
SIGN = "candidate minus reference"


def _stance_reply(arm: str, item, iteration: int) -> str:
    """The variant with definitions gets most items right, the one without half of them."""
    rng = np.random.default_rng([zlib.crc32(item.id.encode()), iteration, len(arm)])
    right = rng.random() < (0.85 if arm == WITH else 0.45)
    labels = ["for", "neutral", "against"]
    label = item.label if right else labels[(labels.index(item.label) + 1 + iteration % 2) % 3]
    return f'{{"label": "{label}"}}'


@pytest.fixture(scope="module")
def stance(tmp_path_factory):
    """The stance example's config (compare: [no_definitions, definitions]) run with scripted replies."""
    db = tmp_path_factory.mktemp("stance") / "results.sqlite"
    store_run(STANCE, db, _stance_reply, run_id="stance", iterations=3)
    out = io.StringIO()
    from rich.console import Console

    from shootout import reporting

    with Store(db) as store:
        rep = rpt.build(store, "stance")
        reporting.write(store, "stance", db.parent / "reports", None, Console(file=out, width=1000))
    return rep, out.getvalue().splitlines()


@pytest.mark.slow
def test_the_stance_example_names_one_reference_in_decision_comparisons_and_console(stance):
    rep, console = stance
    # the configured pair [no_definitions, definitions] names the reference between the two prompt variants
    assert rep.refs == {WITH: WITHOUT}
    d = rep.decision.set_index("model")
    assert d.loc[WITHOUT, "role"] == "reference" and d.loc[WITH, "role"] == "candidate"
    assert d.loc[WITH, "reference"] == WITHOUT
    cmp = rep.sheet("Comparisons").table
    assert list(zip(cmp["reference"], cmp["candidate"])) == [(WITHOUT, WITH)]
    paired = rep.sheet("Comparisons").appendix[1][2]
    assert set(zip(paired["reference"], paired["candidate"])) == {(WITHOUT, WITH)}
    assert set(zip(rep.decision_long["reference"], rep.decision_long["candidate"])) == {(WITHOUT, WITH)}
    # the same sign: accuracy with definitions minus accuracy without, in every table
    decided = float(rep.decision_long.set_index("metric").loc["accuracy", "diff"])
    assert decided > 0.15  # definitions help: planted
    assert float(cmp["diff"].iloc[0]) == pytest.approx(decided)
    assert float(paired.set_index("metric").loc["accuracy", "estimate"]) == pytest.approx(decided)
    # the console says the same, after the reference and sign it follows
    verdicts = [x for x in console if " vs " in x and ":" in x]
    assert verdicts and all(x.startswith(f"{WITH} vs {WITHOUT}: ") for x in verdicts)
    assert not any(x.startswith(f"{WITHOUT} vs ") for x in console)
    statement = next(x for x in console if x.startswith("Reference:"))
    assert SIGN in statement and console.index(statement) < console.index(verdicts[0])
    shown = re.search(r"Accuracy \(invalid = wrong\)[^(]*\(([+-][0-9.]+) points, 90% CI", verdicts[0])
    assert shown and float(shown.group(1)) == pytest.approx(100 * decided, abs=0.05)


@pytest.mark.slow
def test_every_sheet_states_its_reference_and_sign(stance):
    rep, _ = stance
    for title in ("Decision", "Comparisons"):
        note = rep.sheet(title).note
        assert "Reference:" in note and SIGN in note, title
    info = rep.sheet("Run Info").table.set_index("key")["value"]
    assert SIGN in info["report: references"]
    # the heatmaps colour each candidate by its test against the same reference
    assert set(rep.versus["reference"]) == {WITHOUT} and set(rep.versus["candidate"]) == {WITH}
    assert set(rep.per_class_versus["reference"]) == {WITHOUT}


def test_a_configured_pair_against_the_rule_is_turned_and_said_so(tmp_path):
    from benchmark.synthetic import SynthModel, write_db

    db = tmp_path / "t.sqlite"
    models = [SynthModel("a-f16", family="a", quant="F16"), SynthModel("a-q4", family="a", quant="Q4_K_M", shift=0.3)]
    write_db(db, models, 20, 3, seed=2, run_id="t", pairs=[("a-q4", "a-f16")])
    with Store(db) as store:
        rep = rpt.build(store, "t")
        told = rpt.build(store, "t", settings={"reference": "compare"})
    # highest precision: a-f16 is the reference everywhere; the pair is shown its way round, and the sheet says so
    assert rep.refs == {"a-q4": "a-f16"}
    cmp = rep.sheet("Comparisons").table
    assert set(zip(cmp["reference"], cmp["candidate"])) == {("a-f16", "a-q4")}
    assert "[a-q4, a-f16] is shown as [a-f16, a-q4]" in rep.sheet("Comparisons").note
    mv = cmp.set_index("metric").loc["mean_value"]
    assert mv["estimate"] > 0.2  # a-q4 minus a-f16: the planted +0.3
    # reference: compare makes the configured pair the reference, in every sheet
    assert told.refs == {"a-f16": "a-q4"}
    assert set(zip(told.decision_long["reference"], told.decision_long["candidate"])) == {("a-q4", "a-f16")}
    assert told.sheet("Comparisons").table.set_index("metric").loc["mean_value", "estimate"] == \
        pytest.approx(-mv["estimate"])


def test_the_planner_plans_the_decisions_comparisons(stance, tmp_path):
    from benchmark.report.plan import make_plan

    db = tmp_path / "results.sqlite"
    store_run(STANCE, db, _stance_reply, run_id="stance", iterations=3)
    with Store(db) as store:
        plan = make_plan(store, "stance", effect=0.05, goal="non-inferiority")
    assert list(zip(plan.pairs["reference"], plan.pairs["candidate"])) == [(WITHOUT, WITH)]
    rep, _ = stance
    decided = float(rep.decision_long.set_index("metric").loc["accuracy", "diff"])
    assert float(plan.pairs["mean_diff"].iloc[0]) == pytest.approx(decided)
    assert any(SIGN in line for line in plan.lines)


def test_references_resolve_per_family_and_by_the_configured_pairs():
    from benchmark.report.references import resolve

    models = pd.DataFrame({"model": ["a-f16", "a-q8", "a-q4", "b@x", "b@y", "c"],
                           "family": ["a", "a", "a", "b", "b", "c"],
                           "quant": ["F16", "Q8_0", "Q4_K_M", "Q8_0", "Q8_0", "Q4_K_M"]})
    plain = resolve(models)
    assert plain.of == {"a-q8": "a-f16", "a-q4": "a-f16", "b@y": "b@x"}
    assert plain.pairs == (("a-f16", "a-q8"), ("a-f16", "a-q4"), ("b@x", "b@y")) and not plain.configured
    named = resolve(models, pairs=[("b@y", "b@x"), ("a-q8", "a-q4")])
    assert named.of == {"a-q8": "a-f16", "a-q4": "a-f16", "b@x": "b@y"}  # b@y named among equals
    assert named.pairs == (("b@y", "b@x"), ("a-q8", "a-q4")) and named.turned == ()
    compare = resolve(models, "compare", [("a-q4", "a-q8"), ("c", "a-q8"), ("x", "c")])
    assert compare.of == {"a-q8": "a-q4"}  # a candidate's first pair; unknown models left out
    assert compare.pairs == (("a-q4", "a-q8"), ("c", "a-q8"))
