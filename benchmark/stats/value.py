"""Statistics of value tasks (a number per reply, e.g. a sentiment in [-1, 1]), as pure functions
over DataFrames of calls.

Conventions (the older tool got these wrong):
- consistency is the variance of the value across the iterations of ONE item (ddof=1), averaged
  over items; the variance over all calls mixes disagreement between items with inconsistency and
  is reported only as "pooled";
- the same items go to every model, so means are compared with tests paired by item, and the
  all-models ANOVA treats the item as a block;
- variances are compared with Brown-Forsythe (Levene around medians) on the deviations of each
  call from its item's median, never with a test of means;
- p-values of the pair comparisons are Holm-adjusted across pairs; every comparison reports an
  effect size and a 95% interval;
- timing and token rates cover every call; validity stands beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as ss

from benchmark.stats.common import holm, model_order, timing

# --------------------------------------------------------------------------- metrics


def per_item(calls: pd.DataFrame, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, item): the item's figures over its iterations."""
    g = calls.groupby(["model", "item_id"], sort=False)
    valid = calls[calls["valid"]]
    gv = valid.groupby(["model", "item_id"], sort=False)
    out = pd.DataFrame({
        "calls": g.size(),
        "valid_rate": g["valid"].mean(),
        "mean_value": gv["value"].mean(),
        "value_variance": gv["value"].var(ddof=1),  # consistency: across iterations of this item
        "value_sd": gv["value"].std(ddof=1),
        "mean_confidence": gv["confidence"].mean(),
        "s_per_sample": g["wall_seconds"].mean(),
    }).reset_index()
    if items is not None and len(items):
        keep = ["item_id"] + [c for c in ("ticker", "title") if c in items] + ["target_value"]
        out = out.merge(items[keep], on="item_id", how="left")
        out["abs_error"] = (out["mean_value"] - out["target_value"]).abs()
    return out


def per_model(calls: pd.DataFrame, items: pd.DataFrame | None = None, loads: pd.DataFrame | None = None,
              price_per_hour: float | None = None) -> pd.DataFrame:
    """One row per model: timing over every call, value figures over valid calls."""
    pa = per_item(calls, items)
    out = timing(calls, loads, price_per_hour).set_index("model")
    v = calls[calls["valid"]].groupby("model")
    out["value_variance"] = pa.groupby("model")["value_variance"].mean()  # mean within-item variance
    out["mean_value"] = v["value"].mean()
    out["mean_confidence"] = v["confidence"].mean()
    out["pooled_value_variance"] = v["value"].var(ddof=1)
    if "target_value" in pa and pa["target_value"].notna().any():
        m = pa.dropna(subset=["mean_value", "target_value"])
        m = m.assign(err=(m["mean_value"] - m["target_value"]).abs(),
                     hit=np.sign(m["mean_value"].round(6)) == np.sign(m["target_value"]))
        by = m.groupby("model")
        out["mae"] = by["err"].mean()
        out["sign_accuracy"] = by["hit"].mean()
        out["correlation"] = pd.Series({k: ss.pearsonr(d["mean_value"], d["target_value"]).statistic
                                        if len(d) >= 3 and d["mean_value"].std() > 0 else np.nan for k, d in by})
    return out.reset_index()


# --------------------------------------------------------------------------- designs


def item_matrix(calls: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """Items x models of mean valid value, keeping only items every model answered validly."""
    v = calls[calls["valid"]]
    m = v.pivot_table(index="item_id", columns="model", values="value", aggfunc="mean")
    models = models or [x for x in model_order(calls) if x in m.columns]
    return m.reindex(columns=models).dropna()


class _PairData:
    """What every pair comparison needs, computed once for all models."""

    def __init__(self, calls: pd.DataFrame):
        v = calls[calls["valid"]]
        self.means = v.pivot_table(index="item_id", columns="model", values="value", aggfunc="mean")
        self.within_var = v.groupby(["model", "item_id"])["value"].var(ddof=1).groupby("model").mean()
        med = v.groupby(["model", "item_id"])["value"].transform("median")
        dev = (v["value"] - med)
        self.deviations = {m: d.to_numpy() for m, d in dev.groupby(v["model"])}
        self.valid_values = {m: d.to_numpy() for m, d in v["value"].groupby(v["model"])}
        self.by_call = v.pivot_table(index=["iteration", "item_id"], columns="model", values="value",
                                     aggfunc="first")
        self.iterations = calls.groupby("model")["iteration"].nunique()


def compare_pair(calls: pd.DataFrame, a: str, b: str, data: _PairData | None = None) -> dict:
    """Every figure for one comparison pair [a (reference), b (candidate)]."""
    data = data or _PairData(calls)
    empty = pd.Series(dtype=float)
    mat = data.means.reindex(columns=[a, b]).dropna()
    d = (mat[b] - mat[a]).to_numpy()
    n = len(d)
    row: dict = {"model_a": a, "model_b": b, "items": n,
                 "iterations": int(max(data.iterations.get(a, 0), data.iterations.get(b, 0))),
                 "mean_a": mat[a].mean() if n else np.nan, "mean_b": mat[b].mean() if n else np.nan}
    if n >= 2:
        mean_d, sd_d = d.mean(), d.std(ddof=1)
        row["mean_diff"] = mean_d
        se = sd_d / np.sqrt(n)
        tcrit = ss.t.ppf(0.975, n - 1)
        row["ci95_low"], row["ci95_high"] = mean_d - tcrit * se, mean_d + tcrit * se
        row["cohen_dz"] = mean_d / sd_d if sd_d > 0 else np.nan
        t = ss.ttest_rel(mat[b], mat[a])
        row["paired_t"], row["paired_p"] = float(t.statistic), float(t.pvalue)
        if np.any(d != 0):
            w = ss.wilcoxon(mat[b], mat[a])
            row["wilcoxon_w"], row["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
        else:
            row["wilcoxon_w"], row["wilcoxon_p"] = np.nan, 1.0
    va, vb = data.valid_values.get(a, empty.to_numpy()), data.valid_values.get(b, empty.to_numpy())
    if len(va) >= 2 and len(vb) >= 2:
        w = ss.ttest_ind(vb, va, equal_var=False)
        row["welch_t"], row["welch_p"] = float(w.statistic), float(w.pvalue)
    row["within_var_a"] = data.within_var.get(a, np.nan)
    row["within_var_b"] = data.within_var.get(b, np.nan)
    row["variance_ratio"] = row["within_var_b"] / row["within_var_a"] if row["within_var_a"] else np.nan
    da, db = data.deviations.get(a, empty.to_numpy()), data.deviations.get(b, empty.to_numpy())
    if len(da) >= 2 and len(db) >= 2 and (np.any(da != 0) or np.any(db != 0)):
        lev = ss.levene(db, da, center="median")
        row["brown_forsythe_w"], row["brown_forsythe_p"] = float(lev.statistic), float(lev.pvalue)
    # sign flips: same (iteration, item), both valid, the sign of b differs from a's
    both = data.by_call.reindex(columns=[a, b]).dropna()
    row["paired_calls"] = len(both)
    row["sign_flip_rate"] = (np.sign(both[a]) != np.sign(both[b])).mean() if len(both) else np.nan
    return row


def compare_pairs(calls: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """All configured pairs, with Holm-adjusted p-values across pairs for each test."""
    data = _PairData(calls) if pairs else None
    df = pd.DataFrame([compare_pair(calls, a, b, data) for a, b in pairs])
    if df.empty:
        return df
    for col in ("paired_p", "wilcoxon_p", "welch_p", "brown_forsythe_p"):
        if col not in df:
            df[col] = np.nan
        df[col.replace("_p", "_p_holm")] = holm(df[col].to_numpy())
    return df


def rm_anova(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> dict:
    """Repeated-measures ANOVA on per-item mean sentiment: model effect with item as block.

    Equivalent to a two-way ANOVA without interaction on the items x models matrix of
    per-item means (items that every model answered validly)."""
    mat = item_matrix(calls) if mat is None else mat
    n, k = mat.shape
    res = {"test": "repeated-measures ANOVA (item as block)", "items": n, "models": k,
           "assumes": "per-item means; normal residuals; sphericity (check Friedman below when in doubt)"}
    if n < 2 or k < 2:
        res["note"] = "needs at least 2 models and 2 items answered by all"
        return res
    x = mat.to_numpy()
    grand = x.mean()
    ss_model = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_item = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_total = ((x - grand) ** 2).sum()
    ss_error = ss_total - ss_model - ss_item
    df_model, df_error = k - 1, (n - 1) * (k - 1)
    f = (ss_model / df_model) / (ss_error / df_error) if ss_error > 0 else np.inf
    res.update({"df_model": df_model, "df_error": df_error, "F": f, "p": float(ss.f.sf(f, df_model, df_error)),
                "partial_eta_sq": ss_model / (ss_model + ss_error) if ss_model + ss_error > 0 else np.nan})
    return res


def friedman(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> dict:
    mat = item_matrix(calls) if mat is None else mat
    n, k = mat.shape
    res = {"test": "Friedman (non-parametric, item as block)", "items": n, "models": k,
           "assumes": "per-item means; ranks within item"}
    if k < 3 or n < 2:
        res["note"] = "needs at least 3 models (with 2, read the Wilcoxon of the pair)"
        return res
    fr = ss.friedmanchisquare(*[mat[c] for c in mat.columns])
    res.update({"chi2": float(fr.statistic), "p": float(fr.pvalue), "df_model": k - 1})
    return res


def family_quant_anova(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Two-way ANOVA family x quant, with the item as block, on per-item means.

    Only where the grid is complete: at least 2 families x 2 quants, exactly one model per cell.
    The design is then balanced (every item in every cell), so the sums of squares follow from
    means alone (types I, II and III agree)."""
    models = calls.groupby("model", sort=False)[["family", "quant"]].first()
    fams, quants = list(dict.fromkeys(models["family"])), list(dict.fromkeys(models["quant"]))
    if len(fams) < 2 or len(quants) < 2 or len(models) != len(fams) * len(quants):
        return None
    if models.groupby(["family", "quant"]).size().max() != 1:
        return None
    mat = item_matrix(calls) if mat is None else mat
    n_a, n_f, n_q = len(mat), len(fams), len(quants)
    if n_a < 2:
        return None
    x = np.empty((n_a, n_f, n_q))
    for model, (fam, q) in models.iterrows():
        x[:, fams.index(fam), quants.index(q)] = mat[model].to_numpy()
    m = x.mean()
    ss_art = n_f * n_q * ((x.mean(axis=(1, 2)) - m) ** 2).sum()
    m_f, m_q, m_fq = x.mean(axis=(0, 2)), x.mean(axis=(0, 1)), x.mean(axis=0)
    ss_f = n_a * n_q * ((m_f - m) ** 2).sum()
    ss_q = n_a * n_f * ((m_q - m) ** 2).sum()
    ss_fq = n_a * ((m_fq - m_f[:, None] - m_q[None, :] + m) ** 2).sum()
    ss_err = ((x - m) ** 2).sum() - ss_art - ss_f - ss_q - ss_fq
    df_err = (n_a - 1) * (n_f * n_q - 1)
    rows = []
    for source, ssv, dfv in [("C(family)", ss_f, n_f - 1), ("C(quant)", ss_q, n_q - 1),
                             ("C(family):C(quant)", ss_fq, (n_f - 1) * (n_q - 1)), ("C(item_id)", ss_art, n_a - 1)]:
        f = (ssv / dfv) / (ss_err / df_err) if ss_err > 0 else np.inf
        rows.append({"source": source, "sum_sq": ssv, "df": dfv, "F": f, "p": float(ss.f.sf(f, dfv, df_err))})
    rows.append({"source": "Residual", "sum_sq": ss_err, "df": df_err})
    table = pd.DataFrame(rows)
    table["test"] = "two-way ANOVA family x quant, item as block (balanced)"
    table["items"] = n_a
    table["assumes"] = "per-item means; normal residuals; one model per family x quant cell"
    return table


def tukey(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tukey HSD across all models on per-item means (an all-pairs view; it ignores the pairing)."""
    mat = item_matrix(calls) if mat is None else mat
    cols = list(mat.columns)
    if len(cols) < 2 or len(mat) < 2:
        return pd.DataFrame()
    res = ss.tukey_hsd(*[mat[c].to_numpy() for c in cols])
    ci = res.confidence_interval(0.95)
    rows = []
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            rows.append({"model_a": cols[i], "model_b": cols[j], "mean_diff": mat[cols[j]].mean() - mat[cols[i]].mean(),
                         "ci95_low": -ci.high[i, j], "ci95_high": -ci.low[i, j], "p_adj": float(res.pvalue[i, j]),
                         "items": len(mat)})
    return pd.DataFrame(rows)
