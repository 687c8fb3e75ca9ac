"""Which family: the Decision of a run with two families answers it at each family's reference (paired
by item, two-sided, Holm across the pair's metrics), beside the rung verdicts within each family; under
no true difference it names a better family at most alpha of the time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.stats import families as F
from benchmark.stats.compare import Measure
from benchmark.synthetic import SynthModel, write_db


def _report(tmp_path, shift_b: float, seed: int = 1):
    from benchmark import report as rpt
    from benchmark.store import Store

    models = [SynthModel("a-f16", family="fam-a", quant="F16"), SynthModel("a-q4", family="fam-a", quant="Q4_0"),
              SynthModel("b-f16", shift=shift_b, family="fam-b", quant="F16"),
              SynthModel("b-q4", shift=shift_b, family="fam-b", quant="Q4_0")]
    db = tmp_path / "r.sqlite"
    run = write_db(db, models, 48, 3, seed=seed, pairs=[("a-f16", "b-f16"), ("a-f16", "a-q4"), ("b-f16", "b-q4")])
    with Store(db, create=False) as store:
        return rpt.build(store, run)


def test_the_decision_names_the_better_family_at_each_ones_reference_and_the_rungs_within(tmp_path):
    rep = _report(tmp_path, shift_b=0.6)  # every answer of family b 0.6 above the truth: far worse MAE
    fam = rep.families
    assert set(fam["reference_a"]) == {"a-f16"} and set(fam["reference_b"]) == {"b-f16"}
    mae = fam[fam["metric"] == "mae"].iloc[0]
    assert mae["diff"] > 0 and mae["verdict"] == "fam-a better" and mae["p_holm"] < 0.05
    assert F.pair_verdict(fam) == "fam-a better"
    lines = rep.sheet("Decision").lines
    first = next(i for i, line in enumerate(lines) if line.startswith("Which family:"))
    assert "fam-a (at a-f16) vs fam-b (at b-f16): FAM-A BETTER" in lines[first]
    # the rungs are still judged within their own family, against their own reference
    assert set(rep.refs.items()) == {("a-q4", "a-f16"), ("b-q4", "b-f16")}
    assert "family_tests" in {csv for _, csv, _ in rep.sheet("Decision").appendix}


def test_two_families_that_answer_alike_are_not_called_different(tmp_path):
    rep = _report(tmp_path, shift_b=0.0, seed=3)
    assert F.pair_verdict(rep.families) in ("not distinguishable", "equivalent")
    line = next(x for x in rep.sheet("Decision").lines if x.startswith("Which family:"))
    assert "BETTER" not in line


@pytest.mark.slow
def test_a_better_family_is_named_at_most_alpha_of_the_time_under_no_difference():
    """2,000 simulated pairs of family references with no true difference (per-item figures with a
    shared item effect, as paired items have), two quality metrics each: "better" is named in at most
    5% of them (Holm across the metrics keeps the pair's rate at alpha)."""
    rng = np.random.default_rng(7)
    called = 0
    runs, n = 2000, 24
    models = pd.DataFrame({"model": ["a", "b"], "family": ["fa", "fb"]})
    for _ in range(runs):
        item = rng.normal(0, 0.3, n)
        mae = np.abs(np.stack([item + rng.normal(0, 0.1, n), item + rng.normal(0, 0.1, n)]))
        acc = np.clip(0.6 + 0.5 * item + rng.normal(0, 0.15, (2, n)), 0, 1)
        measures = {"mae": Measure("mae", "mean", x=mae, higher_is_better=False),
                    "sign_accuracy": Measure("sign_accuracy", "mean", x=acc, higher_is_better=True)}
        rows = F.compare_families(measures, models, [("a", "b")], {"mae": 0.05, "sign_accuracy": 0.05})
        called += F.pair_verdict(rows).endswith("better")
    rate = called / runs
    assert 0.01 <= rate <= 0.05, rate  # not anti-conservative; not a test that never speaks either


@pytest.mark.parametrize("pairs, expected", [
    ([("a-f16", "b-q4")], [("a-f16", "b-f16")]),        # a configured pair across families, at each one's reference
    ([("a-f16", "a-q4")], [("a-f16", "b-f16")]),        # none across families: every family against the first
])
def test_the_pairs_compared_are_family_references(pairs, expected):
    models = pd.DataFrame({"model": ["a-f16", "a-q4", "b-f16", "b-q4"], "family": ["a", "a", "b", "b"]})
    refs = {"a-q4": "a-f16", "b-q4": "b-f16"}
    assert F.family_pairs(models, refs, pairs) == expected
