"""Executors: where a run's shards run. ``ray[:ADDRESS]`` (``pip install 'gguf-shootout[ray]'``) sends
one Ray task per shard to a cluster (a local one when no address is given and none is running); Ray
is imported inside the functions that need it.

- Shards are by model by default: each model's calls run on one node, the task reserving the
  model's ``resources`` (``num_gpus``, ``num_cpus``; config ``models[].resources``); ``--shard-count``
  groups models, ``--shard-by item`` splits the items instead (default: one shard per node).
- The driver creates the run (items, seed, iterations) in ``run.database``, as a local run does; each
  task creates the same run in its own shard file beside it (``results.shard-01-of-02.sqlite``, on
  its node), runs the normal runner there, and streams the rows it stores back to the driver, which
  stores them in the run as they arrive (one progress bar over all shards). A call run in process
  records its node as its endpoint, so the report's Throughput sheet has a line per node; each
  node's hardware and versions go into the run's ``merged_from`` hardware entry, as a merge writes.
- Nothing is lost when a node or the driver dies: every call the driver received is stored, every
  call a task stored is in its shard file; ``--resume`` sends the unfinished shards again, each
  task first taking back the calls the driver already holds for its shard (a node without the old
  shard file does not ask them again) and sending the ones the driver lacks.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.run.shards import shard_database
from core.errors import ShootoutError

RAY_EXTRA = "pip install 'gguf-shootout[ray]'"


@dataclass(frozen=True)
class Executor:
    kind: str
    address: str | None = None


def parse_executor(text: str | None) -> Executor | None:
    """``--executor``: None or ``local`` (this process), ``ray`` or ``ray:ADDRESS`` (``auto``,
    ``HOST:PORT``, ``ray://HOST:10001``)."""
    if text is None or text.strip() in ("", "local"):
        return None
    kind, _, address = text.strip().partition(":")
    if kind != "ray":
        raise ShootoutError(f"--executor '{text}'", "use local, ray or ray:ADDRESS (e.g. ray:auto, ray://head:10001)")
    return Executor("ray", address or None)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ShootoutError("--executor ray needs Ray, which is not installed", RAY_EXTRA) from None
    return ray


@dataclass
class ShardJob:
    index: int
    count: int
    by: str
    models: list[str] | None  # the model entries this shard runs (None: all, with its share of the items)
    num_cpus: float
    num_gpus: float
    arms: list[str] = field(default_factory=list)
    item_ids: set[str] = field(default_factory=set)
    todo: int = 0
    stored: int = 0
    valid: int = 0
    node: str | None = None
    state: str = "pending"  # pending, done, failed, complete (nothing to do)
    reason: str = ""

    def label(self) -> str:
        who = f" ({', '.join(self.models)})" if self.by == "model" and self.models else ""
        return f"shard {self.index}/{self.count}{who}"


@dataclass
class ExecutorResult:
    run_id: str
    database: Path
    shards: list[ShardJob]
    finished: bool = False
    stopped: bool = False
    too_long: list[tuple[str, str, int, int]] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(j.stored for j in self.shards)

    @property
    def failed(self) -> list[ShardJob]:
        return [j for j in self.shards if j.state == "failed"]


def plan_shards(cfg, by: str, count: int | None, models: list[str] | None, nodes: int) -> list[ShardJob]:
    """The shards of a Ray run: by model (one per model, or ``count`` groups of models), or by item
    (``count`` shards, default one per node), each reserving the most any of its models asks."""
    entries = [m for m in cfg.models if not models or m.name in models]
    if by == "model":
        count = count or len(entries)
        if count > len(entries):
            raise ShootoutError(f"--shard-count {count} is more than the {len(entries)} models to spread",
                                "by model, each shard runs whole models: use --shard-by item to split the items too")
        groups = [[m for k, m in enumerate(entries) if k % count == i] for i in range(count)]
    elif by == "item":
        count = count or max(1, nodes)
        groups = [entries] * count
    else:
        raise ShootoutError(f"--shard-by '{by}'", "use model or item")
    return [ShardJob(i + 1, count, by, [m.name for m in g] if by == "model" else models,
                     max(m.resources.num_cpus for m in g), max(m.resources.num_gpus for m in g))
            for i, g in enumerate(groups)]


def check_resources(jobs: list[ShardJob], nodes: list[dict]) -> None:
    """Every shard fits on some node of the cluster, or one clear error before anything is sent."""
    for job in jobs:
        fits = [n for n in nodes if n.get("CPU", 0) >= job.num_cpus and n.get("GPU", 0) >= job.num_gpus]
        if not fits:
            best = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
            raise ShootoutError(f"{job.label()} needs {job.num_gpus:g} GPU(s) and {job.num_cpus:g} CPU(s) on one node "
                                f"(models[].resources), but the largest node of the Ray cluster has "
                                f"{best.get('GPU', 0):g} GPU(s) and {best.get('CPU', 0):g} CPU(s)",
                                "lower models[].resources in config.yaml, or add a node that has them")


def resumable_run(store, cfg) -> str | None:
    """The latest unfinished run of this config in ``store`` (what ``--resume`` continues)."""
    return next((rid for rid in reversed(store.run_ids())
                 if (row := store.run(rid))["finished_at"] is None and row["config_text"] == cfg.text), None)


def run_with_executor(cfg, executor: str | Executor, **kw) -> ExecutorResult:
    """``run --executor ...``: the run on the named executor (see :func:`run_ray` for ``kw``)."""
    spec = parse_executor(executor) if isinstance(executor, str) else executor
    if spec is None:
        raise ShootoutError("run_with_executor needs an executor", "use ray or ray:ADDRESS")
    return run_ray(cfg, address=spec.address, **kw)


# --------------------------------------------------------------------------- the driver


def run_ray(cfg, *, address: str | None = None, run_id: str | None = None, resume: bool = False, by: str = "model",
            count: int | None = None, models: list[str] | None = None, console=None,
            progress: bool = True) -> ExecutorResult:
    """Run the config's grid as Ray tasks, one per shard, storing every call in ``run.database``."""
    ray = _import_ray()
    from benchmark.run.runner import Runner
    from benchmark.store import Store
    from core.console import make_console

    console = console or make_console()
    db = cfg.resolve(cfg.run.database)
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ShootoutError(f"cannot reach the Ray cluster{f' at {address}' if address else ''}: {exc}",
                                "start it (`ray start --head`), or pass its address: --executor ray:HOST:PORT") from None
    try:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        jobs = plan_shards(cfg, by, count, models, len(nodes))
        check_resources(jobs, nodes)
        with Store(db) as store:
            if run_id is None and resume:
                run_id = resumable_run(store, cfg)
            runner = Runner(cfg, store, run_id=run_id, console=console, progress=False, models=models)
            run_id, _, iterations, items = runner.prepare()
            result = ExecutorResult(run_id, db, jobs)
            seeds = _share_out(store, run_id, runner.all_arms, items, iterations, jobs)
            _drive(ray, cfg, store, runner, result, items, iterations, seeds, console, progress)
            if not result.stopped and store.count_calls(run_id) >= iterations * len(items) * len(runner.all_arms):
                if store.run(run_id)["finished_at"] is None:
                    store.finish_run(run_id)
                result.finished = True
        return result
    finally:
        if started:
            ray.shutdown()


def _share_out(store, run_id, arms, items, iterations, jobs) -> dict[int, list[dict]]:
    """Each shard's arms, items and calls left to do; the calls the driver holds for it (its seed)."""
    from benchmark.store import CALL_FIELDS

    held = {}
    for c in store.calls(run_id):
        held[(c["model"], c["iteration"], c["item_id"])] = {k: c[k] for k in CALL_FIELDS if k in c.keys()}
    seeds = {}
    for job in jobs:
        job.arms = [a.name for a in arms if job.models is None or a.entry.name in job.models]
        job.item_ids = {i.id for k, i in enumerate(items) if job.by == "model" or k % job.count == job.index - 1}
        mine = [key for key in held if key[0] in job.arms and key[2] in job.item_ids]
        job.todo = len(job.arms) * len(job.item_ids) * iterations - len(mine)
        seeds[job.index] = [held[k] for k in mine]
        if job.todo <= 0:
            job.state = "complete"
    return seeds


def _drive(ray, cfg, store, runner, result, items, iterations, seeds, console, progress) -> None:
    """Send the shards, store what they send back as it arrives, note what failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from core.console import styled, warning

    run = store.run(result.run_id)
    payload = {"config_text": cfg.text, "config_source": cfg.source, "base_dir": str(cfg.base_dir),
               "run_id": result.run_id, "task": run["task"], "seed": run["seed"], "iterations": iterations,
               "settings": json.loads(run["settings_json"]), "task_info": store.task_info(result.run_id),
               "items": [i.model_dump() for i in items]}
    from benchmark.run.shard_task import shard_task

    task = ray.remote(shard_task)
    todo = [j for j in result.shards if j.state == "pending"]
    pending = {}
    for job in todo:
        ref = task.options(num_returns="streaming", num_cpus=job.num_cpus, num_gpus=job.num_gpus, max_retries=0,
                           name=f"shootout {job.label()}").remote(
            {**payload, "index": job.index, "count": job.count, "by": job.by, "models": job.models,
             "threads": max(1, int(job.num_cpus)), "seed_rows": seeds[job.index],
             "database": str(shard_database(result.database, job.index, job.count).absolute())})
        pending[ref] = job
    columns = [TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
               TextColumn("valid {task.fields[valid]}"), TimeElapsedColumn()]
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        overall = bar.add_task("all shards", total=sum(j.todo for j in todo), valid="-")
        bars = {j.index: bar.add_task(j.label(), total=j.todo, valid="-") for j in todo}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for gen in ready:
                    job = pending[gen]
                    try:
                        msg = ray.get(next(gen))
                    except StopIteration:
                        del pending[gen]
                        job.state = "done" if job.state == "pending" else job.state
                        continue
                    except ray.exceptions.RayError as exc:
                        del pending[gen]
                        job.state, job.reason = "failed", _reason(exc)
                        console.print(warning(f"{job.label()}{_on(job)} stopped: {job.reason}"))
                        continue
                    _receive(store, result, job, msg, console)
                    bar.update(bars[job.index], completed=job.stored, valid=f"{job.valid}/{job.stored}",
                               description=f"{job.label()}{_on(job)}")
                    bar.update(overall, completed=sum(j.stored for j in todo))
        except KeyboardInterrupt:
            result.stopped = True
            for gen in pending:
                with contextlib.suppress(Exception):  # a task that ended meanwhile
                    ray.cancel(gen, force=True)
    for job in result.failed:
        console.print(styled(("shard stopped", "yellow"), f": {job.label()}{_on(job)}: {job.reason}. Stored in "
                             f"{result.database}: {job.stored} of its calls and every call of the shards that ended. "
                             f"Resume with `shootout run --config {cfg.source} --executor ray --run-id {result.run_id}` "
                             f"(or --resume): only the unfinished shards run again, each from its shard file "
                             f"({shard_database(result.database, job.index, job.count).name}) where its node has it"))


def _on(job: ShardJob) -> str:
    return f" on {job.node}" if job.node else ""


def _reason(exc) -> str:
    """One line for a task that raised (its own message) or whose worker or node died."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ShootoutError):
        return cause.message + (f" ({cause.hint})" if cause.hint else "")
    name = type(exc).__name__
    for words, says in ((("WorkerCrashed", "ActorDied"), "its worker process died"),
                        (("NodeDied", "ObjectLost", "OwnerDied"), "its node left the cluster"),
                        (("Cancelled",), "it was cancelled")):
        if any(w in name for w in words):
            return says
    text = str(cause or exc).strip().splitlines()
    return f"{name}: {text[-1] if text else ''}"


def _receive(store, result: ExecutorResult, job: ShardJob, msg: dict, console) -> None:
    """One message of a shard task: its node (start), calls and loads (rows), or its end (done)."""
    if msg["kind"] == "start":
        job.node = msg["node"]
        _note_node(store, result.run_id, job, msg)
    elif msg["kind"] == "rows":
        for row in msg["calls"]:
            row = {**row, "run_id": result.run_id, "endpoint": row.get("endpoint") or job.node}
            if store.add_call(row):
                job.stored += 1
                job.valid += int(row["valid"] or 0)
        for load in msg["loads"]:
            store.add_model_load(result.run_id, load["model"], load["backend"], load["load_seconds"],
                                 load["warmup_seconds"], load["warmup_prompt_tokens"],
                                 json.loads(load["engine_json"] or "{}"), endpoint=load["endpoint"] or job.node,
                                 memory={k: load[k] for k in ("rss_mb", "kv_cache_mb", "vram_mb") if k in load})
        for line in filter(str.strip, msg["log"].splitlines()):
            console.print(f"{job.label()}{_on(job)}: {line}")
    elif msg["kind"] == "done":
        result.too_long += [tuple(t) for t in msg["too_long"]]
        store.keep_speed_facts(result.run_id, msg.get("speed") or {})  # as `shootout merge` keeps them


def _note_node(store, run_id: str, job: ShardJob, msg: dict) -> None:
    """The node's hardware and versions in the run's hardware (``merged_from``, as ``shootout merge`` writes)."""
    run = store.run(run_id)
    hardware = json.loads(run["hardware_json"] or "{}")
    boxes = json.loads(hardware.get("merged_from") or "[]")
    box = {"file": msg["file"], "run_id": run_id, "hardware": msg["hardware"], "versions": msg["versions"],
           "shard": f"{job.index}/{job.count}", "node": job.node, "models": job.models}
    if box not in boxes:
        boxes.append(box)
    hardware["merged_from"] = json.dumps(boxes)
    store.db.execute("UPDATE runs SET hardware_json=? WHERE run_id=?", (json.dumps(hardware), run_id))
