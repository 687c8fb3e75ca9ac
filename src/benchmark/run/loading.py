"""Loading an arm's model for the runner (``benchmark.run.runner``): on its backend, or on every server
that hosts it; the uncounted warm-up; at the first load of an in-process model in the run, before its warm-up, its
llama-bench-comparable block (``benchmark.run.bench``), the memory copy test before the run's first
one; and what a load tells about the arm, stored. One part of ``Runner`` (its config, store, task and warnings)."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.backends import spec_of
from benchmark.backends.base import CallFailed, PromptTooLong
from benchmark.config import Arm
from core import sysinfo
from core.errors import ShootoutError


@dataclass
class LoadedArm:
    """An arm's loaded model: its endpoints (one for a model asked one call at a time) and backends."""

    endpoints: list
    backends: list
    in_process: bool
    serial: bool

    def close(self) -> None:
        for b in self.backends:
            b.close()
        self.backends = []


class ArmLoading:
    """Opening and closing the arms' models (see the module doc)."""

    def _measure_bandwidth(self) -> None:
        """The memory copy test, once per run, before the first speed block, unless the report has a
        declared bandwidth (``report.memory_bandwidth_gbs``)."""
        if self.cfg.report.memory_bandwidth_gbs or self.store.bandwidth(self.run_id) is not None:
            return
        from core.bandwidth import copy_bandwidth

        gbs, how = copy_bandwidth()
        self.store.set_bandwidth(self.run_id, gbs, how)

    def _load(self, backend, arm: Arm, seed: int, block: int | None = None) -> dict:
        """Load and warm up (uncounted): the load's figures, the engine's facts and the memory it took.
        At the first load of an in-process model in the run, its speed block comes between the load and
        the warm-up (the block warms itself up, as llama-bench does, and empties the prompt cache: the
        warm-up call then fills it for the run's calls)."""
        rss0 = sysinfo.rss_mb()
        load_s = backend.load()
        can = spec_of(arm.entry).capabilities
        if (self.cfg.run.speed_bench and can.in_process and hasattr(backend, "speed_bench")
                and arm.entry.name not in self._benched):
            from benchmark.run.bench import measure

            reps = None if self.cfg.run.speed_bench is True else int(self.cfg.run.speed_bench)
            self._measure_bandwidth()
            self.console.print(f"{arm.entry.name}: the speed block (pp512, tg128, tg128 at the prompts' depth; "
                               f"{reps or 'five'} repetitions each; run.speed_bench: false skips it)",
                               markup=False, highlight=False)
            self.store.add_bench(measure(backend, self.task, arm, self._items, self.run_id, block, reps=reps))
            self._benched.add(arm.entry.name)
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

    def _open(self, arm: Arm, seed: int, block: int) -> "LoadedArm":
        """The arm's model loaded (and warmed up) on its backend, or on every endpoint that hosts it."""
        entry, cfg = arm.entry, self.cfg
        can = spec_of(entry).capabilities
        levels = cfg.run.levels
        if levels != [1] and not can.endpoints:
            self._warn(f"{arm.name}: run.concurrency is for server backends; {entry.backend} answers one at a time")
        if not (can.endpoints and (entry.endpoints or levels != [1])):
            from benchmark.run.scheduler import Endpoint

            backend = self.backend_factory(entry, cfg)
            try:
                self._store_load(arm, self._load(backend, arm, seed, block))
            except BaseException:
                backend.close()
                raise
            return LoadedArm([Endpoint(None, backend)], [backend], can.in_process, serial=True)
        return self._open_endpoints(arm, seed, block)

    def _open_endpoints(self, arm: Arm, seed: int, block: int) -> "LoadedArm":
        """The servers that host the arm (see ``benchmark.run.scheduler``), loaded at once; those that do
        not answer are left out with a warning."""
        from concurrent.futures import ThreadPoolExecutor

        from benchmark.run.scheduler import Endpoint

        entry, cfg = arm.entry, self.cfg
        urls = entry.endpoints or [None]
        backends = [self.backend_factory(entry, cfg, endpoint=u) if u else self.backend_factory(entry, cfg)
                    for u in urls]
        held = LoadedArm([], backends, spec_of(entry).capabilities.in_process, serial=False)

        def load(backend):
            try:
                return self._load(backend, arm, seed, block), None
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
                held.endpoints.append(Endpoint(name, backend))
            if not held.endpoints:
                raise ShootoutError(f"model '{arm.name}': none of its endpoints answers ({', '.join(map(str, urls))})",
                                    "start the servers, or fix models[].endpoints in config.yaml")
        except BaseException:
            held.close()
            raise
        return held
