"""The schema of config.yaml, and loading it with one clear message per problem.

Every problem names the field path (``models[3].quant``), the line in the file, the value found
and what to write instead. Relative paths in the file are resolved from the file's own folder.
A model's ``options:`` are validated with its backend's options model (``benchmark.backends``).

Over 400 lines: the schema and the messages its problems give are one job, read together (each
message follows from the field it describes); the task block's schema lives with the task.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, Field, SerializeAsAny, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from benchmark import metrics as M
from benchmark.backends import BACKENDS, DEFAULT_BACKEND, capable, describe, validate_options
from benchmark.backends.base import BackendOptions
from benchmark.tasks.classify import ClassifyTaskSpec
from benchmark.tasks.score import ScoreTaskSpec
from core.errors import ConfigError
from core.settings import SettingsModel
from core.naming import series

DEFAULT_RSS_URL = "https://feeds.finance.yahoo.com/rss/2.0/headline?s={ticker}&region=US&lang=en-US"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$"


class _Strict(SettingsModel):
    pass


ModelOptions = BackendOptions  # the run overrides every backend takes; each backend's options model adds its own


class Resources(_Strict):
    """What a model's shard reserves on a node when a cluster executor places it (``run --executor ray``)."""

    num_gpus: float = Field(0, ge=0, description="GPUs the model's shard reserves on its node (fractions share one); "
                                                 "for llamacpp in process")
    num_cpus: float = Field(1, gt=0, description="CPU cores it reserves; llama.cpp in process runs as many threads "
                                                 "unless options.n_threads says otherwise")


EMBEDDED = "embedded"  # a model path naming an embedded model: "embedded" (Gemma 3 270M) or "embedded:NAME"


class ModelEntry(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    backend: str = Field(DEFAULT_BACKEND, description="; ".join(f"{n}: {describe(s)}" for n, s in BACKENDS.items()))
    path: str | None = Field(None, description="llamacpp: the GGUF file, or 'embedded' (Gemma 3 270M Q4_K_M) or "
                                               "'embedded:smollm2' (SmolLM2-135M-Instruct Q4_1) for an embedded model")
    tag: str | None = Field(None, description="ollama: the model tag, e.g. llama3.1:8b-instruct-q4_K_M")
    base_url: str | None = Field(None, description="openai: server root, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="openai: model name to send (default: name)")
    family: str
    quant: str
    prompt_style: Literal["few_shot", "zero_shot"] = "few_shot"
    system_prompt: str | None = Field(None, description="zero_shot: the system prompt the fine-tune was trained with")
    options: SerializeAsAny[BackendOptions] = Field(
        default_factory=dict, description="run overrides (temperature, num_ctx, num_predict) and the backend's own "
                                          "options; each backend's options model says which")
    manifest: str | None = Field(None, description="export manifest with this model's quant quality (default: "
                                                   "the one beside its GGUF, if any)")
    checkpoint: float | None = Field(None, ge=0, description="learning curves: the training step or epoch of this "
                                                              "checkpoint")
    endpoints: list[str] | None = Field(None, min_length=1,
                                        description="several servers hosting this model (host URLs / base URLs); its "
                                                    "calls are spread over them")
    resources: Resources = Field(default_factory=Resources, description="run --executor ray: what the model's shard "
                                                                        "reserves on its node")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKENDS:
            from pydantic_core import PydanticCustomError

            names = [f"'{n}'" for n in BACKENDS]
            expected = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return v

    @field_validator("options", mode="before")
    @classmethod
    def _backend_options(cls, v: Any, info: ValidationInfo) -> Any:
        backend = info.data.get("backend")
        if backend not in BACKENDS:  # the backend's own error says what is wrong
            return BackendOptions.model_construct()
        return validate_options(backend, v)

    @model_validator(mode="after")
    def _backend_fields(self) -> "ModelEntry":
        spec = BACKENDS[self.backend]
        need = spec.where
        if need and getattr(self, need) in (None, "") and not (self.endpoints and spec.where_is_endpoint):
            raise ValueError(f"backend '{self.backend}' needs '{need}'")
        if self.endpoints and not spec.capabilities.endpoints:
            raise ValueError(f"backend '{self.backend}' cannot spread calls over endpoints: endpoints are for "
                             f"{series(capable('endpoints', scripted=False))}")
        if self.resources.num_gpus and not spec.capabilities.in_process:
            in_process = ", ".join(capable("in_process", scripted=False))
            raise ValueError(f"resources.num_gpus is for models run in process ({in_process}); backend "
                             f"'{self.backend}' runs on its server, which holds the GPUs")
        return self


class NewsSettings(_Strict):
    source: Literal["snapshot", "rss"] = "snapshot"
    snapshot: str | None = Field(None, description="snapshot JSON file (default: the one shipped with gguf-shootout)")
    tickers: dict[str, str] = Field(
        default_factory=lambda: {"NVDA": "Nvidia", "AAPL": "Apple", "MSFT": "Microsoft"},
        description="ticker -> company name (used to pick the article paragraphs that matter)",
    )
    rss_url: str = DEFAULT_RSS_URL
    max_age_days: float = Field(3, gt=0)
    max_items_per_ticker: int = Field(8, ge=1)
    max_articles: int | None = Field(None, ge=1, description="cap on the total number of articles")
    fetch_pages: bool = True
    cache_dir: str = ".cache/news"
    timeout_s: float = Field(15, gt=0, description="wall-clock seconds allowed for one fetch (a feed or a page), "
                                                   "redirects included")
    max_fetch_bytes: int = Field(5_000_000, ge=1024, description="the largest feed or page read; a larger one is "
                                                                 "skipped with a warning")
    max_article_chars: int = Field(10_000, ge=100, description="an article's text is cut (at a word boundary) to "
                                                               "this many characters; the item records "
                                                               "truncated_from")
    allow_private_addresses: bool | list[str] = Field(
        False, description="fetch from loopback, link-local and private addresses too: true, or a list of addresses "
                           "and networks (e.g. [192.168.1.10, 10.0.0.0/8]); false refuses them")

    @field_validator("rss_url")
    @classmethod
    def _has_placeholder(cls, v: str) -> str:
        import string
        from urllib.parse import urlsplit

        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(v) if name is not None]
        except ValueError as exc:
            raise ValueError(f"has unbalanced braces ({exc}); the only placeholder is {{ticker}}, and a literal brace "
                             "is written {{ or }}") from None
        for name, spec, conv in fields:
            if name != "ticker" or spec or conv:
                shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
                raise ValueError(f"has the placeholder {shown}; the only placeholder is {{ticker}} (write a literal "
                                 "brace as {{ or }})")
        if not fields:
            raise ValueError("must contain the placeholder {ticker}")
        scheme = urlsplit(v).scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"must be an http:// or https:// URL (found {scheme + ':' if scheme else 'no scheme'})")
        return v

    @field_validator("allow_private_addresses")
    @classmethod
    def _networks(cls, v: bool | list[str]) -> bool | list[str]:
        if not isinstance(v, bool):
            from core.netsafe import parse_networks

            parse_networks(v)
        return v


class RunSettings(_Strict):
    iterations: int = Field(3, ge=1, le=1000)
    temperature: float = Field(0.7, ge=0, le=2)
    num_ctx: int = Field(2048, ge=256, le=2**21)
    num_predict: int = Field(256, ge=1, le=2**21)
    seed: int = Field(1234, ge=0, le=2**32 - 1, description="the run's seed (samplers take 32 bits)")
    structured_output: bool = True
    warmup: bool = True
    database: str = "reports/shootout.sqlite"
    concurrency: int | list[int] = Field(
        1, description="calls in flight per endpoint of a server backend (1: latency mode; more: throughput mode); a "
                       "list such as [1, 2, 4, 8] sweeps the levels, each over its own block of every model's calls, "
                       "for the report's throughput-against-latency chart")
    max_reply_chars: int | None = Field(None, ge=1, description="a stored reply is cut to this many characters (its "
                                                                "full length is recorded; default: num_predict x 16)")
    lock_wait_s: float = Field(60, ge=0, description="seconds to wait for the results file while another process "
                                                    "holds a write lock, before giving up with a message")
    order: Literal["counterbalanced", "grouped"] = Field(
        "counterbalanced", description="counterbalanced: the models take turns per iteration block, their order "
                                       "rotated and reversed block by block (seeded, stored), so a drift of the "
                                       "machine falls on every model alike; an in-process model is loaded once per "
                                       "block. grouped: every call of one model in a row (one load per model), for "
                                       "users who cannot afford the loads; a drift then lands on whichever model "
                                       "runs at the time")
    speed_bench: bool | int = Field(True, description="in-process models: llama-bench's pp512, tg128 and tg128 at "
                                                      "the task's prompt depth, measured once per model at its first "
                                                      "load, and a memory copy test once per run. true: 5 "
                                                      "repetitions each (llama-bench's default; on a small CPU about "
                                                      "half a minute per model, on a GPU seconds); a number: that many "
                                                      "repetitions; false: skipped")

    @field_validator("speed_bench")
    @classmethod
    def _bench_reps(cls, v: bool | int) -> bool | int:
        if not isinstance(v, bool) and v < 1:
            raise ValueError(f"is {v}: true (5 repetitions), false (none), or a number of repetitions of at least 1")
        return v

    @field_validator("concurrency")
    @classmethod
    def _levels(cls, v: int | list[int]) -> int | list[int]:
        levels = v if isinstance(v, list) else [v]
        if not levels or any(n < 1 for n in levels):
            raise ValueError("must be a whole number of at least 1, or a non-empty list of them (e.g. [1, 2, 4, 8])")
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError(f"lists a level twice ({v}); each level of the sweep once")
        return v

    @property
    def levels(self) -> list[int]:
        """The concurrency levels, lowest first (one for a plain number)."""
        return sorted(self.concurrency) if isinstance(self.concurrency, list) else [self.concurrency]


class ReportSettings(_Strict):
    """How the report compares models and decides (the Decision sheet)."""

    price_per_hour: float | None = Field(None, ge=0, description="machine price per hour, for cost per 1,000 calls")
    reference: Literal["highest_precision", "compare"] = Field(
        "highest_precision", description="each candidate's reference in every sheet: the widest quant of its family "
                                         "(highest_precision; between rungs of the same precision, such as prompt "
                                         "variants, the one a `compare` pair names as reference), or the `compare` "
                                         "pairs [reference, candidate]")
    margins: dict[str, float] | None = Field(
        None,
        description="equivalence / non-inferiority margin per metric, in the metric's units, overriding and adding "
                    "to the task's decision metrics at their default margins in the metric table (mae 0.05 on a "
                    "[-1, 1] range, scaled with the range: 0.1 on 1..5; accuracy 0.02, i.e. 2 points; direction and "
                    "exact accuracy 0.05; the bias, mean_value, +-0.05 on [-1, 1]; consistency, value_variance, a "
                    "variance ratio of 1.5)")
    min_items: int = Field(20, ge=2, description="below this many items compared, the Decision claims no equivalence "
                                                 "or non-inferiority: it says nothing can be decided and how many "
                                                 "items would")
    neutral_band: float = Field(0.1, ge=0, description="value tasks: |value| below this is 'neutral' for direction "
                                                      "accuracy and agreement (labels and answers alike)")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="level of every test (TOST uses the 1 - 2 alpha interval)")
    power: float = Field(0.8, gt=0, lt=1, description="power for the minimal detectable effects and items to decide")
    calibration_bins: int = Field(10, ge=2, le=50, description="equal-width confidence bins for calibration (ECE)")
    latency: Literal["alone", "all"] = Field(
        "alone", description="which calls the latency figures (seconds per sample, percentiles, token rates) use: "
                             "those that ran alone on their endpoint (alone), or every call (all, e.g. when the "
                             "whole run was in throughput mode and latency under load is the question)")
    memory_bandwidth_gbs: float | None = Field(
        None, gt=0, description="the machine's memory bandwidth in GB/s for the Speed sheet's share of the bound "
                                "(default: the copy test the run measured)")
    drift_tolerance: float = Field(0.1, gt=0, lt=1, description="the Speed sheet warns when a model's seconds per "
                                                               "call moved between its early and late iteration "
                                                               "blocks by more than this share, significantly")

    @field_validator("margins")
    @classmethod
    def _known_margins(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for k, m in (v or {}).items():
            if k not in M.decidable():
                raise ValueError(f"no decision metric '{k}'; use one of {', '.join(M.decidable())}")
            if not m > 0:
                raise ValueError(f"margin of '{k}' must be positive (it is the size of the allowed difference)")
            if M.metric(k).role == "consistency" and not m > 1:
                raise ValueError(f"margin of '{k}' is a ratio of variances and must be above 1 (e.g. 1.5: the "
                                 "candidate's within-item variance at most 1.5 x the reference's)")
        return v


class OutputSettings(_Strict):
    reports_dir: str = "reports"
    heatmaps_dir: str = "heatmaps"


class Arm(BaseModel):
    """A model under one prompt variant: what the runner asks and the report compares."""

    name: str
    entry: ModelEntry
    variant: str | None = None


class Config(_Strict):
    task: str | ClassifyTaskSpec | ScoreTaskSpec = Field(
        "sentiment", description="a built-in task by name (sentiment), a classification block (kind: classify) or a "
                                 "score block (kind: score: a number in a range, e.g. a 1-5 rating)")
    news: NewsSettings = Field(default_factory=NewsSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    models: list[ModelEntry] = Field(min_length=1)
    compare: list[tuple[str, str]] = Field(default_factory=list)
    report: ReportSettings = Field(default_factory=ReportSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    # set by load_config, not part of the file
    _base_dir: Path = Path(".")
    _source: str = "config.yaml"
    _text: str = ""

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def source(self) -> str:
        return self._source

    @property
    def text(self) -> str:
        return self._text

    def resolve(self, p: str | Path) -> Path:
        """A path from the file, resolved from the file's folder (``~`` expanded)."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else (self._base_dir / path)

    @property
    def task_name(self) -> str:
        return self.task if isinstance(self.task, str) else self.task.name

    def task_object(self):
        """The task this config names, built (``benchmark.tasks.task_for``)."""
        from benchmark.tasks import task_for

        return task_for(self)

    def variants(self) -> tuple[str | None, ...]:
        """The task's prompt variants; (None,) when it has one prompt."""
        if isinstance(self.task, str) or not self.task.variants:
            return (None,)
        return tuple(self.task.variants)

    def arms(self, variants: tuple[str | None, ...] | None = None) -> list[Arm]:
        """Every model under every prompt variant; an arm is named ``model@variant`` when there are several."""
        variants = variants or self.variants()
        return [Arm(name=m.name if v is None else f"{m.name}@{v}", entry=m, variant=v)
                for m in self.models for v in variants]

    def model_path(self, entry: ModelEntry) -> Path:
        """The GGUF of a llamacpp entry ('embedded' is assembled from its PyPI package on first use)."""
        from core.embedded import embedded_gguf, named_in_path

        embedded = named_in_path(entry.path)
        if embedded is not None:
            return embedded_gguf(model_name=embedded.name)
        return self.resolve(entry.path)

    def model(self, name: str) -> ModelEntry:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def setting(self, entry: ModelEntry, key: str) -> Any:
        """A per-model option when set, else the run-wide value."""
        value = getattr(entry.options, key, None)
        return getattr(self.run, key) if value is None else value


# --------------------------------------------------------------------------- loading


def _yaml():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    return y


def _loc_str(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(data: Any, loc: tuple) -> int | None:
    """1-based line of the deepest key or item of ``loc`` found in the round-trip YAML tree."""
    line = None
    node = data
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(part, int) and isinstance(node, list):
                if lc is not None:
                    line = lc.item(part)[0] + 1
                node = node[part]
            elif isinstance(node, dict) and part in node:
                if lc is not None:
                    line = lc.key(part)[0] + 1
                node = node[part]
            else:
                break
        except Exception:
            break
    return line


def _model_class_at(loc: tuple, data: Any = None) -> type[BaseModel] | None:
    """The pydantic class whose fields live at ``loc`` (for listing allowed keys); under ``task``, the
    block the file wrote."""
    import typing

    cls: Any = Config
    keyed = False  # the last field was a mapping of names to blocks (variants): the next part is a name
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        if cls is Config and part == "task":
            cls = TASK_SPECS.get(_task_form(data))
            if cls is None:
                return None
            continue
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        args = [a for x in (ann, *typing.get_args(ann)) for a in (x, *typing.get_args(x))]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:
            return None
        keyed = any(typing.get_origin(x) is dict for x in (ann, *typing.get_args(ann)))
        cls = models[0]
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true/false",
               "list": "a list", "dict": "a mapping", "NoneType": "empty", "CommentedMap": "a mapping",
               "CommentedSeq": "a list", "ScalarFloat": "a number", "ScalarInt": "an integer",
               "ScalarBoolean": "true/false", "DoubleQuotedScalarString": "a string",
               "SingleQuotedScalarString": "a string", "LiteralScalarString": "a string"}


def _describe(value: Any) -> str:
    kind = _TYPE_NAMES.get(type(value).__name__, type(value).__name__)
    shown = repr(value) if not isinstance(value, (dict, list)) else ("{...}" if isinstance(value, dict) else "[...]")
    return f"{shown} ({kind})"


def _format_error(err: dict, data: Any) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    where = _loc_str(loc)
    line = _line_of(data, loc)
    at = f"{where} (line {line})" if line else where
    key = loc[-1] if loc else ""
    if kind in ("foreign_option", "unknown_option"):
        return f"{at}: {err['msg']}"
    if kind == "extra_forbidden":
        cls = _model_class_at(loc[:-1], data)
        allowed = ", ".join(cls.model_fields) if cls else "see config.yaml's comments"
        return f"{at}: unknown key '{key}'. Allowed keys here: {allowed}. Check the spelling or remove it."
    if kind == "missing":
        return f"{at}: required but missing. Add '{key}: ...'."
    if kind == "string_type" and loc == ("task",):
        return (f"{at}: expected a built-in task's name or a task block (name, kind, labels or range, data), got "
                f"{_describe(value)}.")
    if kind == "string_type":
        return (f"{at}: expected a string, got {_describe(value)}. "
                f"Quote it, e.g. {key}: \"{value}\".")
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{at}: expected a whole number, got {_describe(value)}."
    if kind in ("float_type", "float_parsing"):
        return f"{at}: expected a number, got {_describe(value)}."
    if kind in ("bool_type", "bool_parsing"):
        return f"{at}: expected true or false, got {_describe(value)}."
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        if loc == ("task", "kind"):  # an unknown kind is read as the default block's: name every kind
            expected = " or ".join(repr(k) for k in TASK_FORMS if k != "name")
        return f"{at}: {_describe(value)} is not allowed; use one of {expected}."
    if kind == "string_pattern_mismatch":
        return (f"{at}: {_describe(value)} is not a valid name; use letters, digits and . _ : + - "
                f"(no spaces), starting with a letter or digit.")
    msg = err.get("msg", kind)
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if isinstance(value, (dict, list)):
        return f"{at}: {msg}."
    return f"{at}: {msg} (got {_describe(value)})."


def _without_union_tags(errors: list[dict], data: Any) -> list[dict]:
    """``task`` is a name or a block: report only the errors of the form written (a block's ``kind``)."""
    out = []
    written = _task_form(data)
    for e in errors:
        loc = tuple(e["loc"])
        form = _union_member(loc[1]) if loc[:1] == ("task",) and len(loc) > 1 else None
        if form in TASK_FORMS.values():
            if form != written:
                continue
            e = {**e, "loc": loc[:1] + loc[2:]}
        out.append(e)
    return out


def _union_member(tag: Any) -> str | None:
    """The class a union member's error tag names: ``ScoreTaskSpec``, or pydantic's
    ``function-after[_consistent(), ScoreTaskSpec]`` for a model with an after-validator."""
    if not isinstance(tag, str):
        return None
    m = re.fullmatch(r"function-\w+\[.*, (\w+)\]", tag)
    return m.group(1) if m else tag


TASK_FORMS = {"name": "str", "classify": "ClassifyTaskSpec", "score": "ScoreTaskSpec"}
TASK_SPECS = {"ClassifyTaskSpec": ClassifyTaskSpec, "ScoreTaskSpec": ScoreTaskSpec}


def _task_form(data: Any) -> str:
    """Which form of ``task`` a file wrote: a name, or the block its ``kind`` names (classify by default)."""
    task = data.get("task") if isinstance(data, dict) else None
    if not isinstance(task, dict):
        return TASK_FORMS["name"]
    return TASK_FORMS.get(str(task.get("kind")), TASK_FORMS["classify"])


def _semantic_problems(cfg: Config, data: Any, check_files: bool) -> list[str]:
    from benchmark.tasks import BUILTIN

    problems: list[str] = []

    def at(loc: tuple) -> str:
        line = _line_of(data, loc)
        return f"{_loc_str(loc)} (line {line})" if line else _loc_str(loc)

    if isinstance(cfg.task, str) and cfg.task not in BUILTIN:
        problems.append(f"{at(('task',))}: unknown task '{cfg.task}'; built in: {', '.join(sorted(BUILTIN))}, or "
                        "write a classification block (task: {{name: ..., kind: classify, labels: [...], data: ...}}).")
    if cfg.report.margins and not (isinstance(cfg.task, str) and cfg.task not in BUILTIN):
        from benchmark.tasks import task_for

        declared = task_for(cfg).scorer.metrics
        fits = [n for n in declared if n in M.decidable()]
        for name in cfg.report.margins:
            if name not in fits:
                problems.append(f"{at(('report', 'margins', name))}: task '{cfg.task_name}' does not report "
                                f"'{name}'; its decision metrics are {', '.join(fits)}.")
    if not isinstance(cfg.task, str) and check_files:
        d = cfg.task.data
        for key, p in ([("path", d.path)] if d.path else [("files", v) for v in (d.files or {}).values()]):
            if not cfg.resolve(p).exists():
                problems.append(f"{at(('task', 'data', key))}: data file not found: {p} (looked in {cfg.resolve(p)}).")
    seen: dict[str, int] = {}
    for i, m in enumerate(cfg.models):
        if m.name in seen:
            problems.append(f"{at(('models', i, 'name'))}: duplicate model name '{m.name}' "
                            f"(also models[{seen[m.name]}]); every model needs its own name.")
        seen.setdefault(m.name, i)
        if BACKENDS[m.backend].where == "path" and m.path and m.path.split(":", 1)[0] == EMBEDDED:
            from core.embedded import named_in_path
            from core.errors import ShootoutError

            try:
                named_in_path(m.path)
            except ShootoutError as exc:
                problems.append(f"{at(('models', i, 'path'))}: {exc.message}; {exc.hint}.")
        elif check_files and BACKENDS[m.backend].where == "path" and m.path:
            p = cfg.resolve(m.path)
            if not p.is_file():
                problems.append(
                    f"{at(('models', i, 'path'))}: GGUF file not found: {m.path} (looked in {p}). "
                    "Relative paths start at config.yaml's folder; build the file with `shootout export` "
                    "or `shootout demo`, or fix the path.")
            else:  # a truncated or foreign file fails here, not when the model loads hours into a run
                from formats.gguf_meta import GGUFError, read as read_gguf

                try:
                    read_gguf(p)
                except (GGUFError, OSError) as exc:
                    advice = "" if "again" in str(exc) else "; export or download it again, or fix the path"
                    problems.append(f"{at(('models', i, 'path'))}: model '{m.name}': {exc}{advice}.")
    decoding = getattr(cfg.task, "decoding", "generate")
    unable = [m for m in cfg.models if not BACKENDS[m.backend].capabilities.label_scores]
    if decoding == "logprob" and unable:
        which = ", ".join(f"'{m.name}' ({m.backend})" for m in unable)
        can = capable("label_scores", scripted=False)
        problems.append(f"{at(('task', 'decoding'))}: decoding: logprob scores every label from the model's "
                        f"log-probabilities, which only the {series(can)} backend{'s' if len(can) > 1 else ''} "
                        f"can do; {which} cannot. Use decoding: generate, or run those models on "
                        f"{series(can, 'or')}.")
    names = {a.name for a in cfg.arms()}
    for j, (a, b) in enumerate(cfg.compare):
        for k, n in enumerate((a, b)):
            if n not in names:
                problems.append(f"{at(('compare', j, k))}: '{n}' is not a model in models; known models: "
                                f"{', '.join(sorted(names))} (a model under a prompt variant is model@variant).")
        if a == b:
            problems.append(f"{at(('compare', j))}: compares '{a}' with itself; name two different models.")
    if cfg.news.source == "snapshot" and cfg.news.snapshot and check_files:
        if not cfg.resolve(cfg.news.snapshot).is_file():
            problems.append(f"{at(('news', 'snapshot'))}: snapshot file not found: {cfg.news.snapshot}.")
    return problems


def parse_config(text: str, source: str = "config.yaml", base_dir: Path | None = None,
                 check_files: bool = True) -> Config:
    """Validate config text; raise ConfigError listing every problem found."""
    from ruamel.yaml.error import YAMLError

    try:
        data = _yaml().load(io.StringIO(text))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, [f"not valid YAML{where}: {problem}. Check the indentation and quoting there."]) from None
    if data is None:
        raise ConfigError(source, ["the file is empty; start from the config.yaml shipped with gguf-shootout."])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"the top level must be a mapping of keys (task, news, run, models, ...), got {_describe(data)}."])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_format_error(e, data) for e in _without_union_tags(exc.errors(), data)]) from None
    cfg._base_dir = (base_dir or Path(".")).resolve()
    cfg._source = source
    cfg._text = text
    problems = _semantic_problems(cfg, data, check_files)
    if check_files:
        problems += _task_problems(cfg, data)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def _task_problems(cfg: Config, data: Any) -> list[str]:
    """Every check a run makes of a config-block task before its first call (``tasks.block.preflight``: data
    files and columns, labels, splits, the evaluated splits, few-shot examples per variant), each at the
    field and line the file wrote: `validate` and `run` refuse the same configs, before any call. Data
    files that do not exist are the semantic check's (one message each)."""
    if isinstance(cfg.task, str):
        return []
    d = cfg.task.data
    if any(not cfg.resolve(p).exists() for p in ([d.path] if d.path else list((d.files or {}).values()))):
        return []
    from benchmark.tasks import task_for
    from benchmark.tasks.block import preflight

    def at(loc: tuple) -> str:
        line = _line_of(data, loc)
        return f"{_loc_str(loc)} (line {line})" if line else _loc_str(loc)

    return [f"{at(loc)}: {msg}." for loc, msg in preflight(task_for(cfg), cfg)]


def load_config(path: str | Path, check_files: bool = True) -> Config:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(p), ["file not found. Pass --config PATH, or copy the config.yaml shipped with gguf-shootout."])
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"cannot read the file: {exc}."]) from None
    return parse_config(text, source=str(p), base_dir=p.parent, check_files=check_files)
