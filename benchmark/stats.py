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
                    "truncated_rate": False, "kld_mean": False, "top1_agreement": True}


# --------------------------------------------------------------------------- designs


def article_matrix(calls: pd.DataFrame, models: list[str] | None = None) -> pd.DataFrame:
    """Articles x models of mean valid sentiment, keeping only articles every model answered validly."""
    v = calls[calls["valid"]]
    m = v.pivot_table(index="article_id", columns="model", values="sentiment", aggfunc="mean")
    models = models or [x for x in _model_order(calls) if x in m.columns]
    return m.reindex(columns=models).dropna()


def within_article_deviations(calls: pd.DataFrame, model: str) -> np.ndarray:
    """|sentiment - its article's median| for every valid call of a model (Brown-Forsythe's input)."""
    v = calls[(calls["model"] == model) & calls["valid"]]
    med = v.groupby("article_id")["sentiment"].transform("median")
    return (v["sentiment"] - med).to_numpy()


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


def compare_pair(calls: pd.DataFrame, a: str, b: str) -> dict:
    """Every figure for one comparison pair [a (reference), b (candidate)]."""
    mat = article_matrix(calls, [a, b])
    d = (mat[b] - mat[a]).to_numpy()
    n = len(d)
    row: dict = {"model_a": a, "model_b": b, "articles": n,
                 "iterations": int(calls[calls["model"].isin([a, b])]["iteration"].nunique()),
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
    va = calls[(calls["model"] == a) & calls["valid"]]["sentiment"]
    vb = calls[(calls["model"] == b) & calls["valid"]]["sentiment"]
    if len(va) >= 2 and len(vb) >= 2:
        w = ss.ttest_ind(vb, va, equal_var=False)
        row["welch_t"], row["welch_p"] = float(w.statistic), float(w.pvalue)
    da, db = within_article_deviations(calls, a), within_article_deviations(calls, b)
    row["within_var_a"] = calls[(calls["model"] == a)].pipe(lambda x: per_article(x)["sentiment_variance"].mean())
    row["within_var_b"] = calls[(calls["model"] == b)].pipe(lambda x: per_article(x)["sentiment_variance"].mean())
    row["variance_ratio"] = row["within_var_b"] / row["within_var_a"] if row["within_var_a"] else np.nan
    if len(da) >= 2 and len(db) >= 2 and (np.any(da != 0) or np.any(db != 0)):
        lev = ss.levene(db, da, center="median")
        row["brown_forsythe_w"], row["brown_forsythe_p"] = float(lev.statistic), float(lev.pvalue)
    # sign flips: same (iteration, article), both valid, the sign of b differs from a's
    both = calls[calls["model"].isin([a, b]) & calls["valid"]].pivot_table(
        index=["iteration", "article_id"], columns="model", values="sentiment", aggfunc="first").dropna()
    row["paired_calls"] = len(both)
    row["sign_flip_rate"] = (np.sign(both[a]) != np.sign(both[b])).mean() if len(both) else np.nan
    return row


def compare_pairs(calls: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """All configured pairs, with Holm-adjusted p-values across pairs for each test."""
    rows = [compare_pair(calls, a, b) for a, b in pairs]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for col in ("paired_p", "wilcoxon_p", "welch_p", "brown_forsythe_p"):
        if col not in df:
            df[col] = np.nan
        df[col.replace("_p", "_p_holm")] = holm(df[col].to_numpy())
    return df


def rm_anova(calls: pd.DataFrame) -> dict:
    """Repeated-measures ANOVA on per-article mean sentiment: model effect with article as block.

    Equivalent to a two-way ANOVA without interaction on the articles x models matrix of
    per-article means (articles that every model answered validly)."""
    mat = article_matrix(calls)
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


def friedman(calls: pd.DataFrame) -> dict:
    mat = article_matrix(calls)
    n, k = mat.shape
    res = {"test": "Friedman (non-parametric, article as block)", "articles": n, "models": k,
           "assumes": "per-article means; ranks within article"}
    if k < 3 or n < 2:
        res["note"] = "needs at least 3 models (with 2, read the Wilcoxon of the pair)"
        return res
    fr = ss.friedmanchisquare(*[mat[c] for c in mat.columns])
    res.update({"chi2": float(fr.statistic), "p": float(fr.pvalue), "df_model": k - 1})
    return res


def family_quant_anova(calls: pd.DataFrame) -> pd.DataFrame | None:
    """Two-way ANOVA family x quant (+ article as block) on per-article means, when the grid is complete."""
    models = calls.groupby("model", sort=False)[["family", "quant"]].first()
    fams, quants = models["family"].unique(), models["quant"].unique()
    if len(fams) < 2 or len(quants) < 2:
        return None
    grid = models.groupby(["family", "quant"]).size()
    if len(grid) != len(fams) * len(quants):
        return None
    mat = article_matrix(calls)
    long = mat.reset_index().melt(id_vars="article_id", var_name="model", value_name="sentiment")
    long = long.join(models, on="model")
    import statsmodels.api as sm
    from statsmodels.formula.api import ols

    fit = ols("sentiment ~ C(family) * C(quant) + C(article_id)", data=long).fit()
    table = sm.stats.anova_lm(fit, typ=2).reset_index().rename(columns={"index": "source", "PR(>F)": "p",
                                                                       "sum_sq": "sum_sq", "df": "df"})
    table["test"] = "two-way ANOVA family x quant, article as block (type II)"
    table["articles"] = mat.shape[0]
    return table


def tukey(calls: pd.DataFrame) -> pd.DataFrame:
    """Tukey HSD across all models on per-article means (an all-pairs view; it ignores the pairing)."""
    mat = article_matrix(calls)
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
