"""One model's calls on the servers that host it (Ollama hosts, llama.cpp / vLLM / LM Studio servers),
with a concurrency limit per endpoint (1 by default: latency mode; more: throughput mode), under the
run's failure policy; and the blocks of a concurrency sweep.

- Every endpoint runs ``limit`` workers; the workers of all endpoints take calls from one queue of
  the model's remaining calls, so a fast host takes more of them.
- A call with no usable answer (``CallFailed``, after the backend's own retries: an HTTP error, a
  body that is not JSON or of the wrong shape, a timeout, a cut connection, an oversized body) is
  stored as a failed call with its reason, and the run goes on.
- An endpoint is retired when it stops answering (``BackendUnavailable``: nothing listens any more;
  the call goes back to the front of the queue, nothing is lost) or when ``RETIRE_AFTER`` of its calls
  in a row failed (those are stored as failed). Its work finishes elsewhere; when no endpoint of the
  model is left, the run stops with one message, resumable.
- Each stored call records the endpoint that answered, how many calls that endpoint had in flight
  when it started and the concurrency it ran under, so latency statistics can keep to calls that
  ran alone, and a sweep's levels can be told apart.
- Seeds are per (iteration, item): the same call gets the same seed wherever it runs.
- Ctrl-C: workers take no new call; calls in flight finish and are stored.

``run_calls`` runs the blocking backend calls in worker threads (``asyncio.to_thread``) and stores
from the event loop's thread, so SQLite has one writer; ``serial_calls`` is the same policy for one
engine asked one call at a time in this thread (an in-process model, a single server).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from benchmark.backends.base import BackendUnavailable, CallFailed
from core.errors import ShootoutError

RETIRE_AFTER = 3  # failed calls in a row that retire an endpoint


@dataclass
class Endpoint:
    url: str | None
    backend: Any
    limit: int = 1
    in_flight: int = 0
    alive: bool = True
    error: str | None = None
    retired_for: str = ""     # "stopped answering" or "failed N calls in a row"
    hint: str | None = None   # what the last failure suggests (e.g. raise options.timeout_s)
    failed_in_row: int = 0


@dataclass
class Outcome:
    retired: list[str] = field(default_factory=list)
    failed: int = 0   # calls stored as failed


def _retire(ep: Endpoint, what: str, why: str, outcome: Outcome, hint: str | None = None) -> None:
    if ep.alive:
        ep.alive, ep.retired_for, ep.error, ep.hint = False, what, why, hint
        outcome.retired.append(str(ep.url))


def _failed(ep: Endpoint, exc: CallFailed, outcome: Outcome) -> None:
    """Count a failed call against its endpoint; retire the endpoint after RETIRE_AFTER in a row."""
    outcome.failed += 1
    ep.failed_in_row += 1
    if ep.failed_in_row >= RETIRE_AFTER:
        _retire(ep, f"failed {RETIRE_AFTER} calls in a row", f"the last: {exc.message}", outcome, exc.hint)


def _left(endpoints: list[Endpoint], queue, stopped: Callable[[], bool], model: str) -> None:
    """The one message when calls are left and no endpoint of the model is."""
    if queue and not stopped():
        why = "; ".join(f"{e.url or 'the server'} {e.retired_for}: {e.error}" for e in endpoints if e.error) \
            or "no endpoint left"
        hints = [e.hint for e in endpoints if e.hint]
        raise ShootoutError(f"model '{model}': {len(queue)} calls left and no endpoint answers ({why})",
                            (f"{hints[0]}; " if hints else "") + "mend the servers, then resume with `shootout run "
                            "--run-id ...`: nothing stored is lost (`--retry-failed` asks the failed calls again)")


async def _drive(endpoints: list[Endpoint], jobs: collections.deque, ask: Callable, record: Callable,
                 failed: Callable, stopped: Callable[[], bool], outcome: Outcome) -> None:
    async def worker(ep: Endpoint):
        while ep.alive and not stopped():
            if not jobs:
                if any(e.in_flight for e in endpoints):  # a call in flight may yet come back unanswered
                    await asyncio.sleep(0.05)
                    continue
                return
            job = jobs.popleft()
            ep.in_flight += 1
            n = ep.in_flight
            started, t0 = time.time(), time.perf_counter()
            try:
                result = await asyncio.to_thread(ask, ep.backend, job)
            except BackendUnavailable as exc:
                jobs.appendleft(job)  # not answered: another endpoint takes it
                _retire(ep, "stopped answering", exc.message, outcome)
                return
            except CallFailed as exc:
                result = failed(job, exc, time.perf_counter() - t0)
                _failed(ep, exc, outcome)
            else:
                ep.failed_in_row = 0
            finally:
                ep.in_flight -= 1
            record(job, result, endpoint=ep.url, in_flight=n, started_at=started, concurrency=ep.limit)

    await asyncio.gather(*(worker(ep) for ep in endpoints for _ in range(max(1, ep.limit))))


def run_calls(endpoints: list[Endpoint], jobs: list, ask: Callable, record: Callable,
              stopped: Callable[[], bool], model: str, failed: Callable) -> Outcome:
    """Answer ``jobs`` on ``endpoints``: ``ask(backend, job) -> result`` runs in a worker thread;
    ``failed(job, CallFailed, seconds) -> result`` makes the result of a failed call;
    ``record(job, result, endpoint=, in_flight=, started_at=, concurrency=)`` runs in this thread."""
    queue = collections.deque(jobs)
    outcome = Outcome()
    asyncio.run(_drive([e for e in endpoints if e.alive], queue, ask, record, failed, stopped, outcome))
    _left(endpoints, queue, stopped, model)
    return outcome


def serial_calls(endpoint: Endpoint, jobs: list, ask: Callable, record: Callable, stopped: Callable[[], bool],
                 model: str, failed: Callable) -> Outcome:
    """The same policy for one engine asked one call at a time, in this thread."""
    queue = collections.deque(jobs)
    outcome = Outcome()
    while queue and endpoint.alive and not stopped():
        job = queue.popleft()
        started, t0 = time.time(), time.perf_counter()
        try:
            result = ask(endpoint.backend, job)
        except BackendUnavailable:  # one engine: its own message says what stopped and how to resume
            raise
        except CallFailed as exc:
            result = failed(job, exc, time.perf_counter() - t0)
            _failed(endpoint, exc, outcome)
        else:
            endpoint.failed_in_row = 0
        record(job, result, endpoint=endpoint.url, in_flight=1, started_at=started, concurrency=1)
    _left([endpoint], queue, stopped, model)
    return outcome


def sweep_level(levels: list[int], index: int, total: int) -> int:
    """The concurrency level of the call at ``index`` of a model's ``total`` planned calls: the plan cut
    into ``len(levels)`` consecutive blocks of (nearly) equal size, the lowest level first. A call keeps
    its level when a run is resumed."""
    return levels[min(len(levels) - 1, index * len(levels) // max(total, 1))]


def sweep_blocks(jobs: list, levels: list[int], n_items: int, total: int) -> dict[int, list]:
    """level -> its jobs (iteration, position, item), the levels lowest first: a job's index in the
    model's whole plan (iteration x items + position) picks its level (:func:`sweep_level`)."""
    blocks: dict[int, list] = {level: [] for level in sorted(levels)}
    for job in jobs:
        blocks[sweep_level(sorted(levels), job[0] * n_items + job[1], total)].append(job)
    return {level: block for level, block in blocks.items() if block}
