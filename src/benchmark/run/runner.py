"""The iteration loop: ordering, warm-up, resume, progress, clean stop. Task-agnostic: it asks the
task for items, messages, the reply constraint and how to parse a reply, and stores what it gets.

- Every arm (a model, or a model under one prompt variant) runs all of its calls in a row (one
  model in memory; the engine's prompt cache keeps the shared few-shot prefix).
- Each iteration shuffles the item order from the run's seed; every arm sees the same order and
  the same per-call sampling seed for a given (iteration, item).
- One uncounted warm-up call per model loads the weights and fills the prompt cache.
- Every call is stored in its own transaction; re-running a run id skips stored calls, except, with
  ``retry_failed``, those stored as failed (no usable answer from the server), whose rows the new
  answers replace.
- A call with no usable answer is stored as failed and the run goes on; an endpoint that stops
  answering or keeps failing is retired (``benchmark.run.scheduler``: the one failure policy).
- ``run.concurrency``: calls in flight per endpoint of a server backend; a list sweeps the levels,
  each over its own block of the model's calls (``scheduler.sweep_level``), lowest first.
- Ctrl-C stops after the call in flight; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Callable

from benchmark.backends import capable, make_backend, spec_of
from benchmark.backends.base import CallFailed, PromptTooLong, Reply
from benchmark.backends.http import HTTPReply
from benchmark.config import Arm, Config
from benchmark.store import Store, StoreBusy
from benchmark.run.records import arm_facts, call_row
from benchmark.store.rows import CallRow
from benchmark.tasks import task_for
from benchmark.tasks.base import Answer, Item, TaskInfo
from core import sysinfo
from core.console import styled
from core.errors import ShootoutError


def call_seed(run_seed: int, iteration: int, item_id: str) -> int:
    """The sampling seed of one call: the same for every model, different per iteration."""
    return zlib.crc32(f"{run_seed}:{iteration}:{item_id}".encode()) & 0x7FFFFFFF


def iteration_order(item_ids: list[str], run_seed: int, iteration: int) -> list[str]:
    order = list(item_ids)
    random.Random(f"{run_seed}:order:{iteration}").shuffle(order)
    return order


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{random.randrange(16**4):04x}"


@dataclass
class RunResult:
    run_id: str
    stored: int = 0
    skipped: int = 0
    stopped: bool = False
    per_model: dict[str, int] = field(default_factory=dict)
    too_long: list[tuple[str, str, int, int]] = field(default_factory=list)  # (model, item, tokens, context)
    failed_calls: int = 0  # calls stored as failed this time (no usable answer from the server)


class _StopFlag:
    """First Ctrl-C asks for a stop between calls; the second one interrupts at once."""

    def __init__(self, on_first: Callable[[], None]):
        self.requested = False
        self._on_first = on_first
        self._old = None

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._on_first()

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Runner:
    def __init__(self, cfg: Config, store: Store, *, run_id: str | None = None, console=None,
                 progress: bool = True, backend_factory=make_backend, models: list[str] | None = None,
                 shard: tuple[int, int, str] | None = None, retry_failed: bool = False):
        self.cfg = cfg
        self.store = store
        store.lock_wait_s = cfg.run.lock_wait_s
        self.run_id = run_id
        self.retry_failed = retry_failed  # ask the calls stored as failed again
        self.task = task_for(cfg)
        self.progress = progress
        self.backend_factory = backend_factory
        arms = cfg.arms(self.task.variants)
        if models:
            known = {a.entry.name for a in arms} | {a.name for a in arms}
            unknown = set(models) - known
            if unknown:
                raise ShootoutError(f"--model names unknown models: {', '.join(sorted(unknown))}",
                                    f"known: {', '.join(m.name for m in cfg.models)}")
        self.all_arms = arms
        self._energy = sysinfo.gpu_energy_joules() is not None
        self.too_long: list[tuple[str, str, int, int]] = []  # (arm, item, prompt tokens, context)
        self.arms = [a for a in arms if not models or a.entry.name in models or a.name in models]
        self.shard = shard  # (i, n, "model" | "item"): this box asks its share of the grid
        if shard and shard[2] == "model":
            self.arms = [a for k, a in enumerate(self.all_arms) if k % shard[1] == shard[0] - 1 and a in self.arms]
        from core.console import make_console

        self.console = console or make_console()

    # ------------------------------------------------------------------ setup
    def _warn(self, msg: str) -> None:
        from core.console import warning

        self.console.print(warning(msg))  # the message quotes URLs and server text: never markup

    def prepare(self) -> tuple[str, int, int, list[Item]]:
        """(run id, seed, iterations, items) for a new run, or those stored for a resumed one."""
        run = self.store.run(self.run_id) if self.run_id else None
        if run is None:
            run_id = self.run_id or new_run_id()
            items = self.task.load_items(self.cfg, warn=self._warn)
            if not items:
                raise ShootoutError(f"task '{self.task.name}' has no items to ask about",
                                    "check the task's data settings in config.yaml")
            settings = json.loads(self.cfg.model_dump_json())
            self.store.create_run(run_id, task=self.task.name, seed=self.cfg.run.seed,
                                  iterations=self.cfg.run.iterations, config_path=self.cfg.source,
                                  config_text=self.cfg.text, settings=settings, versions=sysinfo.versions(),
                                  hardware=sysinfo.hardware(), items=items,
                                  task_info=asdict(TaskInfo.of(self.task)), claim=True)
            self.store.add_arms([arm_facts(self.cfg, a, run_id) for a in self.arms])
            return run_id, self.cfg.run.seed, self.cfg.run.iterations, items
        self.store.claim_run(self.run_id)  # one process writes a run: another one on it exits 2 naming it
        if run["config_text"] != self.cfg.text:
            self._warn(f"config differs from the one run {self.run_id} started with; resuming with the stored "
                       "items, seed and iteration count, and the current model list")
        if run["task"] != self.task.name:
            raise ShootoutError(f"run {self.run_id} was a '{run['task']}' run; the config now says '{self.task.name}'",
                                "start a new run (omit --run-id) or restore the task in config.yaml")
        self.store.add_arms([arm_facts(self.cfg, a, self.run_id) for a in self.arms])
        return self.run_id, run["seed"], run["iterations"], self.store.items(self.run_id)

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunResult:
        """Every call of the plan not stored yet; the run is claimed by this process while it runs."""
        try:
            return self._run()
        except StoreBusy as exc:  # another process kept the file locked: say how to resume
            if self.run_id is None or self.store.run(self.run_id) is None:
                raise
            raise StoreBusy(exc.message, f"{exc.hint}; resume with `shootout run --config {self.cfg.source} "
                                         f"--run-id {self.run_id}`") from None
        finally:
            if self.run_id:
                self.store.release_run(self.run_id)

    def _run(self) -> RunResult:
        run_id, seed, iterations, items = self.prepare()
        self.run_id = run_id
        by_id = {i.id: i for i in items}
        orders = [iteration_order([i.id for i in items], seed, it) for it in range(iterations)]
        mine = {i.id for i in items}
        if self.shard and self.shard[2] == "item":  # every shard keeps the same order, asks its own items
            mine = {i.id for k, i in enumerate(items) if k % self.shard[1] == self.shard[0] - 1}
        plan = []
        self._plan_size, self._n_items = iterations * len(items), len(items)
        for arm in self.arms:
            done = self.store.done_keys(run_id, arm.name, but_failed=self.retry_failed)
            todo = [(it, pos, by_id[iid]) for it in range(iterations) for pos, iid in enumerate(orders[it])
                    if (it, iid) not in done and iid in mine]
            plan.append((arm, todo, len(done)))
        result = RunResult(run_id=run_id, skipped=sum(n for _, _, n in plan))
        total = sum(len(t) for _, t, _ in plan)
        if result.skipped:
            self.console.print(styled("resuming run ", (run_id, "bold"),
                                      f": {result.skipped} calls already stored, {total} to go"))

        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        columns = [TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                   TextColumn("valid {task.fields[valid]}"), TimeElapsedColumn(), TextColumn("eta"),
                   TimeRemainingColumn()]
        with Progress(*columns, console=self.console, disable=not self.progress, transient=False) as bar, \
                _StopFlag(lambda: self.console.print(
                    styled(("stopping after the call in flight (Ctrl-C again to stop at once)", "yellow")))) as stop:
            overall = bar.add_task("all models", total=total, valid="-")
            for arm, todo, _ in plan:
                if stop.requested:
                    break
                if not todo:
                    continue
                stored, failed = self._run_arm(arm, todo, seed, bar, overall, stop)
                result.per_model[arm.name] = stored
                result.stored += stored
                result.failed_calls += failed
            result.stopped = stop.requested
        result.too_long = list(self.too_long)
        # finished once every arm of the config has every call (a --model subset leaves it open)
        if not result.stopped and self.store.count_calls(run_id) >= iterations * len(items) * len(self.all_arms):
            self.store.finish_run(run_id)
        return result

    def _ask(self, backend, arm: Arm, item: Item, *, seed: int, max_tokens: int):
        """One call: (reply, answer). A prompt that does not fit the context is not sent: the call is
        a failed one with its reason, and the run goes on."""
        t0 = time.perf_counter()
        try:
            return self._call(backend, arm, item, seed=seed, max_tokens=max_tokens)
        except PromptTooLong as exc:
            self.too_long.append((arm.name, item.id, exc.prompt_tokens, exc.n_ctx))
            self._warn(f"{arm.name}, {self.task.item_noun} {item.id}: the prompt needs {exc.prompt_tokens} tokens but "
                       f"the context holds {exc.n_ctx}; stored as a failed call (raise num_ctx to ask it)")
            reply = Reply(text="", finish_reason="prompt_too_long", prompt_tokens=exc.prompt_tokens,
                          completion_tokens=0, prompt_seconds=None, gen_seconds=None,
                          wall_seconds=time.perf_counter() - t0)
            return reply, Answer(valid=False, error=str(exc.message))

    def _failed(self, arm: Arm, job, exc: CallFailed, seconds: float):
        """The result (reply, answer, wall, energy) of a call that got no usable answer: stored as failed
        with its reason; no wall time (it would count in the latency figures)."""
        self._warn(f"{arm.name}, {self.task.item_noun} {job[2].id}: no usable answer ({exc.kind}), stored as a failed "
                   f"call: {exc.message}")
        reply = HTTPReply(text="", finish_reason="failed", prompt_tokens=0, completion_tokens=0, prompt_seconds=None,
                          gen_seconds=None, wall_seconds=seconds, attempts=exc.attempts)
        return reply, Answer(valid=False, error=f"{exc.kind}: {exc.message}"), None, None

    def _call(self, backend, arm: Arm, item: Item, *, seed: int, max_tokens: int):
        """Generation constrained by the task, or label scoring."""
        task, cfg = self.task, self.cfg
        messages = task.messages(item, arm.entry.prompt_style, arm.variant, arm.entry.system_prompt)
        can = spec_of(arm.entry).capabilities
        if getattr(getattr(task, "spec", None), "decoding", "generate") == "logprob":
            if not can.label_scores:  # `validate` refuses this config; kept for configs built in code
                raise ShootoutError(f"model '{arm.entry.name}': task.decoding: logprob needs a backend that scores "
                                    f"labels ({', '.join(capable('label_scores', scripted=False))})",
                                    f"use decoding: generate for the {arm.entry.backend} backend")
            scored = backend.score_choices(messages, task.choices())
            return scored.reply, task.answer_from_probs(scored.probs, scored.unscored)
        constraint = task.constraint() if cfg.run.structured_output else None
        reply = backend.chat(messages, schema=constraint.schema if constraint and can.json_schema else None,
                             grammar=constraint.grammar if constraint and can.grammar else None,
                             temperature=cfg.setting(arm.entry, "temperature"), seed=seed, max_tokens=max_tokens)
        return reply, task.parse(reply.text)

    # ------------------------------------------------------------------ one arm
    def _timed_ask(self, backend, arm: Arm, job, seed: int, max_tokens: int):
        """(reply, answer, wall seconds, energy J) of one job (iteration, position, item)."""
        it, _, item = job
        energy0 = sysinfo.gpu_energy_joules() if self._energy else None
        t0 = time.perf_counter()
        reply, answer = self._ask(backend, arm, item, seed=call_seed(seed, it, item.id), max_tokens=max_tokens)
        wall = time.perf_counter() - t0
        energy = None
        if energy0 is not None:
            energy1 = sysinfo.gpu_energy_joules()
            energy = energy1 - energy0 if energy1 is not None else None
        return reply, answer, wall, energy

    def _row(self, arm: Arm, job, seed: int, reply, answer, wall: float, energy, **where) -> CallRow:
        it, pos, item = job
        return call_row(self.cfg, arm, run_id=self.run_id, iteration=it, item_id=item.id, position=pos,
                        seed=call_seed(seed, it, item.id), reply=reply, answer=answer, wall=wall, energy=energy,
                        **where)

    def _load(self, backend, arm: Arm, seed: int) -> dict:
        """Load and warm up (uncounted): the load's figures, the engine's facts and the memory it took."""
        rss0 = sysinfo.rss_mb()
        load_s = backend.load()
        warm_s = warm_tokens = None
        if self.cfg.run.warmup:
            try:
                reply, _ = self._call(backend, arm, self.task.warmup_item(), seed=seed, max_tokens=16)
                warm_s, warm_tokens = reply.wall_seconds, reply.prompt_tokens
            except PromptTooLong:  # not a stored call: each call that does not fit says so itself
                pass
            except CallFailed as exc:  # not a stored call either: the calls meet the same policy
                self._warn(f"{arm.name}: the warm-up call got no usable answer ({exc.message}); going on")
        info = backend.engine_info()
        memory = dict(info.get("memory") or {})
        can = spec_of(arm.entry).capabilities
        if can.memory_facts:
            memory.update(backend.memory_facts())
        if can.in_process and rss0 is not None:  # in process: what loading it took here
            memory.setdefault("rss_mb", max(0.0, (sysinfo.rss_mb() or rss0) - rss0))
        return {"load_seconds": load_s, "warmup_seconds": warm_s, "warmup_prompt_tokens": warm_tokens,
                "engine": info, "memory": memory}

    def _store_load(self, arm: Arm, load: dict, endpoint: str | None = None) -> None:
        self.store.add_model_load(self.run_id, arm.name, arm.entry.backend, load["load_seconds"],
                                  load["warmup_seconds"], load["warmup_prompt_tokens"], load["engine"],
                                  endpoint=endpoint, memory=load["memory"])
        engine = load["engine"] or {}
        # what a server reports of the model's file; llama.cpp's tensor bytes where the GGUF could not be read
        size = engine.get("model_file_bytes") or engine.get("model_bytes")
        self.store.complete_arm(self.run_id, arm.name, model_bytes=size if isinstance(size, int) else None,
                                digest=engine.get("digest") if isinstance(engine.get("digest"), str) else None)

    def _run_arm(self, arm: Arm, todo, seed, bar, overall, stop) -> tuple[int, int]:
        """(calls stored, of which failed) of one arm."""
        cfg, entry = self.cfg, arm.entry
        max_tokens = cfg.setting(entry, "num_predict")
        mtask = bar.add_task(arm.name, total=len(todo), valid="-")
        counts = {"stored": 0, "valid": 0, "failed": 0}

        def record(job, result, **where) -> bool:
            reply, answer, wall, energy = result
            row = self._row(arm, job, seed, reply, answer, wall, energy, **where)
            ok = self.store.add_call(row, over_failed=self.retry_failed)
            if ok:
                counts["stored"] += 1
                counts["valid"] += answer.valid
                counts["failed"] += reply.finish_reason == "failed"
            bar.update(mtask, advance=1, valid=f"{counts['valid']}/{counts['stored']}")
            bar.update(overall, advance=1)
            return ok

        ask = (lambda backend, job: self._timed_ask(backend, arm, job, seed, max_tokens))
        failed = (lambda job, exc, seconds: self._failed(arm, job, exc, seconds))
        try:
            levels, served = cfg.run.levels, spec_of(entry).capabilities.endpoints
            if levels != [1] and not served:
                self._warn(f"{arm.name}: run.concurrency is for server backends; {entry.backend} answers one at a time")
            if served and (entry.endpoints or levels != [1]):
                self._run_on_endpoints(arm, todo, seed, ask, record, failed, stop)
            else:
                from benchmark.run.scheduler import Endpoint, serial_calls

                backend = self.backend_factory(entry, cfg)
                try:
                    self._store_load(arm, self._load(backend, arm, seed))
                    serial_calls(Endpoint(None, backend), todo, ask, record, lambda: stop.requested, arm.name, failed)
                finally:
                    backend.close()
        finally:
            bar.update(mtask, visible=False)
        return counts["stored"], counts["failed"]

    def _run_on_endpoints(self, arm: Arm, todo, seed, ask, record, failed, stop) -> None:
        """The arm's calls spread over the servers that host it (see ``benchmark.run.scheduler``), in
        blocks of rising concurrency when ``run.concurrency`` lists levels."""
        from concurrent.futures import ThreadPoolExecutor

        from benchmark.run.scheduler import Endpoint, run_calls, sweep_blocks

        entry, cfg = arm.entry, self.cfg
        urls = entry.endpoints or [None]
        backends = [self.backend_factory(entry, cfg, endpoint=u) if u else self.backend_factory(entry, cfg)
                    for u in urls]
        endpoints = []

        def load(backend):
            try:
                return self._load(backend, arm, seed), None
            except ShootoutError as exc:
                return None, exc.message

        try:
            with ThreadPoolExecutor(max_workers=len(backends)) as pool:
                loaded = list(pool.map(load, backends))
            for url, backend, (facts, error) in zip(urls, backends, loaded):
                name = url or spec_of(entry).address(backend)
                if facts is None:
                    self._warn(f"{arm.name}: endpoint {name} left out: {error}")
                    continue
                self._store_load(arm, facts, endpoint=name)  # stored here: SQLite has one writer thread
                endpoints.append(Endpoint(name, backend))
            if not endpoints:
                raise ShootoutError(f"model '{arm.name}': none of its endpoints answers ({', '.join(map(str, urls))})",
                                    "start the servers, or fix models[].endpoints in config.yaml")
            blocks = sweep_blocks(todo, cfg.run.levels, self._n_items, self._plan_size)
            for level, block in blocks.items():
                if stop.requested:
                    break
                for ep in endpoints:
                    ep.limit = level
                out = run_calls(endpoints, block, ask, record, lambda: stop.requested, arm.name, failed)
                for ep in (e for e in endpoints if e.url in out.retired):
                    self._warn(f"{arm.name}: endpoint {ep.url} {ep.retired_for}; its calls went to the others "
                               f"({ep.error})")
        finally:
            for b in backends:
                b.close()
