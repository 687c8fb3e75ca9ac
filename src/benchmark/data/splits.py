"""Labels and splits: merge labels, split (stratified, seeded), draw few-shot examples and
stratified samples, and count what there is."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchmark.data.items import Item
from core.errors import ShootoutError

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation",
                 "training": "train", "testing": "test"}
DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


# --------------------------------------------------------------------------- labels


def merge_labels(items: Iterable[Item], mapping: Mapping[str, Any], *, keep_unmapped: bool = False) -> list[Item]:
    """Items with their labels merged (e.g. seven stance labels into three).

    ``mapping`` is either old -> new (``{"strongly_for": "for", "somewhat_for": "for", ...}``) or
    new -> list of old (``{"for": ["strongly_for", "for", "somewhat_for"], ...}``). A label the map
    does not name is kept as it is when ``keep_unmapped``; otherwise it is an error listing every
    such label. The label before the merge is kept in ``fields["original_label"]``; unlabelled
    items pass through.
    """
    items = list(items)
    old_to_new = _merge_map(mapping)
    unmapped = Counter(it.label for it in items if it.label is not None and it.label not in old_to_new)
    if unmapped and not keep_unmapped:
        listed = ", ".join(f"'{lab}' ({c}x)" for lab, c in sorted(unmapped.items()))
        raise ShootoutError(f"the label merge map does not cover {listed}",
                            "add them to the merge map, or keep unmapped labels as they are")
    out = []
    for it in items:
        if it.label is None or it.label not in old_to_new:
            out.append(it)
        else:
            out.append(it.model_copy(update={"label": old_to_new[it.label],
                                             "fields": {**it.fields, "original_label": it.label}}))
    return out


def _merge_map(mapping: Mapping[str, Any]) -> dict[str, str]:
    if not mapping:
        raise ShootoutError("the label merge map is empty")
    grouped = [isinstance(v, (list, tuple, set)) for v in mapping.values()]
    if any(grouped) and not all(grouped):
        raise ShootoutError("the label merge map mixes the two forms",
                            "write either old: new for every label, or new: [old, ...] for every group")
    if not any(grouped):
        return {str(k).strip(): str(v).strip() for k, v in mapping.items()}
    out: dict[str, str] = {}
    for new, olds in mapping.items():
        for old in olds:
            old = str(old).strip()
            if old in out and out[old] != str(new).strip():
                raise ShootoutError(f"the label merge map puts '{old}' into both '{out[old]}' and '{new}'")
            out[old] = str(new).strip()
    return out


# --------------------------------------------------------------------------- splits


def split_items(items: Iterable[Item], fractions: Mapping[str, float] | None = None, seed: int = 0) -> list[Item]:
    """The items with every unsplit item placed in a split, stratified by label.

    ``fractions`` (default train .8, validation .1, test .1) must sum to 1; a zero fraction is
    allowed. Items that already carry a split (from a split column) keep it; the others are cut in
    the order of ``fractions`` with scikit-learn's ``train_test_split(stratify=labels,
    random_state=seed)``: the first split takes round(n * its fraction) of them, the next one its
    share of the rest, the last split what remains. Chained cuts can leave a class off by more
    than one item in a later split, so a last pass moves single items of that class (drawn with
    the seed) between splits until every class has, in every split, its share of the class give or
    take one item (split sizes may then differ from the rounded fractions by an item or two). The
    same items, fractions and seed give the same splits; the input order is kept.

    Small classes: stratifying a cut needs two items of every class and room for every class on
    both sides. A class with a single item in a cut is pooled with the other single-item classes
    (a lone one rides with the largest class); a cut still too small to hold every class (say a
    validation share of 2 items for 3 classes) is made unstratified, shuffled with the same seed.
    The last pass then brings every class back within one item of its share, so tiny classes end
    up mostly in the largest split and a class of 1 to 3 items may be absent from the others
    (``summarize`` shows it).
    """
    items = list(items)
    fr = _check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    names = [k for k, v in fr.items() if v > 0]
    remaining = [i for i, it in enumerate(items) if it.split is None]
    placed: dict[int, str] = {}
    left = 1.0
    for name in names[:-1]:
        share = min(1.0, fr[name] / left) if left > 0 else 1.0
        n_take = int(math.floor(len(remaining) * share + 0.5))
        taken, remaining = _cut([items[i].label for i in remaining], remaining, n_take, seed)
        placed.update((i, name) for i in taken)
        left -= fr[name]
    placed.update((i, names[-1]) for i in remaining)
    _rebalance([it.label for it in items], placed, fr, names, seed)
    return [it.model_copy(update={"split": placed[i]}) if i in placed else it for i, it in enumerate(items)]


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    try:
        fr = {str(k): float(v) for k, v in fractions.items()}
    except (TypeError, ValueError, AttributeError):
        raise ShootoutError(f"split fractions must map split names to numbers, got {fractions!r}") from None
    if not fr:
        raise ShootoutError("no split fractions given", "e.g. train: 0.8, validation: 0.1, test: 0.1")
    bad = [k for k, v in fr.items() if not (0 <= v <= 1)]
    if bad:
        raise ShootoutError(f"split fraction for '{bad[0]}' is {fr[bad[0]]}; fractions lie between 0 and 1")
    total = sum(fr.values())
    if abs(total - 1) > 1e-6:
        shown = ", ".join(f"{k} {v:g}" for k, v in fr.items())
        raise ShootoutError(f"split fractions must sum to 1; {shown} sum to {total:g}",
                            "e.g. train: 0.8, validation: 0.1, test: 0.1")
    return fr


def _cut(labels: list[str | None], idx: list[int], n_take: int, seed: int) -> tuple[list[int], list[int]]:
    """Split ``idx`` into n_take items and the rest, stratified by label where the classes allow."""
    from sklearn.model_selection import train_test_split

    if n_take <= 0:
        return [], idx
    if n_take >= len(idx):
        return idx, []
    strata = ["" if lab is None else lab for lab in labels]
    counts = Counter(strata)
    rare = {s for s, c in counts.items() if c < 2}
    if rare:
        pooled = "\x00rare"
        if len(rare) == 1:  # a pool of one cannot be stratified either: it rides with the largest class
            pooled = max((s for s in counts if s not in rare), key=lambda s: (counts[s], s), default=pooled)
        strata = [pooled if s in rare else s for s in strata]
    sizes = {"train_size": n_take, "test_size": len(idx) - n_take, "random_state": seed}
    try:
        take, rest = train_test_split(idx, stratify=strata, **sizes)
    except ValueError:  # a side too small to hold one item of every class
        take, rest = train_test_split(idx, **sizes)
    return sorted(take), sorted(rest)


def _rebalance(labels: list[str | None], placed: dict[int, str], fr: dict[str, float], names: list[str],
               seed: int) -> None:
    """Move single items between splits until every class is within one item of its share in each."""
    rng = random.Random(seed)
    by_class: dict[str | None, dict[str, list[int]]] = defaultdict(lambda: {s: [] for s in names})
    for i in sorted(placed):
        by_class[labels[i]][placed[i]].append(i)
    for c in sorted(by_class, key=lambda c: (c is None, c or "")):
        groups = by_class[c]
        n = sum(len(g) for g in groups.values())
        target = {s: n * fr[s] for s in names}

        def dev(s):
            return len(groups[s]) - target[s]

        while True:  # each move lowers the sum of squared deviations, so this ends
            over = [s for s in names if dev(s) > 1 + 1e-9]
            under = [s for s in names if dev(s) < -1 - 1e-9]
            if over:
                src, dst = over[0], min(names, key=dev)
            elif under:
                src, dst = max(names, key=dev), under[0]
            else:
                break
            i = groups[src].pop(rng.randrange(len(groups[src])))
            groups[dst].append(i)
            placed[i] = dst


# --------------------------------------------------------------------------- few-shot


def few_shot(items: Iterable[Item], k: int, seed: int, labels: Sequence[str] | None = None) -> list[Item]:
    """``k`` examples of every class, drawn with ``seed`` from ``items`` (normally the train split).

    ``labels``: the classes to draw (default: every label present, sorted). The examples come in
    rounds: each round holds one example of every class in a seeded order, and a round never starts
    with the class that ended the previous one. The draw does not depend on the order of
    ``items`` (each class's pool is sorted by id first). A class with fewer than k items is an
    error naming it.
    """
    if k < 0:
        raise ShootoutError(f"few-shot k must be 0 or more, got {k}")
    pools: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if it.label is not None:
            pools[it.label].append(it)
    classes = list(labels) if labels is not None else sorted(pools)
    if not classes:
        raise ShootoutError("no labelled items to draw few-shot examples from")
    short = [f"'{c}' ({len(pools.get(c, []))})" for c in classes if len(pools.get(c, [])) < k]
    if short:
        raise ShootoutError(f"few-shot needs {k} examples per class; too few items for {', '.join(short)}",
                            "lower k, or add labelled items for those classes to the training data")
    rng = random.Random(seed)
    drawn = {c: rng.sample(sorted(pools[c], key=lambda it: it.id), k) for c in classes}
    out: list[Item] = []
    prev = None
    for r in range(k):
        order = list(classes)
        rng.shuffle(order)
        if len(order) > 1 and order[0] == prev:
            order.append(order.pop(0))
        out.extend(drawn[c][r] for c in order)
        prev = order[-1]
    return out


def stratified_sample(items: Iterable[Item], n: int, seed: int = 0) -> list[Item]:
    """``n`` of ``items``, each label keeping its share (as near as whole items allow), drawn with
    ``seed``; the items keep their order. All of them when there are no more than ``n``."""
    items = list(items)
    if n >= len(items):
        return items
    pools: dict[str | None, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        pools[it.label].append(i)
    # largest-remainder quotas, so the sample has exactly n items
    exact = {c: n * len(ix) / len(items) for c, ix in pools.items()}
    quota = {c: int(q) for c, q in exact.items()}
    for c in sorted(exact, key=lambda c: (-(exact[c] - quota[c]), str(c)))[: n - sum(quota.values())]:
        quota[c] += 1
    rng = random.Random(seed)
    keep = {i for c, ix in pools.items() for i in rng.sample(ix, quota[c])}
    return [it for i, it in enumerate(items) if i in keep]


# --------------------------------------------------------------------------- summary


def summarize(items: Iterable[Item]) -> dict[str, Any]:
    """Counts for messages: ``{"items": n, "labels": {label: n}, "splits": {split: {"items": n,
    "labels": {label: n}}}}``. Splits come train, validation, test, then others by name; items
    without a split count under ``"unsplit"``, items without a label under ``"unlabelled"``."""
    items = list(items)

    def labels_of(group):
        return dict(sorted(Counter(it.label if it.label is not None else "unlabelled" for it in group).items()))

    by_split: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_split[it.split or "unsplit"].append(it)
    order = sorted(by_split, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
    return {"items": len(items), "labels": labels_of(items),
            "splits": {s: {"items": len(by_split[s]), "labels": labels_of(by_split[s])} for s in order}}
