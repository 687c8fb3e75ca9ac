"""The llama-bench-comparable block of an in-process model (``engine.speed``), measured once per model
in a run, at its first load (before the warm-up call, which then fills the prompt cache): pp512,
tg128 and tg128 at the task's prompt depth (the mean prompt tokens of the run's prompts for that
model: few-shot turns, system prompt and item, as its chat template renders them; over at most
``DEPTH_ITEMS`` items), 5 repetitions each (``run.speed_bench`` may ask for another number).
The memory copy test (``core.bandwidth``) runs once per run, before the first of these."""

from __future__ import annotations

import json

from benchmark.store.rows import BenchRow

DEPTH_ITEMS = 64   # the prompts whose mean length is the depth (the run's first items)
REPS = 5           # llama-bench's default repetitions
N_PROMPT, N_GEN = 512, 128   # pp512, tg128


def prompt_depth(backend, task, arm, items) -> int | None:
    """The mean prompt tokens of the arm's prompts over the run's first ``DEPTH_ITEMS`` items."""
    lengths = [len(backend.prompt_tokens(task.messages(item, arm.entry.prompt_style, arm.variant,
                                                       arm.entry.system_prompt)))
               for item in items[:DEPTH_ITEMS]]
    return round(sum(lengths) / len(lengths)) if lengths else None


def measure(backend, task, arm, items, run_id: str, block: int | None, reps: int | None = None) -> list[BenchRow]:
    """The block's rows for one model entry (``BenchRow``), one per test."""
    reps = reps or REPS
    depth = prompt_depth(backend, task, arm, items)
    got = backend.speed_bench(depth=depth, n_prompt=N_PROMPT, n_gen=N_GEN, reps=reps)
    engine = {k: got.get(k) for k in ("n_ctx", "n_batch", "n_ubatch", "n_threads", "n_gpu_layers",
                                      "layers_offloaded", "model_bytes", "n_params", "tensor_bytes", "seconds",
                                      "depth")}
    out = []
    for t in got["tests"]:
        kv = got.get("kv_bytes_per_token_at_depth") if t["n_depth"] else 0
        out.append(BenchRow(run_id=run_id, model=arm.entry.name, test=t["test"], n_prompt=t["n_prompt"],
                            n_gen=t["n_gen"], n_depth=t["n_depth"], reps=got["reps"], avg_ts=t["avg_ts"],
                            stddev_ts=t["stddev_ts"], samples_json=json.dumps(t["samples_ts"]),
                            weights_bytes_per_token=got.get("weights_bytes_per_token"), kv_bytes_per_token=kv,
                            depth_requested=depth, engine_json=json.dumps(engine), block=block))
    return out
