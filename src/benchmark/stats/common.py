"""What the statistics of every task kind share: reading a run into DataFrames, the order models
are shown in, timing figures over every call, and Holm's adjustment."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.naming import quant_bits

ALPHA = 0.05


def load_frames(store, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(calls, items, model_loads) of one run: ``Store.frames`` (kept for the callers of this name)."""
    return store.frames(run_id)


def model_order(calls: pd.DataFrame) -> list[str]:
    """Models grouped by family (in order of appearance), widest quant first, then prompt variant; without
    family and quant columns, in order of first appearance."""
    if "family" not in calls or "quant" not in calls:
        return [str(m) for m in pd.unique(calls["model"])]
    cols = ["model", "family", "quant"] + (["variant"] if "variant" in calls else [])
    first = calls.drop_duplicates("model")[cols]
    fam_rank = {f: i for i, f in enumerate(dict.fromkeys(first["family"]))}
    var_rank = {v: i for i, v in enumerate(dict.fromkeys(first["variant"]))} if "variant" in first else {}
    ranked = sorted(first.itertuples(index=False),
                    key=lambda r: (fam_rank[r.family], -quant_bits(r.quant), var_rank.get(getattr(r, "variant", None), 0)))
    return [r.model for r in ranked]


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values along the last axis (each row is one family of
    tests: the simulations adjust thousands of studies at once); NaNs stay NaN and do not count.

    Written by hand: statsmodels' ``multipletests(method="holm")`` gives the same values (the tests
    check it) but takes one family at a time and runs a full garbage collection on every call (a third
    of a second), and the report adjusts once per metric."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim == 0:
        return p.copy()
    ok = ~np.isnan(p)
    m = ok.sum(-1, keepdims=True)
    order = np.argsort(np.where(ok, p, np.inf), axis=-1, kind="stable")
    q = np.take_along_axis(np.where(ok, p, np.inf), order, -1)
    rank = np.arange(p.shape[-1])
    with np.errstate(invalid="ignore"):
        adj = np.where(rank < m, (m - rank) * q, -np.inf)
    adj = np.minimum(np.maximum.accumulate(adj, axis=-1), 1.0)
    out = np.empty_like(p)
    np.put_along_axis(out, order, adj, -1)
    return np.where(ok, out, np.nan)


MEMORY_COLUMNS = ("rss_mb", "kv_cache_mb", "vram_mb")  # per model load: resident memory it took, KV cache, GPU memory
RESOURCE_COLUMNS = (*MEMORY_COLUMNS, "joules_per_call")  # shown in Summary and Decision where measured


def timing(calls: pd.DataFrame, loads: pd.DataFrame | None = None, price_per_hour: float | None = None) -> pd.DataFrame:
    """Per model, over every call (valid or not): identity columns, counts, validity, seconds per
    sample, token rates (prompt rate counts evaluated tokens only: cached ones cost no time; the
    generation rate is all generated tokens over all generation seconds, and none for calls that scored
    labels in log-probability mode),
    latency percentiles, token-limit hits, load time, cost per 1,000 calls and the memory of the
    model's loads (MiB, their median; NaN where the backend does not say)."""
    order = model_order(calls)
    g = calls.groupby("model", sort=False)
    timed_p, timed_g = calls["prompt_seconds"].notna(), calls["gen_seconds"].notna()  # (blanked: ran under load)
    if "label_probs_json" in calls:  # log-probability mode scores labels and generates nothing: no token rate
        timed_g &= calls["label_probs_json"].isna()
    evaluated = ((calls["prompt_tokens"] - calls["cached_tokens"].fillna(0)).where(timed_p)
                 .groupby(calls["model"]).sum())
    generated = calls["completion_tokens"].where(timed_g).groupby(calls["model"]).sum()
    prompt_s = g["prompt_seconds"].sum(min_count=1)
    gen_s = calls["gen_seconds"].where(timed_g).groupby(calls["model"]).sum(min_count=1)
    first = g[["family", "quant", "backend", "prompt_style"] + (["variant"] if "variant" in calls else [])].first()
    out = pd.DataFrame({
        **{c: first[c] for c in first.columns},
        "items": g["item_id"].nunique(), "iterations": g["iteration"].nunique(), "calls": g.size(),
        "s_per_sample": g["wall_seconds"].mean(),
        "valid_rate": g["valid"].mean(),
        "prompt_tok_s": (evaluated / prompt_s).where(prompt_s > 0),
        "gen_tok_s": (generated / gen_s).where(gen_s > 0),
        "latency_p50": g["wall_seconds"].quantile(0.50),
        "latency_p95": g["wall_seconds"].quantile(0.95),
        "truncated_rate": (calls["finish_reason"] == "length").groupby(calls["model"]).mean(),
    })
    out["load_seconds"] = (loads.groupby("model")["load_seconds"].mean().reindex(out.index)
                           if loads is not None and len(loads) else np.nan)
    out["cost_per_1k"] = out["s_per_sample"] * 1000 / 3600 * price_per_hour if price_per_hour else np.nan
    # NVML's energy counter over each call (GPU machines; the whole GPU, so only calls that ran alone count)
    out["joules_per_call"] = (g["energy_j"].mean() if "energy_j" in calls and calls["energy_j"].notna().any()
                              else np.nan)
    for col in MEMORY_COLUMNS:  # the median of the model's loads (one per block when counterbalanced: the first
        # load of a process takes more than a later one of the same model, so the largest depends on the order)
        out[col] = (loads.groupby("model")[col].median().reindex(out.index)
                    if loads is not None and col in loads and loads[col].notna().any() else np.nan)
    if "variant" in out and out["variant"].isna().all():
        out = out.drop(columns=["variant"])
    return out.reindex(order).rename_axis("model").reset_index()


class Cube:
    """Calls as dense (models, items, iterations) arrays, so that per-item figures and the tests over
    items are array operations. ``present`` marks the cells that hold a call; ``get(col)`` is NaN
    elsewhere. Models in report order, items in order of first appearance (or ``item_ids``)."""

    def __init__(self, calls: pd.DataFrame, models: list[str] | None = None, item_ids=None):
        self.models = list(models) if models is not None else model_order(calls)
        if item_ids is None:
            item_ids = pd.unique(calls["item_id"].astype(str))
        self.item_ids = np.asarray(item_ids, dtype=object)
        m = pd.Index(self.models).get_indexer(calls["model"])
        i = pd.Index(self.item_ids).get_indexer(calls["item_id"].astype(str))
        r, self.iterations = pd.factorize(calls["iteration"], sort=True)
        keep = (m >= 0) & (i >= 0)
        self._m, self._i, self._r = m[keep], i[keep], r[keep]
        self._rows = np.flatnonzero(keep)
        self.shape = (len(self.models), len(self.item_ids), max(len(self.iterations), 1))
        self.present = np.zeros(self.shape, dtype=bool)
        self.present[self._m, self._i, self._r] = True
        self._calls = calls

    def get(self, col: str | np.ndarray, fill=np.nan) -> np.ndarray:
        values = self._calls[col].to_numpy() if isinstance(col, str) else np.asarray(col)
        out = np.full(self.shape, fill, dtype=float)
        out[self._m, self._i, self._r] = np.asarray(values[self._rows], dtype=float)
        return out

    @property
    def valid(self) -> np.ndarray:
        return self.get(self._calls["valid"].astype(float), 0.0) > 0

    def index(self, model: str) -> int:
        return self.models.index(model)


def item_mean(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean over the last axis (iterations) of the cells in ``mask`` (default: not NaN); NaN when none."""
    ok = ~np.isnan(x) if mask is None else mask & ~np.isnan(x)
    n = ok.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, x, 0).sum(-1) / np.maximum(n, 1), np.nan)


def item_var(x: np.ndarray) -> np.ndarray:
    """Sample variance (ddof=1) over the last axis of the non-NaN cells; NaN with fewer than two."""
    ok = ~np.isnan(x)
    n = ok.sum(-1)
    mean = item_mean(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        ss_ = np.where(ok, (x - mean[..., None]) ** 2, 0).sum(-1)
        return np.where(n > 1, ss_ / np.maximum(n - 1, 1), np.nan)


def family_references(models: pd.DataFrame, mode: str = "highest_precision",
                      pairs: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """candidate -> its reference. ``models``: one row per model in report order with family and quant
    (and variant). "highest_precision": per family, the widest quant (the first in report order on a
    tie, e.g. the first prompt variant); every other model of the family is a candidate. "compare":
    the configured pairs [reference, candidate]."""
    if mode == "compare":
        return {b: a for a, b in (pairs or [])}
    out: dict[str, str] = {}
    for _, g in models.groupby("family", sort=False):
        names = list(g["model"])
        bits = [quant_bits(q) for q in g["quant"]]
        ref = names[int(np.argmax(bits))]
        out.update({n: ref for n in names if n != ref})
    return out
