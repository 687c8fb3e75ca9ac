"""Shards from the scheduler people already run: `--shard auto` under each environment a scheduler
sets (SLURM arrays, Kubernetes Indexed Jobs, SHOOTOUT_SHARD_*), with one clear error otherwise; a
results file per shard; `shootout merge` over a folder or a glob of those files; the config's
per-model resources. No Ray here (tests/test_ray.py)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from benchmark.run.shards import LOOKED_FOR, Shard, resolve_shard, shard_database, shard_of_file
from core.errors import ConfigError, ShootoutError
from tests.conftest import ROOT, shootout

SST2 = ROOT / "examples" / "sst2"


def two_model_config(folder: Path, *, items: int = 3, iterations: int = 1, models=("a", "b"), extra: str = "") -> Path:
    """The SST-2 example over ``items`` dev sentences, temperature 0, with models on the embedded
    Gemma 3 270M (one thread each)."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for f in ("train.tsv", "dev.tsv"):
        shutil.copy(SST2 / "data" / f, folder / "data" / f)
    text = (SST2 / "config.yaml").read_text()
    text = text.replace("    evaluate: validation", f"    evaluate: validation\n    max_items: {items}")
    text = text.replace("  iterations: 3\n  temperature: 0.7", f"  iterations: {iterations}\n  temperature: 0.0\n"
                        "  speed_bench: false")  # the speed block has its own tests (test_speed.py)
    entries = "".join(f"  - {{name: {n}, backend: llamacpp, path: embedded, family: gemma3-270m, quant: Q4_K_M, "
                      f"prompt_style: few_shot, options: {{n_threads: 1, chat_template: gemma}}{extra}}}\n"
                      for n in models)
    pairs = f"compare:\n  - [{models[0]}, {models[1]}]\n" if len(models) > 1 else ""
    text = text[:text.index("models:")] + "models:\n" + entries + pairs + text[text.index("output:"):]
    (folder / "config.yaml").write_text(text)
    return folder / "config.yaml"


def error(text, by="model", count=None, env=None) -> ShootoutError:
    with pytest.raises(ShootoutError) as e:
        resolve_shard(text, by, count, env=env or {})
    return e.value


# --------------------------------------------------------------------------- --shard auto


def test_shard_auto_from_each_scheduler():
    # the plain variables: the index counts from 0, the shard from 1 (as --shard i/n writes it)
    assert resolve_shard("auto", env={"SHOOTOUT_SHARD_INDEX": "0", "SHOOTOUT_SHARD_COUNT": "3"}) == \
        Shard(1, 3, "model", "SHOOTOUT_SHARD_INDEX")
    assert resolve_shard("auto", "item", env={"SHOOTOUT_SHARD_INDEX": "2", "SHOOTOUT_SHARD_COUNT": "3"}).spec() == \
        (3, 3, "item")
    assert resolve_shard("auto", count=4, env={"SHOOTOUT_SHARD_INDEX": "3"}).spec() == (4, 4, "model")
    # SLURM: --array=0-7 sets TASK_ID, MIN, MAX and COUNT
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "7",
             "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_JOB_ID": "991"}
    assert resolve_shard("auto", env=slurm) == Shard(6, 8, "model", "SLURM_ARRAY_TASK_ID")
    # --array=1-4 (from 1): task 1 is the first shard
    assert resolve_shard("auto", env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1",
                                      "SLURM_ARRAY_TASK_COUNT": "4"}).spec() == (1, 4, "model")
    # --array=1-16:5 is tasks 1, 6, 11, 16: the count from MIN, MAX and STEP when COUNT is absent
    stepped = {"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "16",
               "SLURM_ARRAY_TASK_STEP": "5"}
    assert resolve_shard("auto", env=stepped).spec() == (3, 4, "model")
    assert resolve_shard("auto", env={**stepped, "SLURM_ARRAY_TASK_COUNT": "4"}).spec() == (3, 4, "model")
    # a Kubernetes Indexed Job: the index from 0, the count from the command line
    assert resolve_shard("AUTO", "item", 5, env={"JOB_COMPLETION_INDEX": "4"}) == \
        Shard(5, 5, "item", "JOB_COMPLETION_INDEX")
    # SHOOTOUT_SHARD_* win over a scheduler's variables (a job script that sets them means them)
    assert resolve_shard("auto", env={**slurm, "SHOOTOUT_SHARD_INDEX": "0", "SHOOTOUT_SHARD_COUNT": "2"}).spec() == \
        (1, 2, "model")
    # i/n as before; no --shard, no shard
    assert resolve_shard("2/3", "item").spec() == (2, 3, "item")
    assert resolve_shard(None) is None


def test_shard_auto_errors_name_what_was_looked_for_and_found():
    nothing = error("auto", env={"HOME": "/x"})
    for var in LOOKED_FOR:
        assert var in nothing.message
    assert "none of them is set" in nothing.message and "--shard i/n" in nothing.hint
    # out of range, counted from 0
    e = error("auto", env={"SHOOTOUT_SHARD_INDEX": "3", "SHOOTOUT_SHARD_COUNT": "3"})
    assert "shard index 3 is outside 0..2" in e.message
    assert "count is 0" in error("auto", env={"SHOOTOUT_SHARD_INDEX": "0", "SHOOTOUT_SHARD_COUNT": "0"}).message
    e = error("auto", env={"SHOOTOUT_SHARD_INDEX": "one", "SHOOTOUT_SHARD_COUNT": "3"})
    assert "SHOOTOUT_SHARD_INDEX='one' is not a whole number" in e.message
    assert "SHOOTOUT_SHARD_INDEX is not" in error("auto", env={"SHOOTOUT_SHARD_COUNT": "3"}).message
    assert "not the shard count" in error("auto", env={"SHOOTOUT_SHARD_INDEX": "1"}).message
    assert "differs from SHOOTOUT_SHARD_COUNT=3" in error(
        "auto", count=4, env={"SHOOTOUT_SHARD_INDEX": "1", "SHOOTOUT_SHARD_COUNT": "3"}).message
    # SLURM: a list of indexes (--array=1,3,7) has no shard number per task
    e = error("auto", env={"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "7",
                           "SLURM_ARRAY_TASK_COUNT": "3"})
    assert "not a range" in e.message and "SLURM_ARRAY_TASK_ID=7" in e.message and "--array=0-7" in e.hint
    assert "SLURM_ARRAY_TASK_MIN" in error("auto", env={"SLURM_ARRAY_TASK_ID": "2"}).message
    assert "neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX" in error(
        "auto", env={"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0"}).message
    assert "not on the array's step 5" in error(
        "auto", env={"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "16",
                     "SLURM_ARRAY_TASK_STEP": "5"}).message
    assert "differs from the SLURM array's 8 tasks" in error(
        "auto", count=4, env={"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0",
                              "SLURM_ARRAY_TASK_COUNT": "8"}).message
    # Kubernetes gives no count: it must come from the command line
    e = error("auto", env={"JOB_COMPLETION_INDEX": "2"})
    assert "JOB_COMPLETION_INDEX=2" in e.message and "--shard-count" in e.hint
    assert "outside 0..1" in error("auto", count=2, env={"JOB_COMPLETION_INDEX": "2"}).message
    assert "at least 1" in error("auto", count=0, env={"JOB_COMPLETION_INDEX": "0"}).hint
    # the command line itself
    assert "is not i/n or auto" in error("3/2").message
    assert "use model or item" in error("auto", by="rows").hint
    with pytest.raises(ShootoutError, match="--shard-count is given without --shard"):
        resolve_shard(None, count=3)


def test_each_shard_writes_its_own_file_named_by_its_index():
    db = Path("reports") / "results.sqlite"
    names = [shard_database(db, i, 8).name for i in range(1, 9)]
    assert names[2] == "results.shard-03-of-08.sqlite" and len(set(names)) == 8
    assert shard_database(db, 3, 8).parent == db.parent  # beside run.database
    assert shard_database(db, 7, 120).name == "results.shard-007-of-120.sqlite"
    assert [shard_of_file(shard_database(db, i, 12)) for i in (1, 12)] == [(1, 12), (12, 12)]
    assert shard_of_file(db) is None


def test_config_resources_are_validated(tmp_path):
    from benchmark.config import load_config

    ok = load_config(two_model_config(tmp_path, extra=", resources: {num_gpus: 0.5, num_cpus: 2}"))
    assert ok.models[0].resources.num_gpus == 0.5 and ok.models[1].resources.num_cpus == 2
    assert load_config(two_model_config(tmp_path)).models[0].resources.num_gpus == 0  # default: no GPU, one CPU
    for bad, says in ((", resources: {num_gpus: -1}", "num_gpus"), (", resources: {num_cpus: 0}", "num_cpus"),
                      (", resources: {gpus: 1}", "unknown key 'gpus'")):
        with pytest.raises(ConfigError) as e:
            load_config(two_model_config(tmp_path, extra=bad))
        assert says in e.value.message and "models[0].resources" in e.value.message
    text = two_model_config(tmp_path).read_text().replace(
        "models:\n", "models:\n  - {name: srv, backend: ollama, tag: x, family: f, quant: q, resources: {num_gpus: 1}}\n")
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "config.yaml")
    assert "models[0]" in e.value.message and "runs on its server" in e.value.message


# --------------------------------------------------------------------------- shards run, merged


@pytest.fixture(scope="module")
def shard_files(tmp_path_factory):
    """Two shards of a two-model grid, run as `run --shard auto` runs them: each from its Kubernetes
    index, each into its own file beside run.database. Also the unsharded run, for reference."""
    from benchmark.config import load_config
    from benchmark.run.runner import Runner
    from benchmark.store import Store

    root = tmp_path_factory.mktemp("shards")
    cfg = load_config(two_model_config(root / "grid", items=2))
    db = cfg.resolve(cfg.run.database)
    files = []
    for index in ("0", "1"):
        shard = resolve_shard("auto", "model", 2, env={"JOB_COMPLETION_INDEX": index})
        path = shard_database(db, shard.index, shard.count)
        with Store(path) as store:
            Runner(cfg, store, progress=False, shard=shard.spec()).run()
        files.append(path)
    single = load_config(two_model_config(root / "single", items=2))
    with Store(single.resolve(single.run.database)) as store:
        Runner(single, store, progress=False).run()
    return root, files, single.resolve(single.run.database)


def _calls(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT model, iteration, item_id, raw_text, valid, label FROM calls "
                           "ORDER BY model, iteration, item_id").fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_merge_over_a_folder_and_a_glob(shard_files, tmp_path):
    root, files, single = shard_files
    assert [f.name for f in files] == ["results.shard-01-of-02.sqlite", "results.shard-02-of-02.sqlite"]
    assert {m for m, *_ in _calls(files[0])} == {"a"} and {m for m, *_ in _calls(files[1])} == {"b"}
    folder = root / "grid"
    shutil.copy(single, folder / "results.sqlite")  # beside them, a results file that is no shard: left out
    r = shootout("merge", str(folder), "--out", str(tmp_path / "by-folder.sqlite"))
    assert r.returncode == 0, r.stderr
    assert "4 calls from 2 files" in r.stdout and "not every call" not in r.stdout
    r = shootout("merge", str(folder / "*.shard-*.sqlite"), "--out", str(tmp_path / "by-glob.sqlite"))
    assert r.returncode == 0, r.stderr
    for out in ("by-folder.sqlite", "by-glob.sqlite"):
        assert _calls(tmp_path / out) == _calls(single)  # the unsharded run's answers, call for call
        con = sqlite3.connect(tmp_path / out)
        assert con.execute("SELECT finished_at IS NOT NULL FROM runs").fetchone() == (1,)
        con.close()
    # a folder of several grids' shards, a folder with none, a glob that matches nothing: one message each
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(files[0], mixed / files[0].name)
    shutil.copy(files[1], mixed / "results.shard-1-of-3.sqlite")
    r = shootout("merge", str(mixed), "--out", str(tmp_path / "x.sqlite"))
    assert r.returncode == 2 and "shards of 2 and 3-shard grids" in r.stderr and "Traceback" not in r.stderr
    r = shootout("merge", str(tmp_path / "mixed" / "nothing"), str(root / "grid" / "data"), "--out",
                 str(tmp_path / "y.sqlite"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = shootout("merge", str(root / "grid" / "data"), "--out", str(tmp_path / "y.sqlite"))
    assert r.returncode == 2 and "holds no results file" in r.stderr
    r = shootout("merge", str(root / "nowhere-*.sqlite"), "--out", str(tmp_path / "z.sqlite"))
    assert r.returncode == 2 and "matches no file" in r.stderr
    assert not any((tmp_path / n).exists() for n in ("x.sqlite", "y.sqlite", "z.sqlite"))


def test_the_example_job_files_give_each_task_its_own_shard():
    """examples/cluster: every task of the SLURM array and every pod of the Indexed Job runs `--shard auto`
    and gets a shard of its own, the files covering 1..n once."""
    import re
    import shlex

    from ruamel.yaml import YAML

    slurm = (ROOT / "examples" / "cluster" / "slurm-array.sh").read_text()
    low, high = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)$", slurm, re.M).groups())
    command = shlex.split(next(line for line in slurm.splitlines() if line.startswith("shootout run")))
    assert command[command.index("--shard") + 1] == "auto"
    env = {"SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high),
           "SLURM_ARRAY_TASK_COUNT": str(high - low + 1)}
    shards = [resolve_shard("auto", env={**env, "SLURM_ARRAY_TASK_ID": str(t)}) for t in range(low, high + 1)]
    assert sorted(s.index for s in shards) == list(range(1, high - low + 2))

    job = YAML(typ="safe").load((ROOT / "examples" / "cluster" / "k8s-indexed-job.yaml").read_text())
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    command = spec["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--shard") + 1] == "auto"
    count = int(command[command.index("--shard-count") + 1])
    assert count == spec["completions"]
    shards = [resolve_shard("auto", count=count, env={"JOB_COMPLETION_INDEX": str(k)}) for k in range(count)]
    assert [shard_database("results.sqlite", s.index, s.count).name for s in shards] == [
        f"results.shard-{k:02d}-of-{count:02d}.sqlite" for k in range(1, count + 1)]


def test_ray_shards_are_planned_by_model_or_item_with_the_resources_they_reserve(tmp_path):
    """The executor's plan (no Ray needed): one shard per model by default, models grouped by --shard-count,
    items split by --shard-by item; each reserves the most its models ask, and one no node holds is refused."""
    from benchmark.config import load_config
    from benchmark.run.executors import check_resources, parse_executor, plan_shards

    config = two_model_config(tmp_path, models=("a", "b", "c"))
    config.write_text(config.read_text().replace("name: b, ", "name: b, resources: {num_gpus: 1, num_cpus: 4}, "))
    cfg = load_config(config)
    plan = plan_shards(cfg, "model", None, None, nodes=1)
    assert [(j.index, j.count, j.models, j.num_gpus, j.num_cpus) for j in plan] == [
        (1, 3, ["a"], 0, 1), (2, 3, ["b"], 1, 4), (3, 3, ["c"], 0, 1)]
    assert [j.models for j in plan_shards(cfg, "model", 2, None, nodes=1)] == [["a", "c"], ["b"]]
    assert [j.models for j in plan_shards(cfg, "model", None, ["a", "c"], nodes=1)] == [["a"], ["c"]]
    items = plan_shards(cfg, "item", None, None, nodes=4)  # one shard per node
    assert [(j.label(), j.models, j.num_gpus, j.num_cpus) for j in items] == [(f"shard {k}/4", None, 1, 4)
                                                                              for k in range(1, 5)]
    check_resources(plan, [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}])
    with pytest.raises(ShootoutError) as e:
        check_resources(plan, [{"CPU": 2.0}, {"CPU": 2.0, "GPU": 2.0}])
    assert e.value.message.startswith("shard 2/3 (b) needs 1 GPU(s) and 4 CPU(s) on one node")
    assert parse_executor("ray") == parse_executor("ray:") and parse_executor("ray").address is None
    assert parse_executor("ray:ray://head:10001").address == "ray://head:10001"
    assert parse_executor(None) is None and parse_executor("local") is None
