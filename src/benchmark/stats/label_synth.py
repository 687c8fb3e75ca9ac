"""Classification runs with known properties, for the tests' simulations and synthetic reports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as ss


@dataclass
class SynthLabelModel:
    """A model for ``synthetic_calls``.

    ``accuracy`` is the per-sample accuracy of its valid answers, averaged over items. Correctness on
    item i: P(right) = Phi(mu + d_i + e_i) with d_i ~ N(0, difficulty_sd) shared by every model (items
    differ in difficulty) and e_i ~ N(0, item_effect_sd) this model's own item effect; mu is set so
    that the mean over items is ``accuracy``. The iterations of one item are independent given that
    probability, so they are correlated across the item's iterations."""

    name: str
    accuracy: float = 0.8
    family: str = "fam"
    quant: str = "Q4_K_M"
    variant: str | None = None
    item_effect_sd: float = 0.3
    invalid_rate: float = 0.0
    seconds: float = 1.0


def synthetic_calls(models: list[SynthLabelModel], n_items: int, n_iterations: int, labels, priors=None,
                    seed: int = 0, difficulty_sd: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(calls, items) with known properties. Gold labels drawn with ``priors`` (uniform by default);
    a call is invalid with the model's ``invalid_rate`` (independently); a valid call is right with the
    probability described in ``SynthLabelModel``, else one of the other labels at random. Confidence
    follows the probability of being right. ``calls.attrs["p_correct"]`` holds the models x items
    probabilities."""
    rng = np.random.default_rng(seed)
    labels = [str(x) for x in labels]
    K = len(labels)
    item_ids = np.array([f"item{i:06d}" for i in range(n_items)], dtype=object)
    gold = rng.choice(K, size=n_items, p=priors)
    difficulty = rng.normal(0, difficulty_sd, n_items)
    lab = np.array(labels + [None], dtype=object)
    it = np.tile(np.arange(n_iterations), n_items)
    ii = np.repeat(np.arange(n_items), n_iterations)
    frames, probs = [], []
    for m in models:
        mu = ss.norm.ppf(m.accuracy) * np.sqrt(1 + difficulty_sd ** 2 + m.item_effect_sd ** 2)
        p_item = ss.norm.cdf(mu + difficulty + rng.normal(0, m.item_effect_sd, n_items))
        probs.append(p_item)
        n = n_items * n_iterations
        right = rng.random(n) < p_item[ii]
        wrong = (gold[ii] + rng.integers(1, K, n)) % K if K > 1 else gold[ii]
        valid = rng.random(n) >= m.invalid_rate
        pred = np.where(valid, np.where(right, gold[ii], wrong), K)
        frames.append(pd.DataFrame({
            "model": m.name, "family": m.family, "quant": m.quant, "variant": m.variant, "iteration": it,
            "item_id": item_ids[ii], "valid": valid, "label": lab[pred],
            "confidence": np.where(valid, np.clip(p_item[ii] + rng.normal(0, 0.05, n), 0, 1), np.nan),
            "wall_seconds": m.seconds * rng.lognormal(0, 0.1, n),
        }))
    calls = pd.concat(frames, ignore_index=True)
    calls.attrs["p_correct"] = np.array(probs)
    items = pd.DataFrame({"item_id": item_ids, "target_label": lab[gold], "split": None})
    return calls, items
