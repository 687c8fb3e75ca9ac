"""Classification statistics: every figure equals scikit-learn's / statsmodels' on the same rows, a hand-made
case checks by eye, and null simulations shaped like small studies keep false positives near alpha."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix, f1_score,
                             fbeta_score, precision_recall_fscore_support)
from statsmodels.stats.contingency_tables import cochrans_q, mcnemar

from benchmark.stats import label as L
from benchmark.stats import label_baselines as LB
from benchmark.stats import label_compare as LC
from benchmark.stats import label_items as LI
from benchmark.stats import label_synth as LS
from benchmark.stats.label import INVALID
from benchmark.stats.label_synth import SynthLabelModel

BIN = ["spam", "ham"]
TRI = ["negative", "neutral", "positive"]


def _raw(calls: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The rows as a user would score them by hand: gold and predicted strings, invalid = "(invalid)"."""
    df = calls.merge(items[["item_id", "target_label"]], on="item_id", how="left")
    ok = df["valid"].astype(bool) & df["label"].notna()
    df["pred"] = np.where(ok, df["label"].astype(object), INVALID)
    df["gold"] = df["target_label"].astype(object)
    return df


def _naive_vote(answers: list[str], gold: str) -> float:
    """Credit of the majority of the valid answers: 1 right, 0 wrong, 1/t for a t-way tie that includes the
    gold label (0 for one that does not); no valid answer -> 0."""
    cnt = Counter(a for a in answers if a != INVALID)
    if not cnt:
        return 0.0
    top = [lab for lab, c in cnt.items() if c == max(cnt.values())]
    return 1 / len(top) if gold in top else 0.0


def _naive_agreement(answers: list[str]) -> float:
    pairs = list(itertools.combinations(answers, 2))
    return np.mean([a == b for a, b in pairs]) if pairs else np.nan


# --------------------------------------------------------------------------- a case to check by eye


@pytest.fixture()
def hand():
    """4 items x 2 iterations, two models.

    item  gold   A            B
    i1    spam   spam spam    spam ham     (B ties: credit 1/2)
    i2    spam   spam ham     ham  ham     (A ties: credit 1/2)
    i3    ham    ham  invalid ham  ham     (A's only valid answer is its vote: right)
    i4    ham    spam spam    ham  spam    (B ties: credit 1/2)
    """
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4"], "target_label": ["spam", "spam", "ham", "ham"],
                          "split": None})
    answers = {"A": [("spam", "spam"), ("spam", "ham"), ("ham", None), ("spam", "spam")],
               "B": [("spam", "ham"), ("ham", "ham"), ("ham", "ham"), ("ham", "spam")]}
    rows = []
    for model, per_item in answers.items():
        for item, pair in zip(items["item_id"], per_item):
            for it, lab in enumerate(pair):
                rows.append({"model": model, "family": "f", "quant": "Q8_0" if model == "A" else "Q4_K_M",
                             "variant": None, "iteration": it, "item_id": item, "valid": lab is not None,
                             "label": lab, "confidence": np.nan if lab is None else 0.9,
                             "wall_seconds": 2.0 if model == "A" else 1.0})
    return pd.DataFrame(rows), items


def test_a_run_whose_items_share_one_gold_label_scores_without_warnings(hand):
    """One item (or all of one class), as a one-item demo gives: the figures are the hand-made case's
    on those items, and sklearn's "a single label was found" warning does not reach the user."""
    import warnings

    calls, items = hand
    one = items[items["item_id"] == "i1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pm = L.per_model(calls[calls["item_id"] == "i1"], one, BIN, positive="spam").set_index("model")
    assert pm.loc["A", "accuracy"] == pm.loc["A", "balanced_accuracy"] == 1.0
    assert pm.loc["B", "accuracy"] == pm.loc["B", "balanced_accuracy"] == 0.5


def test_a_label_no_item_has_is_left_out_of_macro_f1(hand):
    """A task that lists a label none of its items has (a 'neutral' the data never uses): a model right on
    every call scores macro-F1 1, not 2/3 (the absent label's F1 of 0 in the average), and a model that
    answers that label wrongly is still penalized (its calls are misses of the items' labels)."""
    calls, items = hand
    right = calls.copy()
    right["label"] = right["item_id"].map(dict(zip(items["item_id"], items["target_label"])))
    right["valid"] = True
    three = ["spam", "ham", "neutral"]
    pm = L.per_model(right, items, three).set_index("model")
    assert pm.loc["A", "accuracy"] == 1.0 and pm.loc["A", "macro_f1"] == pytest.approx(1.0)
    wrong = right.copy()
    wrong.loc[wrong["item_id"] == "i1", "label"] = "neutral"  # i1 (spam) answered 'neutral' every time
    pm = L.per_model(wrong, items, three).set_index("model")
    # spam: recall 1/2, precision 1 -> F1 2/3; ham: F1 1; averaged over the two labels the items have
    assert pm.loc["A", "macro_f1"] == pytest.approx((2 / 3 + 1) / 2)


def test_hand_made_case_by_eye(hand):
    calls, items = hand
    pm = L.per_model(calls, items, BIN, positive="spam", betas=(0.5,), price_per_hour=3.6).set_index("model")
    a, b = pm.loc["A"], pm.loc["B"]
    assert (a["calls"], a["items"], a["iterations"]) == (8, 4, 2)
    assert a["accuracy"] == pytest.approx(4 / 8)  # the invalid reply counts wrong
    assert a["accuracy_answered"] == pytest.approx(4 / 7)
    assert a["invalid_rate"] == pytest.approx(1 / 8)
    # spam: 3 of 4 found, 5 said spam of which 3 right; ham: 1 of 4 found, 2 said ham of which 1 right
    assert a["recall"] == pytest.approx(0.75) and a["precision"] == pytest.approx(0.6)
    assert a["balanced_accuracy"] == pytest.approx(0.5)
    assert a["macro_f1"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    # kappa with INVALID as its own category: po = 1/2, pe = 1/2*5/8 + 1/2*2/8 = 7/16
    assert a["kappa"] == pytest.approx((1 / 2 - 7 / 16) / (1 - 7 / 16))
    # a tie is its own outcome: 1/t when gold is among the t tied labels, never the first label's win
    assert a["vote_accuracy"] == pytest.approx((1 + 1 / 2 + 1 + 0) / 4) and a["vote_ties"] == 1
    assert b["vote_accuracy"] == pytest.approx((1 / 2 + 0 + 1 + 1 / 2) / 4) and b["vote_ties"] == 2
    # two iterations, no invalid reply: the vote gains nothing over one call (B); A's gain is i3's invalid call
    assert b["vote_accuracy"] == pytest.approx(b["accuracy"])
    assert a["self_consistency"] == pytest.approx(2 / 4) and b["self_consistency"] == pytest.approx(2 / 4)
    assert a["s_per_sample"] == 2.0 and a["cost_per_1k"] == pytest.approx(3.6 * 2.0 * 1000 / 3600)
    assert a["mean_confidence"] == pytest.approx(0.9)
    # the label order changes nothing
    flipped = L.per_model(calls, items, ["ham", "spam"]).set_index("model")
    assert flipped.loc["A", "vote_accuracy"] == pytest.approx(a["vote_accuracy"])
    pi = L.per_item(calls, items, BIN).set_index(["model", "item_id"])
    assert pi.loc[("A", "i2"), "vote"] == "(tie: spam, ham)" and pi.loc[("A", "i3"), "vote"] == "ham"
    assert pi.loc[("B", "i4"), "vote_credit"] == 0.5 and bool(pi.loc[("B", "i4"), "vote_tied"])

    cm = L.confusion(calls, items, BIN)
    assert cm["A"].loc["spam"].tolist() == [3, 1, 0] and cm["A"].loc["ham"].tolist() == [2, 1, 1]
    assert cm["B"].loc["spam"].tolist() == [1, 3, 0] and cm["B"].loc["ham"].tolist() == [1, 3, 0]
    assert list(cm["A"].columns) == ["spam", "ham", INVALID]

    pc = L.per_class(calls, items, BIN).set_index(["model", "class"])
    assert pc.loc[("A", "ham"), "precision"] == pytest.approx(0.5) and pc.loc[("A", "ham"), "recall"] == 0.25
    assert pc.loc[("A", "ham"), "support"] == 4

    cmp = LC.compare_pairs(calls, items, [["A", "B"]]).iloc[0]
    assert cmp["items"] == 4 and cmp["diff"] == pytest.approx(0.0)
    assert cmp["accuracy_reference"] == pytest.approx(0.5) and cmp["accuracy_candidate"] == pytest.approx(0.5)
    # votes: McNemar leaves out the items either vote ties on (i1, i2, i4): i3 is left, right for both
    assert cmp["mcnemar_items"] == 1 and (cmp["mcnemar_ref_only"], cmp["mcnemar_cand_only"]) == (0, 0)
    assert cmp["mcnemar_p_exact"] == pytest.approx(1.0) and cmp["mcnemar_p_midp"] == pytest.approx(1.0)
    assert cmp["vote_accuracy_reference"] == pytest.approx(a["vote_accuracy"])
    # matched calls: right->wrong at (i1,1) (i2,0); wrong->right at (i3,1) (i4,0); answers differ at those four
    assert cmp["matched_calls"] == 8
    assert cmp["right_to_wrong"] == pytest.approx(2 / 8) and cmp["wrong_to_right"] == pytest.approx(2 / 8)
    assert cmp["flip_rate"] == pytest.approx(4 / 8) and cmp["answer_flip_rate"] == pytest.approx(4 / 8)
    # A's own iterations disagree on i2 (right/wrong) and i3 (right/invalid): 2 of 4 pairs
    assert cmp["ref_flip_rate"] == pytest.approx(2 / 4) and cmp["ref_answer_flip_rate"] == pytest.approx(2 / 4)
    assert "majority-vote" in cmp["note"]

    q = LC.cochran_q(calls, items)
    # the same rule: one untied item, no discordance, no statistic
    assert (q["items"], q["models"]) == (1, 2) and np.isnan(q["Q"])


# --------------------------------------------------------------------------- equal to the libraries on the rows


@pytest.fixture(scope="module")
def tri():
    models = [SynthLabelModel("big", 0.85, family="f1", quant="Q8_0", invalid_rate=0.03),
              SynthLabelModel("small", 0.7, family="f1", quant="Q4_K_M", invalid_rate=0.1),
              SynthLabelModel("other", 0.6, family="f2", quant="Q4_K_M", item_effect_sd=1.0)]
    return LS.synthetic_calls(models, 45, 4, TRI, priors=[0.5, 0.2, 0.3], seed=11)


@pytest.fixture(scope="module")
def binary():
    models = [SynthLabelModel("x", 0.8, invalid_rate=0.05), SynthLabelModel("y", 0.72, invalid_rate=0.02)]
    return LS.synthetic_calls(models, 60, 3, BIN, priors=[0.3, 0.7], seed=5)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_per_model_equals_sklearn_on_the_rows(tri, binary):
    for (calls, items), labels, pos in ((tri, TRI, None), (binary, BIN, "spam")):
        pm = L.per_model(calls, items, labels, positive=pos, betas=(0.3, 0.8)).set_index("model")
        raw = _raw(calls, items)
        assert list(pm.index) == list(pd.unique(calls["model"]))
        for model, r in raw.groupby("model"):
            row = pm.loc[model]
            y, p = r["gold"], r["pred"]
            ans = p != INVALID
            assert row["accuracy"] == pytest.approx(accuracy_score(y, p))
            assert row["accuracy_answered"] == pytest.approx(accuracy_score(y[ans], p[ans]))
            assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
            assert row["macro_f1"] == pytest.approx(f1_score(y, p, labels=labels, average="macro", zero_division=0))
            assert row["kappa"] == pytest.approx(cohen_kappa_score(y, p))
            assert row["invalid_rate"] == pytest.approx(1 - ans.mean())
            if pos:
                pr, rc, f1, _ = precision_recall_fscore_support(y, p, labels=[pos], zero_division=0)
                assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((pr[0], rc[0], f1[0]))
                for b in (0.3, 0.8):
                    assert row[f"f_beta_{b:g}"] == pytest.approx(fbeta_score(y, p, beta=b, labels=[pos],
                                                                             average=None, zero_division=0)[0])
            else:
                assert "precision" not in row
                assert row["f_beta_0.3"] == pytest.approx(fbeta_score(y, p, beta=0.3, labels=labels,
                                                                      average="macro", zero_division=0))
            per_item = r.groupby("item_id")
            votes = per_item.apply(lambda g: _naive_vote(list(g["pred"]), g["gold"].iloc[0]))
            assert row["vote_accuracy"] == pytest.approx(votes.mean())
            assert row["self_consistency"] == pytest.approx(per_item["pred"].apply(
                lambda s: _naive_agreement(list(s))).mean())
            assert row["s_per_sample"] == pytest.approx(r["wall_seconds"].mean())
            assert np.isnan(row["cost_per_1k"])
            assert row["mean_confidence"] == pytest.approx(r.loc[ans, "confidence"].mean())


def test_per_class_and_confusion_equal_sklearn(tri):
    calls, items = tri
    raw = _raw(calls, items)
    pc = L.per_class(calls, items, TRI)
    cms = L.confusion(calls, items, TRI)
    assert list(pc.columns) == ["model", "class", "precision", "recall", "f1", "support"]
    for model, r in raw.groupby("model"):
        got = pc[pc["model"] == model]
        assert list(got["class"]) == TRI
        pr, rc, f1, sup = precision_recall_fscore_support(r["gold"], r["pred"], labels=TRI, zero_division=0)
        np.testing.assert_allclose(got[["precision", "recall", "f1"]].to_numpy(), np.c_[pr, rc, f1])
        assert got["support"].tolist() == sup.tolist()
        cm = confusion_matrix(r["gold"], r["pred"], labels=TRI + [INVALID])[:3]
        np.testing.assert_array_equal(cms[model].to_numpy(), cm)
        assert cms[model].to_numpy().sum() == len(r)


@pytest.mark.slow
def test_mcnemar_and_cochran_equal_statsmodels_on_per_item_votes(tri):
    calls, items = tri
    pi = L.per_item(calls, items, TRI)
    votes = pi.pivot(index="item_id", columns="model", values="vote_credit") == 1  # right by an untied majority
    tied = pi.pivot(index="item_id", columns="model", values="vote_tied").astype(bool)
    assert tied.to_numpy().any()  # four iterations over three labels: some votes tie
    cmp = LC.compare_pairs(calls, items, [["big", "small"], ["big", "other"], ["small", "other"]]).set_index(
        ["reference", "candidate"])
    exact, mid = [], []
    for ref, cand in cmp.index:
        untied = ~(tied[ref] | tied[cand]).to_numpy()  # a tied item has no binary outcome: left out
        r, c = votes[ref].to_numpy()[untied], votes[cand].to_numpy()[untied]
        table = [[np.sum(r & c), np.sum(r & ~c)], [np.sum(~r & c), np.sum(~r & ~c)]]
        p = mcnemar(table, exact=True).pvalue
        b, cc = table[0][1], table[1][0]
        k, n = min(b, cc), b + cc
        # mid-p: twice the probability of a more extreme count plus half the observed one
        midp = min(1.0, 2 * (ss.binom.cdf(k - 1, n, 0.5) + 0.5 * ss.binom.pmf(k, n, 0.5)))
        row = cmp.loc[(ref, cand)]
        assert (row["mcnemar_ref_only"], row["mcnemar_cand_only"]) == (b, cc)
        assert row["mcnemar_p_exact"] == pytest.approx(p) and row["mcnemar_p_midp"] == pytest.approx(midp)
        assert row["mcnemar_p_midp"] <= row["mcnemar_p_exact"]
        exact.append(p)
        mid.append(midp)
        # the difference is the mean over items of the per-item accuracy difference
        acc = pi.pivot(index="item_id", columns="model", values="accuracy")
        assert row["diff"] == pytest.approx((acc[cand] - acc[ref]).mean())
        assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    # Holm across the pairs, as statsmodels computes it
    from statsmodels.stats.multitest import multipletests
    np.testing.assert_allclose(cmp["mcnemar_p_exact_holm"], multipletests(exact, method="holm")[1])
    np.testing.assert_allclose(cmp["mcnemar_p_midp_holm"], multipletests(mid, method="holm")[1])
    q = LC.cochran_q(calls, items)
    none_tied = ~tied.any(axis=1).to_numpy()
    ref = cochrans_q(votes[list(pd.unique(calls["model"]))].to_numpy()[none_tied].astype(int))
    assert q["Q"] == pytest.approx(ref.statistic) and q["p"] == pytest.approx(ref.pvalue) and q["df"] == 2
    assert q["items"] == int(none_tied.sum()) and q["models"] == 3


def test_compare_pairs_interval_is_the_item_bootstrap(tri):
    calls, items = tri
    row = LC.compare_pairs(calls, items, [["big", "small"]], n_boot=500, seed=3).iloc[0]
    acc = L.per_item(calls, items, TRI).pivot(index="item_id", columns="model", values="accuracy")
    d = (acc["small"] - acc["big"]).to_numpy()
    lo, hi = LC.bootstrap_diff_ci(d, 0.05, 500, np.random.SeedSequence(3).spawn(1)[0])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
    # the expanded interval contains the plain percentile one, drawn from the same resamples
    plo, phi = LC.bootstrap_diff_ci(d, 0.05, 500, np.random.SeedSequence(3).spawn(1)[0], method="percentile")
    assert lo <= plo and phi <= hi


# --------------------------------------------------------------------------- baselines and the generator


def test_baselines_spam_ham_39_11():
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(50)], "target_label": ["spam"] * 39 + ["ham"] * 11})
    bl = LB.baselines(items, BIN, positive="spam", betas=(0.5,)).set_index("model")
    assert list(bl.index) == ["majority (spam)", "always spam", "always ham", "stratified random"]
    assert bl.loc["always spam", "accuracy"] == pytest.approx(0.78)
    assert bl.loc["always ham", "accuracy"] == pytest.approx(0.22)
    assert bl.loc["majority (spam)", "accuracy"] == pytest.approx(0.78)
    assert bl.loc["always spam", "recall"] == 1.0 and bl.loc["always spam", "precision"] == pytest.approx(0.78)
    assert bl.loc["always ham", "recall"] == 0.0 and bl.loc["always ham", "balanced_accuracy"] == 0.5
    assert bl.loc["always spam", "kappa"] == pytest.approx(0.0)
    # stratified guessing is right with probability sum(p_k^2)
    assert bl.loc["stratified random", "accuracy"] == pytest.approx(0.78 ** 2 + 0.22 ** 2, abs=0.015)
    assert abs(bl.loc["stratified random", "kappa"]) < 0.05
    # rows shaped like per_model rows
    calls, its = LS.synthetic_calls([SynthLabelModel("m")], 10, 2, BIN, seed=0)
    pm = L.per_model(calls, its, BIN, positive="spam", betas=(0.5,))
    metric_cols = [c for c in pm.columns if c not in ("model", "family", "quant", "variant", "mean_confidence")]
    assert [c for c in bl.columns if c != "strategy"] == metric_cols


def test_generator_has_the_properties_it_claims():
    models = [SynthLabelModel("a", 0.8, invalid_rate=0.1, seconds=2.0), SynthLabelModel("b", 0.6)]
    calls, items = LS.synthetic_calls(models, 3000, 4, BIN, seed=1, difficulty_sd=1.0)
    assert len(calls) == 2 * 3000 * 4 and items["item_id"].is_unique
    pm = L.per_model(calls, items, BIN).set_index("model")
    assert pm.loc["a", "accuracy_answered"] == pytest.approx(0.8, abs=0.015)
    assert pm.loc["b", "accuracy_answered"] == pytest.approx(0.6, abs=0.015)
    assert pm.loc["a", "invalid_rate"] == pytest.approx(0.1, abs=0.01)
    assert pm.loc["a", "s_per_sample"] == pytest.approx(2.0, rel=0.02)
    # iterations of one item are correlated: they agree more than independent draws would (a^2 + (1-a)^2)
    assert pm.loc["b", "self_consistency"] > 0.6 ** 2 + 0.4 ** 2 + 0.1
    # and the difficulty is shared: the two models' per-item accuracies correlate
    acc = L.per_item(calls, items).pivot(index="item_id", columns="model", values="accuracy")
    assert acc["a"].corr(acc["b"]) > 0.3


def test_voting_beats_single_samples_when_iterations_are_noisy():
    # 78 % per sample, items alike (little shared difficulty): the errors are mostly per-call noise
    calls, items = LS.synthetic_calls([SynthLabelModel("m", 0.78, item_effect_sd=0.3)], 600, 5, BIN, seed=2,
                                     difficulty_sd=0.3)
    row = L.per_model(calls, items, BIN).iloc[0]
    print(f"\nper-sample accuracy {row['accuracy']:.3f}, majority of 5 {row['vote_accuracy']:.3f}")
    assert row["accuracy"] == pytest.approx(0.78, abs=0.02)
    assert row["vote_accuracy"] > row["accuracy"] + 0.08


# --------------------------------------------------------------------------- false positives and power


def _studies(accuracies, n_items, n_iter, runs, seed, difficulty_sd=1.0, item_effect_sd=0.3):
    """``runs`` independent studies of ``n_items`` items, from one synthetic frame split by item: arrays
    (models, runs, items) of per-item accuracy and majority-vote correctness."""
    models = [SynthLabelModel(f"m{k}", a, item_effect_sd=item_effect_sd) for k, a in enumerate(accuracies)]
    calls, items = LS.synthetic_calls(models, n_items * runs, n_iter, BIN, seed=seed, difficulty_sd=difficulty_sd)
    pi = L.per_item(calls, items, BIN)
    names = [m.name for m in models]
    acc = pi.pivot(index="item_id", columns="model", values="accuracy").loc[items["item_id"], names]
    vote = (pi.pivot(index="item_id", columns="model", values="vote_credit") == 1).loc[items["item_id"], names]
    shape = (runs, n_items, len(names))
    return (acc.to_numpy().reshape(shape).transpose(2, 0, 1),
            vote.to_numpy().astype(bool).reshape(shape).transpose(2, 0, 1))


def _rates(acc, vote, alpha=0.05, n_boot=2000, seed=0):
    runs = acc.shape[1]
    seeds = np.random.SeedSequence(seed).spawn(runs)
    boot = mid = exact = q = 0
    attainable = 0.0
    size_cache = {}
    for r in range(runs):
        lo, hi = LC.bootstrap_diff_ci(acc[1, r] - acc[0, r], alpha, n_boot, seeds[r])
        boot += lo > 0 or hi < 0
        mc = LC.mcnemar_test(vote[0, r], vote[1, r])
        mid += mc["p_midp"] < alpha
        exact += mc["p_exact"] < alpha
        q += LC.cochran_q_test(vote[:, r].T)["p"] < alpha
        # the best rate a level-alpha mid-p test can reach with this many discordant items
        n_d = mc["ref_only"] + mc["cand_only"]
        if n_d not in size_cache:
            size_cache[n_d] = sum(ss.binom.pmf(x, n_d, 0.5) for x in range(n_d + 1)
                                  if LC.mcnemar_test([1] * x + [0] * (n_d - x), [0] * x + [1] * (n_d - x))["p_midp"]
                                  < alpha)
        attainable += size_cache[n_d]
    return {"bootstrap": boot / runs, "midp": mid / runs, "exact": exact / runs, "cochran": q / runs,
            "midp_attainable": attainable / runs}


@pytest.mark.slow
@pytest.mark.parametrize("n_items", [24, 50])
def test_false_positive_rates_under_the_null(n_items):
    runs = 2000  # Monte Carlo standard error of a 5 % rate: 0.5 points
    # three models of equal accuracy; items differ in difficulty, shared by the models; iterations correlated
    acc, vote = _studies([0.75, 0.75, 0.75], n_items, 3, runs, seed=100 + n_items)
    rates = _rates(acc, vote, seed=n_items)
    print(f"\nnull, {n_items} items x 3 iterations, {runs} runs: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    assert 0.03 <= rates["bootstrap"] <= 0.07, rates
    assert 0.03 <= rates["cochran"] <= 0.07, rates
    assert rates["exact"] <= rates["midp"] <= 0.07, rates  # exact McNemar is conservative by construction
    # mid-p reaches the rate its discreteness allows; with 50 items that is near alpha
    assert abs(rates["midp"] - rates["midp_attainable"]) < 3 * np.sqrt(0.05 * 0.95 / runs), rates
    if n_items >= 50:
        assert 0.03 <= rates["midp"] <= 0.07, rates


@pytest.mark.slow
def test_power_against_a_15_point_difference():
    runs = 500
    acc, vote = _studies([0.70, 0.85], 100, 3, runs, seed=7)
    rates = _rates(acc, vote, seed=1)
    print(f"\npower, 100 items x 3 iterations, 70 % vs 85 %, {runs} runs: "
          + ", ".join(f"{k} {v:.3f}" for k, v in rates.items() if k != "midp_attainable"))
    assert rates["bootstrap"] >= 0.9 and rates["midp"] >= 0.85 and rates["exact"] >= 0.8, rates


# --------------------------------------------------------------------------- the paired measures of the report


def test_table_metrics_equal_sklearn_on_weighted_rows():
    """The hand-written vectorized metrics of summed gold x answer tables (used by the jackknife) equal
    scikit-learn's on the rows the tables count."""
    rng = np.random.default_rng(4)
    for K in (2, 3, 5):
        for _ in range(20):
            t = rng.integers(0, 6, (K, K + 1)).astype(float)
            t[rng.integers(K)] = 0 if rng.random() < 0.2 else t[rng.integers(K)]  # sometimes a class is absent
            if t.sum() == 0:
                continue
            g, p = np.meshgrid(np.arange(K), np.arange(K + 1), indexing="ij")
            w = t.ravel()
            keep = w > 0
            y, yhat, sw = g.ravel()[keep], p.ravel()[keep], w[keep]
            with warnings_off():
                assert LI.table_metric("accuracy", K)(t) == pytest.approx(accuracy_score(y, yhat, sample_weight=sw))
                # macro over the labels that occur as gold (a class no item has is left out)
                assert LI.table_metric("macro_f1", K)(t.ravel()) == pytest.approx(
                    f1_score(y, yhat, labels=np.unique(y), average="macro", sample_weight=sw, zero_division=0))
                assert LI.table_metric("kappa", K)(t) == pytest.approx(cohen_kappa_score(y, yhat, sample_weight=sw),
                                                                     nan_ok=True)
                if len(np.unique(y)) == K:
                    assert LI.table_metric("balanced_accuracy", K)(t) == pytest.approx(
                        balanced_accuracy_score(y, yhat, sample_weight=sw))
                pr, rc, f1, _ = precision_recall_fscore_support(y, yhat, labels=[0], sample_weight=sw, zero_division=0)
                assert LI.table_metric("precision", K, 0)(t) == pytest.approx(pr[0])
                assert LI.table_metric("recall", K, 0)(t) == pytest.approx(rc[0])
                assert LI.table_metric("f1", K, 0)(t) == pytest.approx(f1[0])
                assert LI.table_metric("f_beta_0.5", K, 0)(t) == pytest.approx(
                    fbeta_score(y, yhat, beta=0.5, labels=[0], average=None, sample_weight=sw, zero_division=0)[0])


def warnings_off():
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning

    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore", UndefinedMetricWarning)
    warnings.simplefilter("ignore", UserWarning)
    warnings.simplefilter("ignore", RuntimeWarning)

    class _Ctx:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return w.__exit__(*exc)

    return _Ctx()


@pytest.fixture(scope="module")
def label_report(tmp_path_factory):
    from benchmark import report as rpt
    from benchmark.store import Store
    from benchmark.synthetic import write_label_db

    path = tmp_path_factory.mktemp("label") / "l.sqlite"
    models = [SynthLabelModel("b-f16", 0.82, family="b", quant="F16", invalid_rate=0.04),
              SynthLabelModel("b-q8", 0.80, family="b", quant="Q8_0", invalid_rate=0.02),
              SynthLabelModel("b-q4", 0.66, family="b", quant="Q4_K_M", invalid_rate=0.08),
              SynthLabelModel("ft-q4", 0.9, family="ft", quant="Q4_K_M", seconds=0.5)]
    write_label_db(path, models, 50, 3, BIN, priors=[0.78, 0.22], seed=8, run_id="l", positive="spam", betas=[0.5])
    with Store(path) as store:
        rep = rpt.build(store, "l")
        calls = pd.read_sql_query("SELECT c.model, c.item_id, c.iteration, c.valid, c.label, c.confidence, "
                                  "i.target_label FROM calls c JOIN items i USING (run_id, item_id)", store.db)
    calls["pred"] = np.where(calls["valid"] == 1, calls["label"].fillna(INVALID), INVALID)
    calls["right"] = (calls["pred"] == calls["target_label"]).astype(float)
    return rep, calls


@pytest.mark.slow
def test_label_paired_measures_recompute(label_report):
    rep, calls = label_report
    long = rep.sheet("Comparisons").appendix[1][2].set_index(["candidate", "metric"])
    acc = calls.pivot_table(index="item_id", columns="model", values="right")
    for cand in ("b-q8", "b-q4"):
        row = long.loc[(cand, "accuracy")]
        assert row["p"] == pytest.approx(ss.ttest_rel(acc[cand], acc["b-f16"]).pvalue)
        assert row["estimate"] == pytest.approx((acc[cand] - acc["b-f16"]).mean())
        # macro-F1: paired t on leave-one-item-out pseudo-values, recomputed with scikit-learn
        items = list(acc.index)
        n = len(items)

        def f1(model, drop=None):
            s = calls[(calls.model == model) & (calls.item_id != drop)]
            return f1_score(s["target_label"], s["pred"], labels=BIN, average="macro", zero_division=0)

        full = f1(cand) - f1("b-f16")
        pseudo = [n * full - (n - 1) * (f1(cand, i) - f1("b-f16", i)) for i in items]
        mf = long.loc[(cand, "macro_f1")]
        assert mf["estimate"] == pytest.approx(full)
        assert mf["p"] == pytest.approx(2 * ss.t.sf(abs(full / ss.sem(pseudo)), n - 1))
    assert rep.refs == {"b-q8": "b-f16", "b-q4": "b-f16"}
    assert rep.best.get("s_per_sample") == "ft-q4"


def test_label_decision_recomputes_with_statsmodels(label_report):
    from statsmodels.stats.weightstats import ttost_paired

    rep, calls = label_report
    acc = calls.pivot_table(index="item_id", columns="model", values="right")
    dec = rep.decision_long.set_index(["candidate", "metric"])
    for cand in ("b-q8", "b-q4"):
        row = dec.loc[(cand, "accuracy")]
        p, lower, upper = ttost_paired(acc[cand].to_numpy(), acc["b-f16"].to_numpy(), -0.02, 0.02)
        assert row["p_equivalence"] == pytest.approx(p)
        assert row["p_noninferior"] == pytest.approx(lower[1])  # H0: candidate lower by 2 points or more
        assert row["diff"] == pytest.approx((acc[cand] - acc["b-f16"]).mean())
    assert dec.loc[("b-q4", "accuracy"), "verdict"] == "worse"
    assert rep.sheet("Decision").table.iloc[0]["model"] == "b-f16"
    assert any(line.startswith("b-q4 vs b-f16: WORSE") for line in rep.decision_lines)


def test_label_calibration_uses_the_label_probability_when_stored():
    calls = pd.DataFrame({"model": "m", "item_id": ["a", "a", "b", "b"], "iteration": [0, 1, 0, 1],
                          "valid": [True, True, True, False], "label": ["spam", "ham", "spam", None],
                          "confidence": [0.9, 0.9, 0.9, np.nan],
                          "label_probs_json": ['{"spam": 0.7, "ham": 0.3}', '{"spam": 0.4, "ham": 0.6}', None, None],
                          "wall_seconds": 1.0})
    items = pd.DataFrame({"item_id": ["a", "b"], "target_label": ["spam", "ham"]})
    d = LI.LabelData.of(calls, items, BIN)
    # the answered label's probability when stored, else the stated confidence; invalid calls have none
    assert d.confidence[0, 0].tolist() == [0.7, 0.6] and d.confidence[0, 1, 0] == 0.9
    assert np.isnan(d.confidence[0, 1, 1])
