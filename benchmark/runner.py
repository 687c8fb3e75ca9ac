"""The iteration loop: ordering, warm-up, resume, progress, clean stop.

- Every model runs all of its calls in a row (one model in memory; the engine's prompt cache
  keeps the shared few-shot prefix).
- Each iteration shuffles the article order from the run's seed; every model sees the same order
  and the same per-call sampling seed for a given (iteration, article).
- One uncounted warm-up call per model loads the weights and fills the prompt cache.
- Every call is stored in its own transaction; re-running a run id skips stored calls.
- Ctrl-C stops after the call in flight; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

from benchmark.backends import make_backend
from benchmark.config import Config
from benchmark.news import Article, load_articles
from benchmark.store import Store
from benchmark.tasks import get_task
from core import sysinfo
from core.errors import ShootoutError


def call_seed(run_seed: int, iteration: int, article_id: str) -> int:
    """The sampling seed of one call: the same for every model, different per iteration."""
    return zlib.crc32(f"{run_seed}:{iteration}:{article_id}".encode()) & 0x7FFFFFFF


def iteration_order(article_ids: list[str], run_seed: int, iteration: int) -> list[str]:
    order = list(article_ids)
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
                 progress: bool = True, backend_factory=make_backend, models: list[str] | None = None):
        self.cfg = cfg
        self.store = store
        self.run_id = run_id
        self.task = get_task(cfg.task)
        self.progress = progress
        self.backend_factory = backend_factory
        self.models = [m for m in cfg.models if not models or m.name in models]
        if models:
            unknown = set(models) - {m.name for m in cfg.models}
            if unknown:
                raise ShootoutError(f"--model names unknown models: {', '.join(sorted(unknown))}",
                                    f"known: {', '.join(m.name for m in cfg.models)}")
        from rich.console import Console

        self.console = console or Console(stderr=True)

    # ------------------------------------------------------------------ setup
    def _warn(self, msg: str) -> None:
        self.console.print(f"[yellow]warning:[/] {msg}")

    def prepare(self) -> tuple[str, int, int, list[Article]]:
        """(run id, seed, iterations, articles) for a new run, or those stored for a resumed one."""
        run = self.store.run(self.run_id) if self.run_id else None
        if run is None:
            run_id = self.run_id or new_run_id()
            articles = load_articles(self.cfg, warn=self._warn)
            settings = json.loads(self.cfg.model_dump_json())
            self.store.create_run(run_id, task=self.cfg.task, seed=self.cfg.run.seed,
                                  iterations=self.cfg.run.iterations, config_path=self.cfg.source,
                                  config_text=self.cfg.text, settings=settings, versions=sysinfo.versions(),
                                  hardware=sysinfo.hardware(), articles=articles)
            return run_id, self.cfg.run.seed, self.cfg.run.iterations, articles
        if run["config_text"] != self.cfg.text:
            self._warn(f"config differs from the one run {self.run_id} started with; resuming with the stored "
                       "articles, seed and iteration count, and the current model list")
        if run["task"] != self.cfg.task:
            raise ShootoutError(f"run {self.run_id} was a '{run['task']}' run; the config now says '{self.cfg.task}'",
                                "start a new run (omit --run-id) or restore the task in config.yaml")
        articles = [Article(id=r["article_id"], ticker=r["ticker"], company=r["company"], title=r["title"],
                            url=r["url"], published=r["published"], text=r["text"],
                            expected_sentiment=r["expected_sentiment"]) for r in self.store.articles(self.run_id)]
        return self.run_id, run["seed"], run["iterations"], articles

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunResult:
        run_id, seed, iterations, articles = self.prepare()
        self.run_id = run_id
        by_id = {a.id: a for a in articles}
        orders = [iteration_order([a.id for a in articles], seed, it) for it in range(iterations)]
        plan = []
        for entry in self.models:
            done = self.store.done_keys(run_id, entry.name)
            todo = [(it, pos, by_id[aid]) for it in range(iterations) for pos, aid in enumerate(orders[it])
                    if (it, aid) not in done]
            plan.append((entry, todo, len(done)))
        result = RunResult(run_id=run_id, skipped=sum(n for _, _, n in plan))
        total = sum(len(t) for _, t, _ in plan)
        if result.skipped:
            self.console.print(f"resuming run [bold]{run_id}[/]: {result.skipped} calls already stored, {total} to go")

        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("valid {task.fields[valid]}"), TimeElapsedColumn(), TextColumn("eta"),
                   TimeRemainingColumn()]
        with Progress(*columns, console=self.console, disable=not self.progress, transient=False) as bar, \
                _StopFlag(lambda: self.console.print(
                    "[yellow]stopping after the call in flight (Ctrl-C again to stop at once)[/]")) as stop:
            overall = bar.add_task("all models", total=total, valid="-")
            for entry, todo, _ in plan:
                if stop.requested:
                    break
                if not todo:
                    continue
                stored = self._run_model(entry, todo, seed, bar, overall, stop)
                result.per_model[entry.name] = stored
                result.stored += stored
            result.stopped = stop.requested
        # finished once every model of the config has every call (a --model subset leaves it open)
        if not result.stopped and self.store.count_calls(run_id) >= iterations * len(articles) * len(self.cfg.models):
            self.store.finish_run(run_id)
        return result

    def _run_model(self, entry, todo, seed, bar, overall, stop) -> int:
        cfg, task = self.cfg, self.task
        temperature = cfg.setting(entry, "temperature")
        max_tokens = cfg.setting(entry, "num_predict")
        schema = task.schema if cfg.run.structured_output else None
        mtask = bar.add_task(entry.name, total=len(todo), valid="-")
        backend = self.backend_factory(entry, cfg)
        stored = valid = 0
        try:
            load_s = backend.load()
            warm_s = warm_tokens = None
            if cfg.run.warmup:
                w = task.warmup_article
                reply = backend.chat(task.messages(w["company"], w["text"], entry.prompt_style, entry.system_prompt),
                                     schema=schema, temperature=temperature, seed=seed, max_tokens=16)
                warm_s, warm_tokens = reply.wall_seconds, reply.prompt_tokens
            self.store.add_model_load(self.run_id, entry.name, entry.backend, load_s, warm_s, warm_tokens,
                                      backend.engine_info())
            for it, pos, art in todo:
                if stop.requested:
                    break
                t0 = time.perf_counter()
                messages = task.messages(art.company, art.text, entry.prompt_style, entry.system_prompt)
                cseed = call_seed(seed, it, art.id)
                reply = backend.chat(messages, schema=schema, temperature=temperature, seed=cseed,
                                     max_tokens=max_tokens)
                parsed = task.parse(reply.text)
                wall = time.perf_counter() - t0
                row = {"run_id": self.run_id, "model": entry.name, "family": entry.family, "quant": entry.quant,
                       "backend": entry.backend, "prompt_style": entry.prompt_style, "iteration": it,
                       "article_id": art.id, "position": pos, "seed": cseed, "raw_text": reply.text,
                       "valid": int(parsed.valid), "error": parsed.error, "reasoning": parsed.reasoning,
                       "sentiment": parsed.sentiment, "confidence": parsed.confidence,
                       "finish_reason": reply.finish_reason, "prompt_tokens": reply.prompt_tokens,
                       "cached_tokens": reply.cached_tokens, "completion_tokens": reply.completion_tokens,
                       "prompt_seconds": reply.prompt_seconds, "gen_seconds": reply.gen_seconds,
                       "wall_seconds": wall}
                if self.store.add_call(row):
                    stored += 1
                    valid += parsed.valid
                bar.update(mtask, advance=1, valid=f"{valid}/{stored}")
                bar.update(overall, advance=1)
        finally:
            backend.close()
            bar.update(mtask, visible=False)
        return stored
