"""Start or resume the run of a config, and check a config as a run would.

- ``run_config``: the run named by ``run_id`` (resumed when it is stored), else with ``resume`` the
  latest unfinished run of the same config text, else a new run; a disk that fills up says how to
  resume, and a second Ctrl-C (the call in flight abandoned) ends in ``Stopped``.
- ``check_config``: the config loaded, and for a classification task its data read and split, so
  that `validate` refuses what `run` would refuse.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import DiskFull, ShootoutError


class Stopped(ShootoutError):
    """The run stopped before its end (Ctrl-C); what was stored is kept. The message starts with "stopped"
    and says how to resume; the command line prints it as a notice and exits with 130."""

    exit_code = 130


class ShardsFailed(ShootoutError):
    """Some shards of an executor's run did not finish (a node or its worker died): the others are
    stored, the executor said which failed and why; exit code 1, resumable."""

    exit_code = 1


def resume_hint(cfg, run_id: str) -> str:
    return f"shootout run --config {cfg.source} --run-id {run_id}"


def resumable_run(store, config_text: str, retry_failed: bool = False) -> str | None:
    """The latest unfinished run started from exactly this config text, if any; ``retry_failed``:
    also a finished one that holds calls stored as failed."""
    for rid in reversed(store.run_ids()):
        row = store.run(rid)
        if row["config_text"] == config_text and (row["finished_at"] is None or
                                                  (retry_failed and store.failed_calls(rid))):
            return rid
    return None


def run_config(cfg, *, run_id: str | None = None, resume: bool = False, models: list[str] | None = None,
               shard=None, progress: bool = True, console=None, retry_failed: bool = False):
    """Run (or resume) the grid of ``cfg`` into its results database (a shard, ``benchmark.run.shards.Shard``,
    into its own file beside it); returns the runner's ``RunResult`` (``stopped`` set when a first Ctrl-C
    stopped it after the call in flight). ``retry_failed``: the calls stored as failed are asked again."""
    from benchmark.run.runner import Runner
    from benchmark.run.shards import database_for
    from benchmark.store import Store

    db = database_for(cfg, shard)
    with Store(db, lock_wait_s=cfg.run.lock_wait_s) as store:
        if run_id is None and resume:
            run_id = resumable_run(store, cfg.text, retry_failed)
        runner = Runner(cfg, store, run_id=run_id, console=console, progress=progress, models=models,
                        shard=shard.spec() if shard else None, retry_failed=retry_failed)
        try:
            return runner.run()
        except KeyboardInterrupt:  # a second Ctrl-C: the call in flight is abandoned, nothing half-stored
            raise Stopped(f"stopped at once: the call in flight was not stored. Resume with "
                          f"`{resume_hint(cfg, runner.run_id)}`") from None
        except DiskFull as exc:
            again = f"resume with `{resume_hint(cfg, runner.run_id)}`" if runner.run_id else "run the command again"
            raise DiskFull(exc.path, exc.message, f"free some space on the disk holding {db}, then {again}") from None


def check_config(path: Path):
    """(the loaded config, the items per split of a classification task's data or None): every problem
    `run` would refuse at the start, found now."""
    from benchmark import data
    from benchmark.config import load_config
    from benchmark.tasks import task_for

    cfg = load_config(path)
    from benchmark.store import Store

    Store.preflight(cfg.resolve(cfg.run.database), lock_wait_s=cfg.run.lock_wait_s)
    for key in ("reports_dir", "heatmaps_dir"):
        out = cfg.resolve(getattr(cfg.output, key))
        if out.exists() and not out.is_dir():
            raise ShootoutError(f"output.{key}: {out} is a file, not a folder",
                                f"point output.{key} at a folder (it is made when missing)")
    if isinstance(cfg.task, str):
        return cfg, None, []
    items = task_for(cfg).all_items()  # a classification task: its data must read too
    return cfg, {split: c["items"] for split, c in data.summarize(items)["splits"].items()}, data_warnings(cfg, items)


def data_warnings(cfg, items) -> list[str]:
    """What a run would not refuse but a reader should know of its data: the same text more than once
    (with different labels: contradictory gold; in two splits: an evaluated item seen elsewhere), and
    texts too long for the context (about 4 characters a token: a rough estimate)."""
    out = []
    seen: dict[str, list] = {}
    for it in items:
        seen.setdefault(" ".join(it.text.split()).casefold(), []).append(it)
    twice = [group for group in seen.values() if len(group) > 1]
    if twice:
        labels = sum(len({it.label for it in g}) > 1 for g in twice)
        splits = sum(len({it.split for it in g}) > 1 for g in twice)
        out.append(f"{len(twice)} text(s) occur more than once in the data ({labels} with different labels, {splits} "
                   f"in more than one split); e.g. '{twice[0][0].text[:60]}'. Remove the copies: contradictory gold "
                   "labels, or an evaluated item also seen in another split, blur what the run measures")
    longest = max(items, key=lambda it: len(it.text), default=None)
    if longest is not None and len(longest.text) / 4 > cfg.run.num_ctx:
        out.append(f"the longest text ({len(longest.text):,} characters, item {longest.id}) is about "
                   f"{len(longest.text) // 4:,} tokens, over run.num_ctx ({cfg.run.num_ctx:,}): its calls would fail; "
                   "raise num_ctx or shorten the text")
    return out
