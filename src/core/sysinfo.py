"""What a run stores about where it ran: package versions and hardware."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from importlib import metadata

PACKAGES = ("gguf-shootout", "llama-cpp-python", "ollama", "openai", "pydantic", "numpy", "pandas", "scipy",
            "statsmodels", "openpyxl", "seaborn", "feedparser", "beautifulsoup4", "torch", "transformers",
            "peft", "trl", "unsloth")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@functools.lru_cache(maxsize=1)  # asked at every model load (the CPU-build warning): nvidia-smi once
def _gpus() -> tuple[str, ...]:
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout
            return tuple(line.strip() for line in out.splitlines() if line.strip())
        except (OSError, subprocess.SubprocessError):
            return ()
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return ("Apple silicon GPU (Metal)",)
    return ()


def hardware() -> dict:
    ram = _ram_bytes()
    return {
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "gpus": list(_gpus()),
        "hostname": platform.node(),
    }


def rss_mb() -> float | None:
    """This process's resident memory now, in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if platform.system() == "Darwin" else 1024)
    except (ImportError, OSError):
        return None


_NVML: list = []


def _nvml():
    """The NVML module with every GPU's handle, or None without an NVIDIA driver or nvidia-ml-py."""
    if not _NVML:
        try:
            import pynvml

            pynvml.nvmlInit()
            _NVML.append((pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]))
        except Exception:  # no driver, no library, no GPU: NVML figures stay empty
            _NVML.append(None)
    return _NVML[0]


def gpu_energy_joules() -> float | None:
    """Energy every visible NVIDIA GPU has used since its driver loaded (NVML's counter), in joules."""
    nv = _nvml()
    if not nv:
        return None
    pynvml, handles = nv
    try:
        return sum(pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles) / 1000.0
    except Exception:  # the counter is not supported on every GPU
        return None


def vram_used_mb(pid: int | None = None) -> float | None:
    """GPU memory this process (or ``pid``) holds on every visible NVIDIA GPU, in MiB."""
    nv = _nvml()
    if not nv:
        return None
    pynvml, handles = nv
    pid = pid or os.getpid()
    total = 0
    try:
        for h in handles:
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid == pid and p.usedGpuMemory:
                    total += p.usedGpuMemory
    except Exception:
        return None
    return total / 2**20


def accelerator_warning(gpu_offload_supported: bool) -> str | None:
    """One sentence when a GPU is visible but the engine cannot use it (llama-cpp-python built for the
    CPU only), naming the command that rebuilds it; None otherwise."""
    if gpu_offload_supported:
        return None
    gpus = _gpus()
    if not gpus:
        return None
    accel = "metal" if gpus[0].startswith("Apple") else "cuda"
    return (f"a GPU is visible ({gpus[0]}) but llama-cpp-python was built for the CPU only, so every model runs "
            f"on the CPU: rebuild the engine with `make install ACCEL={accel}` (README: Install with a GPU)")


def default_threads() -> int:
    """CPU threads for llama.cpp when the config names none: SHOOTOUT_THREADS, else every core. (Two
    llama.cpp processes on a small machine should each get fewer: their threads spin while waiting.)"""
    raw = os.environ.get("SHOOTOUT_THREADS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            from core.errors import ShootoutError

            raise ShootoutError(f"SHOOTOUT_THREADS={raw!r} is not a number of threads",
                                "set it to a whole number of at least 1, or unset it to use every core")
        return int(raw)
    return os.cpu_count() or 1
