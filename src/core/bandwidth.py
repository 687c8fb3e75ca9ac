"""The machine's memory bandwidth from a simple copy test, for the share of the memory-bandwidth
bound of token generation (a generated token reads every weight once: tokens/s can be at most
bandwidth / bytes per token).

The test copies a buffer far larger than any cache (128 MiB by default) with numpy, split into
``threads`` parts copied at once (numpy releases the GIL while it copies), best of ``reps``; the
figure counts the bytes read and the bytes written, as STREAM's Copy does. It measures what these
cores reach, not the memory's rated peak (a server with many channels needs many cores to fill
them); declare the rated figure (``report.memory_bandwidth_gbs``) to compare against that instead.
"""

from __future__ import annotations

import os
import time


def copy_bandwidth(mib: int = 128, reps: int = 5, threads: int | None = None) -> tuple[float, dict]:
    """(GB/s, how it was measured): the best of ``reps`` copies of ``mib`` MiB on one thread and on
    ``threads`` (default: the cores this process may use), whichever is faster."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = mib * 2**20 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    best = {}
    for k in sorted({1, max(1, threads)}):
        edges = np.linspace(0, n, k + 1).astype(int)
        parts = list(zip(edges[:-1], edges[1:]))

        def copy(part):
            np.copyto(dst[part[0]:part[1]], src[part[0]:part[1]])

        with ThreadPoolExecutor(max_workers=k) as pool:
            list(pool.map(copy, parts))  # touch every page once before timing
            for _ in range(reps):
                t0 = time.perf_counter()
                list(pool.map(copy, parts))
                best[k] = min(best.get(k, float("inf")), time.perf_counter() - t0)
    k = min(best, key=best.get)
    moved = 2 * src.nbytes  # read + written
    return moved / best[k] / 1e9, {"method": "numpy copy, read + written bytes (STREAM Copy)", "mib": mib,
                                   "threads": k, "threads_tried": sorted(best), "reps": reps,
                                   "best_seconds": best[k]}
