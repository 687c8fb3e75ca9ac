"""The CUDA box's crash, reproduced on the CPU with two tiny C++ libraries built by the test: a library
that links the C++ runtime statically and exports it (as libggml-cuda.so and libllama.so did there)
gets its iostreams wrong once pandas has loaded the system's libstdc++.so.6; the same libraries
linked with the engine's flags (core.accel.HIDE_STATIC_LIBS) do not. And core.cxx_runtime tells the
two apart, for `shootout doctor` and the engine's load."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core import accel, cxx_runtime

GXX = shutil.which("g++")

# "inner" formats numbers with an ostringstream (as llama.cpp's print_info does); "outer" calls it and
# links against it, so its own C++ calls bind to whatever runtime the loader finds first
INNER = r"""
#include <cstring>
#include <sstream>
extern "C" int fmt(char *out, int n) {
  std::ostringstream s; s << "value " << 42 << " " << 3.5;
  std::strncpy(out, s.str().c_str(), n); return (int)s.str().size();
}
"""
OUTER = r"""
#include <sstream>
extern "C" int fmt(char *out, int n);
extern "C" int outer(char *out, int n) { std::ostringstream s; s << 7; return fmt(out, n) + (int)s.str().size(); }
"""
CHILD = """
import ctypes, sys
if sys.argv[2] == "pandas":
    import pandas  # noqa: F401  (loads the system's libstdc++.so.6 first, as every shootout command does)
lib = ctypes.CDLL(sys.argv[1])
buf = ctypes.create_string_buffer(64)
lib.outer(buf, 64)
print(buf.value.decode())
"""


def _hide_flag() -> list[str]:
    """The linker flag the engine's builds use, from core.accel (one place)."""
    prefix = "-DCMAKE_SHARED_LINKER_FLAGS_INIT="
    assert accel.HIDE_STATIC_LIBS.startswith(prefix)
    return [accel.HIDE_STATIC_LIBS[len(prefix):]]


def _build(folder: Path, extra: list[str]) -> Path:
    folder.mkdir()
    (folder / "inner.cpp").write_text(INNER)
    (folder / "outer.cpp").write_text(OUTER)
    common = ["g++", "-O1", "-shared", "-fPIC", "-static-libstdc++", *extra]
    r = subprocess.run([*common, "inner.cpp", "-o", "libinner.so"], cwd=folder, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot link libstdc++ statically here: {r.stderr[-300:]}")
    subprocess.run([*common, "outer.cpp", "-L.", "-l:libinner.so", "-Wl,-rpath,$ORIGIN", "-o", "libouter.so"],
                   cwd=folder, check=True, capture_output=True)
    return folder / "libouter.so"


def _run(lib: Path, first: str) -> str:
    r = subprocess.run([sys.executable, "-c", CHILD, str(lib), first], capture_output=True, text=True, timeout=120)
    return f"exit {r.returncode}: {r.stdout.strip()}"


@pytest.mark.slow
@pytest.mark.skipif(GXX is None or sys.platform != "linux", reason="needs g++ on Linux")
def test_an_exported_static_cxx_runtime_breaks_after_pandas_and_the_engine_flags_prevent_it(tmp_path):
    exported = _build(tmp_path / "exported", [])
    hidden = _build(tmp_path / "hidden", _hide_flag())
    good = "exit 0: value 42 3.5"
    # the control: the broken layout works alone and goes wrong once pandas came first
    assert _run(exported, "alone") == good
    assert _run(exported, "pandas") != good
    # the engine's flags: right both ways
    assert _run(hidden, "alone") == good
    assert _run(hidden, "pandas") == good
    # and the checker tells the two apart
    assert cxx_runtime.inspect(exported.parent / "libinner.so").carries_runtime
    assert not cxx_runtime.inspect(hidden.parent / "libinner.so").carries_runtime
    assert not cxx_runtime.inspect(exported).carries_runtime  # it only uses the copy next door


@pytest.mark.slow
@pytest.mark.skipif(GXX is None or sys.platform != "linux", reason="needs g++ on Linux")
def test_the_engine_check_names_the_library_and_the_rebuild(tmp_path):
    exported = _build(tmp_path / "exported", [])
    hidden = _build(tmp_path / "hidden", _hide_flag())
    for folder in (exported.parent, hidden.parent):
        shutil.copy(folder / "libinner.so", folder / "libggml-cuda.so")
    what, fix = cxx_runtime.problem(exported.parent)
    assert "libggml-cuda.so" in what and "pandas" in what and "make engine ACCEL=cuda" in fix
    assert cxx_runtime.problem(hidden.parent) is None
    # the engine installed here (CPU build, shared libstdc++) is fine
    assert cxx_runtime.problem() is None


@pytest.mark.skipif(sys.platform != "linux", reason="the flag is for GNU ld")
def test_every_engine_build_on_linux_hides_static_libraries():
    for kind in accel.KINDS:
        if kind != "metal":
            assert accel.HIDE_STATIC_LIBS in accel.CMAKE_ARGS[kind].split()
    # a wheel kept from before the flags (or with other flags) is never reused
    assert accel.wheel_tag("cuda") != accel.wheel_tag("cuda", "-DCMAKE_CUDA_ARCHITECTURES=90")


@pytest.mark.slow
@pytest.mark.skipif(GXX is None or sys.platform != "linux", reason="needs g++ on Linux")
def test_run_and_doctor_refuse_an_engine_that_exports_a_cxx_runtime(tmp_path):
    """The engine as the CUDA box built it (a library carrying an exported libstdc++), pointed at with
    LLAMA_CPP_LIB_PATH: `run` stops before loading anything, with one message and the rebuild command,
    instead of a segmentation fault; `doctor` names it (on a config with only in-process models)."""
    from conftest import shootout, write_config

    exported = _build(tmp_path / "engine", [])
    shutil.copy(exported.parent / "libinner.so", exported.parent / "libllama.so")
    config = write_config(tmp_path, "embedded", iterations=1, articles=1)
    env = {"LLAMA_CPP_LIB_PATH": str(exported.parent)}
    r = shootout("run", "-c", str(config), "--no-progress", env_extra=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "libllama.so" in r.stderr and "C++ runtime" in r.stderr and "make engine ACCEL=" in r.stderr
    d = shootout("doctor", "-c", str(config), env_extra=env)
    said = " ".join((d.stdout + d.stderr).split())  # the table folds long lines
    assert d.returncode == 2 and "FAIL" in said and "libllama.so" in said and "C++ runtime" in said, said
    ok = shootout("doctor", "-c", str(config))
    said = " ".join((ok.stdout + ok.stderr).split())
    assert ok.returncode == 0 and "no exported copy of the C++ runtime" in said, said
