"""The all-models tests of a value task, with the item as block, on items x models arrays of per-item
means: the repeated-measures ANOVA (Greenhouse-Geisser corrected), Friedman's test as the same ANOVA on
within-item ranks, and the family x quant two-way ANOVA where the grid is complete. Vectorized over
leading axes, so that the tests run them over thousands of simulated studies at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as ss

from benchmark.stats.common import model_order

def item_matrix(calls: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """Items x models of mean valid value, keeping only items every model answered validly."""
    v = calls[calls["valid"]]
    m = v.pivot_table(index="item_id", columns="model", values="value", aggfunc="mean")
    models = models or [x for x in model_order(calls) if x in m.columns]
    return m.reindex(columns=models).dropna()


def gg_epsilon(x: np.ndarray) -> np.ndarray:
    """Greenhouse-Geisser epsilon of (..., items, models) arrays: with S the models' covariance over items
    and C = I - J/k, S* = C S C, epsilon = tr(S*)^2 / ((k - 1) tr(S* S*)), between 1 / (k - 1) (the
    sphericity the F test assumes fully broken) and 1 (sphericity holds). Written by hand so that it runs
    over many simulated studies at once; the tests check it against the textbook form on orthonormal
    contrasts."""
    n, k = x.shape[-2], x.shape[-1]
    xc = x - x.mean(-2, keepdims=True)
    cov = np.einsum("...ij,...ik->...jk", xc, xc) / max(n - 1, 1)
    c = np.eye(k) - 1.0 / k
    s = c @ cov @ c
    tr = np.trace(s, axis1=-2, axis2=-1)
    tr2 = (s * s).sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        eps = np.where(tr2 > 0, tr ** 2 / ((k - 1) * tr2), 1.0)
    return np.clip(eps, 1.0 / max(k - 1, 1), 1.0)


def rm_anova_array(x: np.ndarray) -> dict[str, np.ndarray]:
    """Repeated-measures ANOVA (model effect, item as block) on (..., items, models) arrays, by hand so
    that it runs over many simulated studies at once (statsmodels' AnovaRM gives the same F and
    uncorrected p, checked). ``p`` is Greenhouse-Geisser corrected (both degrees of freedom times
    ``epsilon_gg``): rungs of a ladder differ in how much each reads items its own way, which breaks the
    sphericity the uncorrected F assumes (9.0% false positives at alpha 0.05 in such a ladder at 24 x 3;
    corrected 4.1-4.5%); ``p_uncorrected`` is the plain F test's."""
    n, k = x.shape[-2], x.shape[-1]
    grand = x.mean((-2, -1), keepdims=True)
    ss_model = n * ((x.mean(-2, keepdims=True) - grand) ** 2).sum((-2, -1))
    ss_item = k * ((x.mean(-1, keepdims=True) - grand) ** 2).sum((-2, -1))
    ss_error = ((x - grand) ** 2).sum((-2, -1)) - ss_model - ss_item
    df_model, df_error = k - 1, (n - 1) * (k - 1)
    eps = gg_epsilon(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(ss_error > 0, (ss_model / df_model) / (ss_error / df_error), np.inf)
        eta = ss_model / (ss_model + ss_error)
    return {"F": f, "p": ss.f.sf(f, eps * df_model, eps * df_error), "p_uncorrected": ss.f.sf(f, df_model, df_error),
            "epsilon_gg": eps, "df_model": df_model, "df_error": df_error, "partial_eta_sq": eta}


def friedman_array(x: np.ndarray) -> dict[str, np.ndarray]:
    """Friedman's test as a repeated-measures ANOVA on the ranks of each item's k figures (average ranks
    for ties): the Iman-Davenport F, with the Greenhouse-Geisser correction of ``rm_anova_array``. The
    chi-square form (scipy's friedmanchisquare, given as ``chi2`` / ``p_chi2``) assumes the ranks'
    covariance is the same for every pair of models; in a ladder whose rungs differ in model x item
    spread it gave 6.0-6.4% false positives at 96 x 3, the ranks with the correction 4.4-5.0%."""
    n, k = x.shape[-2], x.shape[-1]
    r = ss.rankdata(x, axis=-1)
    a = rm_anova_array(r)
    rs = r.sum(-2)
    chi = 12.0 / (n * k * (k + 1)) * (rs ** 2).sum(-1) - 3 * n * (k + 1)
    # ties: scipy's correction, 1 - sum(t^3 - t) / (n k (k^2 - 1))
    srt = np.sort(x, axis=-1)
    ties = np.zeros(x.shape[:-1])
    run = np.ones(x.shape[:-1])
    for j in range(1, k):
        same = srt[..., j] == srt[..., j - 1]
        ties += np.where(same, 0, run ** 3 - run)
        run = np.where(same, run + 1, 1)
    ties += run ** 3 - run
    c = 1 - ties.sum(-1) / (n * k * (k * k - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        chi = chi / c
    return {"F": a["F"], "p": a["p"], "epsilon_gg": a["epsilon_gg"], "df_model": k - 1, "df_error": a["df_error"],
            "chi2": chi, "p_chi2": ss.chi2.sf(chi, k - 1)}


def rm_anova(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> dict:
    """Repeated-measures ANOVA on per-item mean values: model effect with item as block (a two-way
    ANOVA without interaction on the items x models matrix of per-item means, items every model
    answered validly), Greenhouse-Geisser corrected."""
    mat = item_matrix(calls) if mat is None else mat
    n, k = mat.shape
    res = {"test": "repeated-measures ANOVA (item as block), Greenhouse-Geisser corrected", "metric": "mean_value",
           "items": n, "models": k,
           "assumes": "per-item means; normal residuals; sphericity not assumed (Greenhouse-Geisser epsilon)"}
    if n < 2 or k < 2:
        res["note"] = "needs at least 2 models and 2 items answered by all"
        return res
    r = rm_anova_array(mat.to_numpy())
    res.update({"df_model": r["df_model"], "df_error": r["df_error"], "epsilon_gg": float(r["epsilon_gg"]),
                "F": float(r["F"]), "p": float(r["p"]), "p_uncorrected": float(r["p_uncorrected"]),
                "partial_eta_sq": float(r["partial_eta_sq"])})
    return res


def friedman(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> dict:
    mat = item_matrix(calls) if mat is None else mat
    n, k = mat.shape
    res = {"test": "Friedman (ANOVA on within-item ranks, Greenhouse-Geisser corrected)", "metric": "mean_value",
           "items": n, "models": k,
           "assumes": "per-item means; ranks within item"}
    if k < 3 or n < 2:
        res["note"] = "needs at least 3 models (with 2, read the pair's paired t in Comparisons)"
        return res
    r = friedman_array(mat.to_numpy())
    res.update({"df_model": k - 1, "df_error": float(r["df_error"]), "epsilon_gg": float(r["epsilon_gg"]),
                "F": float(r["F"]), "p": float(r["p"]), "chi2": float(r["chi2"]), "p_chi2": float(r["p_chi2"])})
    return res


def family_quant_array(x: np.ndarray) -> dict[str, np.ndarray]:
    """Two-way ANOVA family x quant with the item as block on (..., items, families, quants) per-item means
    (balanced: every item in every cell), vectorized over leading axes; statsmodels' anova_lm gives the
    same F (checked). Returns per source (family, quant, family:quant, item) F and p, and the residual."""
    n_a, n_f, n_q = x.shape[-3:]
    m = x.mean((-3, -2, -1), keepdims=True)
    ss_art = n_f * n_q * ((x.mean((-2, -1), keepdims=True) - m) ** 2).sum((-3, -2, -1))
    m_f = x.mean((-3, -1), keepdims=True)
    m_q = x.mean((-3, -2), keepdims=True)
    m_fq = x.mean(-3, keepdims=True)
    ss_f = n_a * n_q * ((m_f - m) ** 2).sum((-3, -2, -1))
    ss_q = n_a * n_f * ((m_q - m) ** 2).sum((-3, -2, -1))
    ss_fq = n_a * ((m_fq - m_f - m_q + m) ** 2).sum((-3, -2, -1))
    ss_err = ((x - m) ** 2).sum((-3, -2, -1)) - ss_art - ss_f - ss_q - ss_fq
    df_err = (n_a - 1) * (n_f * n_q - 1)
    out = {"Residual": {"sum_sq": ss_err, "df": df_err}}
    for source, ssv, dfv in [("C(family)", ss_f, n_f - 1), ("C(quant)", ss_q, n_q - 1),
                             ("C(family):C(quant)", ss_fq, (n_f - 1) * (n_q - 1)), ("C(item_id)", ss_art, n_a - 1)]:
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(ss_err > 0, (ssv / dfv) / (ss_err / df_err), np.inf)
        out[source] = {"sum_sq": ssv, "df": dfv, "F": f, "p": ss.f.sf(f, dfv, df_err)}
    return out


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
    n_a = len(mat)
    if n_a < 2:
        return None
    x = np.empty((n_a, len(fams), len(quants)))
    for model, (fam, q) in models.iterrows():
        x[:, fams.index(fam), quants.index(q)] = mat[model].to_numpy()
    res = family_quant_array(x)
    rows = [{"source": k, **{kk: (float(vv) if np.ndim(vv) == 0 else vv) for kk, vv in v.items()}}
            for k, v in res.items() if k != "Residual"]
    rows.append({"source": "Residual", "sum_sq": float(res["Residual"]["sum_sq"]), "df": res["Residual"]["df"]})
    table = pd.DataFrame(rows)
    table["test"] = "two-way ANOVA family x quant, item as block (balanced)"
    table["metric"] = "mean_value"
    table["items"] = n_a
    table["assumes"] = "per-item means; normal residuals; one model per family x quant cell"
    return table
