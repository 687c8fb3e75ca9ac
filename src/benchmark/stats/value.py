"""Statistics of value tasks (a number per reply in the task's range [low, high], e.g. a sentiment in
[-1, 1] or a rating on 1..5), as pure functions over DataFrames of calls.

Conventions (the older tool got these wrong):
- every test is paired by item, with an item's iterations reduced first (``benchmark.stats.paired``):
  the unit is the item, never the call;
- consistency is the SAMPLE variance (ddof=1) of the value across the iterations of ONE item,
  averaged over items (the older tool used the population variance, ddof=0: at 3 iterations its
  figure is 2/3 of this one); the variance over all calls mixes disagreement between items with
  inconsistency and is reported only as "pooled"; consistency is compared with a paired test on
  per-item log variances (``paired.log_variance_test``);
- error against the labels counts every call: an unanswered (invalid) call scores the largest error
  possible on the value's scale (``abs_error``) and counts wrong in direction accuracy; the figures
  over answered calls only stand beside them, labelled;
- where the sign means something (``direction``, sentiment), direction has a neutral band: a value with
  |x| < band is "neutral" (0), so an item labelled 0 is right when the answer is within the band too,
  not by a rounding accident; on a scale of whole numbers (``integer``, a rating) exact and within-one
  accuracy and the weighted kappa take its place (``benchmark.stats.ordinal``);
- means are compared with a paired t-test on per-item means, all pairs with Holm; the all-models
  ANOVA treats the item as a block and is Greenhouse-Geisser corrected, Friedman's test runs as the
  same ANOVA on within-item ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as ss

from benchmark.stats import ordinal
from benchmark.stats import paired as P
from benchmark.stats.common import Cube, item_mean, item_var, timing

DEFAULT_BAND = 0.1
DEFAULT_RANGE = (-1.0, 1.0)


# --------------------------------------------------------------------------- per-call arrays


@dataclass
class ValueData:
    """Everything the value statistics need, as (models, items, iterations) arrays, built once."""

    cube: Cube
    value: np.ndarray        # valid values, NaN otherwise
    valid: np.ndarray        # bool
    present: np.ndarray      # bool: a call exists
    target: np.ndarray       # (items,) gold value, NaN when unknown
    band: float
    low: float
    high: float
    direction: bool = True   # the sign means something: direction accuracy and agreement (neutral band)
    integer: bool = False    # whole numbers on an ordinal scale: exact and within-one accuracy, weighted kappa

    @classmethod
    def of(cls, calls: pd.DataFrame, items: pd.DataFrame | None = None, band: float = DEFAULT_BAND,
           value_range: tuple[float, float] = DEFAULT_RANGE, models: list[str] | None = None,
           direction: bool = True, integer: bool = False) -> "ValueData":
        item_ids = None
        if items is not None and len(items):
            seen = set(pd.unique(calls["item_id"].astype(str)))
            item_ids = [i for i in items["item_id"].astype(str) if i in seen]
        cube = Cube(calls, models, item_ids)
        valid = cube.valid
        value = np.where(valid, cube.get("value"), np.nan)
        target = np.full(len(cube.item_ids), np.nan)
        if items is not None and len(items) and "target_value" in items:
            t = items.drop_duplicates("item_id").set_index(items.drop_duplicates("item_id")["item_id"].astype(str))
            target = pd.to_numeric(t["target_value"], errors="coerce").reindex(cube.item_ids).to_numpy(dtype=float)
        return cls(cube, value, valid, cube.present, target, float(band), float(value_range[0]),
                   float(value_range[1]), bool(direction), bool(integer))

    @property
    def models(self) -> list[str]:
        return self.cube.models

    @property
    def has_target(self) -> bool:
        return bool(np.isfinite(self.target).any())

    def abs_error(self, answered_only: bool = False) -> np.ndarray:
        return abs_error(self.value, self.present, self.target, self.low, self.high, answered_only)

    def direction_correct(self, answered_only: bool = False) -> np.ndarray:
        return direction_correct(self.value, self.present, self.target, self.band, answered_only)

    def direction_codes(self) -> np.ndarray:
        return direction_codes(self.value, self.present, self.band)

    def exact(self, answered_only: bool = False) -> np.ndarray:
        return ordinal.exact(self.value, self.present, self.target, answered_only)

    def answer_codes(self) -> np.ndarray:
        """Integer scales: per call the answer's place on the scale (``ordinal.codes``)."""
        return ordinal.codes(self.value, self.present, self.low, self.high)

    @property
    def steps(self) -> int:
        """Integer scales: the number of values on the scale."""
        return int(round(self.high - self.low)) + 1

    def kappa_tables(self) -> np.ndarray:
        """Integer scales: (models, items, K * K) gold x answer counts per item (``ordinal.tables``)."""
        return ordinal.tables(self.value, self.present, self.target, self.low, self.high)

    def correct(self) -> np.ndarray | None:
        """Per answered call 1/0, what calibration calls right: the direction where it means something,
        else the exact value on an integer scale; None when neither applies."""
        if self.direction:
            return self.direction_correct(True)
        if self.integer:
            return self.exact(True)
        return None

    def item_scores(self) -> dict[str, np.ndarray]:
        """(models, items) per-item figures, one per metric the report tests (NaN where undefined)."""
        c = self.cube
        calls = c._calls
        out = {
            "s_per_sample": item_mean(c.get("wall_seconds"), self.present),
            "valid_rate": item_mean(self.valid.astype(float), self.present),
            "mean_value": item_mean(self.value),
            "value_variance": item_var(self.value),
        }
        if "confidence" in calls and calls["confidence"].notna().any():
            out["mean_confidence"] = item_mean(np.where(self.valid, c.get("confidence"), np.nan))
        if "completion_tokens" in calls and "gen_seconds" in calls:
            sec = np.where(self.present, c.get("gen_seconds"), np.nan)  # NaN also where blanked (ran under load)
            tok = np.where(~np.isnan(sec), c.get("completion_tokens"), np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                out["gen_tok_s"] = np.where(np.nansum(sec, -1) > 0, np.nansum(tok, -1) / np.nansum(sec, -1), np.nan)
        if self.has_target:
            out["mae"] = item_mean(self.abs_error())
            out["mae_answered"] = item_mean(self.abs_error(True))
            if self.direction:
                out["sign_accuracy"] = item_mean(self.direction_correct())
                out["sign_accuracy_answered"] = item_mean(self.direction_correct(True))
            if self.integer:
                out["exact_accuracy"] = item_mean(self.exact())
                out["within_one_accuracy"] = item_mean(
                    ordinal.within_one(self.value, self.present, self.target))
        return out


# array functions over (..., models, items, iterations) values (NaN = no valid answer) and (..., items)
# targets: the report and the simulations in the tests call the same code


def abs_error(value, present, target, low: float = -1.0, high: float = 1.0, answered_only: bool = False):
    """Per call |value - target|; an unanswered call (present, no valid value) scores the largest error
    possible on the scale [low, high] for that item (NaN when ``answered_only``)."""
    t = np.asarray(target, dtype=float)[..., None, :, None]
    err = np.abs(value - t)
    if answered_only:
        return err
    worst = np.broadcast_to(np.maximum(t - low, high - t), err.shape)
    return np.where(present & np.isnan(value), worst, err)


def direction_correct(value, present, target, band: float, answered_only: bool = False):
    """Per call 1/0: the answer's direction (neutral band) equals the label's; unanswered = 0 (NaN
    when ``answered_only``); NaN without a label."""
    d = P.direction(value, band)
    g = P.direction(target, band)[..., None, :, None]
    right = np.where(np.isnan(d) | np.isnan(g), np.nan, (d == g).astype(float))
    if answered_only:
        return right
    return np.where(present & np.isnan(value) & ~np.isnan(g), 0.0, right)


def direction_codes(value, present, band: float):
    """Per call 0 negative, 1 neutral, 2 positive, 3 unanswered; -1 no call (for agreement)."""
    d = P.direction(value, band)
    return np.where(~present, -1, np.where(~np.isnan(d), d + 1, 3)).astype(np.int64)


# --------------------------------------------------------------------------- metrics


def per_item(calls: pd.DataFrame, items: pd.DataFrame | None = None, band: float = DEFAULT_BAND,
             value_range: tuple[float, float] = DEFAULT_RANGE, data: ValueData | None = None) -> pd.DataFrame:
    """One row per (model, item) with calls: the item's figures over its iterations.

    value_variance is the sample variance (ddof=1) over the item's valid iterations; abs_error the mean
    over its calls of |value - target| with an invalid call scored as the worst error on the scale;
    abs_error_answered over valid calls only; direction_accuracy the share of calls whose direction
    (neutral band ``band``) matches the label's, invalid = wrong."""
    data = data or ValueData.of(calls, items, band, value_range)
    s = data.item_scores()
    n = data.present.sum(-1)
    mm, ii = np.nonzero(n > 0)
    out = pd.DataFrame({
        "model": np.array(data.models, dtype=object)[mm], "item_id": data.cube.item_ids[ii], "calls": n[mm, ii],
        "valid_rate": s["valid_rate"][mm, ii], "mean_value": s["mean_value"][mm, ii],
        "value_variance": s["value_variance"][mm, ii], "value_sd": np.sqrt(s["value_variance"][mm, ii]),
    })
    if "mean_confidence" in s:
        out["mean_confidence"] = s["mean_confidence"][mm, ii]
    out["s_per_sample"] = s["s_per_sample"][mm, ii]
    if items is not None and len(items):
        keep = ["item_id"] + [c for c in ("ticker", "title") if c in items] + ["target_value"]
        out = out.merge(items[keep].drop_duplicates("item_id").astype({"item_id": str}), on="item_id", how="left")
        if data.has_target:
            out["abs_error"] = s["mae"][mm, ii]
            out["abs_error_answered"] = s["mae_answered"][mm, ii]
            if data.direction:
                out["direction_accuracy"] = s["sign_accuracy"][mm, ii]
            if data.integer:
                out["exact_accuracy"] = s["exact_accuracy"][mm, ii]
                out["within_one_accuracy"] = s["within_one_accuracy"][mm, ii]
    return out


def per_model(calls: pd.DataFrame, items: pd.DataFrame | None = None, loads: pd.DataFrame | None = None,
              price_per_hour: float | None = None, band: float = DEFAULT_BAND,
              value_range: tuple[float, float] = DEFAULT_RANGE, data: ValueData | None = None) -> pd.DataFrame:
    """One row per model: timing over every call; value figures as the mean over items of the per-item
    figures (with every item asked equally often: the mean over calls).

    mae / sign_accuracy count every call (invalid = worst error / wrong); mae_answered /
    sign_accuracy_answered use answered calls only; value_variance is the mean within-item sample
    variance (ddof=1); pooled_value_variance the variance of every valid value (mixes items);
    correlation the Pearson correlation of per-item means with the labels."""
    data = data or ValueData.of(calls, items, band, value_range)
    s = data.item_scores()
    out = timing(calls, loads, price_per_hour).set_index("model").reindex(data.models)
    with np.errstate(invalid="ignore"), _quiet():
        out["value_variance"] = np.nanmean(s["value_variance"], 1)
        out["mean_value"] = np.nanmean(s["mean_value"], 1)
        if "mean_confidence" in s:
            out["mean_confidence"] = np.nanmean(s["mean_confidence"], 1)
        out["pooled_value_variance"] = [np.nanvar(data.value[k], ddof=1) if np.sum(data.valid[k]) > 1 else np.nan
                                        for k in range(len(data.models))]
        if data.has_target:
            for name in ("mae", "mae_answered", "sign_accuracy", "sign_accuracy_answered", "exact_accuracy",
                         "within_one_accuracy"):
                if name in s:
                    out[name] = np.nanmean(s[name], 1)
            if data.integer:
                t = data.kappa_tables()
                out["weighted_kappa"] = ordinal.weighted_kappa(np.nansum(t, 1), data.steps)
            corr = []
            for k in range(len(data.models)):
                m = s["mean_value"][k]
                ok = ~np.isnan(m) & ~np.isnan(data.target)
                corr.append(ss.pearsonr(m[ok], data.target[ok]).statistic
                            if ok.sum() >= 3 and np.std(m[ok]) > 0 and np.std(data.target[ok]) > 0 else np.nan)
            out["correlation"] = corr
    return out.rename_axis("model").reset_index()


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)
