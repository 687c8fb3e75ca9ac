"""Shards of one grid: which share of the calls this box asks (``--shard i/n`` or ``--shard auto``),
and the results file each shard writes.

``--shard auto`` takes the index and count from the scheduler that started the process, first found
of:

- ``SHOOTOUT_SHARD_INDEX`` / ``SHOOTOUT_SHARD_COUNT`` (the index counts from 0, as the schedulers'
  do), for any scheduler: export them from its own variables;
- a SLURM job array: ``SLURM_ARRAY_TASK_ID`` less ``SLURM_ARRAY_TASK_MIN``, divided by
  ``SLURM_ARRAY_TASK_STEP`` when the array has a step, of ``SLURM_ARRAY_TASK_COUNT`` tasks (or,
  without it, those from MIN to MAX by STEP); the array must be a range (``--array=0-7``, ``1-16:3``),
  not a list;
- a Kubernetes Indexed Job: ``JOB_COMPLETION_INDEX`` (from 0), with the count given on the command
  line (``--shard-count``, the Job's ``completions``): Kubernetes does not export it.

A shard is then ``(i, n, by)`` with ``i`` counted from 1, as ``--shard i/n`` writes it, so the shard
a scheduler's task 0 ran is resumed by hand with ``--shard 1/n``. Each shard writes its own results
file beside ``run.database``, named by its index (``results.shard-03-of-08.sqlite``), so shards on
one shared filesystem never write one file; ``shootout merge`` takes those files, their folder or a
glob.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from core.errors import ShootoutError

BY = ("model", "item")
SHOOTOUT_VARS = ("SHOOTOUT_SHARD_INDEX", "SHOOTOUT_SHARD_COUNT")
SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP",
              "SLURM_ARRAY_TASK_COUNT")
K8S_VARS = ("JOB_COMPLETION_INDEX",)
LOOKED_FOR = SHOOTOUT_VARS + SLURM_VARS + K8S_VARS
SHARD_FILE = re.compile(r"\.shard-(\d+)-of-(\d+)$")


@dataclass(frozen=True)
class Shard:
    """One shard: ``index`` from 1 to ``count``; ``source`` says where they came from."""

    index: int
    count: int
    by: str = "model"
    source: str = "--shard"

    def spec(self) -> tuple[int, int, str]:
        """The form the runner takes: ``(i, n, by)``."""
        return self.index, self.count, self.by

    def label(self) -> str:
        return f"{self.index}/{self.count}"


def _int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ShootoutError(f"{name}={raw!r} is not a whole number",
                            f"{name} must hold the shard's number; check the job script that sets it") from None


def _found(env: Mapping[str, str]) -> str:
    seen = [f"{k}={env[k]}" for k in LOOKED_FOR if k in env]
    return ", ".join(seen) if seen else "none of them is set"


def _check(index0: int, count: int, where: str) -> tuple[int, int]:
    if count < 1:
        raise ShootoutError(f"{where}: the shard count is {count}", "the count of shards must be at least 1")
    if not 0 <= index0 < count:
        raise ShootoutError(f"{where}: shard index {index0} is outside 0..{count - 1} (indexes count from 0)",
                            "the index and count must come from one job (an index from 0 to count - 1)")
    return index0 + 1, count


def _from_shootout(env: Mapping[str, str], count_opt: int | None) -> tuple[int, int, str]:
    if "SHOOTOUT_SHARD_INDEX" not in env:
        raise ShootoutError("SHOOTOUT_SHARD_COUNT is set but SHOOTOUT_SHARD_INDEX is not",
                            "set both (the index counts from 0), or neither")
    index0 = _int("SHOOTOUT_SHARD_INDEX", env["SHOOTOUT_SHARD_INDEX"])
    if "SHOOTOUT_SHARD_COUNT" in env:
        count = _int("SHOOTOUT_SHARD_COUNT", env["SHOOTOUT_SHARD_COUNT"])
        if count_opt is not None and count_opt != count:
            raise ShootoutError(f"--shard-count {count_opt} differs from SHOOTOUT_SHARD_COUNT={count}",
                                "leave out --shard-count, or make the two agree")
    elif count_opt is not None:
        count = count_opt
    else:
        raise ShootoutError(f"SHOOTOUT_SHARD_INDEX={env['SHOOTOUT_SHARD_INDEX']} is set but not the shard count",
                            "set SHOOTOUT_SHARD_COUNT, or pass --shard-count N")
    where = f"SHOOTOUT_SHARD_INDEX={index0}, count {count}"
    return (*_check(index0, count, where), "SHOOTOUT_SHARD_INDEX")


def _from_slurm(env: Mapping[str, str], count_opt: int | None) -> tuple[int, int, str]:
    task = _int("SLURM_ARRAY_TASK_ID", env["SLURM_ARRAY_TASK_ID"])
    if "SLURM_ARRAY_TASK_MIN" not in env:
        raise ShootoutError(f"SLURM_ARRAY_TASK_ID={task} is set but not SLURM_ARRAY_TASK_MIN",
                            "run under `sbatch --array=...`, which sets both, or set SHOOTOUT_SHARD_INDEX and "
                            "SHOOTOUT_SHARD_COUNT instead")
    low = _int("SLURM_ARRAY_TASK_MIN", env["SLURM_ARRAY_TASK_MIN"])
    step = _int("SLURM_ARRAY_TASK_STEP", env["SLURM_ARRAY_TASK_STEP"]) if "SLURM_ARRAY_TASK_STEP" in env else 1
    high = _int("SLURM_ARRAY_TASK_MAX", env["SLURM_ARRAY_TASK_MAX"]) if "SLURM_ARRAY_TASK_MAX" in env else None
    where = f"SLURM array ({_found({k: env[k] for k in SLURM_VARS if k in env})})"
    if step < 1:
        raise ShootoutError(f"{where}: the array's step is {step}", "use --array=MIN-MAX or MIN-MAX:STEP")
    span = None if high is None else (high - low) // step + 1
    if "SLURM_ARRAY_TASK_COUNT" in env:
        count = _int("SLURM_ARRAY_TASK_COUNT", env["SLURM_ARRAY_TASK_COUNT"])
        if span is not None and count >= 1 and span != count:  # a list (--array=1,3,7): no shard index per task
            raise ShootoutError(f"{where}: the array is not a range ({count} tasks between {low} and {high})",
                                "give the array as a range, --array=0-7 or --array=1-16:3 (a list of indexes has "
                                "no shard number per task)")
    elif span is not None:
        count = span
    elif count_opt is not None:
        count = count_opt
    else:
        raise ShootoutError(f"{where}: neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is set",
                            "pass --shard-count N (the array's size)")
    if count_opt is not None and count_opt != count:
        raise ShootoutError(f"--shard-count {count_opt} differs from the SLURM array's {count} tasks",
                            "leave out --shard-count under SLURM, or make the two agree")
    if (task - low) % step:
        raise ShootoutError(f"{where}: task {task} is not on the array's step {step} from {low}",
                            "give the array as a range, --array=0-7 or --array=1-16:3")
    return (*_check((task - low) // step, count, where), "SLURM_ARRAY_TASK_ID")


def _from_kubernetes(env: Mapping[str, str], count_opt: int | None) -> tuple[int, int, str]:
    index0 = _int("JOB_COMPLETION_INDEX", env["JOB_COMPLETION_INDEX"])
    if count_opt is None:
        raise ShootoutError(f"JOB_COMPLETION_INDEX={index0} (a Kubernetes Indexed Job) gives the index but not the "
                            "count", "pass --shard-count N, the Job's spec.completions")
    return (*_check(index0, count_opt, f"JOB_COMPLETION_INDEX={index0}, --shard-count {count_opt}"),
            "JOB_COMPLETION_INDEX")


def from_environment(env: Mapping[str, str] | None = None, count: int | None = None) -> tuple[int, int, str]:
    """(index from 1, count, the variable it came from) for ``--shard auto``."""
    env = os.environ if env is None else env
    if count is not None and count < 1:
        raise ShootoutError(f"--shard-count {count}", "the count of shards must be at least 1")
    if "SHOOTOUT_SHARD_INDEX" in env or "SHOOTOUT_SHARD_COUNT" in env:
        return _from_shootout(env, count)
    if "SLURM_ARRAY_TASK_ID" in env:
        return _from_slurm(env, count)
    if "JOB_COMPLETION_INDEX" in env:
        return _from_kubernetes(env, count)
    raise ShootoutError(f"--shard auto found no shard in the environment: looked for {', '.join(LOOKED_FOR)}; "
                        f"{_found(env)}",
                        "run it as a SLURM array task (sbatch --array=0-7) or a Kubernetes Indexed Job (with "
                        "--shard-count N), set SHOOTOUT_SHARD_INDEX (from 0) and SHOOTOUT_SHARD_COUNT, or pass "
                        "--shard i/n")


def resolve_shard(text: str | None, by: str = "model", count: int | None = None,
                  env: Mapping[str, str] | None = None) -> Shard | None:
    """``--shard`` as given: None (no shard), ``i/n`` (from 1), or ``auto`` (from the environment,
    with ``--shard-count`` where the scheduler gives no count)."""
    if text is None:
        if count is not None:
            raise ShootoutError("--shard-count is given without --shard", "add --shard auto, or leave it out")
        return None
    if by not in BY:
        raise ShootoutError(f"--shard-by '{by}'", "use model or item")
    if text.strip().lower() == "auto":
        i, n, source = from_environment(env, count)
        return Shard(i, n, by, source)
    try:
        i, n = (int(x) for x in text.split("/"))
        assert 1 <= i <= n
    except (ValueError, AssertionError):
        raise ShootoutError(f"--shard '{text}' is not i/n or auto",
                            "e.g. --shard 1/2 on one box and --shard 2/2 on the other (i from 1), or --shard auto "
                            "under a SLURM array or a Kubernetes Indexed Job") from None
    if count is not None and count != n:
        raise ShootoutError(f"--shard {text} and --shard-count {count} disagree", "--shard-count is for --shard auto")
    return Shard(i, n, by, "--shard")


def shard_database(database: str | Path, index: int, count: int) -> Path:
    """The results file of shard ``index`` of ``count``, beside ``database``:
    ``results.sqlite`` -> ``results.shard-03-of-08.sqlite`` (two digits at least, as wide as the count)."""
    database = Path(database)
    width = max(2, len(str(count)))
    return database.with_name(f"{database.stem}.shard-{index:0{width}d}-of-{count:0{width}d}{database.suffix}")


def database_for(cfg, shard: Shard | None) -> Path:
    """The results file a run writes: ``run.database``, or its shard's file beside it."""
    database = cfg.resolve(cfg.run.database)
    return shard_database(database, shard.index, shard.count) if shard else database


def shard_of_file(path: str | Path) -> tuple[int, int] | None:
    """(index, count) of a file named by :func:`shard_database`, else None."""
    m = SHARD_FILE.search(Path(path).stem)
    return (int(m.group(1)), int(m.group(2))) if m else None
