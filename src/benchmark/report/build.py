"""Building the report of one run: read the run (its frames, stored task, settings, compare pairs and
the facts of its models), resolve the references once, hand everything to the builder of the task's
kind (``benchmark.report.kinds``), then add the sheets every report shares: Quant Quality (rows
handed in by the caller from export manifests; the report never reads export's files), Throughput
(server calls under load: ``benchmark.report.throughput``), Speed (the order, drift and llama-bench
block: ``benchmark.report.speed``) and Run Info."""

from __future__ import annotations

import json

import pandas as pd

from benchmark.report import speed, throughput
from benchmark.report.inputs import read_run
from benchmark.report.kinds import kind_of
from benchmark.report.model import Report, RunData, Sheet
from benchmark.stats import throughput as TP
from benchmark.tasks.base import TaskInfo


def _engine_facts(loads: pd.DataFrame) -> list[tuple[str, object]]:
    """Per model load, what its engine reported (llama.cpp system info, server version, digest...)."""
    out = []
    if loads is None or loads.empty or "engine_json" not in loads:
        return out
    for r in loads.drop_duplicates("model", keep="last").itertuples(index=False):
        facts = json.loads(r.engine_json or "{}")
        for k, v in facts.items():
            if v is None or v == "" or v == [] or v == {}:
                continue
            out.append((f"model {r.model}: {k}", json.dumps(v) if isinstance(v, (dict, list)) else v))
    return out


def _run_info(run, rd: RunData, loads: pd.DataFrame | None) -> pd.DataFrame:
    task, settings = rd.task, rd.settings
    versions, hardware = json.loads(run["versions_json"]), json.loads(run["hardware_json"])
    info = [("run id", rd.run_id), ("created", run["created_at"]), ("finished", run["finished_at"] or "unfinished"),
            ("task", run["task"]), ("task kind", task.kind), ("seed", run["seed"]),
            ("iterations", run["iterations"]), ("config file", run["config_path"])]
    info += task.describe()
    info += [("report: reference", settings.reference), ("report: references", rd.references.statement()),
             ("report: margins", ", ".join(f"{k} {v:g}" for k, v in (settings.margins or {}).items())),
             ("report: alpha", settings.alpha), ("report: power", settings.power)]
    if task.direction:
        info.append(("report: neutral band", settings.neutral_band))
    info += [(f"hardware: {k}", ", ".join(v) if isinstance(v, list) else v) for k, v in hardware.items()]
    info += [(f"version: {k}", v) for k, v in versions.items()]
    info += _engine_facts(loads)
    info += [("config text", run["config_text"])]
    return pd.DataFrame(info, columns=["key", "value"])


def build(store, run_id: str, pairs: list[tuple[str, str]] | None = None, *,
          quant_quality: list[dict] | pd.DataFrame | None = None, price_per_hour: float | None = None,
          settings: dict | None = None) -> Report:
    """The report of one run, from the results database alone. ``pairs`` default to the run's stored
    compare pairs, the report settings (reference, margins, neutral band, alpha, power, price) to its
    stored ``report`` block with ``settings`` / ``price_per_hour`` overriding; model sizes and
    checkpoints are the run's stored facts; ``quant_quality`` rows come from export manifests (the
    caller reads them)."""
    run, rd = read_run(store, run_id, pairs, {**(settings or {}), "price_per_hour": price_per_hour})
    every_timing = rd.calls
    rd.calls, latency_note = TP.latency_view(rd.calls, rd.settings.latency)
    kind = kind_of(rd.task)
    report = kind.build(rd)
    report.draw = lambda r, folder: [*kind.charts(r, folder), *filter(None, [throughput.chart(r, folder)])]
    known = set(rd.calls["model"])
    qq = pd.DataFrame(quant_quality if quant_quality is not None else [])
    if len(qq):
        qq = qq[qq["model"].isin(known)].reset_index(drop=True)
    if len(qq):
        report.quant_quality = qq
        report.sheets.append(Sheet(
            "Quant Quality", "quant_quality", qq, colour=True,
            note="From each model's export manifest: KL divergence of the level's next-token distribution from the "
                 "F16 GGUF's (nats, per position of the task's prompts) and the share of positions with the same top "
                 "token, as llama.cpp's perplexity tool reports them. F16 is the reference. size_mb: the GGUF file."))
    load = throughput.sheet(every_timing, latency_note)
    if load is not None:
        report.sheets.append(load)
    speed_sheet, report.speed_lines = speed.sheet(rd.calls, rd.settings, store.bench_rows(run_id),
                                                  store.order(run_id), store.bandwidth(run_id), rd.task.noun)
    report.sheets.append(speed_sheet)
    warnings = [line for line in report.speed_lines if line.startswith("DRIFT")]
    if warnings and report.sheets and report.sheets[0].title == "Decision":  # read first: said first
        report.sheets[0].lines[1:1] = warnings
    report.sheets.append(Sheet("Run Info", "run_info", _run_info(run, rd, rd.loads)))
    return report


def details(store, run_id: str) -> tuple[TaskInfo, pd.DataFrame | None]:
    """(the run's task, one row per model) without the comparisons: the end-of-run table."""
    frames = store.frames(run_id)
    run = store.run(run_id)
    task = TaskInfo.stored(json.loads(run["task_json"] or "{}") if run else {}, run["task"] if run else "task")
    if frames[0].empty:
        return task, None
    _, rd = read_run(store, run_id, frames=frames)
    return task, kind_of(task).details(rd)
