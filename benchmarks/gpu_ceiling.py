"""This engine's decoding speed against llama.cpp's own ceiling, on one GGUF and one GPU (or the CPU),
with every figure of issue 27's part 5 (and part 3's in-process block) in one command:

    python benchmarks/gpu_ceiling.py [--model GGUF] [--llama-bench PATH] [--runs 3] [--n 12] [--json OUT]

Side by side in one run:
- llama-bench (built from the same llama.cpp as the engine): pp512 and tg128, and tg128 at the
  depth of this task's prompts (``-d``), 5 repetitions each: median and range of the repetitions;
- the engine's own in-process figures for the same tests (``speed_bench``: mean +- sd of 5
  repetitions, as llama-bench defines them) and their ratio to llama-bench's;
- this engine's generation tokens/s on the sentiment few-shot prompts, unconstrained and
  schema-constrained, at each temperature, per sampling mode (``fast``: numpy over the logits;
  ``device``: llama.cpp's top-k on the GPU, the chain over its candidates on the host; ``auto``, the
  default: ``device`` for unconstrained calls on a GPU, ``fast`` otherwise; ``auto:device``: the
  same with constrained calls on the device too, a candidate default; ``device:K``: K candidates)
  and the earlier one (``reference``: llama.cpp's sampler over the whole vocabulary): median and
  range over ``--runs`` rounds, each the tokens over the seconds of ``--n`` replies; valid replies counted. Each
  round runs every configuration once, and llama-bench's tg128 at depth once, in an order reversed
  every other round (ABBA), so that part 5's ratios are paired per round (neighbours in time): the
  geometric mean of the rounds' ratios with a 95% t interval on the log scale, rounds the units;
- the decode loop alone (llama_decode + llama_synchronize, no logits read, no sampling) after the
  same prompt: what Python and the engine's loop cost before any sampling;
- label scoring against label generation, seconds per call item by item, on classification
  examples (benchmarks/logprob_vs_generate.py, each example in a process of its own; on the
  embedded model, the one the examples name);
- the bandwidth bound: the bytes a token must read (every weight once; only one row of an
  embedding table that is not also the output layer) against the GPU's memory bandwidth, measured
  by a device-to-device copy through PyTorch when it is there, and the datasheet figure.
Ratios: engine / llama-bench tg128, constrained / unconstrained, and each against the bound; then
part 5's three, each with its target: free decoding at T=0.7 / llama-bench tg128 at depth (>= 0.95),
constrained / free at T=0.7 (>= 0.9), label scoring / label generation per call (<= 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from _common import embedded_model, machine, table

from engine.device_sampling import DEVICE_TOP_K
from engine.llamacpp import LlamaCppBackend
from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot


def bytes_per_token(path: Path) -> tuple[int, int]:
    """(bytes of weights read per generated token, bytes of all tensors) from the GGUF's tensor table."""
    from engine.speed import weights_read_per_token

    got = weights_read_per_token(path)
    return got["weights_bytes_per_token"], got["tensor_bytes"]


def label_scoring(examples: list[str], items: int, threads: int | None) -> dict:
    """Label scoring against label generation per example, each in a child process
    (benchmarks/logprob_vs_generate.py; a CUDA build loaded beside pandas can crash a load)."""
    import sys
    import tempfile

    out = {}
    for name in examples:
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "lp.json"
            cmd = [sys.executable, str(Path(__file__).with_name("logprob_vs_generate.py")), "--examples", name,
                   "--n", str(items), "--json", str(dest)] + (["--threads", str(threads)] if threads else [])
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0 or not dest.is_file():
                out[name] = {"error": run.stderr[-1500:]}
                continue
            got = json.loads(dest.read_text())
        rows = got["rows"]
        ratios = [r["logprob_s"] / r["generate_s"] for r in rows]
        out[name] = {"items": len(rows), "x_generate_median": statistics.median(ratios),
                     "x_generate_q25_q75": [float(x) for x in statistics.quantiles(ratios, n=4)[::2]],
                     "x_generate_total": sum(r["logprob_s"] for r in rows) / sum(r["generate_s"] for r in rows),
                     "agreement": sum(r["logprob_label"] == r["gen_label"] for r in rows) / len(rows),
                     "summary": got["summary"]}
    return out


def measured_bandwidth() -> float | None:
    """Device-to-device copy bandwidth in bytes/s (bytes read + written), median of 20 copies of 4 GiB,
    measured by PyTorch in a child process (torch's CUDA libraries loaded beside llama.cpp's abort)."""
    import os
    import sys

    if os.environ.get("GPU_CEILING_BW"):
        return float(os.environ["GPU_CEILING_BW"])
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import gpu_ceiling as g; print(g._copy_bandwidth())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _copy_bandwidth() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    n = 4 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    times = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1000)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n / statistics.median(times)


def gpu_name() -> str:
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()
        if out:
            return out.splitlines()[0]
    return "no GPU"


def llama_bench(binary: str, model: str, ngl: int, depth: int, reps: int, threads: int | None) -> list[dict]:
    """llama-bench's JSON rows: pp512, tg128, and tg128 at ``depth`` when this build knows -d."""
    runs = [["-p", "512", "-n", "128"]]
    helptext = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    if "n-depth" in helptext and depth > 0:
        runs.append(["-p", "0", "-n", "128", "-d", str(depth)])
    rows = []
    for extra in runs:
        rows += llama_bench_rows(binary, model, ngl, threads, ["-r", str(reps), *extra])
    return rows


def llama_bench_tg_depth(binary: str, model: str, ngl: int, depth: int, threads: int | None) -> float:
    """llama-bench's tg128 at ``depth`` once (one repetition after its warm-up), tokens/s: the
    figure a round of the engine's runs is paired with."""
    rows = llama_bench_rows(binary, model, ngl, threads, ["-r", "1", "-p", "0", "-n", "128", "-d", str(depth)])
    return float(rows[0]["avg_ts"])


def llama_bench_rows(binary: str, model: str, ngl: int, threads: int | None, extra: list[str]) -> list[dict]:
    cmd = [binary, "-m", model, "-ngl", str(ngl), "-o", "json", *extra] + (["-t", str(threads)] if threads else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"llama-bench failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def paired(num: list[float], den: list[float]) -> dict:
    """Per-round ratios num/den (the two measured in the same round, next to each other in time):
    their geometric mean with a 95% t interval on the log scale (rounds as the independent units),
    and their range."""
    import math

    from scipy import stats

    logs = [math.log(x / y) for x, y in zip(num, den)]
    n = len(logs)
    mean = statistics.fmean(logs)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(logs) / math.sqrt(n) if n > 1 else float("nan")
    return {"ratio": math.exp(mean), "ci95": [math.exp(mean - half), math.exp(mean + half)],
            "per_round": [math.exp(x) for x in logs], "rounds": n}


def bench_label(row: dict) -> str:
    if row.get("n_prompt") and not row.get("n_gen"):
        label = f"pp{row['n_prompt']}"
    else:
        label = f"tg{row['n_gen']}"
    return label + (f" @ d{row['n_depth']}" if row.get("n_depth") else "")


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": values}


def fmt(s: dict) -> str:
    return f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f}, n={s['n']})"


def use_mode(eng: LlamaCppBackend, spec: str) -> None:
    """A sampling mode, ``device:K`` naming the device's candidate count; ``auto:device`` is ``auto``
    with constrained calls sampled on the device as well (the default keeps them on the host)."""
    mode, _, k = spec.partition(":")
    if mode == "device":
        eng.device_top_k = int(k) if k else DEVICE_TOP_K
    eng.auto_constrained = mode == "auto" and k == "device"
    eng.set_sampling(mode)


def engine_run(eng: LlamaCppBackend, prompts, schema, temperature: float, max_tokens: int, seed0: int) -> dict:
    toks = secs = valid = 0
    before = dict(eng.stats)
    for i, m in enumerate(prompts):
        r = eng.chat(m, schema=schema, temperature=temperature, seed=seed0 + i, max_tokens=max_tokens)
        toks += r.completion_tokens
        secs += r.gen_seconds
        valid += SENTIMENT.parse(r.text).valid
    passes = {k: eng.stats[k] - before[k] for k in eng.stats}
    return {"tok_s": toks / secs, "tokens": toks, "valid": valid, "replies": len(prompts), **passes}


def per_token_us(eng: LlamaCppBackend, prompt: list[int], feed: list[int], step) -> float:
    """Microseconds per ``step(token)`` over the tokens of ``feed``, after ``prompt`` was evaluated
    from an empty cache and the device synchronized."""
    eng.clear_cache()
    eng._decode(prompt)
    eng.L.llama_synchronize(eng.ctx)
    t0 = time.perf_counter()
    for t in feed:
        step(t)
    return (time.perf_counter() - t0) / len(feed) * 1e6


def decode_step(eng: LlamaCppBackend):
    """One token decoded and synchronized: llama-bench's tg step, nothing sampled."""
    L = eng.L

    def step(token: int) -> None:
        eng._decode_one(token)
        L.llama_synchronize(eng.ctx)

    return step


def decode_only(eng: LlamaCppBackend, prompt_tokens: list[int], n: int = 128) -> float:
    """Tokens/s of llama_decode + llama_synchronize alone, one token at a time after the prompt."""
    us = per_token_us(eng, prompt_tokens, [prompt_tokens[-1]] * n, decode_step(eng))
    eng.clear_cache()
    return 1e6 / us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="a GGUF (default: the embedded Gemma 3 270M Q4_K_M)")
    ap.add_argument("--chat-template", default=None, help="default: gemma for the embedded model, else the GGUF's")
    ap.add_argument("--llama-bench", default=None, help="llama-bench from the same llama.cpp build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=12, help="replies per run")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperatures", default="0,0.7")
    ap.add_argument("--sampling", default="auto,fast,device,reference")
    ap.add_argument("--gpu-layers", type=int, default=None, help="default: all when the build can offload")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--bench-reps", type=int, default=5)
    ap.add_argument("--spec-bandwidth", type=float, default=4.8e12, help="datasheet bytes/s (H200: 4.8 TB/s)")
    ap.add_argument("--label-examples", default=None,
                    help="classification examples for label scoring vs generation (default: sst2,spam on the "
                         "embedded model; none with --model)")
    ap.add_argument("--label-items", type=int, default=40)
    ap.add_argument("--json", default=None, help="write every figure here")
    a = ap.parse_args()
    import llama_cpp

    path = Path(a.model) if a.model else embedded_model()
    template = a.chat_template or ("gemma" if a.model is None else None)
    ngl = a.gpu_layers if a.gpu_layers is not None else (999 if llama_cpp.llama_supports_gpu_offload() else 0)
    temps = [float(t) for t in a.temperatures.split(",")]
    modes = [m for m in a.sampling.split(",") if m]
    arts = load_snapshot()
    prompts = [SENTIMENT.messages(x.to_item(), "few_shot") for x in (arts * 4)[: a.n]]
    schema = SENTIMENT.constraint().schema
    started = dt.datetime.now(dt.timezone.utc)

    eng = LlamaCppBackend(path, n_ctx=a.n_ctx, n_gpu_layers=ngl, chat_template=template, n_threads=a.threads)
    load_s = eng.load()
    info = eng.engine_info()
    plen = [len(eng.prompt_tokens(m)) for m in prompts]
    depth = int(statistics.median(plen))
    res: dict = {"model": str(path), "machine": machine(), "gpu": gpu_name(), "date": started.date().isoformat(),
                 "llama_cpp_python": llama_cpp.__version__, "engine": {k: v for k, v in info.items()},
                 "load_seconds": load_s, "prompt_tokens_median": depth, "replies_per_run": a.n, "runs": a.runs,
                 "max_tokens": a.max_tokens}

    # warm-up, not timed: the first calls set up the device's graphs and the grammar's tables
    bench_rows = []
    if a.llama_bench:  # before the engine, and again after it: a drift of the device hits both sides
        bench_rows = llama_bench(a.llama_bench, str(path), ngl, depth, a.bench_reps, a.threads)
    for sampling in modes:
        use_mode(eng, sampling)
        for c in (None, schema):
            eng.chat(prompts[-1], schema=c, temperature=temps[-1], seed=1, max_tokens=16)

    # the decode loop alone, three times
    res["decode_only"] = summary([decode_only(eng, eng.prompt_tokens(prompts[0])) for _ in range(a.runs)])

    # the engine: every configuration once per round, and llama-bench's tg128 at depth once per round
    # when it is there; the order reversed every other round (ABBA), so that a drift of the machine
    # falls on every configuration alike and each round's ratios compare neighbours in time
    configs = [(m, t, c) for m in modes for t in temps for c in (False, True)]
    raw: dict = {f"{m} T={t} {'constrained' if c else 'free'}": [] for m, t, c in configs}
    per_round_bench: list[float] = []
    steps = configs + ([None] if a.llama_bench else [])
    for r in range(a.runs):
        for step in (steps if r % 2 == 0 else steps[::-1]):
            if step is None:
                per_round_bench.append(llama_bench_tg_depth(a.llama_bench, str(path), ngl, depth, a.threads))
                continue
            m, t, c = step
            use_mode(eng, m)
            raw[f"{m} T={t} {'constrained' if c else 'free'}"].append(
                engine_run(eng, prompts, schema if c else None, t, a.max_tokens, seed0=1000))
    res["llama_bench_tg_depth_per_round"] = per_round_bench
    # llama-bench's tests in process, on this engine's context (part 3's block)
    res["speed_bench"] = eng.speed_bench(depth=depth, reps=a.bench_reps)
    eng.close()
    res["engine_runs"] = raw

    if a.llama_bench:
        bench_rows += llama_bench(a.llama_bench, str(path), ngl, depth, a.bench_reps, a.threads)
    res["llama_bench"] = bench_rows
    pooled: dict = {}  # both llama-bench runs' repetitions, per test
    for r in bench_rows:
        pooled.setdefault(bench_label(r), []).extend(float(x) for x in r.get("samples_ts") or [r["avg_ts"]])
    bench = {k: summary(v) for k, v in pooled.items()}
    if bench_rows:
        b0 = bench_rows[0]
        res["llama_cpp_build"] = f"{b0.get('build_commit', '?')} (build {b0.get('build_number', '?')})"

    per_tok, total = bytes_per_token(path)
    bw = measured_bandwidth()  # in a subprocess: torch's CUDA libraries beside llama.cpp's abort the process
    res["bytes_per_token"], res["tensor_bytes"] = per_tok, total
    res["bandwidth_measured"] = bw
    res["bandwidth_spec"] = a.spec_bandwidth
    bound_spec = a.spec_bandwidth / per_tok
    bound_meas = bw / per_tok if bw else None
    res["bound_tok_s"] = {"spec": bound_spec, "measured": bound_meas}
    bound = bound_meas or bound_spec

    # ---- the table
    tg = bench.get("tg128", {}).get("median")
    tgd = next((v["median"] for k, v in bench.items() if k.startswith("tg128 @")), None)
    rows = []
    for k, v in bench.items():
        rows.append([f"llama-bench {k}", fmt(v), "", f"{v['median'] / tg:.3f}" if tg and k.startswith("tg") else "",
                     "", f"{v['median'] / bound:.2f}" if k.startswith("tg") else ""])
    dec = res["decode_only"]["median"]
    rows.append(["decode + sync alone (Python loop)", fmt(res["decode_only"]), "", f"{dec / tg:.3f}" if tg else "", "",
                 f"{dec / bound:.2f}"])
    res["summary"] = {}
    for m, t, c in configs:
        key = f"{m} T={t} {'constrained' if c else 'free'}"
        s = summary([r["tok_s"] for r in raw[key]])
        free = statistics.median(r["tok_s"] for r in raw[f"{m} T={t} free"])
        valid = sum(r["valid"] for r in raw[key])
        n = sum(r["replies"] for r in raw[key])
        toks = sum(r["tokens"] for r in raw[key])
        full = sum(r["grammar_full_passes"] for r in raw[key])
        part = sum(r["grammar_partial_passes"] for r in raw[key])
        res["summary"][key] = {**{k2: v2 for k2, v2 in s.items() if k2 != "values"}, "valid": valid, "replies": n,
                               "x_tg128": s["median"] / tg if tg else None,
                               "x_tg128_depth": s["median"] / tgd if tgd else None,
                               "x_free": s["median"] / free, "x_bound": s["median"] / bound,
                               "partial_passes_per_100_tokens": 100 * part / max(1, toks),
                               "full_passes_per_100_tokens": 100 * full / max(1, toks)}
        rows.append([f"engine {key}", fmt(s), f"{valid}/{n}", f"{s['median'] / tg:.3f}" if tg else "",
                     f"{s['median'] / free:.3f}", f"{s['median'] / bound:.2f}"])
    print(f"model: {path} ({info['model_desc']}, {per_tok / 2**20:.0f} MiB read per token)")
    print(f"machine: {res['machine']}\nGPU: {res['gpu']}; layers offloaded: {info.get('layers_offloaded')}/"
          f"{info.get('layers_offloadable')}; llama-cpp-python {llama_cpp.__version__}"
          + (f"; llama.cpp {res['llama_cpp_build']}" if bench_rows else "") + f"; {res['date']}")
    print(f"prompts: {a.n} few-shot sentiment prompts per run (median {depth} tokens), at most {a.max_tokens} "
          f"tokens, {a.runs} runs; tokens/s as median (range, runs)")
    print(f"bandwidth bound: {bound_spec:.0f} tok/s at {a.spec_bandwidth / 1e12:.2f} TB/s (datasheet)"
          + (f", {bound_meas:.0f} tok/s at {bw / 1e12:.2f} TB/s (measured copy)" if bw else "") + "\n")
    print(table(["what", "tokens/s", "valid", "x llama-bench tg128", "x unconstrained", "x bound"], rows))
    if tgd:
        print(f"\n(tg128 at depth {depth}, the prompts' length: {tgd:.1f} tok/s; engine free / that: "
              + ", ".join(f"{k}: {v['x_tg128_depth']:.3f}" for k, v in res["summary"].items() if "free" in k) + ")")
    # ---- the engine's in-process llama-bench figures beside llama-bench's
    rows = []
    for t in res["speed_bench"]["tests"]:
        b = bench.get(t["test"])
        rows.append([t["test"], f"{t['avg_ts']:.1f} +- {t['stddev_ts']:.1f}",
                     fmt(b) if b else "-", f"{t['avg_ts'] / b['median']:.3f}" if b else "-"])
    print("\nin process (speed_bench, mean +- sd) against llama-bench (median (range)):")
    print(table(["test", "engine", "llama-bench", "engine / llama-bench"], rows))

    # ---- label scoring against label generation
    examples = ([x for x in a.label_examples.split(",") if x] if a.label_examples is not None
                else ([] if a.model else ["sst2", "spam"]))
    res["label_scoring"] = label_scoring(examples, a.label_items, a.threads) if examples else {}
    for name, got in res["label_scoring"].items():
        if "error" in got:
            print(f"\nlabel scoring on {name} failed: {got['error']}")
        else:
            print(f"\nlabel scoring / label generation on {name} ({got['items']} items): per call median "
                  f"{got['x_generate_median']:.2f} (IQR {got['x_generate_q25_q75'][0]:.2f}-"
                  f"{got['x_generate_q25_q75'][1]:.2f}), of the totals {got['x_generate_total']:.2f}; "
                  f"the same label {got['agreement']:.1%}")

    # ---- issue 27, part 5
    hot = max(temps)
    mode = "auto" if "auto" in modes else modes[0]  # the engine's default
    res["default_sampling"] = mode
    free_key, con_key = f"{mode} T={hot} free", f"{mode} T={hot} constrained"
    free_rounds = [r["tok_s"] for r in raw.get(free_key, [])]
    con_rounds = [r["tok_s"] for r in raw.get(con_key, [])]
    vs_bench = paired(free_rounds, per_round_bench) if per_round_bench and free_rounds else None
    vs_free = paired(con_rounds, free_rounds) if con_rounds else None
    part5 = {
        "free_T_x_tg128_depth": {"value": vs_bench["ratio"] if vs_bench else res["summary"].get(free_key, {}).get(
                                     "x_tg128_depth"), "paired": vs_bench, "target": ">= 0.95",
                                 "what": f"free decoding at T={hot} / llama-bench tg128 at depth {depth}"
                                         + (" (per round, paired)" if vs_bench else " (medians)")},
        "constrained_x_free_T": {"value": vs_free["ratio"] if vs_free else None, "paired": vs_free,
                                 "target": ">= 0.90",
                                 "what": f"schema-constrained / free decoding at T={hot} (per round, paired)"},
        "label_scoring_x_generation": {
            "value": max((g["x_generate_median"] for g in res["label_scoring"].values() if "error" not in g),
                         default=None), "target": "<= 1.0",
            "what": "label scoring / label generation seconds per call (median over items; the worst example)"},
    }
    res["part5"] = part5
    print(f"\nissue 27, part 5 (sampling {mode}, the engine's default here):")
    for k, v in part5.items():
        val = v["value"]
        ok = None if val is None else (val <= 1.0 if k.startswith("label") else
                                       val >= (0.95 if k.startswith("free") else 0.90))
        pr = v.get("paired")
        print(f"  {v['what']}: " + ("-" if val is None else f"{val:.3f}")
              + (f" [95% CI {pr['ci95'][0]:.3f}-{pr['ci95'][1]:.3f}; rounds "
                 + ", ".join(f"{x:.3f}" for x in pr["per_round"]) + "]" if pr else "")
              + f" (target {v['target']}" + ("" if ok is None else (", met" if ok else ", NOT met")) + ")")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
