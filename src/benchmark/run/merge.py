"""`shootout merge`: the shards of one grid, run on several boxes (`shootout run --shard i/n`),
combined into one run that reports like any other.

The sources are results files (``FILE`` or ``FILE:RUN_ID``), folders (the shard files in them, named
``*.shard-I-of-N.sqlite``, or else every ``*.sqlite``) or globs (``reports/*.shard-*.sqlite``).

The runs must share the config's settings (the results file name aside), the task, the seed,
the iteration count and the items (ids, texts, gold answers, splits); a call (model, iteration,
item) stored in two of them is refused rather than guessed between. Calls, model loads and speed
blocks are copied as they are (the run's order and bandwidth from the first box that has them), so
every figure of the merged report is what the shards measured; each box's hardware and versions are
kept in the merged run's row.
"""

from __future__ import annotations

import json
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from benchmark.store import CALL_FIELDS, Store
from core.errors import ShootoutError


@dataclass
class MergeResult:
    run_id: str
    calls: int
    sources: list[str]
    finished: bool


def _source(spec: str) -> tuple[Path, str | None]:
    """``results.sqlite`` or ``results.sqlite:RUN_ID``."""
    path, _, run_id = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    return Path(path), run_id or None


def _comparable_settings(run) -> dict:
    settings = json.loads(run["settings_json"])
    settings.get("run", {}).pop("database", None)
    return settings


def _items(store: Store, run_id: str) -> list[tuple]:
    return [(i.id, i.text, i.label, i.value, i.split) for i in store.items(run_id)]


def expand_sources(specs: list[str]) -> list[str]:
    """Files as they are; a folder as its shard files (in index order), or every ``*.sqlite`` in it
    when it holds none; a glob as the files it matches. One clear error for a source that names nothing."""
    import glob
    import re

    from benchmark.run.shards import shard_database, shard_of_file

    out: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.sqlite") if p.is_file())
            shards = sorted((shard_of_file(p), p) for p in files if shard_of_file(p))
            counts = sorted({n for (_, n), _ in shards})
            if len(counts) > 1:
                one = re.sub(r"shard-\d+", "shard-*", shard_database(path / "*.sqlite", 1, counts[0]).name)
                raise ShootoutError(f"{path} holds the shards of {' and '.join(map(str, counts))}-shard grids (files "
                                    "*.shard-I-of-N.sqlite with different N)",
                                    f"merge one grid's shards with a glob, e.g. '{path / one}'")
            found = [str(p) for _, p in shards] if shards else [str(p) for p in files]
            if not found:
                raise ShootoutError(f"{path} holds no results file (*.sqlite)", "name the folder the shards wrote")
            out += found
        elif not path.exists() and glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec) if Path(p).is_file())
            if not found:
                raise ShootoutError(f"'{spec}' matches no file", "check the pattern (quote it so the shell leaves it "
                                                                 "alone)")
            out += sorted(found, key=lambda p: (shard_of_file(p) or (0, 0), p))
        else:
            out.append(spec)
    return out


def merge(specs: list[str], out: Path, run_id: str | None = None) -> MergeResult:
    specs = expand_sources(specs)
    if len(specs) < 2:
        raise ShootoutError("merge needs two or more results files", "shootout merge A.sqlite B.sqlite --out all.sqlite")
    if out.exists():
        raise ShootoutError(f"{out} already exists", "name a new file with --out; merge never writes into a results file")
    sources = []
    for spec in specs:
        path, rid = _source(spec)
        store = Store(path, create=False)
        ids = store.run_ids()
        if rid is None:
            if len(ids) != 1:
                store.close()
                raise ShootoutError(f"{path} holds {len(ids)} runs ({', '.join(ids) or 'none'})",
                                    f"name the run to merge as {path}:RUN_ID")
            rid = ids[0]
        elif rid not in ids:
            store.close()
            raise ShootoutError(f"no run '{rid}' in {path}", f"runs there: {', '.join(ids) or 'none'}")
        sources.append((path, rid, store))
    try:
        first_path, first_id, first = sources[0]
        ref = first.run(first_id)
        ref_items = _items(first, first_id)
        for path, rid, store in sources[1:]:
            run = store.run(rid)
            for what, a, b in (("task", ref["task"], run["task"]), ("seed", ref["seed"], run["seed"]),
                               ("iterations", ref["iterations"], run["iterations"]),
                               ("config settings", _comparable_settings(ref), _comparable_settings(run))):
                if a != b:
                    raise ShootoutError(f"{path} (run {rid}) has other {what} than {first_path} (run {first_id})",
                                        "merge only the shards of one grid: the same config, seed and items")
            if _items(store, rid) != ref_items:
                raise ShootoutError(f"{path} (run {rid}) asked about other items than {first_path} (run {first_id})",
                                    "shards must start from the same items (same snapshot or data files)")
        seen: dict[tuple, str] = {}
        rows, loads, arms = [], [], {}
        for path, rid, store in sources:
            for c in store.calls(rid):
                key = (c["model"], c["iteration"], c["item_id"])
                if key in seen:
                    raise ShootoutError(f"the call {key[0]}, iteration {key[1]}, item {key[2]} is stored in both "
                                        f"{seen[key]} and {path}", "merge shards that split the grid without overlap "
                                                                   "(shootout run --shard i/n)")
                seen[key] = str(path)
                rows.append({k: c[k] for k in CALL_FIELDS if k in c.keys()})
            loads += store.loads(rid)
            for arm in store.arm_rows(rid):  # one box may have found the model's size where another did not
                if arm.model not in arms or (arms[arm.model].model_bytes is None and arm.model_bytes is not None):
                    arms[arm.model] = arm
        new_id = run_id or first_id
        boxes = [{"file": str(p), "run_id": r, "hardware": json.loads(s.run(r)["hardware_json"]),
                  "versions": json.loads(s.run(r)["versions_json"])} for p, r, s in sources]
        settings = json.loads(ref["settings_json"])
        task = json.loads(ref["task_json"] or "{}")
        n_arms = len(settings.get("models") or []) * max(1, len([v for v in task.get("variants") or [None] if v]))
        finished = len(rows) >= n_arms * len(ref_items) * ref["iterations"]
        out.parent.mkdir(parents=True, exist_ok=True)
        with Store(out) as dest:
            # each box's hardware and versions, as one text value (Run Info shows it as it is)
            hardware = {**json.loads(ref["hardware_json"]), "merged_from": json.dumps(boxes)}
            dest.create_run(new_id, task=ref["task"], seed=ref["seed"], iterations=ref["iterations"],
                            config_path=ref["config_path"], config_text=ref["config_text"], settings=settings,
                            versions=json.loads(ref["versions_json"]), hardware=hardware,
                            items=first.items(first_id), task_info=task)
            dest.add_calls([{**r, "run_id": new_id} for r in rows])
            dest.add_loads([dataclasses.replace(r, run_id=new_id) for r in loads])
            dest.add_arms([dataclasses.replace(a, run_id=new_id) for a in arms.values()])
            for path, rid, store in sources:  # the first box's order and bandwidth, every box's speed blocks
                dest.keep_speed_facts(new_id, store.speed_facts(rid))
            if finished:
                dest.finish_run(new_id)
        return MergeResult(new_id, len(rows), [str(p) for p, _, _ in sources], finished)
    finally:
        for _, _, store in sources:
            store.close()
