"""The metric table: one place that says, for every figure the reports show, its label, whether
higher is better, its number format, its fixed colour scale, its default margin in the Decision,
the task kinds it applies to and the views that show it (after lm-eval's ``higher_is_better``
beside each metric). The statistics, the workbook, the charts and the console all read it.

A task's scorer declares which of these metrics it reports (``Scorer.metrics``, in order); the
Summary, the console table, the family x quant grids and the Decision take their columns from that
declaration, filtered by each metric's ``views`` and ``decides`` here (``columns``,
``decision_metrics``). Nothing else lists columns.

Colour scales are fixed per metric, never the data's own min-max (four close values would span
deep green to deep red): ``scale`` is absolute (a rate on 0-100%); ``range_scale`` ties it to the
task's value range (an error on 0 .. a quarter of the range: 0-0.5 for a sentiment in [-1, 1], 0-1
for a rating on 1..5; a within-item variance on 0-0.5 for [-1, 1]); ``ratio`` metrics (times, token
rates) are coloured by their ratio to the reference on a fixed 0.5x .. 2x log scale. A colour is
shown only where the figure differs significantly from the reference (``benchmark.report.colours``).

Margins are in the metric's own units; a ``range_scale`` "error" or "value" metric's default margin is
given for a range of width 2 ([-1, 1]) and scales with the task's range (MAE 0.05 on [-1, 1], 0.1 on
1..5). A Decision metric has a ``role`` (``ROLES``): quality (error, direction, accuracy: a worse side),
bias (the mean answer: a shift either way) or consistency (the within-item variance, compared as a
ratio: its margin is the largest ratio allowed). What every sheet's figures follow, in words, is in
``benchmark.conventions`` beside this table.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable

# where a declared metric shows: the Summary sheet, the console table after a run, the family x quant
# grids, the items x models heatmaps (value tasks)
VIEWS = ("summary", "console", "grid", "items")
# what a Decision metric weighs: quality (a worse side: error, direction, accuracy), bias (the mean answer,
# a shift either way: two-sided equivalence), consistency (within-item variance: a ratio, one-sided)
ROLES = ("quality", "bias", "consistency")
_S, _ALL = frozenset({"summary"}), frozenset({"summary", "console", "grid"})
_VALUE, _LABEL = frozenset({"value"}), frozenset({"label"})


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool | None   # None: no better direction (e.g. a mean sentiment)
    fmt: str = "0.000"              # Excel number format
    scale: tuple[float, float] | None = None  # fixed colour scale (None: the data's own range)
    short: str | None = None        # console column header
    range_scale: str | None = None  # "value" (lo, hi); "error" (0, (hi - lo) / 4); "variance" (0, ((hi - lo) / 2)^2 / 2)
    ratio: bool = False             # coloured by the ratio to the reference (0.5x .. 2x), no absolute scale
    log_scale: bool = False         # ``scale`` is logarithmic (e.g. a KL divergence from 0.001 to 0.1)
    exact: bool = False             # a fixed property of the model (export checks), not a noisy sample:
                                    # coloured on its scale without a test against the reference
    margin: float | None = None     # default equivalence / non-inferiority margin; None: not a Decision metric
    decides: bool = False           # tested in the Decision by default when the task declares it
    role: str = "quality"           # in the Decision (ROLES): quality, bias or consistency
    kinds: frozenset[str] | None = None   # task kinds it applies to (None: every kind)
    views: frozenset[str] = _S      # where it shows when a task declares it (see VIEWS)

    def position(self, value: float) -> float:
        """Where ``value`` lies on the fixed scale, 0 .. 1 (clipped by the caller)."""
        lo, hi = self.scale
        if self.log_scale:
            return (math.log(max(value, lo * 1e-3)) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (value - lo) / (hi - lo)

    @property
    def percent(self) -> bool:
        return self.fmt.endswith("%")

    def text(self, value) -> str:
        """The value as the console shows it."""
        if value is None or value != value:
            return "-"
        if self.percent:
            return f"{value:.0%}" if self.fmt == "0%" else f"{value:.1%}"
        decimals = len(self.fmt.split(".")[1]) if "." in self.fmt else 0
        return f"{value:.{decimals}f}"


def _rate(label: str, higher: bool | None = True, short: str | None = None, **kw) -> Metric:
    return Metric(label, higher, "0.0%", (0.0, 1.0), short, **kw)


METRICS: dict[str, Metric] = {
    # every task: time and validity
    "s_per_sample": Metric("Seconds per sample", False, "0.000", None, "s / sample", ratio=True,
                           views=frozenset(VIEWS)),
    "valid_rate": _rate("Valid reply rate", short="valid", margin=0.02, views=frozenset(VIEWS)),
    "invalid_rate": _rate("Invalid reply rate", False, "invalid", margin=0.02, views=_ALL),
    "truncated_rate": _rate("Hit token limit", False),
    "prompt_tok_s": Metric("Prompt tokens/s (evaluated)", True, "0.0", ratio=True),
    "gen_tok_s": Metric("Generated tokens/s (all tokens / all generation seconds)", True, "0.0", None, "gen tok/s",
                        ratio=True, views=_ALL),
    # log-probability mode: what it measures instead of generation
    "label_prob": Metric("Probability of the answered label (log-probability mode, mean over calls)", None, "0.000",
                         (0.0, 1.0), "label prob.", kinds=_LABEL, views=_ALL),
    "label_prob_margin": Metric("Probability margin over the runner-up label (log-probability mode)", None, "0.000",
                                (0.0, 1.0), "prob. margin", kinds=_LABEL, views=_ALL),
    "latency_p50": Metric("Latency p50 (s)", False, ratio=True),
    "latency_p95": Metric("Latency p95 (s)", False, ratio=True),
    "load_seconds": Metric("Load time (s)", False, ratio=True),
    "cost_per_1k": Metric("Cost per 1,000 calls", False, "0.0000", None, "cost/1k", ratio=True),
    "size_mb": Metric("File size (MB)", False, "0.0", None, "MB", ratio=True),
    "rss_mb": Metric("Resident memory a load took (MiB, median over the model's loads)", False, "0.0", None, "RAM MiB", ratio=True),
    "kv_cache_mb": Metric("KV cache (MiB)", False, "0.0", None, "KV MiB", ratio=True),
    "vram_mb": Metric("GPU memory (MiB)", False, "0.0", None, "VRAM MiB", ratio=True),
    "joules_per_call": Metric("GPU energy per call (J, calls that ran alone)", False, "0.0", None, "J/call", ratio=True),
    # throughput over endpoints (the Throughput sheet)
    "requests_per_s": Metric("Requests per second", True, "0.00", None, "req/s"),
    "gen_tok_per_s": Metric("Generated tokens per second (all calls in flight)", True, "0.0", None, "tok/s"),
    "span_seconds": Metric("Span, first start to last end (s)", None, "0.0"),
    "mean_in_flight": Metric("Calls in flight (mean)", None, "0.00"),
    "max_in_flight": Metric("Calls in flight (max)", None, "0"),
    # value tasks (a sentiment in [-1, 1], a rating on 1..5)
    "value_variance": Metric("{value} variance (mean within-{item}, sample variance ddof=1)", False, "0.0000", None,
                             "mean per-{item} var", range_scale="variance", margin=1.5, decides=True,
                             role="consistency", kinds=_VALUE, views=frozenset(VIEWS)),
    "mean_value": Metric("Mean {value}", None, "0.000", (-1.0, 1.0), "mean {value}", range_scale="value",
                         margin=0.05, decides=True, role="bias", kinds=_VALUE, views=frozenset(VIEWS)),
    # confidence has no better direction: whether it is right is calibration (ECE)
    "mean_confidence": Metric("Mean confidence", None, "0.000", (0.0, 1.0), "mean confidence",
                              views=frozenset(VIEWS)),
    "pooled_value_variance": Metric("Pooled {value} variance (all calls, ddof=1)", None, "0.0000", kinds=_VALUE),
    "mae": Metric("MAE vs expected (unanswered = worst error)", False, "0.000", None, "MAE", range_scale="error",
                  margin=0.05, decides=True, kinds=_VALUE, views=frozenset({"summary", "grid"})),
    "mae_answered": Metric("MAE vs expected, answered calls only", False, "0.000", None, "MAE answered",
                           range_scale="error", margin=0.05, kinds=_VALUE),
    "sign_accuracy": _rate("Direction accuracy (neutral band; unanswered = wrong)", short="direction", margin=0.05,
                           decides=True, kinds=_VALUE, views=frozenset({"summary", "grid"})),
    "sign_accuracy_answered": _rate("Direction accuracy, answered calls only", short="direction answered",
                                    margin=0.05, kinds=_VALUE),
    "exact_accuracy": _rate("Exact accuracy (answer = gold; unanswered = wrong)", short="exact", margin=0.05,
                            decides=True, kinds=_VALUE, views=_ALL),
    "within_one_accuracy": _rate("Within-one accuracy (|answer - gold| <= 1; unanswered = wrong)",
                                 short="within one", margin=0.05, kinds=_VALUE, views=frozenset({"summary", "grid"})),
    "weighted_kappa": Metric("Weighted kappa vs gold (quadratic; unanswered = the farthest value)", True, "0.000",
                             (-1.0, 1.0), "weighted kappa", kinds=_VALUE, views=frozenset({"summary", "grid"})),
    "correlation": Metric("Correlation with expected", True, "0.000", (-1.0, 1.0), kinds=_VALUE),
    "abs_error": Metric("Absolute error (unanswered = worst)", False, "0.000", None, range_scale="error", kinds=_VALUE),
    "abs_error_answered": Metric("Absolute error, answered calls", False, "0.000", None, range_scale="error",
                                 kinds=_VALUE),
    "direction_accuracy": _rate("Direction right (share of iterations)", kinds=_VALUE),
    "direction_disagreement": _rate("Direction disagreement with the reference (different iterations)", False,
                                    kinds=_VALUE),
    "answer_disagreement": _rate("Answer disagreement with the reference (different iterations)", False),
    # calibration
    "ece": Metric("Expected calibration error", False, "0.000", (0.0, 0.5), "ECE"),
    "brier": Metric("Brier score", False, "0.000", (0.0, 0.5)),
    "overconfidence": Metric("Mean confidence minus accuracy", None, "0.000", (-1.0, 1.0)),
    # label tasks
    "accuracy": _rate("Accuracy (invalid = wrong)", short="accuracy", margin=0.02, decides=True, kinds=_LABEL,
                      views=_ALL),
    "accuracy_answered": _rate("Accuracy of answered calls", short="acc. answered", margin=0.02, kinds=_LABEL),
    "balanced_accuracy": _rate("Balanced accuracy", short="bal. acc.", kinds=_LABEL),
    "macro_f1": Metric("Macro-F1", True, "0.000", (0.0, 1.0), "macro-F1", kinds=_LABEL, views=_ALL),
    "kappa": Metric("Cohen's kappa vs gold", True, "0.000", (-1.0, 1.0), "kappa", kinds=_LABEL),
    "precision": Metric("Precision (positive class)", True, "0.000", (0.0, 1.0), kinds=_LABEL),
    "recall": Metric("Recall (positive class)", True, "0.000", (0.0, 1.0), kinds=_LABEL),
    "f1": Metric("F1 (positive class)", True, "0.000", (0.0, 1.0), kinds=_LABEL),
    "vote_accuracy": _rate("Majority-vote accuracy (per item over iterations; a tie earns 1/t if gold is among the t "
                           "tied labels)", short="vote acc.", margin=0.02, kinds=_LABEL, views=_ALL),
    "vote_ties": Metric("Items whose majority vote is tied", None, "0", short="vote ties", kinds=_LABEL),
    "self_consistency": _rate("Self-consistency (iterations agreeing)", short="consistency", margin=0.05,
                              kinds=_LABEL),
    "support": Metric("Support (calls)", None, "0", kinds=_LABEL),
    # export quant quality
    "mean_kld": Metric("Mean KLD from F16 (nats)", False, "0.0000", (0.001, 0.1), log_scale=True, exact=True),
    "median_kld": Metric("Median KLD (nats)", False, "0.0000", (0.001, 0.1), log_scale=True, exact=True),
    "p99_kld": Metric("99th percentile KLD (nats)", False, "0.0000", (0.01, 1.0), log_scale=True, exact=True),
    "max_kld": Metric("Max KLD (nats)", False, "0.0000", (0.01, 1.0), log_scale=True, exact=True),
    "same_top_pct": Metric("Same top token as F16 (%)", True, "0.0", (80.0, 100.0), exact=True),
}


def f_beta_metric(beta: float) -> Metric:
    return Metric(f"F-beta (beta={beta:g})", True, "0.000", (0.0, 1.0), f"F{beta:g}", kinds=_LABEL)


def known(name: str) -> bool:
    """A column the metric table describes (an F-beta column for any beta included)."""
    return name in METRICS or name.startswith("f_beta_")


def metric(name: str, value_name: str = "value", item_noun: str = "item",
           value_range: tuple[float, float] = (-1.0, 1.0)) -> Metric:
    """The metric of a column name, its label filled in for the task (``{value}`` -> Sentiment) and
    its scale and default margin fixed from the task's value range where they depend on it."""
    if name.startswith("f_beta_"):
        return f_beta_metric(float(name[len("f_beta_"):]))
    m = METRICS.get(name)
    if m is None:
        return Metric(name.replace("_", " "), None)
    fill = {"value": value_name, "item": item_noun}

    def f(text):
        out = text.format(**fill) if text else text
        return out[:1].upper() + out[1:] if out else out

    scale, margin = m.scale, m.margin
    lo, hi = value_range
    half = (hi - lo) / 2
    if m.range_scale == "value":
        scale = (lo, hi)
        margin = None if margin is None else margin * half
    elif m.range_scale == "error":
        scale = (0.0, half / 2)
        margin = None if margin is None else margin * half
    elif m.range_scale == "variance":
        scale = (0.0, half * half / 2)
    return dataclasses.replace(m, label=f(m.label), scale=scale, margin=margin,
                               short=m.short.format(**fill) if m.short else None)


RATIO_SCALE = (0.5, 2.0)  # colour of a ratio metric: its value over the reference's, on a log scale


def higher_is_better(name: str) -> bool | None:
    return metric(name).higher_is_better


def columns(declared: Iterable[str], view: str) -> list[str]:
    """The declared metrics (a scorer's, in its order) that show in ``view`` (one of VIEWS)."""
    if view not in VIEWS:
        raise ValueError(f"no view {view!r}; views are {', '.join(VIEWS)}")
    return [name for name in declared if view in metric(name).views]


def decision_metrics(declared: Iterable[str]) -> list[str]:
    """The declared metrics the Decision tests by default, in declared order."""
    return [name for name in declared if metric(name).decides]


def primary(declared: Iterable[str]) -> str | None:
    """The first default Decision metric of the quality role in a declaration (the Decision's and the
    planner's quality metric), else the first default Decision metric; None without one."""
    dm = decision_metrics(declared)
    return next((n for n in dm if metric(n).role == "quality"), dm[0] if dm else None)


def default_margins(declared: Iterable[str], value_range: tuple[float, float] = (-1.0, 1.0)) -> dict[str, float]:
    """Each default Decision metric of a declaration with its default margin for the task's range."""
    return {name: float(metric(name, value_range=value_range).margin) for name in decision_metrics(declared)}


def span(name: str, value_range: tuple[float, float] = (-1.0, 1.0)) -> float:
    """The widest a per-item difference of the metric can be in one direction: 1 for a rate, the value
    range's width for a figure on the task's scale (an error, a mean value)."""
    m = METRICS.get(name)
    if m is None or m.percent or m.range_scale is None:
        return 1.0
    return float(value_range[1] - value_range[0])


def decidable() -> list[str]:
    """Every metric a margin may be set for (config: report.margins): a per-item mean with a margin."""
    return sorted(name for name, m in METRICS.items() if m.margin is not None)


def applies(name: str, kind: str) -> bool:
    """Whether a metric belongs to tasks of ``kind`` (a scorer declares only those: tests check it)."""
    m = metric(name)
    return m.kinds is None or kind in m.kinds
