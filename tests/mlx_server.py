"""A real ``mlx_lm.server`` on 127.0.0.1 for the tests: the tiny HF model (tests/tiny_llama.py)
converted with ``mlx_lm.convert`` (full precision, and 4-bit with ``-q``), a LoRA adapter for it,
and the server started on the CPU (MLX's Linux CPU wheels: ``mlx[cpu]``, ``mlx-lm``).

Everything MLX runs in subprocesses, never in the pytest process (its threads would be forked by
the zygote). The server has no thread option; its CPU backend computes on one stream with the
reference BLAS that the mlx-cpu wheel bundles, and OMP/OpenBLAS variables are set to 1 anyway.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ADAPTER_CODE = r"""
import json, sys
from pathlib import Path
import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm import load
from mlx_lm.tuner.utils import linear_to_lora_layers

model, _ = load(sys.argv[1])
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
model.freeze()
lora = {"rank": 4, "scale": 20.0, "dropout": 0.0}
linear_to_lora_layers(model, 2, lora)
mx.random.seed(0)
weights = {}
for name, value in tree_flatten(model.trainable_parameters()):
    # a trained adapter's B is not zero; random values make it change the model's answers
    weights[name] = mx.random.normal(value.shape) * 0.5 if name.endswith("lora_b") else value
mx.save_safetensors(str(out / "adapters.safetensors"), weights)
(out / "adapter_config.json").write_text(json.dumps({"fine_tune_type": "lora", "num_layers": 2,
                                                     "lora_parameters": lora}))
"""


def mlx_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("mlx", "mlx-cpu", "mlx-lm", "transformers"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} missing")
    return " ".join(out)


def require_mlx() -> None:
    """Skip (with the reason) where MLX's wheels are not installed or cannot run."""
    pytest.importorskip("mlx_lm", reason="mlx-lm is not installed (the dev extras install it on Linux and macOS)")
    r = subprocess.run([sys.executable, "-c", "import mlx.core as mx; print(mx.default_device())"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"mlx does not run here: {r.stderr.strip().splitlines()[-1:]}")


def _env(extra: dict | None = None) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false", **(extra or {})}


def convert(hf_dir: Path, out: Path, *, quantize: bool = False) -> Path:
    """``mlx_lm convert`` of a Hugging Face folder (``-q``: 4-bit, group size 64)."""
    cmd = [sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(hf_dir), "--mlx-path", str(out)]
    r = subprocess.run(cmd + (["-q"] if quantize else []), capture_output=True, text=True, env=_env(), timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"mlx_lm convert failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return out


def make_adapter(model_dir: Path, out: Path) -> Path:
    """A LoRA adapter for ``model_dir`` (rank 4 on the last two layers, random B) in mlx-lm's format."""
    r = subprocess.run([sys.executable, "-c", ADAPTER_CODE, str(model_dir), str(out)], capture_output=True, text=True,
                       env=_env(), timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"adapter not written:\n{r.stderr[-2000:]}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class MlxServer:
    """``python -m mlx_lm server --model DIR`` on 127.0.0.1 (an ephemeral port), logging to a file;
    ready when /health answers and a first one-token chat completion (which loads the model) has."""

    def __init__(self, model_dir: Path, workdir: Path, *, args: tuple[str, ...] = ()):
        self.model_dir = Path(model_dir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = Path(workdir) / "mlx_server.log"
        hf_cache = Path(workdir) / "hf-cache"
        hf_cache.mkdir(parents=True, exist_ok=True)  # /v1/models scans it and fails when it is missing
        with open(self.log, "wb") as out:  # a file, not a pipe: a full pipe would block the server
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlx_lm", "server", "--model", str(self.model_dir), "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "WARNING", *args],
                stdout=out, stderr=subprocess.STDOUT, env=_env({"HF_HUB_CACHE": str(hf_cache)}))
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("mlx_lm.server did not start:\n" + self.log.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        status, body = post(self.base_url + "/chat/completions",
                            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        if status != 200:
            raise RuntimeError(f"mlx_lm.server answered {status} {body}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
