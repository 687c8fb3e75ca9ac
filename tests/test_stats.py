"""Statistics: known effects are found, no effect stays near alpha, and every figure matches scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from benchmark import report as rpt
from benchmark.stats import common
from benchmark.stats import value as stats
from benchmark.store import Store
from benchmark.synthetic import SynthModel, calls_frame, write_db

BASE, SHIFTED, NOISY = "base", "shifted", "noisy"


@pytest.fixture(scope="module")
def effects_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("stats") / "effects.sqlite"
    models = [SynthModel(BASE, family="f1", quant="Q8_0", invalid_rate=0.05),
              SynthModel(SHIFTED, shift=0.2, family="f1", quant="Q4_K_M", invalid_rate=0.05),
              SynthModel(NOISY, sd=0.1 * np.sqrt(2), family="f2", quant="Q8_0", invalid_rate=0.05),
              SynthModel("fourth", family="f2", quant="Q4_K_M")]
    write_db(path, models, n_articles=40, n_iterations=6, seed=3, run_id="fx", pairs=[(BASE, SHIFTED), (BASE, NOISY)])
    return path


@pytest.fixture(scope="module")
def effects(effects_db):
    with Store(effects_db) as store:
        rep = rpt.build(store, "fx")
        calls, arts, loads = common.load_frames(store, "fx")
    return rep, calls


def test_report_finds_the_shift_and_the_variance_difference(effects):
    rep, _ = effects
    cmp = rep.sheet("Comparisons").table.set_index("model_b")
    shift = cmp.loc[SHIFTED]
    assert shift["paired_p_holm"] < 0.01
    assert shift["ci95_low"] < 0.2 < shift["ci95_high"] and abs(shift["mean_diff"] - 0.2) < 0.05
    assert shift["cohen_dz"] > 2
    noisy = cmp.loc[NOISY]
    assert noisy["brown_forsythe_p"] < 0.01 and noisy["brown_forsythe_p_holm"] < 0.01
    assert 1.4 < noisy["variance_ratio"] < 2.8
    assert abs(noisy["mean_diff"]) < 0.05


def test_no_effect_false_positive_rate_stays_near_alpha():
    t_hits = lev_hits = 0
    runs = 300
    for seed in range(runs):
        df = calls_frame([SynthModel("x"), SynthModel("y")], n_articles=20, n_iterations=4, seed=1000 + seed)
        row = stats.compare_pair(df, "x", "y")
        t_hits += row["paired_p"] < 0.05
        lev_hits += row["brown_forsythe_p"] < 0.05
    assert 0.02 <= t_hits / runs <= 0.09, t_hits / runs
    assert 0.02 <= lev_hits / runs <= 0.09, lev_hits / runs


def test_pair_figures_match_scipy_on_the_same_rows(effects):
    rep, calls = effects
    v = calls[calls["valid"]]
    means = v.pivot_table(index="item_id", columns="model", values="value", aggfunc="mean")
    raw_p = {}
    for b in (SHIFTED, NOISY):
        row = rep.sheet("Comparisons").table.set_index("model_b").loc[b]
        m = means[[BASE, b]].dropna()
        assert row["items"] == len(m)
        t = ss.ttest_rel(m[b], m[BASE])
        assert row["paired_t"] == pytest.approx(t.statistic) and row["paired_p"] == pytest.approx(t.pvalue)
        assert row["wilcoxon_p"] == pytest.approx(ss.wilcoxon(m[b], m[BASE]).pvalue)
        w = ss.ttest_ind(v[v.model == b]["value"], v[v.model == BASE]["value"], equal_var=False)
        assert row["welch_p"] == pytest.approx(w.pvalue)
        dev = {}
        for name in (BASE, b):
            s = v[v.model == name]
            dev[name] = s["value"] - s.groupby("item_id")["value"].transform("median")
        assert row["brown_forsythe_p"] == pytest.approx(ss.levene(dev[b], dev[BASE], center="median").pvalue)
        d = m[b] - m[BASE]
        lo, hi = ss.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=ss.sem(d))
        assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((lo, hi))
        assert row["cohen_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
        raw_p[b] = t.pvalue
    from statsmodels.stats.multitest import multipletests

    holm = multipletests([raw_p[SHIFTED], raw_p[NOISY]], method="holm")[1]
    assert list(rep.sheet("Comparisons").table["paired_p_holm"]) == pytest.approx(list(holm))


def test_anova_figures_match_statsmodels_and_scipy(effects):
    rep, calls = effects
    from statsmodels.stats.anova import AnovaRM

    v = calls[calls["valid"]]
    means = v.pivot_table(index="item_id", columns="model", values="value", aggfunc="mean").dropna()
    long = means.reset_index().melt(id_vars="item_id", var_name="model", value_name="s")
    ref = AnovaRM(long, "s", "item_id", within=["model"]).fit().anova_table.iloc[0]
    rm = rep.sheet("ANOVA").table[rep.sheet("ANOVA").table["test"].str.startswith("repeated")].iloc[0]
    assert rm["F"] == pytest.approx(ref["F Value"]) and rm["p"] == pytest.approx(ref["Pr > F"])
    fr = rep.sheet("ANOVA").table[rep.sheet("ANOVA").table["test"].str.startswith("Friedman")].iloc[0]
    assert fr["p"] == pytest.approx(ss.friedmanchisquare(*[means[c] for c in means.columns]).pvalue)
    # the family x quant grid (2 x 2) is complete, so the two-way ANOVA is there
    assert rep.sheet("ANOVA").table["test"].str.contains("family x quant").any()
    import statsmodels.api as sm
    from statsmodels.formula.api import ols

    fams = calls.groupby("model")[["family", "quant"]].first()
    long = long.join(fams, on="model")
    ref2 = sm.stats.anova_lm(ols("s ~ C(family) * C(quant) + C(item_id)", data=long).fit(), typ=2)
    ours = rep.sheet("ANOVA").table.dropna(subset=["source"]).set_index("source")
    for source in ("C(family)", "C(quant)", "C(family):C(quant)"):
        assert ours.loc[source, "F"] == pytest.approx(ref2.loc[source, "F"])
        assert ours.loc[source, "p"] == pytest.approx(ref2.loc[source, "PR(>F)"])
    tk = ss.tukey_hsd(*[means[c] for c in means.columns])
    cols = list(means.columns)
    row = rep.sheet("ANOVA").appendix[0][2][(rep.sheet("ANOVA").appendix[0][2].model_a == cols[0]) & (rep.sheet("ANOVA").appendix[0][2].model_b == cols[1])].iloc[0]
    assert row["p_adj"] == pytest.approx(tk.pvalue[0, 1])


def test_model_metrics_match_direct_computation(effects):
    rep, calls = effects
    d = rep.details.set_index("model")
    for name in (BASE, SHIFTED, NOISY):
        c = calls[calls.model == name]
        v = c[c.valid]
        assert d.loc[name, "valid_rate"] == pytest.approx(c.valid.mean())
        assert d.loc[name, "s_per_sample"] == pytest.approx(c.wall_seconds.mean())  # every call, valid or not
        within = v.groupby("item_id")["value"].var(ddof=1).mean()
        assert d.loc[name, "value_variance"] == pytest.approx(within)
        assert d.loc[name, "pooled_value_variance"] == pytest.approx(v.value.var(ddof=1))
        assert d.loc[name, "pooled_value_variance"] > d.loc[name, "value_variance"]  # pooled mixes items
        assert d.loc[name, "latency_p95"] == pytest.approx(np.percentile(c.wall_seconds, 95))
        assert d.loc[name, "gen_tok_s"] == pytest.approx(c.completion_tokens.sum() / c.gen_seconds.sum())
    # accuracy against the articles' expected sentiment: the unbiased models beat the shifted one
    assert d.loc[BASE, "mae"] < d.loc[SHIFTED, "mae"]
    assert d.loc[BASE, "correlation"] > 0.9


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    assert list(common.holm(p)) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert np.isnan(common.holm([np.nan, 0.01])[0])


def test_workbook_sheets_numbers_and_formatting(effects, tmp_path):
    from openpyxl import load_workbook

    rep, _ = effects
    path = rpt.write_workbook(rep, tmp_path / "fx.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames[:6] == ["Summary", "Model Details", "Per Article", "Comparisons", "ANOVA", "Run Info"]
    ws = wb["Summary"]
    header_row = next(r for r in range(1, 6) if ws.cell(row=r, column=1).value == "Model")
    assert ws.cell(row=header_row, column=1).font.bold
    assert ws.freeze_panes == f"B{header_row + 1}"
    assert ws.auto_filter.ref
    headers = [c.value for c in ws[header_row]]
    col = headers.index("Valid reply rate") + 1
    cells = [ws.cell(row=r, column=col) for r in range(header_row + 1, header_row + 5)]
    assert all(c.data_type == "n" and isinstance(c.value, (int, float)) for c in cells)
    assert cells[0].number_format == "0.0%"
    assert ws.conditional_formatting  # colour scales on the metric columns
    cmp = wb["Comparisons"]
    assert any("paired_p_holm" == c.value for c in cmp[3])
    csvs = rpt.write_csvs(rep, tmp_path / "csv")
    assert {p.name for p in csvs} >= {"summary.csv", "comparisons.csv", "per_item.csv", "anova.csv"}
    back = pd.read_csv(tmp_path / "csv" / "comparisons.csv")
    assert back["paired_p_holm"].tolist() == pytest.approx(rep.sheet("Comparisons").table["paired_p_holm"].tolist())


def test_heatmaps_grow_with_the_number_of_models(tmp_path):
    from PIL import Image

    from benchmark.heatmaps import write_heatmaps

    sizes = {}
    for n in (3, 32):
        db = tmp_path / f"h{n}.sqlite"
        models = [SynthModel(f"family{i % 4}-model-{i:02d}", family=f"fam{i % 4}", quant=["Q8_0", "Q4_K_M"][i % 2])
                  for i in range(n)]
        write_db(db, models, n_articles=12, n_iterations=3, seed=n, run_id=f"h{n}")
        with Store(db) as store:
            rep = rpt.build(store, f"h{n}")
        paths = write_heatmaps(rep, tmp_path / f"maps{n}")
        names = {p.name for p in paths}
        assert {"s_per_sample_heatmap.png", "valid_rate_heatmap.png", "sentiment_variance_heatmap.png",
                "mean_sentiment_heatmap.png", "mean_confidence_heatmap.png"} <= names
        assert "grid_valid_rate.png" in names
        sizes[n] = Image.open(tmp_path / f"maps{n}" / "valid_rate_heatmap.png").size
    assert sizes[32][0] > 2 * sizes[3][0]
