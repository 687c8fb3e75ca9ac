"""Every test the report runs keeps its level in studies shaped like ours, and finds what it should.

Simulated studies, vectorized across runs (each test is the same function the report calls):
- value tasks: the demo's shape, 24 items x 3 iterations, 4 models (``benchmark.synthetic.DEMO_SHAPE``),
  and a shape where model x item variation dominates (``INTERACTION_SHAPE``), 5% invalid calls;
- label tasks: the label examples' shape, 50 items x 3 iterations, 4 models, 78/22 classes, with
  shared item difficulty, and with model x item variation dominating.
Under the null every model has the same distribution per item; false-positive rates at alpha 0.05
must lie in [0.03, 0.07]. The agreement test's null is a replica of the reference (no model x item
variation): with its own reading of the items, a model really does disagree more, and the test's
rejections there are power, printed beside.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import metrics as M
from benchmark.stats import anova as AN
from benchmark.stats import common
from benchmark.stats import compare as C
from benchmark.stats import decision as D
from benchmark.stats import label as L
from benchmark.stats import label_baselines as LB
from benchmark.stats import label_compare as LC
from benchmark.stats import label_items as LI
from benchmark.stats import label_synth as LS
from benchmark.stats import paired as P
from benchmark.stats import value as V
from benchmark.synthetic import DEMO_SHAPE, INTERACTION_SHAPE, simulate

ALPHA = 0.05
BAND = (0.03, 0.07)
RUNS = 1000  # Monte Carlo standard error of a 5% rate: 0.7 points (per pair; rates pool 3 pairs)
SHAPES = {"demo": DEMO_SHAPE, "interaction": INTERACTION_SHAPE}


def _rate(p) -> float:
    p = np.asarray(p, dtype=float)
    return float(np.mean(np.nan_to_num(p, nan=1.0) < ALPHA))


def _value_arrays(shape: dict, runs: int, n: int, R: int, M: int, seed: int, invalid: float = 0.05, **kw):
    sim = simulate(runs, M, n, R, seed, invalid_rate=invalid, **{**shape, **kw})
    v, tgt = sim["value"], sim["target"]
    present = np.ones(v.shape, dtype=bool)
    rng = np.random.default_rng(seed + 1)
    # seconds per call: longer items take longer for every model; no model is faster
    seconds = np.exp(rng.normal(0, 0.3, (runs, 1, n, 1)) + rng.normal(0, 0.2, v.shape))
    return v, tgt, present, seconds


def value_null_pvalues(shape: dict, runs: int = RUNS, n: int = 24, R: int = 3, M: int = 4, seed: int = 0) -> dict:
    """p-values of every value-task test, reference = model 0, candidates 1..M-1: arrays (M-1, runs)."""
    v, tgt, present, seconds = _value_arrays(shape, runs, n, R, M, seed)
    x = {
        "mean_value": common.item_mean(v),
        "mae": common.item_mean(V.abs_error(v, present, tgt)),
        "mae_answered": common.item_mean(V.abs_error(v, present, tgt, answered_only=True)),
        "sign_accuracy": common.item_mean(V.direction_correct(v, present, tgt, 0.1)),
        "valid_rate": common.item_mean((~np.isnan(v)).astype(float)),
        "s_per_sample": common.item_mean(seconds),
    }
    out = {k: np.stack([P.paired(a[:, k_] - a[:, 0])["p"] for k_ in range(1, M)]) for k, a in x.items()}
    var = common.item_var(v)
    out["value_variance (log-variance test)"] = np.stack([P.log_variance_test(var[:, 0], var[:, k])["p"]
                                                          for k in range(1, M)])
    corr = C.correlation_measure(x["mean_value"], tgt[:, None, :])
    suff = corr.suff  # (runs, models, items, 6)
    ok = np.isfinite(suff).all(-1).all(1)  # items every model answered (as the report's pairwise rows)
    out["correlation (jackknife, Fisher z)"] = np.stack([
        [float(C.jackknife_paired(suff[r, 0][ok[r]], suff[r, k][ok[r]], corr.fn, test_fn=corr.test_fn)["p"])
         for r in range(runs)]
        for k in range(1, M)])
    m = x["mean_value"].transpose(0, 2, 1)  # (runs, items, models)
    complete = np.isfinite(m).all((1, 2))
    out["repeated-measures ANOVA (GG)"] = np.where(complete, AN.rm_anova_array(np.nan_to_num(m))["p"], np.nan)[None]
    out["Friedman (rank ANOVA, GG)"] = np.where(complete, AN.friedman_array(np.nan_to_num(m))["p"], np.nan)[None]
    ap = P.all_pairs(m)
    out["all pairs, Holm (any pair)"] = np.nanmin(ap["p_holm"], -1)[None]
    if M == 4:  # the four models as a complete 2 families x 2 quants grid
        fq = AN.family_quant_array(np.nan_to_num(m).reshape(runs, n, 2, 2))
        for source in ("C(family)", "C(quant)", "C(family):C(quant)"):
            out[f"family x quant ANOVA {source}"] = np.where(complete, fq[source]["p"], np.nan)[None]
    return out


@pytest.mark.parametrize("shape,n", [("demo", 24), ("interaction", 24),
                                     pytest.param("interaction", 96, marks=pytest.mark.slow)])
@pytest.mark.slow
def test_value_tests_keep_their_level_under_the_null(shape, n):
    ps = value_null_pvalues(SHAPES[shape], n=n, seed=(11 if shape == "demo" else 12) + n)
    rates = {k: _rate(p) for k, p in ps.items()}
    print(f"\nnull, value task, {shape} shape, {n} items x 3 iterations, 4 models, 5% invalid calls, {RUNS} runs: "
          + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    for k, r in rates.items():
        assert BAND[0] <= r <= BAND[1], (k, r)


# rungs of a ladder that differ in how much each reads items its own way (model x item sd 0 .. 0.6): the
# sphericity the uncorrected ANOVA assumes does not hold (9.0% false positives at 24 x 3 without the
# Greenhouse-Geisser correction, Friedman's chi-square 6.0-6.4% at 96 x 3)
LADDER = {**INTERACTION_SHAPE, "item_sd": [0.0, 0.1, 0.3, 0.6]}


@pytest.mark.parametrize("n", [24, 96])
def test_anova_and_friedman_keep_their_level_in_a_ladder_of_unequal_rungs(n):
    runs = 2000
    v, _, _, _ = _value_arrays(LADDER, runs, n, 3, 4, seed=13 + n)
    m = common.item_mean(v).transpose(0, 2, 1)  # (runs, items, models), items every model answered
    x = m[np.isfinite(m).all((1, 2))]
    a, f = AN.rm_anova_array(x), AN.friedman_array(x)
    rates = {"ANOVA, Greenhouse-Geisser": _rate(a["p"]), "ANOVA uncorrected": _rate(a["p_uncorrected"]),
             "Friedman, rank ANOVA with GG": _rate(f["p"]), "Friedman chi-square": _rate(f["p_chi2"])}
    print(f"\nnull, ladder of unequal rungs, {n} x 3, 5% invalid, {len(x)} runs: "
          + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    assert BAND[0] <= rates["ANOVA, Greenhouse-Geisser"] <= BAND[1]
    assert BAND[0] <= rates["Friedman, rank ANOVA with GG"] <= BAND[1]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_agreement_with_the_reference_keeps_its_level_for_a_replica(shape):
    runs, n, R, M = RUNS, 24, 3, 4
    replica = {**SHAPES[shape], "item_sd": 0.0}
    v, _, present, _ = _value_arrays(replica, runs, n, R, M, seed=21)
    codes = V.direction_codes(v, present, 0.1)
    p = np.stack([P.agreement(codes[:, 0], codes[:, k], 4)["p"] for k in range(1, M)])
    v2, _, present2, _ = _value_arrays(SHAPES[shape], runs, n, R, M, seed=22)
    codes2 = V.direction_codes(v2, present2, 0.1)
    p2 = np.stack([P.agreement(codes2[:, 0], codes2[:, k], 4)["p"] for k in range(1, M)])
    print(f"\nagreement (excess direction disagreement), {shape} shape, {runs} runs: replica {_rate(p):.3f}; "
          f"models with their own reading of items (item sd {SHAPES[shape]['item_sd']}) found {_rate(p2):.3f}")
    assert BAND[0] <= _rate(p) <= BAND[1]
    assert _rate(p2) > _rate(p)


@pytest.mark.slow
def test_tost_and_verdicts_hold_their_level_at_the_margin():
    """A candidate worse by exactly the margin is called non-inferior (or equivalent) in ~5% of runs at the
    demo's size; under no difference 'worse' (one-sided at 5%; a lone candidate's Holm) is called in ~5%.
    Equivalence needs the 90% interval narrower than the margin: at 24 items it is never reached at this
    noise (TOST is then conservative, below 5%), so its level at the margin is checked at 300 items,
    where it can be reached."""
    runs, R, margin = 4000, 3, 0.1
    noclip = dict(DEMO_SHAPE, step=0.01)  # no clipping at the scale's ends: the planted difference is exact
    rates = {}
    for true, n in ((margin, 24), (-margin, 300), (0.0, 24)):
        sim = simulate(runs, 2, n, R, seed=31, shift=[0.0, true], low=-9, high=9, **noclip)
        m = common.item_mean(sim["value"])
        r = P.paired(m[:, 1] - m[:, 0])  # positive = worse, as for an error
        v = P.verdict(r, margin)
        rates[true] = {"non-inferior or equivalent": float(np.isin(v, ["non-inferior", "equivalent"]).mean()),
                       "equivalent": float((v == "equivalent").mean()), "worse": float((v == "worse").mean()),
                       "two-sided p < 0.05": _rate(r["p"])}
    print("\nTOST verdicts, 4000 runs (24 x 3; -margin at 300 x 3): "
          + "; ".join(f"true {k:+g}: {v}" for k, v in rates.items()))
    assert BAND[0] <= rates[margin]["non-inferior or equivalent"] <= BAND[1]
    assert BAND[0] <= rates[-margin]["equivalent"] <= BAND[1]
    assert BAND[0] <= rates[0.0]["two-sided p < 0.05"] <= BAND[1]
    assert BAND[0] <= rates[0.0]["worse"] <= BAND[1]  # a lone candidate: the one-sided test of 'worse' at 5%


def test_a_planted_shift_is_found_and_the_reported_mde_matches_the_simulation(tmp_path):
    from benchmark import report as rpt
    from benchmark.store import Store
    from benchmark.synthetic import SynthModel, write_db

    runs = 2000
    found = {}
    for n in (24, 96):
        sim = simulate(runs, 2, n, 3, seed=41 + n, shift=[0.0, 0.2], **DEMO_SHAPE)
        m = common.item_mean(sim["value"])
        found[n] = _rate(P.paired(m[:, 1] - m[:, 0])["p"])
    sim = simulate(runs, 2, 24, 3, seed=43, sd=[DEMO_SHAPE["sd"], DEMO_SHAPE["sd"] * np.sqrt(2)],
                   **{k: v for k, v in DEMO_SHAPE.items() if k != "sd"})
    var = common.item_var(sim["value"])
    var2_24 = _rate(P.log_variance_test(var[:, 0], var[:, 1])["p"])
    sim = simulate(runs, 2, 96, 3, seed=44, sd=[DEMO_SHAPE["sd"], DEMO_SHAPE["sd"] * np.sqrt(2)],
                   **{k: v for k, v in DEMO_SHAPE.items() if k != "sd"})
    var = common.item_var(sim["value"])
    var2_96 = _rate(P.log_variance_test(var[:, 0], var[:, 1])["p"])
    # the MDE a 24 x 3 report shows, against the simulation. The MDE is a difference in the observed mean;
    # clipping at the scale's ends shrinks a planted shift, so this check plants it without clipping.
    wide = dict(low=-9.0, high=9.0)
    null = simulate(runs, 2, 24, 3, seed=45, **DEMO_SHAPE, **wide)
    m = common.item_mean(null["value"])
    r0 = P.paired(m[:, 1] - m[:, 0])
    mdes = P.mde(r0["sd"][:400], r0["n"][:400])
    typical = float(np.median(mdes))
    sim = simulate(runs, 2, 24, 3, seed=46, shift=[0.0, typical], **DEMO_SHAPE, **wide)
    m = common.item_mean(sim["value"])
    at_typical = _rate(P.paired(m[:, 1] - m[:, 0])["p"])
    shape = {k: v for k, v in DEMO_SHAPE.items() if k not in ("sd", "item_sd")}
    models = [SynthModel(f"m-{q}", family="m", quant=q, sd=DEMO_SHAPE["sd"], item_sd=DEMO_SHAPE["item_sd"])
              for q in ("F16", "Q8_0")]
    db = tmp_path / "mde.sqlite"
    write_db(db, models, 24, 3, seed=5, run_id="mde", **shape, **wide)
    with Store(db) as store:
        rep = rpt.build(store, "mde")
    cmp = rep.sheet("Comparisons").table.set_index("metric")
    reported = float(cmp.loc["mean_value", "mde80"])
    print(f"\npower, demo shape, +0.2 shift: 24 x 3 {found[24]:.3f}, 96 x 3 {found[96]:.3f} ({runs} runs each); "
          f"doubled variance (log-variance test): 24 x 3 {var2_24:.3f}, 96 x 3 {var2_96:.3f}; "
          f"MDE80 of the mean value in a 24 x 3 report (no clipping) {reported:.3f} (simulated runs without "
          f"clipping: median {typical:.3f}, 5-95% {np.quantile(mdes, 0.05):.3f}-{np.quantile(mdes, 0.95):.3f}); "
          f"a difference of the median MDE is found in {at_typical:.3f} of runs")
    assert found[96] >= 0.85
    assert found[24] < found[96]
    assert var2_96 >= 0.8
    assert np.quantile(mdes, 0.05) <= reported <= np.quantile(mdes, 0.95)
    assert 0.72 <= at_typical <= 0.88


# --------------------------------------------------------------------------- label tasks

LABEL_RUNS = 600
BIN = ["spam", "ham"]
LABEL_SHAPES = {"shared difficulty": dict(difficulty_sd=1.0, item_effect_sd=0.3),
                "model x item dominates": dict(difficulty_sd=0.3, item_effect_sd=1.0)}


def _label_data(shape: dict, runs: int, n: int, R: int, M: int, seed: int, accuracy=0.75, invalid=0.05,
                item_effect_sd=None):
    ies = shape["item_effect_sd"] if item_effect_sd is None else item_effect_sd
    acc = np.broadcast_to(accuracy, (M,))
    models = [LS.SynthLabelModel(f"m{k}", float(acc[k]), item_effect_sd=ies, invalid_rate=invalid) for k in range(M)]
    calls, items = LS.synthetic_calls(models, n * runs, R, BIN, priors=[0.78, 0.22], seed=seed,
                                     difficulty_sd=shape["difficulty_sd"])
    return LI.LabelData.of(calls, items, BIN, models=[m.name for m in models])


def label_null_pvalues(shape: dict, runs: int = LABEL_RUNS, n: int = 50, R: int = 3, M: int = 4, seed: int = 0):
    d = _label_data(shape, runs, n, R, M, seed)
    s = d.item_scores()  # vote_accuracy: the tie-split credit the report uses
    out = {}
    for name in ("accuracy", "accuracy_answered", "valid_rate", "self_consistency", "vote_accuracy", "s_per_sample"):
        x = s[name].reshape(M, runs, n)
        out[name] = np.stack([P.paired(x[k] - x[0])["p"] for k in range(1, M)])
    tab = d.tables().reshape(M, runs, n, -1)
    # the jackknife over informative items; recall and F1 of the minority class (ham, 22%) move only with
    # the items of that class (with every item in the spread they gave 6.3-7.1%)
    for name, pos in (("macro_f1", None), ("kappa", None), ("balanced_accuracy", None), ("f1", 0), ("recall", 1),
                      ("f1", 1)):
        fn = LI.table_metric(name, d.K, pos)
        label = f"{name}{'' if pos is None else '[' + BIN[pos] + ']'} (jackknife)"
        out[label] = np.stack([C.jackknife_paired(tab[0], tab[k], fn)["p"] for k in range(1, M)])
    acc = s["accuracy"].reshape(M, runs, n).transpose(1, 2, 0)
    out["all pairs, Holm (any pair)"] = np.nanmin(P.all_pairs(acc)["p_holm"], -1)[None]
    votes = s["vote_accuracy"].reshape(M, runs, n).transpose(1, 2, 0)
    out["Cochran's Q"] = np.array([[LC.cochran_q_test(votes[r])["p"] for r in range(runs)]])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(LABEL_SHAPES))
def test_label_tests_keep_their_level_under_the_null(shape):
    ps = label_null_pvalues(LABEL_SHAPES[shape], seed=51 if shape.startswith("shared") else 52)
    rates = {k: _rate(p) for k, p in ps.items()}
    print(f"\nnull, label task, {shape}, 50 items x 3 iterations, 4 models, 78/22 classes, {LABEL_RUNS} runs: "
          + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    for k, r in rates.items():
        assert BAND[0] <= r <= BAND[1], (k, r)


@pytest.mark.slow
def test_label_agreement_keeps_its_level_for_a_replica():
    runs, n, M = LABEL_RUNS, 50, 4
    d = _label_data(LABEL_SHAPES["shared difficulty"], runs, n, 3, M, seed=61, item_effect_sd=0.0)
    codes = d.codes.reshape(M, runs, n, -1)
    p = np.stack([P.agreement(codes[0], codes[k], d.K + 1)["p"] for k in range(1, M)])
    d2 = _label_data(LABEL_SHAPES["model x item dominates"], runs, n, 3, M, seed=62)
    codes2 = d2.codes.reshape(M, runs, n, -1)
    p2 = np.stack([P.agreement(codes2[0], codes2[k], d2.K + 1)["p"] for k in range(1, M)])
    print(f"\nanswer agreement vs the reference, 50 x 3, {runs} runs: replica {_rate(p):.3f}; models with their own "
          f"reading of items found {_rate(p2):.3f}")
    assert BAND[0] <= _rate(p) <= BAND[1]
    assert _rate(p2) > 0.2


def test_label_power_and_the_accuracy_verdict():
    """A 15-point drop at 100 x 3 is found; at the margin (2 points) non-inferiority is claimed rarely."""
    runs = 500
    d = _label_data(LABEL_SHAPES["shared difficulty"], runs, 100, 3, 2, seed=71, accuracy=[0.85, 0.70], invalid=0.0)
    acc = d.item_scores()["accuracy"].reshape(2, runs, 100)
    r = P.paired(acc[0] - acc[1])  # positive = candidate worse
    found = _rate(r["p"])
    worse = float((P.verdict(r, 0.02) == "worse").mean())
    print(f"\nlabel power, 85% vs 70%, 100 x 3, {runs} runs: paired t {found:.3f}, verdict 'worse' {worse:.3f}")
    assert found >= 0.9 and worse >= 0.9


# --------------------------------------------------------------------------- the Decision

VALUE_MARGINS = {"mae": 0.05, "sign_accuracy": 0.05, "mean_value": 0.05, "value_variance": 1.5}


def _decide_value(runs: int, M_: int, n: int, seed: int, shift=0.0, shape=DEMO_SHAPE, invalid: float = 0.05):
    """Overall Decision verdicts (runs, candidates) of simulated value runs, reference = model 0, through the
    report's own rules (``decision.row_test``, ``figures``, ``judge``, ``overall_of``) at the default margins."""
    v, tgt, present, _ = _value_arrays(shape, runs, n, 3, M_, seed, invalid=invalid, shift=shift)
    x = {"mae": common.item_mean(V.abs_error(v, present, tgt)),
         "sign_accuracy": common.item_mean(V.direction_correct(v, present, tgt, 0.1)),
         "mean_value": common.item_mean(v), "value_variance": common.item_var(v)}
    figs, roles, owner = [], [], []
    for k in range(1, M_):
        for metric, margin in VALUE_MARGINS.items():
            hib = M.metric(metric).higher_is_better
            role = D.role_of(metric, hib)
            kind = "logvar" if metric == "value_variance" else "mean"
            r, m = D.row_test(x[metric][:, 0], x[metric][:, k], kind, role, hib, margin, M.span(metric), ALPHA)
            figs.append(D.figures(r, m, role, ALPHA))
            roles.append(role)
            owner.append(k - 1)
    _, verdicts = D.judge(figs, roles, ALPHA, min_items=20)
    return D.overall_of(verdicts, roles, owner, M_ - 1), verdicts, roles


@pytest.mark.parametrize("n,rungs", [(24, 3), (24, 4), (96, 3)])
def test_under_no_difference_at_most_5_percent_of_ladder_reports_call_a_rung_worse(n, rungs):
    """Holm across the family (a reference's candidates x quality metrics): without it 7.6-11% of reports
    called some rung worse when none differed."""
    runs = 2000
    overall, _, _ = _decide_value(runs, rungs, n, seed=200 + n + rungs)
    any_worse = float((overall == "worse").any(-1).mean())
    rates = {v: float((overall == v).any(-1).mean()) for v in ("shifted", "less consistent", "non-inferior",
                                                                "not bounded", "too few items", "inconclusive")}
    print(f"\nnull, value demo shape, {n} x 3, reference + {rungs - 1} candidates, {runs} runs: any rung worse "
          f"{any_worse:.3f}; any rung " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    assert any_worse <= 0.05
    # Holm across the candidates for the bias and the consistency too (5% family-wise, within the simulation's
    # standard error of half a point)
    assert rates["shifted"] <= 0.06 and rates["less consistent"] <= 0.06


@pytest.mark.slow
def test_under_no_difference_at_most_5_percent_of_label_ladders_call_a_rung_worse():
    runs, n, rungs = 1500, 100, 3
    d = _label_data(LABEL_SHAPES["shared difficulty"], runs, n, 3, rungs, seed=404, invalid=0.0)
    acc = d.item_scores()["accuracy"].reshape(rungs, runs, n)
    figs = []
    for k in range(1, rungs):
        r, m = D.row_test(acc[0], acc[k], "mean", "quality", True, 0.02, 1.0, ALPHA)
        figs.append(D.figures(r, m, "quality", ALPHA))
    _, verdicts = D.judge(figs, ["quality"] * (rungs - 1), ALPHA)
    any_worse = float((verdicts == "worse").any(-1).mean())
    print(f"\nnull, label 100 x 3, reference + 2 candidates, accuracy margin 2 points, {runs} runs: any rung worse "
          f"{any_worse:.3f}")
    assert any_worse <= 0.05


@pytest.mark.parametrize("n", [24, 96])
def test_a_planted_bias_is_never_safe_to_ship_without_its_bias_named(n):
    """Every answer of the candidate +0.2: error and direction barely move on the demo's shape (33% of such
    runs were 'non-inferior, safe to ship' when the verdict weighed MAE and direction alone)."""
    runs = 2000
    overall, verdicts, roles = _decide_value(runs, 2, n, seed=600 + n, shift=[0.0, 0.2])
    overall = overall[:, 0]
    bias = verdicts[:, roles.index("bias")]
    safe = np.isin(overall, ["equivalent", "non-inferior"])
    quality_ok = np.isin(verdicts[:, [i for i, r in enumerate(roles) if r == "quality"]],
                         ["equivalent", "non-inferior"]).all(-1)
    print(f"\nplanted +0.2 bias, value demo shape, {n} x 3, {runs} runs: safe to ship {safe.mean():.3f}; error and "
          f"direction non-inferior {quality_ok.mean():.3f}; overall shifted {(overall == 'shifted').mean():.3f}, "
          f"not bounded {(overall == 'not bounded').mean():.3f}")
    assert not safe.any()
    # where quality alone would have passed, the bias is never within its margin: the verdict is SHIFTED, NOT
    # BOUNDED (the bias named as not bounded) or a named problem of its own (less consistent)
    assert (bias[quality_ok] != "equivalent").all()
    assert np.isin(overall[quality_ok], ["shifted", "not bounded", "less consistent"]).all()
    if n == 96:
        assert (overall == "shifted").mean() >= 0.8


def test_items_that_would_decide_do_decide_whatever_the_true_difference():
    """At the items the Decision names, the 90% interval is at most a margin wide: the follow-up run reaches a
    verdict whether the candidate is as good, half a margin worse or a margin worse."""
    margin, runs = 0.05, 1000
    v, tgt, present, _ = _value_arrays(DEMO_SHAPE, 400, 24, 3, 2, seed=700)
    mae = common.item_mean(V.abs_error(v, present, tgt))
    sd = P.paired(mae[:, 1] - mae[:, 0])["sd"]
    n = int(P.items_to_decide(float(np.median(sd)), margin))
    rates = {}
    for true in (0.0, margin / 2, margin):
        sim = simulate(runs, 2, n, 3, seed=701, shift=[0.0, true], low=-9, high=9,
                       **{**DEMO_SHAPE, "sd": float(np.median(sd)) / np.sqrt(2) * np.sqrt(3), "item_sd": 0.0,
                          "bias_sd": 0.0, "het": 0.0, "crn": 0.0})
        x = common.item_mean(sim["value"])
        r, m = D.row_test(x[:, 0], x[:, 1], "mean", "quality", False, margin, 2.0, ALPHA)
        _, verdict = D.judge([D.figures(r, m, "quality", ALPHA)], ["quality"], ALPHA)
        rates[true] = float((verdict[:, 0] == "inconclusive").mean())
    print(f"\nfollow-up runs at the {n} items that would decide (x 3), {runs} runs: inconclusive at a true "
          "difference of " + ", ".join(f"{k:g}: {v:.3f}" for k, v in rates.items()))
    assert max(rates.values()) <= 0.15


def test_every_item_agreeing_is_never_called_equivalent():
    """Two models that answer one constant label (log-probability mode answering 'ham' to everything): every
    per-item difference is 0, the t interval has width 0; the zero-spread bound keeps it from 'equivalent'."""
    acc = np.tile(np.r_[np.ones(39), np.zeros(11)], (2, 1))  # both right on the same 39 of 50 items
    r, m = D.row_test(acc[0], acc[1], "mean", "quality", True, 0.02, 1.0, ALPHA)
    f = D.figures(r, m, "quality", ALPHA)
    _, verdict = D.judge([f], ["quality"], ALPHA)
    assert bool(r["spread_floor"]) and f["h90"] == pytest.approx(1 - 0.05 ** (1 / 50))
    assert verdict[0] == "too few items"  # 50 items agreeing bound a difference only to +-5.8 points
    # enough items for the bound to be narrower than the margin: then equivalence is earned
    acc = np.ones((2, 400))
    r, m = D.row_test(acc[0], acc[1], "mean", "quality", True, 0.02, 1.0, ALPHA)
    assert D.judge([D.figures(r, m, "quality", ALPHA)], ["quality"], ALPHA)[1][0] == "equivalent"


@pytest.mark.slow
def test_better_than_the_majority_baseline_holds_its_level_at_the_boundary():
    """A model exactly as accurate as always answering the majority class is called better in at most ~5% of
    runs (one-sided paired t over items); a model well above it is found."""
    runs, n = 2000, 50
    out = {}
    for acc_ in (0.78, 0.95):
        d = _label_data({"difficulty_sd": 1.0, "item_effect_sd": 0.3}, runs, n, 3, 1, seed=900 + int(acc_ * 100),
                        accuracy=acc_, invalid=0.0)
        acc = d.item_scores()["accuracy"].reshape(runs, n)
        gold = d.gold.reshape(runs, n)
        res = LB.versus_baseline(acc, gold, d.K, ALPHA)
        out[acc_] = (float(res["majority"]["better"].mean()), float(res["stratified"]["better"].mean()))
    print(f"\nbetter than always answering the majority class / than stratified guessing, 50 x 3, {runs} runs: "
          + "; ".join(f"model {k:.0%}: {a:.3f} / {b:.3f}" for k, (a, b) in out.items()))
    assert 0.02 <= out[0.78][0] <= 0.06
    assert out[0.95][0] >= 0.8


def test_with_two_iterations_the_vote_gains_nothing_over_one_call():
    """Ties split: with two iterations and no invalid reply, vote accuracy equals per-call accuracy exactly
    (ties to the first label made 'gains' of a few points that were only the tie rule)."""
    d = _label_data({"difficulty_sd": 1.0, "item_effect_sd": 0.3}, 1, 300, 2, 1, seed=3, accuracy=0.46,
                    invalid=0.0)
    s = d.item_scores()
    tied = L.vote(d.counts(), np.broadcast_to(d.gold, s["accuracy"].shape))[2]
    assert tied.sum() > 30  # many items tie at two iterations
    np.testing.assert_allclose(s["vote_accuracy"], s["accuracy"])


def test_a_models_memory_is_the_median_of_its_loads_whatever_the_order_they_ran_in():
    """Counterbalanced runs load every model once per block; the first load of a process takes more
    than a later load of the same model, so the largest load would rank the rungs by when they ran
    first. The Summary shows the median of a model's loads, the same for any order of those loads."""
    import pandas as pd

    calls = pd.DataFrame([{"model": m, "family": "f", "quant": q, "backend": "llamacpp", "prompt_style": "few_shot",
                           "item_id": "i", "iteration": 0, "wall_seconds": 1.0, "valid": True, "prompt_seconds": 0.5,
                           "gen_seconds": 0.5, "prompt_tokens": 10, "cached_tokens": 0, "completion_tokens": 5,
                           "finish_reason": "stop"} for m, q in (("a", "Q4_0"), ("b", "Q8_0"))])
    first_a = [("a", 385.3), ("b", 296.9), ("a", 296.8), ("b", 290.9), ("a", 296.8), ("b", 291.0)]
    first_b = [("b", 380.0), ("a", 296.8), ("b", 290.9), ("a", 296.8), ("b", 291.0), ("a", 297.0)]
    got = []
    for order in (first_a, first_b):
        loads = pd.DataFrame([{"model": m, "load_seconds": 1.0, "rss_mb": r} for m, r in order])
        t = common.timing(calls, loads).set_index("model")["rss_mb"]
        got.append((t["a"], t["b"]))
    assert got[0] == pytest.approx((296.8, 291.0)) and got[1] == pytest.approx((296.8, 291.0))
    # the largest load would rank them by which went first: a above b, then b above a
