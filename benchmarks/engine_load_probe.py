"""Why a llama.cpp build crashes at model load in one process and not in another: one scenario per
fresh interpreter, with what the dynamic loader resolved.

    python benchmarks/engine_load_probe.py MODEL.gguf [SCENARIO ...] [--json OUT.json]

Each scenario runs in a new interpreter (a crash ends only that child) and reports its exit code
(-11: segmentation fault, -6: abort), the C++ runtimes mapped into the process before the load
(every libstdc++ and libgcc_s in /proc/self/maps), and which object the dynamic loader bound the
C++ stream symbols of libllama to (LD_DEBUG=bindings, filtered). Scenarios:

    fresh            load the model first thing
    pandas           import pandas, then load
    pyarrow          import pyarrow, then load
    init_pandas      llama_backend_init, import pandas, then load
    engine_first     import the project's engine (engine.llamacpp), import pandas, then load
    lib_global       load libllama with RTLD_GLOBAL before pandas (what LD_PRELOAD does), then load

The engine library is the one llama_cpp finds (its own lib/ folder, or LLAMA_CPP_LIB_PATH).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

SCENARIOS = ("fresh", "pandas", "pyarrow", "init_pandas", "engine_first", "lib_global")

CHILD = r"""
import ctypes, os, sys
scenario, model = sys.argv[1], sys.argv[2]

def runtimes():
    out = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1] if line.strip() else ""
            if "libstdc++" in p or "libgcc_s" in p or "libggml" in p or "libllama" in p:
                out.add(p)
    return sorted(out)

if scenario == "lib_global":
    import pathlib, llama_cpp.llama_cpp as LL
    ctypes.CDLL(LL._lib._name, mode=os.RTLD_GLOBAL)
if scenario == "engine_first":
    sys.path.insert(0, os.environ["PROBE_SRC"])
    import engine.llamacpp  # noqa: F401  (what every model-loading command does first)
if scenario == "init_pandas":
    import llama_cpp as L
    L.llama_backend_init()
if scenario in ("pandas", "init_pandas", "engine_first", "lib_global"):
    import pandas  # noqa: F401
if scenario == "pyarrow":
    import pyarrow  # noqa: F401
print("RUNTIMES", *runtimes(), sep="\n  ", flush=True)
import llama_cpp as L
L.llama_backend_init()
p = L.llama_model_default_params()
p.n_gpu_layers = int(os.environ.get("PROBE_NGL", "-1"))
m = L.llama_model_load_from_file(model.encode(), p)
print("LOADED", bool(m), flush=True)
print("RUNTIMES_AFTER", *runtimes(), sep="\n  ", flush=True)
"""


def run(model: str, scenario: str, bindings: bool) -> dict:
    env = dict(os.environ)
    env.setdefault("PROBE_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    if bindings:
        env["LD_DEBUG"] = "bindings"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, scenario, model], capture_output=True, text=True, env=env,
                       timeout=300)
    err = r.stderr.splitlines()
    # the stream symbols and allocation functions libllama and the ggml libraries bound, and to what
    wanted = ("ostream", "basic_string", "_Znwm", "_ZdlPv", "ios_base", "locale")
    binds = sorted({" ".join(line.split()[1:]) for line in err
                    if "binding file" in line and any(w in line for w in wanted)
                    and ("libllama" in line or "libggml" in line)})
    return {"scenario": scenario, "exit": r.returncode, "seconds": round(time.perf_counter() - t0, 2),
            "stdout": r.stdout.splitlines()[-30:],
            "stderr_tail": [line for line in err if "binding file" not in line and "symbol=" not in line][-15:],
            "bindings": binds[:80]}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    if out in args:
        args.remove(out)
    model, scenarios = args[0], args[1:] or list(SCENARIOS)
    rows = []
    for s in scenarios:
        row = run(model, s, bindings=True)
        rows.append(row)
        print(f"{s:14s} exit {row['exit']:4d}  {row['seconds']:6.2f} s", flush=True)
        for b in row["bindings"][:12]:
            print("    ", b)
    if out:
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
