"""The rows the results database keeps, each declared once as a dataclass whose fields carry their
SQL declaration and the layout that added them. The migrations create and extend the tables from
these declarations, the inserts and the merge name these fields, and the frames the statistics read
are the fields marked ``frame``.

Layout 1's tables are history (``migrations.LAYOUT_1``): they were written before these declarations
and are never derived from them; each later layout adds the fields whose ``since`` is that layout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

from core.errors import ShootoutError


def column(sql: str, *, since: int = 1, frame: bool = False, required: bool = False, default: Any = None):
    """A field that is a column: ``sql`` its type and constraints, ``since`` the layout that added it,
    ``frame`` whether the statistics read it, ``required`` whether a row must give it."""
    meta = {"sql": sql, "since": since, "frame": frame}
    return field(metadata=meta) if required else field(default=default, metadata=meta)


def columns(cls, *, upto: int | None = None, since: int | None = None) -> list[dataclasses.Field]:
    """The column fields of a row class (in declaration order), those added up to / in one layout."""
    out = [f for f in dataclasses.fields(cls) if "sql" in f.metadata]
    if upto is not None:
        out = [f for f in out if f.metadata["since"] <= upto]
    if since is not None:
        out = [f for f in out if f.metadata["since"] == since]
    return out


def names(cls, **kw) -> tuple[str, ...]:
    return tuple(f.name for f in columns(cls, **kw))


def frame_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in columns(cls) if f.metadata["frame"])


def create_table(table: str, cls, *, upto: int, constraints: Iterable[str] = ()) -> str:
    """CREATE TABLE for the fields of ``cls`` as of layout ``upto``."""
    parts = [f"{f.name} {f.metadata['sql']}" for f in columns(cls, upto=upto)] + list(constraints)
    return f"CREATE TABLE {table} (\n    " + ",\n    ".join(parts) + "\n)"


def add_columns(table: str, cls, layout: int) -> list[str]:
    """ALTER TABLE statements adding the fields of ``cls`` that layout ``layout`` introduced."""
    return [f"ALTER TABLE {table} ADD COLUMN {f.name} {f.metadata['sql']}" for f in columns(cls, since=layout)]


def row_of(cls, data: Any):
    """``data`` (a row object or a dict of its fields) as a ``cls``; an unknown or missing field is an error."""
    if isinstance(data, cls):
        return data
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ShootoutError(f"{cls.__name__} has no field {', '.join(unknown)}", f"its fields: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ShootoutError(f"{cls.__name__}: {exc}") from None


def values(row, cls) -> list[Any]:
    return [getattr(row, n) for n in names(cls)]


def insert_sql(table: str, cls, *, verb: str = "INSERT") -> str:
    cols = names(cls)
    return f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


@dataclass(kw_only=True)
class CallRow:
    """One model call: the key (run, arm, iteration, item), the arm's identity, the reply and how it
    parsed, and its timings. Unique per (run_id, model, iteration, item_id)."""

    run_id: str = column("TEXT NOT NULL REFERENCES runs(run_id)", required=True)
    model: str = column("TEXT NOT NULL", frame=True, required=True)
    family: str | None = column("TEXT", frame=True)
    quant: str | None = column("TEXT", frame=True)
    backend: str | None = column("TEXT", frame=True)
    prompt_style: str | None = column("TEXT", frame=True)
    variant: str | None = column("TEXT", since=2, frame=True)
    iteration: int = column("INTEGER NOT NULL", frame=True, required=True)
    item_id: str = column("TEXT NOT NULL", frame=True, required=True)  # layout 1: article_id
    position: int | None = column("INTEGER")
    seed: int | None = column("INTEGER")
    raw_text: str | None = column("TEXT")             # the reply, cut at the run's max_reply_chars
    valid: int = column("INTEGER NOT NULL", frame=True, required=True)
    error: str | None = column("TEXT")
    answer_json: str | None = column("TEXT", since=2)  # the whole validated answer
    label: str | None = column("TEXT", since=2, frame=True)
    value: float | None = column("REAL", frame=True)   # layout 1: sentiment
    confidence: float | None = column("REAL", frame=True)
    label_probs_json: str | None = column("TEXT", since=2, frame=True)
    finish_reason: str | None = column("TEXT", frame=True)
    prompt_tokens: int | None = column("INTEGER", frame=True)
    cached_tokens: int | None = column("INTEGER", frame=True)
    completion_tokens: int | None = column("INTEGER", frame=True)
    prompt_seconds: float | None = column("REAL", frame=True)
    gen_seconds: float | None = column("REAL", frame=True)
    wall_seconds: float | None = column("REAL", frame=True)
    created_at: str | None = column("TEXT NOT NULL")   # filled with the time of storing when not given
    endpoint: str | None = column("TEXT", since=3, frame=True)
    in_flight: int | None = column("INTEGER", since=3, frame=True)
    started_at: float | None = column("REAL", since=3, frame=True)
    energy_j: float | None = column("REAL", since=3, frame=True)
    raw_chars: int | None = column("INTEGER", since=4, frame=True)  # the reply's length before any cut
    # layout 5: the call policy and streamed timings of server backends (benchmark.backends.http)
    attempts: int | None = column("INTEGER", since=5, frame=True)       # requests sent for the call (retries + 1)
    concurrency: int | None = column("INTEGER", since=5, frame=True)    # calls allowed in flight per endpoint
    ttft_seconds: float | None = column("REAL", since=5, frame=True)    # streamed: to the first content token
    itl_seconds: float | None = column("REAL", since=5, frame=True)     # streamed: mean gap between content chunks
    itl_json: str | None = column("TEXT", since=5, frame=True)          # streamed: every such gap, in ms
    e2e_seconds: float | None = column("REAL", since=5, frame=True)     # streamed: request sent to last byte
    # layout 6: the run's order (``benchmark.run.order``): the iteration block a call ran in and its arm's
    # place in that block's order
    block: int | None = column("INTEGER", since=6, frame=True)
    slot: int | None = column("INTEGER", since=6, frame=True)


@dataclass(kw_only=True)
class LoadRow:
    """One model load (per endpoint): load and warm-up time, the engine's facts, the memory it took."""

    run_id: str = column("TEXT NOT NULL REFERENCES runs(run_id)", required=True)
    model: str = column("TEXT NOT NULL", frame=True, required=True)
    backend: str = column("TEXT NOT NULL", required=True)
    load_seconds: float | None = column("REAL", frame=True)
    warmup_seconds: float | None = column("REAL", frame=True)
    warmup_prompt_tokens: int | None = column("INTEGER")
    engine_json: str | None = column("TEXT", frame=True)
    created_at: str | None = column("TEXT NOT NULL")
    endpoint: str | None = column("TEXT", since=3, frame=True)
    rss_mb: float | None = column("REAL", since=3, frame=True)
    kv_cache_mb: float | None = column("REAL", since=3, frame=True)
    vram_mb: float | None = column("REAL", since=3, frame=True)


@dataclass(kw_only=True)
class ItemRow:
    """One item a run asks about, with its gold answer and its fields (ticker, title, ...) as JSON."""

    run_id: str = column("TEXT NOT NULL REFERENCES runs(run_id)", since=2, required=True)
    item_id: str = column("TEXT NOT NULL", since=2, frame=True, required=True)
    position: int = column("INTEGER NOT NULL", since=2, frame=True, required=True)
    split: str | None = column("TEXT", since=2, frame=True)
    text: str = column("TEXT NOT NULL", since=2, required=True)
    target_label: str | None = column("TEXT", since=2, frame=True)
    target_value: float | None = column("REAL", since=2, frame=True)
    fields_json: str | None = column("TEXT", since=2, frame=True)


@dataclass(kw_only=True)
class ArmFacts:
    """What a run knows about one arm (a model entry under one prompt variant) when it runs it: the
    report reads sizes, quant and family from here, never from files that may have moved."""

    run_id: str = column("TEXT NOT NULL REFERENCES runs(run_id)", since=4, required=True)
    model: str = column("TEXT NOT NULL", since=4, required=True)        # the arm's name (entry@variant)
    entry: str = column("TEXT NOT NULL", since=4, required=True)        # the model entry's name
    variant: str | None = column("TEXT", since=4)
    backend: str | None = column("TEXT", since=4)
    family: str | None = column("TEXT", since=4)
    quant: str | None = column("TEXT", since=4)
    prompt_style: str | None = column("TEXT", since=4)
    model_bytes: int | None = column("INTEGER", since=4)  # the model file (GGUF) or what the server reports
    location: str | None = column("TEXT", since=4)        # GGUF path, server tag, or base URL(s)
    checkpoint: float | None = column("REAL", since=4)    # learning curves: the training step or epoch
    file_mtime: float | None = column("REAL", since=4)    # the GGUF's modification time when it ran
    digest: str | None = column("TEXT", since=4)          # a content digest where the server gives one


# what Store.arm_facts returns, one row per arm
ARM_FACT_COLUMNS = ("model", "entry", "variant", "backend", "family", "quant", "prompt_style", "model_bytes",
                    "location", "checkpoint")


@dataclass(kw_only=True)
class WriterRow:
    """The process writing a run (``Store.claim_run``): one per run; a row whose process has ended
    is taken over, so a killed run never blocks its resume."""

    run_id: str = column("TEXT PRIMARY KEY", since=4, required=True)
    pid: int = column("INTEGER NOT NULL", since=4, required=True)
    host: str = column("TEXT NOT NULL", since=4, required=True)
    process_started: float | None = column("REAL", since=4)  # the process's start time (a reused pid differs)
    claimed_at: str | None = column("TEXT", since=4)


@dataclass(kw_only=True)
class BenchRow:
    """One llama-bench-comparable test of an in-process model (``engine.speed``): pp512, tg128 or tg128
    at the task's prompt depth, as tokens/s over ``reps`` repetitions, measured after the model's first
    warm-up in a run, with what a generated token reads (for the share of the memory-bandwidth bound)."""

    run_id: str = column("TEXT NOT NULL REFERENCES runs(run_id)", since=6, required=True)
    model: str = column("TEXT NOT NULL", since=6, frame=True, required=True)   # the arm that loaded it
    test: str = column("TEXT NOT NULL", since=6, frame=True, required=True)    # pp512, tg128, tg128 @ d380
    n_prompt: int = column("INTEGER NOT NULL", since=6, frame=True, required=True)
    n_gen: int = column("INTEGER NOT NULL", since=6, frame=True, required=True)
    n_depth: int = column("INTEGER NOT NULL", since=6, frame=True, required=True)
    reps: int = column("INTEGER NOT NULL", since=6, frame=True, required=True)
    avg_ts: float = column("REAL NOT NULL", since=6, frame=True, required=True)     # mean tokens/s
    stddev_ts: float | None = column("REAL", since=6, frame=True)                    # sample sd (n - 1)
    samples_json: str | None = column("TEXT", since=6)                               # every repetition's tokens/s
    weights_bytes_per_token: int | None = column("INTEGER", since=6, frame=True)
    kv_bytes_per_token: int | None = column("INTEGER", since=6, frame=True)          # the KV cache read at the depth
    depth_requested: int | None = column("INTEGER", since=6, frame=True)             # the task's mean prompt tokens
    engine_json: str | None = column("TEXT", since=6)    # threads, batch, context, offload the figures ran under
    block: int | None = column("INTEGER", since=6, frame=True)  # the iteration block of the load it ran after
    created_at: str | None = column("TEXT NOT NULL", since=6)


@dataclass(kw_only=True)
class RunSpeedRow:
    """What a run knows about its own timing: the order its arms ran in (``benchmark.run.order``: the design,
    its seed and each block's arm order, as JSON) and the machine's memory bandwidth from a copy test
    (``core.bandwidth``), measured once per run."""

    run_id: str = column("TEXT PRIMARY KEY REFERENCES runs(run_id)", since=6, required=True)
    order_json: str | None = column("TEXT", since=6)
    bandwidth_gbs: float | None = column("REAL", since=6)
    bandwidth_json: str | None = column("TEXT", since=6)   # how it was measured (bytes, threads, repetitions)
