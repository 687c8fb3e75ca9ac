"""The statistics of a run, as pure functions over DataFrames and arrays: they read the frames the
store gives (``Store.frames``), never SQL, and write nothing. ``common`` (model order, timing, the
cube of calls, Holm), ``paired`` (the paired design's tests and power), ``compare`` (measures and
comparisons of every kind), ``decision`` (verdicts at margins, family-wise, Pareto), ``value``,
``anova`` and ``ordinal`` (value tasks: per-item figures, the all-models tests, whole-number scales),
``label`` and its ``label_*`` siblings (classification; ``label_baselines``: the trivial baselines and
each model against them), ``calibration`` and ``throughput``."""
