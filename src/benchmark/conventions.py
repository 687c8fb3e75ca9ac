"""What every sheet's figures follow, in words: one sentence per convention, in one place beside the
metric table (``benchmark.metrics``). The sheet notes of the report (``benchmark.report``) and the README's
Statistics section are built from, or written after, these sentences; a convention that changes here
changes in every sheet that states it.

``say(key, **values)`` fills one sentence in ({noun}: the task's item noun, {value}: its value name;
other fields per sentence). ``CONVENTIONS`` lists them; the tests check that every key is used by a
sheet and that each sheet's note states the conventions its columns follow.
"""

from __future__ import annotations

# the variance of a speed figure, one sentence shared by the conventions that use it
_CLUSTERED = ("clustered by {noun} and by block (Cameron-Gelbach-Miller two-way; Satterthwaite degrees of freedom, "
              "at most blocks - 1); where that two-way variance falls below the larger one-way variance (no sign of "
              "the other clustering), the larger one-way variance is used, with its own degrees of freedom (its "
              "clusters - 1)")

CONVENTIONS: dict[str, str] = {
    # the design every test shares
    "paired": ("Every test pairs models by {noun} (the same {noun}s go to every model) and reduces each "
               "{noun}'s iterations first: n = {noun}s, never calls."),
    "mde": ("MDE80 = the smallest true difference a two-sided paired t over this run's {noun}s finds 80% of the time "
            "at alpha 0.05, from the sd of the per-{noun} differences."),
    # the Decision
    "verdicts": ("Verdicts per metric: EQUIVALENT = the 90% interval of the difference lies inside +-margin (two "
                 "one-sided tests); NON-INFERIOR = its upper end (the worse side) is below the margin; WORSE = the "
                 "one-sided test of 'worse' rejects at 5% after Holm's adjustment across the family (every candidate "
                 "of one reference x every quality metric); SHIFTED (a mean {value}, no better direction) = the "
                 "two-sided test rejects after Holm across the family's candidates; LESS CONSISTENT = the one-sided "
                 "test that the within-{noun} variance ratio exceeds 1 (not the margin) rejects after Holm across "
                 "the family's candidates; TOO FEW ITEMS = fewer than "
                 "report.min_items ({min_items}) {noun}s, or the MDE80 is at least three margins; INCONCLUSIVE = none "
                 "of these. Not significantly different never means 'as good'."),
    "overall": ("A candidate is WORSE if any quality metric (error, direction, accuracy) is worse; SHIFTED if its "
                "mean {value} is; LESS CONSISTENT if its within-{noun} variance is larger; EQUIVALENT / NON-INFERIOR "
                "('safe to ship') only when every quality metric is, AND its mean {value} is within its margin AND "
                "its consistency within its ratio; NOT BOUNDED when quality is non-inferior but the bias or "
                "consistency is not yet bounded (never safe to ship without naming it)."),
    "items_to_decide": ("Items that would decide: the {noun}s (at the run's iterations) at which the 90% interval is "
                        "at most one margin wide, so it must reach a verdict whatever the true difference: the "
                        "smallest n with 2 t(0.95, n-1) sd / sqrt(n) <= margin, sd the per-{noun} differences' sd; "
                        "never a projection of the observed difference. The Decision table's column is the largest "
                        "over the metrics tested."),
    "equivalence_reach": ("Where the 90% interval's half-width is at least the margin, equivalence is out of reach "
                          "at this size; the {noun}s that would show it with 80% power if the true difference is 0 "
                          "are given (two one-sided tests at 5% each)."),
    "zero_spread": ("When every {noun}'s difference is the same (sd 0), the interval is not taken as zero-wide: all n "
                    "{noun}s agreeing only bounds the share of {noun}s that differ by 1 - 0.05^(1/n), so the 90% "
                    "half-width is the largest per-{noun} difference x (1 - 0.05^(1/n))."),
    "consistency_margin": ("Consistency in the Decision: the margin is a ratio of within-{noun} variances (e.g. 1.5); "
                           "non-inferior when the 90% interval's upper end of the geometric-mean ratio is below it."),
    "speed": ("Seconds per sample: a call's wall time (request to parsed reply), the mean over every call, its 95% "
              "interval " + _CLUSTERED + ". Speed vs reference: the geometric-mean ratio of the reference's seconds "
              "per call to the candidate's (above 1 = faster) over calls paired by ({noun}, iteration block), its 95% "
              "interval on the log ratios clustered the same way (a drift of the machine that falls on some blocks "
              "widens it); 'not distinguishable' when the interval holds 1. Pareto: no other rung of the family is at least as good on quality "
              "(point estimate), seconds per sample and {sizes}, and better on one."),
    "speed_tests": ("Seconds per sample and token rates in Comparisons: the geometric-mean ratio candidate / "
                    "reference of the per-call figure (seconds: a call's wall time) over calls paired by ({noun}, "
                    "iteration block), t on the log ratios with the variance " + _CLUSTERED + ": repeated calls are "
                    "never counted as independent, and a drift of the machine between blocks widens the interval."),
    "macro": ("Macro-F1 (and a macro F-beta) average the per-label figure over the labels that occur among the "
              "{noun}s' gold labels: a label of the task that no {noun} has is left out (it would add an F1 of 0 to "
              "every model whatever it answered)."),
    "direction": ("Each row's direction ('better' / 'worse' for the candidate, 'differs' where no direction is "
                  "better, 'not distinguishable') and ci95_excludes_null follow that row's own 95% interval, "
                  "unadjusted; p_holm adjusts its p across the pairs of one metric (Holm)."),
    "order": ("Order: {order}. Counterbalanced: the models take turns per iteration block, their order rotated and "
              "reversed block by block (seeded, stored), so a drift of the machine falls on every model alike. "
              "Grouped: every call of one model in a row; a drift between the models' runs is in no interval."),
    "drift": ("Drift: each model against itself, its early iteration blocks (first half) against its late ones "
              "(second half; the middle block left out when their number is odd; the blocks are named by number), per {noun} (mean log seconds per call, late - early), paired t over {noun}s, Holm "
              "across models; a warning when the move is significant and beyond {tolerance:.0%} "
              "(report.drift_tolerance)."),
    "bench": ("llama-bench figures (in-process models): pp512 (512 random tokens as one prompt), tg128 (128 "
              "tokens decoded one at a time, nothing sampled) and tg128 at the depth of the task's prompts (their "
              "mean tokens, cached first), tokens/s as mean +- sd (n - 1) of the repetitions, as llama-bench's "
              "avg_ts and stddev_ts, measured in process at the model's first load (its own warm-up passes first, as llama-bench's) with the run's context, "
              "batch and threads. Bound: memory bandwidth / bytes a generated token reads (every weight once, one "
              "row of the token embedding, the KV cache at the depth); share = tokens/s over the bound."),
    # figures
    "consistency": ("Consistency (within-{noun} variance, ddof=1): the test, its 95% interval and MDE80 are for the "
                    "geometric mean over {noun}s of (var_cand + c) / (var_ref + c), c = 0.1 x the two models' mean "
                    "within-{noun} variance (c is given per row), which keeps {noun}s a model answered identically "
                    "every time finite; 'estimate' is that geometric-mean ratio, 'ratio' beside it the candidate's mean "
                    "within-{noun} variance over the reference's."),
    "correlation": ("Correlation: estimate and 95% interval are differences in Pearson r (the interval from the "
                    "test: estimate +- t x |estimate / t|); the test runs on per-{noun} jackknife values of Fisher's "
                    "z = atanh(r); its MDE80 is converted to r as MDE_z x (1 - r_ref^2)."),
    "jackknife": ("F1, recall, precision, kappa, balanced accuracy and weighted kappa: paired jackknife over the "
                  "informative {noun}s only (those whose removal moves either model's figure; 'informative' gives "
                  "their number): se = sqrt((m - 1) / m x sum (D_i - mean D)^2), t on m - 1 df."),
    "calibration_bins": ("Calibration bins are equal-width and (low, high], the first [0, 0.1] (scikit-learn's "
                         "calibration_curve): a stated confidence of 0.9 counts in the 0.8-0.9 bin."),
    "calibration_accuracy": ("Calibration is over answered calls only: 'accuracy_answered' is the share of answered "
                             "calls right, against their mean confidence; an invalid reply has no confidence."),
    "token_rates": ("Token rates: gen_tok_s in Summary and Model Details = all generated tokens / all generation "
                    "seconds of the model's calls (a call that ran under load excluded); in Comparisons each call's "
                    "rate (its tokens / its generation seconds) is compared as a ratio, so its values are means "
                    "over calls of per-call rates; Throughput divides tokens by the wall-clock span of all calls. "
                    "Log-probability mode generates nothing: it has no token rate, its time is seconds per call."),
    "vote": ("Vote accuracy: per {noun}, the label given most often among the valid answers over its iterations; a "
             "tie between t labels earns 1/t when the gold label is among them, else 0 (never broken by the label "
             "order); a {noun} with no valid answer earns 0. Vote gain = vote accuracy - per-call accuracy, paired t "
             "over {noun}s: with two iterations and no invalid reply it is exactly 0."),
    "accuracy_difference": ("Accuracy difference: 'diff' with a 95% bootstrap interval over {noun}s (a {noun}'s "
                            "iterations resampled together, expanded percentile); the Decision and the paired "
                            "measures use the paired t interval over {noun}s of per-{noun} accuracy instead: both "
                            "are shown, they agree to within a point at these sizes."),
    "mcnemar": ("McNemar (exact and mid-p) on per-{noun} majority-vote correctness, {noun}s with a tied vote left "
                "out, is a classical cross-check: no verdict rests on it. The verdicts use the paired t over {noun}s "
                "of per-{noun} accuracy (false-positive rate checked by simulation: exact McNemar 0.6-3.2%, power "
                "59% where the paired t has 89% at 100 {noun}s x 3, 80% against 70%)."),
    "baselines": ("Baselines: each model's per-{noun} accuracy against always answering the majority class "
                  "(1 when the {noun}'s gold is that class) and against guessing at the gold shares (the share of "
                  "the {noun}'s gold class): one-sided paired t over {noun}s at 5%; a model not significantly "
                  "better is called 'no better than' that baseline."),
    "anova": ("Repeated-measures ANOVA on the per-{noun} mean {value} (the models' level, not their error) with "
              "the {noun} as block; p is Greenhouse-Geisser "
              "corrected (both df x epsilon, given per row; 'p_uncorrected' beside it)."),
    "friedman": ("Friedman: the same ANOVA on each {noun}'s ranks of the models (average ranks for ties: the "
                 "Iman-Davenport F), Greenhouse-Geisser corrected; scipy's chi-square form beside it (chi2, p_chi2)."),
    "variance": ("{Value} variance = SAMPLE variance (ddof=1) across the iterations of one {noun}, averaged over "
                 "{noun}s (consistency; lower is better); at {iterations} iterations the older tool's population "
                 "variance (ddof=0) is {ratio:.2f} x this one."),
    "label_prob": ("Log-probability mode: every label is scored and the most probable one is the answer; 'label "
                   "prob.' is the mean probability of the answered label, 'prob. margin' its mean lead over the "
                   "runner-up label; seconds per sample is the time per call."),
    "invalid": ("Invalid replies: shown as '(invalid)'; they count as wrong in accuracy and recall, and are kept out "
                "of the answered-only figures."),
}


def say(key: str, **values) -> str:
    """One convention, filled in for a task ({noun}, {value}, {Value} and the sentence's own fields)."""
    noun = values.get("noun", "item")
    value = values.get("value", "value")
    fill = {"noun": noun, "value": value, "Value": value[:1].upper() + value[1:],
            **{k: v for k, v in values.items() if k not in ("noun", "value")}}
    return CONVENTIONS[key].format(**fill)


def says(keys, **values) -> str:
    """Several conventions, in order, as one paragraph."""
    return " ".join(say(k, **values) for k in keys)
