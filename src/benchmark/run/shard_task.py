"""One Ray task of ``--executor ray`` (``benchmark.run.executors``), on its node: the normal runner into
the shard's own file, the rows it stores sent back to the driver as a stream of messages (start,
rows..., done: with the shard's order, bandwidth and speed blocks)."""

from __future__ import annotations

import io
import os
from pathlib import Path


def shard_task(p: dict):
    """One shard on its node: the normal runner into the shard file, its new rows sent back as a stream of
    messages (start, rows..., done). Runs in a Ray worker."""
    import platform
    import threading

    from benchmark.config import parse_config
    from benchmark.run.runner import Runner
    from benchmark.store import Store
    from benchmark.tasks.base import Item
    from core import sysinfo
    from core.console import make_console

    import ray

    node = f"{platform.node()} ({ray.util.get_node_ip_address()})"
    os.environ["SHOOTOUT_THREADS"] = str(p["threads"])  # llama.cpp: as many threads as the task reserved CPUs
    cfg = parse_config(p["config_text"], source=p["config_source"], base_dir=Path(p["base_dir"]), check_files=False)
    path, run_id = Path(p["database"]), p["run_id"]
    hardware, versions = sysinfo.hardware(), sysinfo.versions()
    reader = Store(path)
    try:
        if reader.run(run_id) is None:
            reader.create_run(run_id, task=p["task"], seed=p["seed"], iterations=p["iterations"],
                              config_path=cfg.source, config_text=cfg.text, settings=p["settings"], versions=versions,
                              hardware=hardware, items=[Item(**d) for d in p["items"]], task_info=p["task_info"])
        held = set()
        for row in p["seed_rows"]:  # what the driver already has: not asked again, not sent back
            reader.add_call({**row, "run_id": run_id})
            held.add((row["model"], row["iteration"], row["item_id"]))
        yield {"kind": "start", "node": node, "pid": os.getpid(), "file": str(path), "hardware": hardware,
               "versions": versions}
        log = io.StringIO()
        outcome: dict = {}

        def work() -> None:
            try:
                with Store(path) as store:
                    shard = (p["index"], p["count"], "item") if p["by"] == "item" else None
                    outcome["result"] = Runner(cfg, store, run_id=run_id, console=make_console(file=log, width=200),
                                               progress=False, models=p["models"], shard=shard).run()
            except BaseException as exc:  # raised again in the stream, after the rows stored before it
                outcome["error"] = exc

        worker = threading.Thread(target=work, name="shootout-shard", daemon=True)
        worker.start()
        last_call = last_load = shown = 0
        while True:
            running = worker.is_alive()
            calls, loads, last_call, last_load = _new_rows(reader, run_id, last_call, last_load)
            calls = [c for c in calls if (c["model"], c["iteration"], c["item_id"]) not in held]
            text = log.getvalue()[shown:]
            shown += len(text)
            if calls or loads or text:
                yield {"kind": "rows", "calls": calls, "loads": loads, "log": text}
            if not running:
                break
            worker.join(timeout=0.25)
        if "error" in outcome:
            raise outcome["error"]
        res = outcome["result"]
        yield {"kind": "done", "stored": res.stored, "stopped": res.stopped, "too_long": res.too_long,
               "speed": reader.speed_facts(run_id)}
    finally:
        reader.close()


def _new_rows(store, run_id: str, last_call: int, last_load: int):
    """Calls and model loads stored after the given row ids (as dicts), and the new last ids."""
    from benchmark.store import CALL_FIELDS

    calls = store.db.execute("SELECT * FROM calls WHERE run_id=? AND id>? ORDER BY id", (run_id, last_call)).fetchall()
    loads = store.db.execute("SELECT * FROM model_loads WHERE run_id=? AND id>? ORDER BY id",
                             (run_id, last_load)).fetchall()
    out_calls = [{k: c[k] for k in CALL_FIELDS if k in c.keys()} for c in calls]
    out_loads = [{k: r[k] for k in r.keys() if k != "id"} for r in loads]
    return (out_calls, out_loads, calls[-1]["id"] if calls else last_call, loads[-1]["id"] if loads else last_load)
