"""The iteration loop: ordering, warm-up, resume, progress, clean stop. Task-agnostic: it asks the
task for items, messages, the reply constraint and how to parse a reply, and stores what it gets.

- ``run.order`` (``benchmark.run.order``): counterbalanced by default, the arms (a model, or a model
  under one prompt variant) take turns per iteration block, their order rotated and reversed block by
  block, so a drift of the machine falls on every arm alike; ``grouped``: every call of one arm in a
  row. Each call stores its block and its arm's place in the block (slot); the design is stored with
  the run, and a resumed run keeps it.
- One model in memory at a time: an in-process model is loaded for each of its blocks (once per
  block, counterbalanced; once, grouped) and freed before the next arm's block; a server backend's
  connection stays open for the run (the server holds the model).
- Each iteration shuffles the item order from the run's seed; every arm sees the same order and
  the same per-call sampling seed for a given (iteration, item).
- One uncounted warm-up call per model load loads the weights and fills the prompt cache; before the
  first warm-up of an in-process model, its llama-bench-comparable block (``benchmark.run.bench``),
  unless ``run.speed_bench`` is off, with the memory copy test once per run before the first.
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
from benchmark.run.loading import ArmLoading, LoadedArm
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


class Runner(ArmLoading):
    def __init__(self, cfg: Config, store: Store, *, run_id: str | None = None, console=None,
                 progress: bool = True, backend_factory=make_backend, models: list[str] | None = None,
                 shard: tuple[int, int, str] | None = None, retry_failed: bool = False,
                 clock: Callable[[], float] = time.perf_counter):
        self.cfg = cfg
        self.store = store
        store.lock_wait_s = cfg.run.lock_wait_s
        self.run_id = run_id
        self.retry_failed = retry_failed  # ask the calls stored as failed again
        self.clock = clock  # what times a call (a stand-in engine's virtual clock in tests)
        self._benched: set[str] = set()  # model entries whose speed block this run holds
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
        from benchmark.run import order as O

        run_id, seed, iterations, items = self.prepare()
        self.run_id = run_id
        self._items = items
        by_id = {i.id: i for i in items}
        orders = [iteration_order([i.id for i in items], seed, it) for it in range(iterations)]
        mine = {i.id for i in items}
        if self.shard and self.shard[2] == "item":  # every shard keeps the same order, asks its own items
            mine = {i.id for k, i in enumerate(items) if k % self.shard[1] == self.shard[0] - 1}
        self._plan_size, self._n_items = iterations * len(items), len(items)
        todo: dict[str, dict[int, list]] = {}
        skipped = 0
        for arm in self.arms:
            done = self.store.done_keys(run_id, arm.name, but_failed=self.retry_failed)
            skipped += len(done)
            todo[arm.name] = {it: [(it, pos, by_id[iid]) for pos, iid in enumerate(orders[it])
                                   if (it, iid) not in done and iid in mine] for it in range(iterations)}
        self.store.set_order(run_id, O.design([a.name for a in self.all_arms], iterations, seed, self.cfg.run.order))
        plan = [sg for sg in O.segments(self.store.order(run_id), [a.name for a in self.arms])
                if todo[sg.arm].get(sg.block)]
        result = RunResult(run_id=run_id, skipped=skipped)
        total = sum(len(todo[sg.arm][sg.block]) for sg in plan)
        if result.skipped:
            self.console.print(styled("resuming run ", (run_id, "bold"),
                                      f": {result.skipped} calls already stored, {total} to go"))
        self._benched = self.store.benched(run_id)

        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        columns = [TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                   TextColumn("valid {task.fields[valid]}"), TimeElapsedColumn(), TextColumn("eta"),
                   TimeRemainingColumn()]
        arms = {a.name: a for a in self.arms}
        held: dict[str, LoadedArm] = {}
        with Progress(*columns, console=self.console, disable=not self.progress, transient=False) as bar, \
                _StopFlag(lambda: self.console.print(
                    styled(("stopping after the call in flight (Ctrl-C again to stop at once)", "yellow")))) as stop:
            overall = bar.add_task("all models", total=total, valid="-")
            counts = {name: {"stored": 0, "valid": 0, "failed": 0} for name in todo}
            tasks = {name: bar.add_task(name, total=sum(len(j) for j in todo[name].values()), valid="-",
                                        visible=False) for name in todo}
            try:
                for k, sg in enumerate(plan):
                    if stop.requested:
                        break
                    arm = arms[sg.arm]
                    if sg.arm not in held:
                        held[sg.arm] = self._open(arm, seed, sg.block)
                    bar.update(tasks[sg.arm], visible=True)
                    self._run_segment(arm, held[sg.arm], todo[sg.arm][sg.block], sg, seed, bar,
                                      (overall, tasks[sg.arm]), counts[sg.arm], stop)
                    bar.update(tasks[sg.arm], visible=False)
                    following = next((p.arm for p in plan[k + 1:]), None)
                    if held[sg.arm].in_process and following != sg.arm:  # one model in memory
                        held.pop(sg.arm).close()
            finally:
                for h in held.values():
                    h.close()
            for name, c in counts.items():
                if c["stored"]:
                    result.per_model[name] = c["stored"]
                result.stored += c["stored"]
                result.failed_calls += c["failed"]
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
        t0 = self.clock()
        reply, answer = self._ask(backend, arm, item, seed=call_seed(seed, it, item.id), max_tokens=max_tokens)
        wall = self.clock() - t0
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

    def _run_segment(self, arm: Arm, held: "LoadedArm", jobs, sg, seed, bar, tasks, counts, stop) -> None:
        """One arm's calls of one block on its loaded model: one at a time, or spread over its endpoints
        in blocks of rising concurrency when ``run.concurrency`` lists levels."""
        from benchmark.run.scheduler import run_calls, serial_calls, sweep_blocks

        max_tokens = self.cfg.setting(arm.entry, "num_predict")
        overall, mtask = tasks

        def record(job, result, **where) -> bool:
            reply, answer, wall, energy = result
            row = self._row(arm, job, seed, reply, answer, wall, energy, block=sg.block, slot=sg.slot, **where)
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
        stopped = (lambda: stop.requested)
        if held.serial:
            serial_calls(held.endpoints[0], jobs, ask, record, stopped, arm.name, failed)
            return
        for level, part in sweep_blocks(jobs, self.cfg.run.levels, self._n_items, self._plan_size).items():
            if stop.requested:
                break
            for ep in held.endpoints:
                ep.limit = level
            out = run_calls(held.endpoints, part, ask, record, stopped, arm.name, failed)
            for ep in (e for e in held.endpoints if e.url in out.retired):
                self._warn(f"{arm.name}: endpoint {ep.url} {ep.retired_for}; its calls went to the others "
                           f"({ep.error})")
