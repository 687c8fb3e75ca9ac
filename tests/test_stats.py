"""Value-task statistics and the report: every reported figure recomputes with scipy / statsmodels /
scikit-learn from the stored rows, the Decision says what a reader can act on, the colours are
honest, and `report` reads the run's own stored settings."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss
from statsmodels.stats.multitest import multipletests

from benchmark import report as rpt
from benchmark.report import colours
from benchmark.stats import anova as AN
from benchmark.stats import common
from benchmark.stats import paired as P
from benchmark.stats import value as stats
from benchmark.store import Store
from benchmark.synthetic import SynthModel, write_db
from tests.conftest import shootout

BASE, SHIFTED, NOISY, FOURTH = "base", "shifted", "noisy", "fourth"
BAND = 0.1


@pytest.fixture(scope="module")
def effects_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("stats") / "effects.sqlite"
    models = [SynthModel(BASE, family="f1", quant="Q8_0", invalid_rate=0.08),
              SynthModel(SHIFTED, shift=0.2, family="f1", quant="Q4_K_M", invalid_rate=0.05),
              SynthModel(NOISY, sd=0.1 * np.sqrt(3), family="f2", quant="Q8_0", invalid_rate=0.05),
              SynthModel(FOURTH, family="f2", quant="Q4_K_M", seconds=0.5)]
    write_db(path, models, n_articles=40, n_iterations=6, seed=3, run_id="fx", pairs=[(BASE, SHIFTED), (BASE, NOISY)])
    store_sizes(path, "fx", models, {BASE: 300.0, SHIFTED: 180.0, NOISY: 310.0, FOURTH: 190.0})
    return path


def store_sizes(path, run_id: str, models, mb: dict[str, float]) -> None:
    """The facts a run stores about its arms (``Store.add_arms``), with model files of ``mb`` megabytes."""
    from benchmark.store.rows import ArmFacts

    with Store(path) as store:
        store.add_arms([ArmFacts(run_id=run_id, model=m.name, entry=m.name, backend="llamacpp", family=m.family,
                                 quant=m.quant, prompt_style="few_shot", model_bytes=int(mb[m.name] * 1e6),
                                 location=f"models/{m.name}.gguf") for m in models])


@pytest.fixture(scope="module")
def effects(effects_db):
    with Store(effects_db) as store:
        rep = rpt.build(store, "fx")
        calls, items, loads = common.load_frames(store, "fx")
    return rep, calls, items


def _raw(calls: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The calls as a user would score them by hand: label, error (invalid = worst), direction right."""
    df = calls.merge(items[["item_id", "target_value"]], on="item_id")
    t = df["target_value"]
    worst = np.maximum(t + 1, 1 - t)
    df["err"] = np.where(df["valid"], (df["value"] - t).abs(), worst)
    df["err_answered"] = np.where(df["valid"], (df["value"] - t).abs(), np.nan)

    def direction(x):
        return np.where(np.abs(x) < BAND, 0, np.sign(x))

    df["right"] = np.where(df["valid"], direction(df["value"]) == direction(t), False).astype(float)
    return df


def _per_item(raw: pd.DataFrame, col: str, how="mean") -> pd.DataFrame:
    return raw.pivot_table(index="item_id", columns="model", values=col, aggfunc=how)


def test_report_finds_the_shift_and_the_variance_difference(effects):
    rep, _, _ = effects
    cmp = rep.sheet("Comparisons").table.set_index(["candidate", "metric"])
    shift = cmp.loc[(SHIFTED, "mean_value")]
    assert shift["p_holm"] < 0.01 and shift["direction"] == "differs"
    assert shift["ci95_low"] < 0.2 < shift["ci95_high"] and abs(shift["estimate"] - 0.2) < 0.05
    assert cmp.loc[(SHIFTED, "mae"), "direction"] == "worse"
    noisy = cmp.loc[(NOISY, "value_variance")]
    assert noisy["p"] < 0.01 and noisy["direction"] == "worse"
    assert 2 < noisy["estimate"] < 4.5  # the variance ratio (3 planted)
    assert abs(cmp.loc[(NOISY, "mean_value"), "estimate"]) < 0.05
    # the unpaired Welch view and Tukey's HSD are gone
    assert not any("welch" in c for c in rep.sheet("Comparisons").table.columns)
    assert all("tukey" not in csv for _, csv, _ in rep.sheet("ANOVA").appendix)


@pytest.mark.slow
def test_pair_figures_recompute_with_scipy_and_statsmodels(effects):
    from statsmodels.stats.power import TTestPower

    rep, calls, items = effects
    raw = _raw(calls, items)
    valid = raw[raw["valid"]]
    cmp = rep.sheet("Comparisons").table.set_index(["candidate", "metric"])
    raw_p = {}
    for b in (SHIFTED, NOISY):
        for metric, frame in (("mean_value", _per_item(valid, "value")), ("mae", _per_item(raw, "err")),
                              ("mae_answered", _per_item(raw, "err_answered")),
                              ("sign_accuracy", _per_item(raw, "right"))):
            row = cmp.loc[(b, metric)]
            m = frame[[BASE, b]].dropna()
            t = ss.ttest_rel(m[b], m[BASE])
            assert row["items"] == len(m)
            assert row["p"] == pytest.approx(t.pvalue)
            d = m[b] - m[BASE]
            assert row["estimate"] == pytest.approx(d.mean())
            lo, hi = ss.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=ss.sem(d))
            assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((lo, hi))
            dz = TTestPower().solve_power(nobs=len(d), alpha=0.05, power=0.8, alternative="two-sided")
            assert row["mde80"] == pytest.approx(dz * d.std(ddof=1), rel=1e-4)
            raw_p.setdefault(metric, {})[b] = t.pvalue
        # seconds per call: the geometric-mean ratio over calls paired by (item, iteration block), its
        # standard error statsmodels' two-way cluster-robust one (item and block) or, where that is smaller,
        # the larger one-way one (benchmark.stats.speed)
        import statsmodels.api as sm

        w = raw.pivot_table(index=["item_id", "iteration"], columns="model", values="wall_seconds")[[BASE, b]].dropna()
        d = (np.log(w[b]) - np.log(w[BASE])).to_numpy()
        groups = np.column_stack([pd.factorize(w.index.get_level_values(0))[0], w.index.get_level_values(1)])
        se = max(float(sm.OLS(d, np.ones(len(d))).fit(cov_type="cluster", cov_kwds={"groups": g}).bse[0])
                 for g in (groups, groups[:, 0], groups[:, 1]))
        row = cmp.loc[(b, "s_per_sample")]
        assert row["estimate"] == pytest.approx(np.exp(d.mean())) and 1 <= row["df"] <= row["items"] - 1
        q = ss.t.ppf(0.975, row["df"]) * se
        assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((np.exp(d.mean() - q), np.exp(d.mean() + q)))
        assert row["p"] == pytest.approx(2 * ss.t.sf(abs(d.mean()) / se, row["df"]))
        # consistency: paired t on per-item log(variance + c), c = a tenth of the two models' mean variance
        var = valid.groupby(["item_id", "model"])["value"].var(ddof=1).unstack()[[BASE, b]].dropna()
        c = 0.1 * (var[BASE].mean() + var[b].mean()) / 2
        t = ss.ttest_rel(np.log(var[b] + c), np.log(var[BASE] + c))
        row = cmp.loc[(b, "value_variance")]
        assert row["p"] == pytest.approx(t.pvalue) and row["c"] == pytest.approx(c)
        # the estimate is what the test is about: the geometric mean of (var_b + c) / (var_a + c); the
        # arithmetic ratio of mean variances stands beside it
        assert row["estimate"] == pytest.approx(np.exp(np.mean(np.log(var[b] + c) - np.log(var[BASE] + c))))
        assert row["ratio"] == pytest.approx(var[b].mean() / var[BASE].mean())
        # agreement: direction disagreement over pairs of different iterations, against the reference's own
        d = raw.assign(code=np.where(raw["valid"], np.where(raw["value"].abs() < BAND, 0, np.sign(raw["value"])), 9))
        excess = []
        for item, g in d.groupby("item_id"):
            a = dict(zip(g[g.model == BASE]["iteration"], g[g.model == BASE]["code"]))
            bb = dict(zip(g[g.model == b]["iteration"], g[g.model == b]["code"]))
            cross = [a[i] != bb[j] for i in a for j in bb if i != j]
            own = [a[i] != a[j] for i, j in itertools.permutations(a, 2)]
            excess.append(np.mean(cross) - np.mean(own))
        row = cmp.loc[(b, "direction_disagreement")]
        assert row["estimate"] == pytest.approx(np.mean(excess))
        assert row["p"] == pytest.approx(ss.ttest_1samp(excess, 0).pvalue)
    for metric, ps in raw_p.items():
        got = rep.sheet("Comparisons").table.query("metric == @metric").set_index("candidate")["p_holm"]
        holm = multipletests([ps[SHIFTED], ps[NOISY]], method="holm")[1]
        assert [got[SHIFTED], got[NOISY]] == pytest.approx(list(holm))


def test_correlation_comparison_is_the_jackknife_on_fisher_z(effects):
    rep, calls, items = effects
    valid = calls[calls["valid"]]
    means = valid.pivot_table(index="item_id", columns="model", values="value")
    target = items.set_index("item_id")["target_value"]
    m = means[[BASE, SHIFTED]].dropna()
    y = target.loc[m.index]
    n = len(m)

    def z(col, keep):
        return np.arctanh(ss.pearsonr(m[col][keep], y[keep]).statistic)

    pseudo = []
    for i in range(n):
        keep = np.arange(n) != i
        full = z(SHIFTED, slice(None)) - z(BASE, slice(None))
        pseudo.append(n * full - (n - 1) * (z(SHIFTED, keep) - z(BASE, keep)))
    t = (z(SHIFTED, slice(None)) - z(BASE, slice(None))) / ss.sem(pseudo)
    row = rep.sheet("Comparisons").table.set_index(["candidate", "metric"]).loc[(SHIFTED, "correlation")]
    assert row["p"] == pytest.approx(2 * ss.t.sf(abs(t), n - 1))
    assert row["estimate"] == pytest.approx(ss.pearsonr(m[SHIFTED], y).statistic - ss.pearsonr(m[BASE], y).statistic)


def test_anova_and_all_pairs_recompute_with_statsmodels_and_scipy(effects):
    rep, calls, _ = effects
    import statsmodels.api as sm
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import AnovaRM

    v = calls[calls["valid"]]
    means = v.pivot_table(index="item_id", columns="model", values="value", aggfunc="mean").dropna()
    long = means.reset_index().melt(id_vars="item_id", var_name="model", value_name="s")
    ref = AnovaRM(long, "s", "item_id", within=["model"]).fit().anova_table.iloc[0]
    table = rep.sheet("ANOVA").table
    rm = table[table["test"].str.startswith("repeated")].iloc[0]
    assert rm["F"] == pytest.approx(ref["F Value"]) and rm["p_uncorrected"] == pytest.approx(ref["Pr > F"])

    def gg(x):  # Greenhouse-Geisser epsilon, textbook form on orthonormal contrasts (Helmert)
        k = x.shape[1]
        helmert = np.linalg.qr(np.vstack([np.ones(k), np.eye(k)[:-1]]).T)[0][:, 1:]  # k x (k-1), orthonormal
        s_ = helmert.T @ np.cov(x, rowvar=False) @ helmert
        return np.trace(s_) ** 2 / ((k - 1) * np.trace(s_ @ s_))

    eps = gg(means.to_numpy())
    assert rm["epsilon_gg"] == pytest.approx(eps)
    assert rm["p"] == pytest.approx(ss.f.sf(ref["F Value"], eps * ref["Num DF"], eps * ref["Den DF"]))
    # Friedman: the same ANOVA on within-item ranks, corrected; scipy's chi-square form beside it
    fr = table[table["test"].str.startswith("Friedman")].iloc[0]
    assert fr["p_chi2"] == pytest.approx(ss.friedmanchisquare(*[means[c] for c in means.columns]).pvalue)
    ranks = means.rank(axis=1)
    rlong = ranks.reset_index().melt(id_vars="item_id", var_name="model", value_name="r")
    rref = AnovaRM(rlong, "r", "item_id", within=["model"]).fit().anova_table.iloc[0]
    reps = gg(ranks.to_numpy())
    assert fr["F"] == pytest.approx(rref["F Value"])
    assert fr["p"] == pytest.approx(ss.f.sf(rref["F Value"], reps * rref["Num DF"], reps * rref["Den DF"]))
    assert float(AN.friedman_array(means.to_numpy())["p"]) == pytest.approx(fr["p"])
    fams = calls.groupby("model")[["family", "quant"]].first()
    long = long.join(fams, on="model")
    ref2 = sm.stats.anova_lm(ols("s ~ C(family) * C(quant) + C(item_id)", data=long).fit(), typ=2)
    ours = table.dropna(subset=["source"]).set_index("source")
    for source in ("C(family)", "C(quant)", "C(family):C(quant)"):
        assert ours.loc[source, "F"] == pytest.approx(ref2.loc[source, "F"])
        assert ours.loc[source, "p"] == pytest.approx(ref2.loc[source, "PR(>F)"])
    # all pairs: paired t per pair on per-item means (items each pair has), Holm across all pairs
    allp = rep.sheet("ANOVA").appendix[0][2]
    mv = allp[allp["metric"] == "mean_value"]
    full = v.pivot_table(index="item_id", columns="model", values="value", aggfunc="mean")
    ps = []
    for r in mv.itertuples(index=False):
        m = full[[r.model_a, r.model_b]].dropna()
        t = ss.ttest_rel(m[r.model_b], m[r.model_a])
        assert r.p == pytest.approx(t.pvalue) and r.items == len(m)
        ps.append(t.pvalue)
    assert list(mv["p_holm"]) == pytest.approx(list(multipletests(ps, method="holm")[1]))
    assert len(mv) == 6


def test_model_metrics_match_direct_computation(effects):
    rep, calls, items = effects
    raw = _raw(calls, items)
    d = rep.details.set_index("model")
    for name in (BASE, SHIFTED, NOISY):
        c = raw[raw.model == name]
        v = c[c.valid]
        assert d.loc[name, "valid_rate"] == pytest.approx(c.valid.mean())
        assert d.loc[name, "s_per_sample"] == pytest.approx(c.wall_seconds.mean())  # every call, valid or not
        within = v.groupby("item_id")["value"].var(ddof=1).mean()
        assert d.loc[name, "value_variance"] == pytest.approx(within)
        assert d.loc[name, "pooled_value_variance"] == pytest.approx(v.value.var(ddof=1))
        assert d.loc[name, "pooled_value_variance"] > d.loc[name, "value_variance"]  # pooled mixes items
        assert d.loc[name, "latency_p50"] == pytest.approx(np.percentile(c.wall_seconds, 50))
        assert d.loc[name, "latency_p95"] == pytest.approx(np.percentile(c.wall_seconds, 95))
        assert d.loc[name, "gen_tok_s"] == pytest.approx(c.completion_tokens.sum() / c.gen_seconds.sum())
        # unanswered calls count: as the worst error, as a wrong direction; the answered-only figures beside
        assert d.loc[name, "mae"] == pytest.approx(c.groupby("item_id")["err"].mean().mean())
        assert d.loc[name, "mae_answered"] == pytest.approx(c.groupby("item_id")["err_answered"].mean().mean())
        assert d.loc[name, "sign_accuracy"] == pytest.approx(c.groupby("item_id")["right"].mean().mean())
        assert d.loc[name, "mean_value"] == pytest.approx(v.groupby("item_id")["value"].mean().mean())
    # invalid calls make MAE worse than the answered-only MAE
    assert d.loc[BASE, "mae"] > d.loc[BASE, "mae_answered"]
    assert d.loc[BASE, "mae_answered"] < d.loc[SHIFTED, "mae_answered"]
    assert d.loc[BASE, "correlation"] > 0.9


def test_neutral_band_and_sample_variance_are_stated_and_used():
    # an item labelled 0 answered 0.05: right inside the band, wrong without it (the old rounding accident)
    value = np.array([[[0.05, -0.02, 0.3]]])
    present = np.ones(value.shape, dtype=bool)
    target = np.array([0.0])
    assert stats.direction_correct(value, present, target, 0.1)[0, 0].tolist() == [1.0, 1.0, 0.0]
    assert stats.direction_correct(value, present, target, 0.0)[0, 0].tolist() == [0.0, 0.0, 0.0]
    # sample variance (ddof=1): 1.5x the population variance at 3 iterations
    x = np.array([[[0.1, 0.5, -0.3]]])
    assert common.item_var(x)[0, 0] == pytest.approx(np.var(x, ddof=1)) == pytest.approx(1.5 * np.var(x))


@pytest.mark.slow
def test_holm_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    assert list(common.holm(p)) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert np.isnan(common.holm([np.nan, 0.01])[0])
    rows = np.random.default_rng(0).random((4, 6)) ** 2
    for r, h in zip(rows, common.holm(rows)):
        assert list(h) == pytest.approx(list(multipletests(r, method="holm")[1]))


# --------------------------------------------------------------------------- the Decision


def test_decision_verdicts_recompute_with_statsmodels_tost(effects):
    from statsmodels.stats.weightstats import ttost_paired

    rep, calls, items = effects
    raw = _raw(calls, items)
    long = rep.decision_long.set_index(["candidate", "metric"])
    assert set(long.index.get_level_values(0)) == {SHIFTED, FOURTH}  # each family's widest quant is the reference
    for cand, ref in ((SHIFTED, BASE), (FOURTH, NOISY)):
        err = _per_item(raw, "err")[[ref, cand]].dropna()
        row = long.loc[(cand, "mae")]
        margin = 0.05
        # positive = worse for an error; TOST on candidate - reference with bounds (-margin, +margin)
        p_tost, lower, upper = ttost_paired(err[cand].to_numpy(), err[ref].to_numpy(), -margin, margin)
        assert row["p_equivalence"] == pytest.approx(p_tost)
        assert row["p_noninferior"] == pytest.approx(upper[1])
        d = err[cand] - err[ref]
        lo, hi = ss.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=ss.sem(d))
        assert (row["ci90_low"], row["ci90_high"]) == pytest.approx((lo, hi))
        expected = ("equivalent" if -margin < lo and hi < margin else "non-inferior" if hi < margin
                    else "worse" if ss.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=ss.sem(d))[0] > 0
                    else "inconclusive")
        assert row["verdict"] == expected
    assert long.loc[(SHIFTED, "mae"), "verdict"] == "worse"
    # accuracy-like metrics: the margin is on the worse side (lower)
    acc = long.loc[(FOURTH, "sign_accuracy")]
    right = _per_item(raw, "right")[[NOISY, FOURTH]].dropna()
    p_tost, lower, upper = ttost_paired(right[FOURTH].to_numpy(), right[NOISY].to_numpy(), -0.05, 0.05)
    assert acc["p_equivalence"] == pytest.approx(p_tost)
    assert acc["p_noninferior"] == pytest.approx(lower[1])  # H0: candidate lower by the margin or more
    # the quality column: the model's MAE with the t interval over items; speed against the reference
    dec = rep.decision.set_index("model")
    for name in (BASE, SHIFTED):
        e = _per_item(raw, "err")[name].dropna()
        lo, hi = ss.t.interval(0.95, len(e) - 1, loc=e.mean(), scale=ss.sem(e))
        assert (dec.loc[name, "quality"], dec.loc[name, "quality_ci95_low"], dec.loc[name, "quality_ci95_high"]) \
            == pytest.approx((e.mean(), lo, hi))
    # speed: the reference's seconds per call over the candidate's, geometric mean over calls paired by
    # (item, iteration block)
    w = raw.pivot_table(index=["item_id", "iteration"], columns="model", values="wall_seconds")[[BASE, SHIFTED]]
    assert dec.loc[SHIFTED, "speedup_vs_ref"] == pytest.approx(np.exp(np.log(w[BASE] / w[SHIFTED]).mean()))


@pytest.mark.slow
def test_decision_sheet_comes_first_and_says_what_to_do(effects, tmp_path):
    from openpyxl import load_workbook

    rep, _, _ = effects
    d = rep.decision.set_index("model")
    assert d.loc[BASE, "role"] == "reference" and d.loc[NOISY, "role"] == "reference"
    assert d.loc[SHIFTED, "verdict"] == "worse"
    assert d.loc[SHIFTED, "size_vs_ref"] == pytest.approx(180 / 300)
    assert d.loc[FOURTH, "speedup_vs_ref"] > 1.8  # half the seconds per sample
    # Pareto on (MAE, seconds, size): FOURTH (fast, small, as accurate) dominates NOISY
    assert bool(d.loc[FOURTH, "pareto"]) and not bool(d.loc[NOISY, "pareto"])
    line = next(x for x in rep.decision_lines if x.startswith(SHIFTED))
    assert "WORSE" in line and "margin" in line and "90% CI" in line and "Do not ship" in line
    # an inconclusive verdict says how many items would decide it
    for r in rep.decision_long.itertuples():
        if r.verdict == "inconclusive":
            assert np.isfinite(r.items_to_decide) and r.items_to_decide > r.items
    path = rpt.write_workbook(rep, tmp_path / "fx.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames[0] == "Decision"
    ws = wb["Decision"]
    texts = [c.value for c in ws["A"] if isinstance(c.value, str)]
    assert any(t.startswith(f"{SHIFTED} vs {BASE}: WORSE") for t in texts)
    assert ws._images, "the Pareto chart is drawn into the Decision sheet"
    csvs = rpt.write_csvs(rep, tmp_path / "csv")
    assert (tmp_path / "csv" / "decision_pareto.png").stat().st_size > 0
    assert {p.name for p in csvs} >= {"decision.csv", "decision_tests.csv", "summary.csv", "comparisons.csv"}


def test_a_run_of_one_item_reports_no_verdict_and_says_why(tmp_path):
    """One article (a demo asked for one): no paired interval exists, so each candidate's verdict is
    NO VERDICT with the reason and what to do, and the workbook is still written."""
    path = tmp_path / "one.sqlite"
    write_db(path, [SynthModel(BASE, family="f1", quant="F16"), SynthModel(SHIFTED, shift=0.2, family="f1", quant="Q4_K_M")],
             n_articles=1, n_iterations=3, seed=1, run_id="one")
    with Store(path) as store:
        rep = rpt.build(store, "one")
    d = rep.decision.set_index("model")
    assert d.loc[BASE, "role"] == "reference" and d.loc[SHIFTED, "verdict"] == "no verdict"
    line = next(x for x in rep.decision_lines if x.startswith(SHIFTED))
    assert "NO VERDICT" in line and "fewer than two items" in line and "run more items" in line
    assert rpt.write_workbook(rep, tmp_path / "one.xlsx").stat().st_size > 0


# --------------------------------------------------------------------------- colours


@pytest.mark.slow
def test_workbook_colours_are_honest(effects, tmp_path):
    from openpyxl import load_workbook

    rep, _, _ = effects
    wb = load_workbook(rpt.write_workbook(rep, tmp_path / "colours.xlsx"))
    assert wb.sheetnames[:3] == ["Decision", "Summary", "Model Details"]
    ws = wb["Summary"]
    header_row = next(r for r in range(1, 8) if ws.cell(row=r, column=1).value == "Model")
    headers = [c.value for c in ws[header_row]]
    rows = {ws.cell(row=r, column=1).value: r for r in range(header_row + 1, header_row + 5)}
    assert not ws.conditional_formatting  # no min-max colour scales
    col = headers.index(rep.metric("mae").label) + 1
    versus = rep.versus.set_index(["candidate", "metric"])
    for model, r in rows.items():
        cell = ws.cell(row=r, column=col)
        if model in rep.refs:
            status = versus.loc[(model, "mae"), "direction"]
            if status == "not distinguishable":
                assert cell.fill.fill_type == "lightUp"  # hatched grey
            else:
                assert cell.fill.fill_type == "solid"
        else:
            assert cell.fill.fill_type == "solid"  # a reference keeps its colour
    # the fixed scale: the same value gets the same colour in any run
    assert colours.scale_colour(0.0, False) == colours.GREEN and colours.scale_colour(1.0, False) == colours.RED
    assert colours.cell_colour(rep, BASE, "mae", 0.25, rep.details) == colours.scale_colour(0.5, False)  # scale 0-0.5
    # best (bold) is marked only for a model significantly better than every other (paired t, Holm)
    raw = rep.per_item.pivot_table(index="item_id", columns="model", values="valid_rate")
    for metric, col_name in (("valid_rate", "valid_rate"), ("mae", "abs_error"), ("s_per_sample", "s_per_sample")):
        j = headers.index(rep.metric(metric).label) + 1
        bold = {m for m, r in rows.items() if ws.cell(row=r, column=j).font.bold}
        x = rep.per_item.pivot_table(index="item_id", columns="model", values=col_name)
        higher = rep.metric(metric).higher_is_better
        top = x.mean().idxmax() if higher else x.mean().idxmin()
        ps = []
        for other in x.columns.drop(top):
            m = x[[top, other]].dropna()
            ps.append(ss.ttest_rel(m[top], m[other]).pvalue if (m[top] != m[other]).any() else 1.0)
        significant = (multipletests(ps, method="holm")[1] < 0.05).all()
        assert bold == ({top} if significant else set()), (metric, bold, top, ps)
    del raw
    s = headers.index(rep.metric("s_per_sample").label) + 1
    assert ws.cell(row=rows[FOURTH], column=s).font.bold  # twice as fast as everyone: best
    numbers = [c for row in ws.iter_rows(min_row=header_row + 1, min_col=4) for c in row if c.value is not None]
    assert numbers and all(c.data_type == "n" for c in numbers)
    assert ws.freeze_panes == f"B{header_row + 1}"


@pytest.mark.slow
def test_heatmap_cells_overlapping_the_reference_are_hatched(effects, tmp_path):
    from benchmark.report import charts as H
    from benchmark.report import plots

    rep, _, _ = effects
    assert H.grid_heatmap(rep, rep.details, "mae", tmp_path / "grid_mae.png").stat().st_size > 0
    assert H.item_heatmap(rep, "value_variance", tmp_path / "variance.png").stat().st_size > 0
    assert plots.decision_chart(rep, tmp_path / "decision_pareto.png").stat().st_size > 0
    assert plots.reliability_plot(rep, tmp_path / "reliability.png").stat().st_size > 0
    # every candidate cell's colour follows its test against the reference
    for model in rep.refs:
        for metric in ("mae", "valid_rate", "value_variance", "s_per_sample", "sign_accuracy"):
            status = rep.status(model, metric)
            colour = colours.cell_colour(rep, model, metric, float(rep.details.set_index("model").loc[model, metric]),
                                     rep.details)
            assert (colour == "grey") == (status == "not distinguishable"), (model, metric, status, colour)


@pytest.mark.slow
def test_heatmaps_grow_with_the_number_of_models(tmp_path):
    from PIL import Image

    from benchmark.report.charts import item_heatmap, write_heatmaps

    sizes = {}
    for n in (3, 32):
        db = tmp_path / f"h{n}.sqlite"
        models = [SynthModel(f"family{i % 4}-model-{i:02d}", family=f"fam{i % 4}", quant=["Q8_0", "Q4_K_M"][i % 2])
                  for i in range(n)]
        write_db(db, models, n_articles=12, n_iterations=3, seed=n, run_id=f"h{n}")
        with Store(db) as store:
            rep = rpt.build(store, f"h{n}")
        if n == 3:
            names = {p.name for p in write_heatmaps(rep, tmp_path / f"maps{n}")}
            assert {"s_per_sample_heatmap.png", "valid_rate_heatmap.png", "sentiment_variance_heatmap.png",
                    "mean_sentiment_heatmap.png", "mean_confidence_heatmap.png", "grid_valid_rate.png"} <= names
        else:
            item_heatmap(rep, "valid_rate", tmp_path / f"maps{n}" / "valid_rate_heatmap.png")
        sizes[n] = Image.open(tmp_path / f"maps{n}" / "valid_rate_heatmap.png").size
    assert sizes[32][0] > 2 * sizes[3][0]


# --------------------------------------------------------------------------- calibration


def test_calibration_matches_scikit_learn(effects):
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    rep, calls, items = effects
    raw = _raw(calls, items)
    cal = rep.calibration.set_index("model")
    for name in (BASE, SHIFTED):
        c = raw[(raw.model == name) & raw.valid]
        y, p = c["right"].to_numpy(), c["confidence"].to_numpy()
        prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
        rel = rep.reliability[rep.reliability.model == name]
        assert list(rel["accuracy_answered"]) == pytest.approx(list(prob_true))
        assert list(rel["mean_confidence"]) == pytest.approx(list(prob_pred))
        edges = np.linspace(0, 1, 11)
        b = np.searchsorted(edges[1:-1], p)  # calibration_curve's bins (an edge value falls in the bin below)
        ece = sum(np.sum(b == k) / len(p) * abs(y[b == k].mean() - p[b == k].mean()) for k in np.unique(b))
        assert cal.loc[name, "ece"] == pytest.approx(ece)
        assert cal.loc[name, "brier"] == pytest.approx(brier_score_loss(y, p))


# --------------------------------------------------------------------------- settings and the CLI


@pytest.mark.slow
def test_report_uses_the_runs_stored_settings_unless_told_otherwise(tmp_path):
    db = tmp_path / "stored.sqlite"
    models = [SynthModel("a-f16", family="a", quant="F16"), SynthModel("a-q4", family="a", quant="Q4_K_M", shift=0.05),
              SynthModel("b-q8", family="b", quant="Q8_0")]
    write_db(db, models, 20, 3, seed=1, run_id="st", pairs=[("a-f16", "b-q8")],
             report={"margins": {"mae": 0.3}, "neutral_band": 0.25, "reference": "compare"})
    with Store(db) as store:
        rep = rpt.build(store, "st")
        # the stored margin overrides MAE's default; the other decision metrics keep theirs
        assert rep.settings.margins == {"value_variance": 1.5, "mean_value": 0.05, "mae": 0.3, "sign_accuracy": 0.05}
        assert rep.settings.neutral_band == 0.25
        assert rep.refs == {"b-q8": "a-f16"}  # the stored compare pairs are the references
        assert set(rep.decision_long.loc[rep.decision_long["metric"] == "mae", "margin"]) == {0.3}
        assert list(zip(rep.sheet("Comparisons").table["reference"], rep.sheet("Comparisons").table["candidate"]))[0] \
            == ("a-f16", "b-q8")
        told = rpt.build(store, "st", [("a-f16", "a-q4")], settings={"reference": "highest_precision"})
        assert told.refs == {"a-q4": "a-f16"}
        assert set(told.sheet("Comparisons").table["candidate"]) == {"a-q4"}
    # the CLI: a config.yaml in the working folder with other pairs does not change the stored ones
    (tmp_path / "config.yaml").write_text(
        "compare: [[a-f16, a-q4]]\nmodels:\n" + "".join(f"  - {{name: {m.name}, path: x.gguf, family: {m.family}, "
                                                       f"quant: {m.quant}}}\n" for m in models))
    r = shootout("report", "--db", str(db), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cmp = pd.read_csv(tmp_path / "out" / "st" / "comparisons.csv")
    assert set(cmp["candidate"]) == {"b-q8"}
    # a --config that does not exist is an error naming it
    r = shootout("report", "--db", str(db), "--config", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert r.returncode != 0 and "missing.yaml" in r.stderr and "Traceback" not in r.stderr


def test_invalid_margins_are_one_clear_error():
    from benchmark.config import ConfigError, parse_config

    text = "models:\n  - {name: m, path: x.gguf, family: f, quant: Q8_0}\nreport:\n  margins: {accuracy: -1}\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, check_files=False)
    assert "margin of 'accuracy' must be positive" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config(text.replace("accuracy: -1", "bleu: 1"), check_files=False)
    assert "no decision metric 'bleu'" in str(e.value)


# --------------------------------------------------------------------------- the planner


def test_planner_recovers_the_variance_components_and_its_plan_has_the_power(tmp_path):
    from statsmodels.stats.power import TTestPower

    from benchmark.report.plan import components, make_plan
    from benchmark.synthetic import simulate

    sd, item_sd, crn = 0.3, 0.2, 0.3
    db = tmp_path / "pilot.sqlite"
    models = [SynthModel("p-f16", family="p", quant="F16", sd=sd, item_sd=item_sd),
              SynthModel("p-q4", family="p", quant="Q4_K_M", sd=sd, item_sd=item_sd)]
    write_db(db, models, 400, 3, seed=9, run_id="pilot", crn=crn, low=-9, high=9)
    with Store(db) as store:
        plan = make_plan(store, "pilot", metric="mean_value", effect=0.1, iterations=(1, 2, 3, 5))
    pr = plan.pairs.iloc[0]
    # theory: per-item true difference var 2 item_sd^2; per-call difference var 2 sd^2 (1 - crn)
    assert pr["sigma2_items"] == pytest.approx(2 * item_sd ** 2, rel=0.25)
    assert pr["sigma2_calls"] == pytest.approx(2 * sd ** 2 * (1 - crn), rel=0.15)
    row = plan.designs.query("iterations == 3").iloc[0]
    n = TTestPower().solve_power(effect_size=0.1 / row["sd_diff"], alpha=0.05, power=0.8)
    assert row["items"] == np.ceil(n)
    # the planned design has the power it promises
    sim = simulate(1500, 2, int(row["items"]), 3, seed=10, shift=[0, 0.1], sd=sd, item_sd=item_sd, crn=crn,
                   low=-9, high=9)
    m = common.item_mean(sim["value"])
    found = float(np.mean(P.paired(m[:, 1] - m[:, 0])["p"] < 0.05))
    assert 0.74 <= found <= 0.86, found
    assert plan.recommendation["items"] > 0 and plan.lines[0].startswith("To detect a difference of 0.1")
    # components from arrays directly
    c = components(np.array([[0.0, 0.2, 0.1], [0.5, 0.5, 0.4]]), np.array([[0.1, 0.3, 0.1], [0.4, 0.7, 0.4]]))
    assert c["items"] == 2 and c["mean_diff"] == pytest.approx(np.mean([0.2 / 3, 0.1 / 3]))


def test_plan_command(tmp_path, effects_db):
    r = shootout("plan", "--db", str(effects_db), "--effect", "0.05", "--goal", "non-inferiority", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "show non-inferiority at a margin of 0.05" in r.stderr and "items x" in r.stderr
    assert "shifted vs base" in r.stderr and "iterations" in r.stderr
    r = shootout("plan", "--db", str(effects_db), cwd=tmp_path)
    assert r.returncode != 0 and "--effect" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- what the Decision weighs


def test_a_shifted_rung_is_named_in_the_decision_and_never_safe_to_ship(tmp_path):
    """Every answer of the Q4 rung 0.2 higher, on the demo's shape (answers barely follow the labels, so MAE
    and direction hardly move): the verdict names the shift with its amount, never 'safe to ship'."""
    from benchmark.synthetic import DEMO_SHAPE

    shape = {k: v for k, v in DEMO_SHAPE.items() if k not in ("sd", "item_sd")}
    models = [SynthModel("g-f16", family="g", quant="F16", sd=DEMO_SHAPE["sd"], item_sd=DEMO_SHAPE["item_sd"]),
              SynthModel("g-q4", family="g", quant="Q4_K_M", sd=DEMO_SHAPE["sd"], item_sd=DEMO_SHAPE["item_sd"],
                         shift=0.2)]
    write_db(tmp_path / "b.sqlite", models, 96, 3, seed=8, run_id="b", **shape)
    with Store(tmp_path / "b.sqlite") as store:
        rep = rpt.build(store, "b")
    row = rep.decision.set_index("model").loc["g-q4"]
    line = next(x for x in rep.decision_lines if x.startswith("g-q4 vs g-f16"))
    assert row["verdict"] in ("shifted", "not bounded") and "Safe to ship" not in line
    bias = rep.decision_long.set_index(["candidate", "metric"]).loc[("g-q4", "mean_value")]
    assert bias["diff"] == pytest.approx(0.2, abs=0.07)
    assert "Mean sentiment: shifted against g-f16 by +0." in line or "Mean sentiment: not bounded" in line


def test_an_equivalent_but_slower_rung_is_not_recommended_for_a_gain(tmp_path):
    """As good within every margin but 0.92x the speed and no smaller: nothing to gain (it used to say
    'ship it if the gain matters')."""
    models = [SynthModel("h-f16", family="h", quant="F16", sd=0.1, seconds=1.0),
              SynthModel("h-q8", family="h", quant="Q8_0", sd=0.1, seconds=1.0 / 0.92)]
    write_db(tmp_path / "s.sqlite", models, 150, 3, seed=4, run_id="s")
    store_sizes(tmp_path / "s.sqlite", "s", models, {"h-f16": 300.0, "h-q8": 300.0})
    with Store(tmp_path / "s.sqlite") as store:
        rep = rpt.build(store, "s")
    row = rep.decision.set_index("model").loc["h-q8"]
    assert row["verdict"] in ("equivalent", "non-inferior") and row["speedup_vs_ref"] < 1
    assert "nothing to gain" in row["what_it_means"] and "ship it if the gain matters" not in row["what_it_means"]


def test_the_decision_chart_names_rungs_that_share_a_quant_by_model(tmp_path, monkeypatch):
    """Two prompt styles of one GGUF are two rungs with one quant: the chart labels them by model name,
    not twice 'Q4_K_M' on top of each other."""
    from benchmark.report import draw, plots

    path = tmp_path / "same.sqlite"
    write_db(path, [SynthModel("gemma-few", family="f1", quant="Q4_K_M"),
                    SynthModel("gemma-zero", shift=0.1, family="f1", quant="Q4_K_M")],
             n_articles=12, n_iterations=2, seed=3, run_id="same")
    with Store(path) as store:
        rep = rpt.build(store, "same")
    figs = []
    monkeypatch.setattr(draw, "save", lambda fig, p: figs.append(fig) or p)
    plots.decision_chart(rep, tmp_path / "decision_pareto.png")
    labels = [t.get_text().split("\n")[0] for ax in figs[0].axes for t in ax.texts]
    assert labels and set(labels) == {"gemma-few", "gemma-zero"}
