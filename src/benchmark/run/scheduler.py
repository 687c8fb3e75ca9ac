"""Many endpoints at once: an asyncio scheduler that spreads one model's calls over the servers
that host it (Ollama hosts, llama.cpp / vLLM / LM Studio servers), with a concurrency limit per
endpoint (1 by default: latency mode; more: throughput mode).

- Every endpoint runs ``limit`` workers; the workers of all endpoints take calls from one queue of
  the model's remaining calls, so a fast host takes more of them.
- A call on an endpoint that has stopped answering (``BackendUnavailable``, after the backend's own
  retries) goes back to the front of the queue and the endpoint is retired: its work finishes
  elsewhere, and nothing is lost (a call is stored only once it has an answer).
- Each stored call records the endpoint that answered and how many calls that endpoint had in
  flight when it started, so latency statistics can keep to concurrency-1 calls.
- Seeds are per (iteration, item): the same call gets the same seed wherever it runs.
- Ctrl-C: workers take no new call; calls in flight finish and are stored.

The blocking backend calls run in worker threads (``asyncio.to_thread``); results are stored from
the event loop's thread, so SQLite has one writer.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from benchmark.backends.base import BackendUnavailable
from core.errors import ShootoutError


@dataclass
class Endpoint:
    url: str
    backend: Any
    limit: int = 1
    in_flight: int = 0
    alive: bool = True
    error: str | None = None


@dataclass
class Outcome:
    retired: list[str] = field(default_factory=list)


async def _drive(endpoints: list[Endpoint], jobs: collections.deque, ask: Callable, record: Callable,
                 stopped: Callable[[], bool], outcome: Outcome) -> None:
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
            started = time.time()
            try:
                result = await asyncio.to_thread(ask, ep.backend, job)
            except BackendUnavailable as exc:
                jobs.appendleft(job)  # not answered: another endpoint takes it
                if ep.alive:
                    ep.alive, ep.error = False, str(exc)
                    outcome.retired.append(ep.url)
                return
            finally:
                ep.in_flight -= 1
            record(job, result, endpoint=ep.url, in_flight=n, started_at=started)

    await asyncio.gather(*(worker(ep) for ep in endpoints for _ in range(max(1, ep.limit))))


def run_calls(endpoints: list[Endpoint], jobs: list, ask: Callable, record: Callable,
              stopped: Callable[[], bool], model: str) -> Outcome:
    """Answer ``jobs`` on ``endpoints``: ``ask(backend, job) -> result`` runs in a worker thread,
    ``record(job, result, endpoint=, in_flight=, started_at=)`` in this one."""
    queue = collections.deque(jobs)
    outcome = Outcome()
    asyncio.run(_drive(endpoints, queue, ask, record, stopped, outcome))
    if queue and not stopped():
        why = "; ".join(f"{e.url}: {e.error}" for e in endpoints if e.error) or "no endpoint left"
        raise ShootoutError(f"model '{model}': {len(queue)} calls left and no endpoint answers ({why})",
                            "start the servers again, then resume with `shootout run --run-id ...`: nothing "
                            "stored is lost")
    return outcome
