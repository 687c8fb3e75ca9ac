"""The metric table: one place that says, for every figure the reports show, its label, whether
higher is better, its number format and its fixed colour scale. The statistics, the workbook, the
heatmaps and the console table all read it (after lm-eval's ``higher_is_better`` beside each
metric). A task's scorer lists which of these it reports (``Scorer.metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    label: str
    higher_is_better: bool | None   # None: no better direction (e.g. a mean sentiment)
    fmt: str = "0.000"              # Excel number format
    scale: tuple[float, float] | None = None  # fixed colour scale (None: the data's own range)
    short: str | None = None        # console column header

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


def _rate(label: str, higher: bool | None = True, short: str | None = None) -> Metric:
    return Metric(label, higher, "0.0%", (0.0, 1.0), short)


METRICS: dict[str, Metric] = {
    # every task: time and validity
    "s_per_sample": Metric("Seconds per sample (all calls)", False, "0.000", None, "s / sample"),
    "valid_rate": _rate("Valid reply rate", short="valid"),
    "invalid_rate": _rate("Invalid reply rate", False, "invalid"),
    "truncated_rate": _rate("Hit token limit", False),
    "prompt_tok_s": Metric("Prompt tokens/s (evaluated)", True, "0.0"),
    "gen_tok_s": Metric("Generated tokens/s", True, "0.0", None, "gen tok/s"),
    "latency_p50": Metric("Latency p50 (s)", False),
    "latency_p95": Metric("Latency p95 (s)", False),
    "load_seconds": Metric("Load time (s)", False),
    "cost_per_1k": Metric("Cost per 1,000 calls", False, "0.0000", None, "cost/1k"),
    # value tasks (e.g. sentiment in [-1, 1])
    "value_variance": Metric("{value} variance (mean within-{item})", False, "0.0000", None, "mean per-{item} var"),
    "mean_value": Metric("Mean {value}", None, "0.000", (-1.0, 1.0), "mean {value}"),
    "mean_confidence": Metric("Mean confidence", True, "0.000", (0.0, 1.0), "mean confidence"),
    "pooled_value_variance": Metric("Pooled {value} variance (all calls)", None, "0.0000"),
    "mae": Metric("MAE vs expected", False, "0.000", None, "MAE"),
    "sign_accuracy": _rate("Direction accuracy", short="direction"),
    "correlation": Metric("Correlation with expected", True, "0.000", (-1.0, 1.0)),
    # label tasks
    "accuracy": _rate("Accuracy (invalid = wrong)", short="accuracy"),
    "accuracy_answered": _rate("Accuracy of answered calls", short="acc. answered"),
    "balanced_accuracy": _rate("Balanced accuracy", short="bal. acc."),
    "macro_f1": Metric("Macro-F1", True, "0.000", (0.0, 1.0), "macro-F1"),
    "kappa": Metric("Cohen's kappa vs gold", True, "0.000", (-1.0, 1.0), "kappa"),
    "precision": Metric("Precision (positive class)", True, "0.000", (0.0, 1.0)),
    "recall": Metric("Recall (positive class)", True, "0.000", (0.0, 1.0)),
    "f1": Metric("F1 (positive class)", True, "0.000", (0.0, 1.0)),
    "vote_accuracy": _rate("Majority-vote accuracy (per item, over iterations)", short="vote acc."),
    "self_consistency": _rate("Self-consistency (iterations agreeing)", short="consistency"),
    "support": Metric("Support (calls)", None, "0"),
    # export quant quality
    "mean_kld": Metric("Mean KLD from F16 (nats)", False, "0.0000"),
    "median_kld": Metric("Median KLD (nats)", False, "0.0000"),
    "p99_kld": Metric("99th percentile KLD (nats)", False, "0.0000"),
    "max_kld": Metric("Max KLD (nats)", False, "0.0000"),
    "same_top_pct": Metric("Same top token as F16 (%)", True, "0.0", (0.0, 100.0)),
}


def f_beta_metric(beta: float) -> Metric:
    return Metric(f"F-beta (beta={beta:g})", True, "0.000", (0.0, 1.0), f"F{beta:g}")


def metric(name: str, value_name: str = "value", item_noun: str = "item") -> Metric:
    """The metric of a column name, its label filled in for the task (``{value}`` -> Sentiment)."""
    if name.startswith("f_beta_"):
        return f_beta_metric(float(name[len("f_beta_"):]))
    m = METRICS.get(name)
    if m is None:
        return Metric(name.replace("_", " "), None)
    fill = {"value": value_name, "item": item_noun}

    def f(text):
        out = text.format(**fill) if text else text
        return out[:1].upper() + out[1:] if out else out

    return Metric(f(m.label), m.higher_is_better, m.fmt, m.scale, m.short.format(**fill) if m.short else None)


def higher_is_better(name: str) -> bool | None:
    return metric(name).higher_is_better
