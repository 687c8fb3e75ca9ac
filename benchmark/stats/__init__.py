"""Metrics and tests, as pure functions over DataFrames of calls.

Conventions (the older tool got these wrong):
- consistency is the variance of the sentiment across the iterations of ONE article (ddof=1),
  averaged over articles; the variance over all calls mixes disagreement between articles with
  inconsistency and is reported only as "pooled";
- the same articles go to every model, so means are compared with tests paired by article, and
  the all-models ANOVA treats the article as a block;
- variances are compared with Brown-Forsythe (Levene around medians) on the deviations of each
  call from its article's median, never with a test of means;
- p-values of the pair comparisons are Holm-adjusted across pairs; every comparison reports an
  effect size and a 95% interval;
- timing and token rates cover every call; validity stands beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as ss

ALPHA = 0.05

CALL_COLUMNS = ["model", "family", "quant", "backend", "prompt_style", "iteration", "article_id", "valid",
                "sentiment", "confidence", "finish_reason", "prompt_tokens", "cached_tokens", "completion_tokens",
                "prompt_seconds", "gen_seconds", "wall_seconds"]


def load_frames(store, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(calls, articles, model_loads) of one run."""
    calls = pd.read_sql_query(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE run_id=? ORDER BY id", store.db,
                              params=(run_id,))
    arts = pd.read_sql_query("SELECT article_id, ticker, company, title, url, published, expected_sentiment "
                             "FROM articles WHERE run_id=?", store.db, params=(run_id,))
    loads = pd.read_sql_query("SELECT model, load_seconds, warmup_seconds FROM model_loads WHERE run_id=?",
                              store.db, params=(run_id,))
    calls["valid"] = calls["valid"].astype(bool)
    return calls, arts, loads


def quant_bits(quant: str) -> float:
    """Rough bits per weight of a llama.cpp type name, for ordering (F16 before Q8_0 before Q4_K_M)."""
    import re

    q = str(quant).upper()
    if q in ("F32", "FP32"):
        return 32.0
    if q in ("F16", "FP16", "BF16"):
        return 16.0
    m = re.search(r"(\d+)", q)
    if not m:
        return 0.0
    bits = float(m.group(1))
    return bits + {"_L": 0.3, "_M": 0.2, "_S": 0.1}.get(q[-2:], 0.25 if "_0" in q or "_1" in q else 0.0)


def _model_order(calls: pd.DataFrame) -> list[str]:
    """Models grouped by family (in order of appearance), widest quant first."""
    first = calls.drop_duplicates("model")[["model", "family", "quant"]]
    fam_rank = {f: i for i, f in enumerate(dict.fromkeys(first["family"]))}
    ranked = sorted(first.itertuples(index=False), key=lambda r: (fam_rank[r.family], -quant_bits(r.quant)))
    return [r.model for r in ranked]


# --------------------------------------------------------------------------- metrics


def per_article(calls: pd.DataFrame, articles: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, article): the article's figures over its iterations."""
    g = calls.groupby(["model", "article_id"], sort=False)
    valid = calls[calls["valid"]]
    gv = valid.groupby(["model", "article_id"], sort=False)
    out = pd.DataFrame({
        "calls": g.size(),
        "valid_rate": g["valid"].mean(),
        "mean_sentiment": gv["sentiment"].mean(),
        "sentiment_variance": gv["sentiment"].var(ddof=1),  # consistency: across iterations of this article
        "sentiment_sd": gv["sentiment"].std(ddof=1),
        "mean_confidence": gv["confidence"].mean(),
        "s_per_sample": g["wall_seconds"].mean(),
    }).reset_index()
    if articles is not None and len(articles):
        out = out.merge(articles[["article_id", "ticker", "title", "expected_sentiment"]], on="article_id", how="left")
        out["abs_error"] = (out["mean_sentiment"] - out["expected_sentiment"]).abs()
    return out


def per_model(calls: pd.DataFrame, articles: pd.DataFrame | None = None,
              loads: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model. Sentiment figures over valid calls; time and rates over every call."""
    pa = per_article(calls, articles)
    rows = []
    for model in _model_order(calls):
        c = calls[calls["model"] == model]
        v = c[c["valid"]]
        a = pa[pa["model"] == model]
        evaluated = (c["prompt_tokens"] - c["cached_tokens"].fillna(0)).sum()
        row = {
            "model": model, "family": c["family"].iloc[0], "quant": c["quant"].iloc[0],
            "backend": c["backend"].iloc[0], "prompt_style": c["prompt_style"].iloc[0],
            "articles": c["article_id"].nunique(), "iterations": c["iteration"].nunique(), "calls": len(c),
            "s_per_sample": c["wall_seconds"].mean(),
            "valid_rate": c["valid"].mean(),
            "sentiment_variance": a["sentiment_variance"].mean(),  # mean within-article variance
            "mean_sentiment": v["sentiment"].mean(),
            "mean_confidence": v["confidence"].mean(),
            "pooled_sentiment_variance": v["sentiment"].var(ddof=1),
            "prompt_tok_s": evaluated / c["prompt_seconds"].sum() if c["prompt_seconds"].sum() > 0 else np.nan,
            "gen_tok_s": c["completion_tokens"].sum() / c["gen_seconds"].sum() if c["gen_seconds"].sum() > 0 else np.nan,
            "latency_p50": c["wall_seconds"].quantile(0.50),
            "latency_p95": c["wall_seconds"].quantile(0.95),
            "truncated_rate": (c["finish_reason"] == "length").mean(),
            "load_seconds": np.nan,
        }
        if loads is not None and len(loads):
            l = loads[loads["model"] == model]["load_seconds"]
            row["load_seconds"] = l.mean() if len(l) else np.nan
        if "expected_sentiment" in a and a["expected_sentiment"].notna().any():
            m = a.dropna(subset=["mean_sentiment", "expected_sentiment"])
            row["mae"] = (m["mean_sentiment"] - m["expected_sentiment"]).abs().mean()
            row["sign_accuracy"] = (np.sign(m["mean_sentiment"].round(6)) == np.sign(m["expected_sentiment"])).mean()
            row["correlation"] = (ss.pearsonr(m["mean_sentiment"], m["expected_sentiment"]).statistic
                                  if len(m) >= 3 and m["mean_sentiment"].std() > 0 else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


# which direction is better, per metric (used for highlighting and colour scales)
HIGHER_IS_BETTER = {"valid_rate": True, "s_per_sample": False, "sentiment_variance": False, "mean_confidence": True,
                    "prompt_tok_s": True, "gen_tok_s": True, "latency_p50": False, "latency_p95": False,
                    "load_seconds": False, "mae": False, "sign_accuracy": True, "correlation": True,
                    "truncated_rate": False, "mean_kld": False, "median_kld": False, "p99_kld": False,
                    "max_kld": False, "same_top_pct": True}


# --------------------------------------------------------------------------- designs


def article_matrix(calls: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """Articles x models of mean valid sentiment, keeping only articles every model answered validly."""
    v = calls[calls["valid"]]
    m = v.pivot_table(index="article_id", columns="model", values="sentiment", aggfunc="mean")
    models = models or [x for x in _model_order(calls) if x in m.columns]
    return m.reindex(columns=models).dropna()


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (NaNs stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q)
    adj = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, (m - rank) * q[idx])
        adj[idx] = min(1.0, running)
    out[ok] = adj
    return out


class _PairData:
    """What every pair comparison needs, computed once for all models."""

    def __init__(self, calls: pd.DataFrame):
        v = calls[calls["valid"]]
        self.means = v.pivot_table(index="article_id", columns="model", values="sentiment", aggfunc="mean")
        self.within_var = v.groupby(["model", "article_id"])["sentiment"].var(ddof=1).groupby("model").mean()
        med = v.groupby(["model", "article_id"])["sentiment"].transform("median")
        dev = (v["sentiment"] - med)
        self.deviations = {m: d.to_numpy() for m, d in dev.groupby(v["model"])}
        self.valid_sentiments = {m: d.to_numpy() for m, d in v["sentiment"].groupby(v["model"])}
        self.by_call = v.pivot_table(index=["iteration", "article_id"], columns="model", values="sentiment",
                                     aggfunc="first")
        self.iterations = calls.groupby("model")["iteration"].nunique()


def compare_pair(calls: pd.DataFrame, a: str, b: str, data: _PairData | None = None) -> dict:
    """Every figure for one comparison pair [a (reference), b (candidate)]."""
    data = data or _PairData(calls)
    empty = pd.Series(dtype=float)
    mat = data.means.reindex(columns=[a, b]).dropna()
    d = (mat[b] - mat[a]).to_numpy()
    n = len(d)
    row: dict = {"model_a": a, "model_b": b, "articles": n,
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
    va, vb = data.valid_sentiments.get(a, empty.to_numpy()), data.valid_sentiments.get(b, empty.to_numpy())
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
    # sign flips: same (iteration, article), both valid, the sign of b differs from a's
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
    """Repeated-measures ANOVA on per-article mean sentiment: model effect with article as block.

    Equivalent to a two-way ANOVA without interaction on the articles x models matrix of
    per-article means (articles that every model answered validly)."""
    mat = article_matrix(calls) if mat is None else mat
    n, k = mat.shape
    res = {"test": "repeated-measures ANOVA (article as block)", "articles": n, "models": k,
           "assumes": "per-article means; normal residuals; sphericity (check Friedman below when in doubt)"}
    if n < 2 or k < 2:
        res["note"] = "needs at least 2 models and 2 articles answered by all"
        return res
    x = mat.to_numpy()
    grand = x.mean()
    ss_model = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_article = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_total = ((x - grand) ** 2).sum()
    ss_error = ss_total - ss_model - ss_article
    df_model, df_error = k - 1, (n - 1) * (k - 1)
    f = (ss_model / df_model) / (ss_error / df_error) if ss_error > 0 else np.inf
    res.update({"df_model": df_model, "df_error": df_error, "F": f, "p": float(ss.f.sf(f, df_model, df_error)),
                "partial_eta_sq": ss_model / (ss_model + ss_error) if ss_model + ss_error > 0 else np.nan})
    return res


def friedman(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> dict:
    mat = article_matrix(calls) if mat is None else mat
    n, k = mat.shape
    res = {"test": "Friedman (non-parametric, article as block)", "articles": n, "models": k,
           "assumes": "per-article means; ranks within article"}
    if k < 3 or n < 2:
        res["note"] = "needs at least 3 models (with 2, read the Wilcoxon of the pair)"
        return res
    fr = ss.friedmanchisquare(*[mat[c] for c in mat.columns])
    res.update({"chi2": float(fr.statistic), "p": float(fr.pvalue), "df_model": k - 1})
    return res


def family_quant_anova(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Two-way ANOVA family x quant, with the article as block, on per-article means.

    Only where the grid is complete: at least 2 families x 2 quants, exactly one model per cell.
    The design is then balanced (every article in every cell), so the sums of squares follow from
    means alone (types I, II and III agree)."""
    models = calls.groupby("model", sort=False)[["family", "quant"]].first()
    fams, quants = list(dict.fromkeys(models["family"])), list(dict.fromkeys(models["quant"]))
    if len(fams) < 2 or len(quants) < 2 or len(models) != len(fams) * len(quants):
        return None
    if models.groupby(["family", "quant"]).size().max() != 1:
        return None
    mat = article_matrix(calls) if mat is None else mat
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
                             ("C(family):C(quant)", ss_fq, (n_f - 1) * (n_q - 1)), ("C(article_id)", ss_art, n_a - 1)]:
        f = (ssv / dfv) / (ss_err / df_err) if ss_err > 0 else np.inf
        rows.append({"source": source, "sum_sq": ssv, "df": dfv, "F": f, "p": float(ss.f.sf(f, dfv, df_err))})
    rows.append({"source": "Residual", "sum_sq": ss_err, "df": df_err})
    table = pd.DataFrame(rows)
    table["test"] = "two-way ANOVA family x quant, article as block (balanced)"
    table["articles"] = n_a
    table["assumes"] = "per-article means; normal residuals; one model per family x quant cell"
    return table


def tukey(calls: pd.DataFrame, mat: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tukey HSD across all models on per-article means (an all-pairs view; it ignores the pairing)."""
    mat = article_matrix(calls) if mat is None else mat
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
                         "articles": len(mat)})
    return pd.DataFrame(rows)
