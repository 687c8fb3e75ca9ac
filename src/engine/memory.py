"""Offload and memory facts of a load, read from the lines llama.cpp logged while loading: whether
this build can offload, the layers requested and offloaded, the devices and buffer sizes, and the KV
cache, compute and model buffers in MiB (with the GPU memory this process holds, where NVML is)."""

from __future__ import annotations

import re
from typing import Any

from core import sysinfo


def offload_facts(L, model, n_gpu_layers: int, lines: list[str]) -> dict[str, Any]:
    """Where the weights went, as llama.cpp reported it while loading: whether this build can
    offload at all, the layers requested and offloaded, the devices and buffer sizes; plus a
    warning when a GPU is visible but the build is CPU-only."""
    supports = bool(L.llama_supports_gpu_offload())
    facts: dict[str, Any] = {"gpu_offload_supported": supports, "n_gpu_layers_requested": int(n_gpu_layers),
                             "n_layers": int(L.llama_model_n_layer(model))}
    offloaded = None
    for line in lines:
        m = re.search(r"offloaded (\d+)/(\d+) layers to GPU", line)
        if m:
            offloaded = (int(m.group(1)), int(m.group(2)))
    # the layer count llama.cpp reports includes the output layer (n_layers + 1)
    facts["layers_offloaded"] = offloaded[0] if offloaded else 0
    facts["layers_offloadable"] = offloaded[1] if offloaded else facts["n_layers"] + 1
    facts["devices"] = [re.sub(r"^\S+: ", "", x) for x in lines if "using device" in x]
    facts["buffers"] = [re.sub(r"^\S+:\s+", "", x) for x in lines if "buffer size" in x]
    warning = sysinfo.accelerator_warning(supports)
    if warning:
        facts["warning"] = warning
    return facts


def memory_facts(lines: list[str]) -> dict[str, float]:
    """The KV cache, compute and model buffers llama.cpp reported in the load's ``lines`` (MiB), and
    the GPU memory this process holds (NVML, where present)."""
    def total(pattern: str) -> float:
        return sum(float(m.group(1)) for line in lines
                   if (m := re.search(pattern + r"\s*=\s*([\d.]+) MiB", line)))

    kv, compute, weights = total("llama_kv_cache: size"), total("compute buffer size"), total("model buffer size")
    out = {"kv_cache_mb": kv or None, "compute_buffer_mb": compute or None, "model_buffer_mb": weights or None,
           "vram_mb": sysinfo.vram_used_mb()}
    return {k: v for k, v in out.items() if v is not None}
