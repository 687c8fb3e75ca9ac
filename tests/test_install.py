"""The accelerated install: which llama.cpp build `make` asks pip for, decided without building
anything (the real Makefile in dry-run mode and src/core/accel.py, with fake `nvidia-smi`/`nvcc` where a
GPU is pretended), and the offload facts every model load stores."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, shootout, write_config
from core import accel

# on Linux every engine build hides the static libraries it links (tests/test_cxx_runtime.py says why)
HIDE = accel.HIDE_STATIC_LIBS if platform.system() == "Linux" else ""

MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")
on_cpu_machine = pytest.mark.skipif(bool(shutil.which("nvidia-smi")) or platform.system() == "Darwin",
                                    reason="this machine has an accelerator")


def _bin(tmp_path: Path, gpu: bool, nvcc: bool) -> dict:
    """An environment whose PATH sees a fake nvidia-smi (an H200) and/or a fake nvcc."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    if gpu:
        (d / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA H200, 143771 MiB, 580.159.04'\n")
    if nvcc:
        (d / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0'\n")
    for f in d.iterdir():
        f.chmod(0o755)
    return {**os.environ, "PATH": f"{d}{os.pathsep}/usr/bin{os.pathsep}/bin", "CUDA_HOME": str(tmp_path / "no-cuda"),
            "CUDA_PATH": str(tmp_path / "no-cuda")}


def _choose(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "src/core/accel.py", "choose", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)


def _make_dry(env: dict, venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "-n", "install", f"VENV={venv}", f"PYTHON={sys.executable}", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True)


@on_cpu_machine
@needs_make
def test_a_machine_without_accelerator_builds_the_cpu_engine(tmp_path):
    env = _bin(tmp_path, gpu=False, nvcc=False)
    r = _choose(env)
    assert (r.stdout.strip(), r.stderr) == ("cpu", "")
    out = _make_dry(env, tmp_path / "venv").stdout
    assert f'CMAKE_ARGS="{HIDE}"' in out and "GGML_CUDA" not in out and "GGML_METAL" not in out
    # the wheel is built once into a folder of its own per accelerator and set of flags, then installed from there
    wheelhouse = f"wheels/llama-cpp-python-0.3.36-{accel.wheel_tag('cpu')}"
    assert "pip wheel --no-deps" in out and "--no-binary llama-cpp-python" in out and wheelhouse in out
    assert "--no-cache-dir" not in out  # the plain CPU build may come from pip's cache
    assert "--force-reinstall --no-deps " in out and f"{tmp_path / 'venv'}/.engine" in out
    assert out.index("pip wheel") < out.index("-e '.[dev]'")  # the engine is in place before the project


@needs_make
def test_a_visible_gpu_with_the_cuda_compiler_builds_the_cuda_engine(tmp_path):
    env = _bin(tmp_path, gpu=True, nvcc=True)
    assert _choose(env).stdout.strip() == "cuda"
    out = _make_dry(env, tmp_path / "venv").stdout
    assert f'CMAKE_ARGS="-DGGML_CUDA=on {HIDE}"' in out and f"llama-cpp-python-0.3.36-{accel.wheel_tag('cuda')}" in out
    assert "--no-cache-dir" in out  # never a cached CPU wheel for a CUDA build


@on_cpu_machine
def test_a_visible_gpu_without_the_cuda_compiler_warns_and_builds_for_the_cpu(tmp_path):
    r = _choose(_bin(tmp_path, gpu=True, nvcc=False))
    assert r.stdout.strip() == "cpu"
    assert "NVIDIA H200" in r.stderr and "nvcc" in r.stderr and "make install ACCEL=cuda" in r.stderr


@pytest.mark.slow
@needs_make
def test_accel_named_explicitly_is_taken_as_asked_and_switches_an_installed_engine(tmp_path):
    env = _bin(tmp_path, gpu=False, nvcc=False)
    assert 'CMAKE_ARGS="-DGGML_METAL=on"' in _make_dry(env, tmp_path / "v1", "ACCEL=metal").stdout
    assert f'CMAKE_ARGS="-DGGML_CUDA=on {HIDE}"' in _make_dry(env, tmp_path / "v1", "ACCEL=cuda").stdout
    bad = _make_dry(env, tmp_path / "v1", "ACCEL=gpu")
    assert bad.returncode != 0 and "use auto, cuda, metal or cpu" in bad.stderr
    # an installed CPU engine: ACCEL=cuda reinstalls only the engine; plain `make` keeps what is there
    venv = tmp_path / "v2"
    venv.mkdir()
    (venv / ".engine").write_text("cpu\n")
    (venv / ".installed").touch()
    switch = _make_dry(env, venv, "ACCEL=cuda").stdout
    assert "replacing the cpu build" in switch and f'CMAKE_ARGS="-DGGML_CUDA=on {HIDE}"' in switch
    assert "torch==" not in switch  # the rest of the environment stays
    assert "Nothing to be done" in _make_dry(env, venv).stdout + _make_dry(env, venv).stderr


@pytest.mark.slow
def test_offload_facts_and_the_cpu_build_warning_are_stored_with_each_model_load(tmp_path):
    """A real run on the embedded model with a GPU pretended visible: the CPU-only build warns on
    stderr, and model_loads.engine_json holds the engine's system info, the layers offloaded (none
    here) out of the model's, the buffers and the warning."""
    config = write_config(tmp_path, "embedded", iterations=1, articles=1, models=[("m-q4", "zero_shot")])
    r = shootout("run", "-c", str(config), "--no-progress", env_extra={"PATH": _bin(tmp_path, True, False)["PATH"]})
    assert r.returncode == 0, r.stderr
    assert "warning: a GPU is visible (NVIDIA H200" in r.stderr and "make install ACCEL=cuda" in r.stderr
    con = sqlite3.connect(tmp_path / "results.sqlite")
    loads = [json.loads(x) for (x,) in con.execute("SELECT engine_json FROM model_loads")]
    assert len(loads) == 1
    facts = loads[0]
    assert facts["gpu_offload_supported"] is False
    assert (facts["layers_offloaded"], facts["layers_offloadable"], facts["n_layers"]) == (0, 19, 18)
    assert "CPU" in facts["system_info"] and facts["devices"] == []
    assert any("CPU" in b and "model buffer size" in b for b in facts["buffers"])
    assert "GPU is visible" in facts["warning"]
