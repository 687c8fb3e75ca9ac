"""llama-bench's figures, measured in process on the loaded model: pp512, tg128 and tg128 at a prompt
depth, each repeated (5 by default), as tokens/s with mean and standard deviation, the way llama.cpp's
``llama-bench`` defines them (tools/llama-bench/llama-bench.cpp of the same llama.cpp):

- ``ppN``: N random tokens decoded as a prompt (n_batch tokens a call), then synchronized; N / time;
- ``tgN``: N random tokens decoded one at a time, each call synchronized, nothing sampled; N / time;
- ``@ dD``: the same after D random tokens already in the cache (not timed; evaluated once, kept
  for every repetition);
- before the repetitions, one untimed prompt run (pp) or one token (tg); the cache is emptied
  before each repetition; the figure is the mean of the repetitions' tokens/s and their sample
  standard deviation (n - 1), as llama-bench's ``avg_ts`` and ``stddev_ts``.

What differs from llama-bench, by design: the engine's own context (its n_ctx, n_batch = n_ubatch,
threads and offload, as a run uses them; llama-bench sizes its context to the test and takes n_batch
2048), and numpy's random tokens instead of ``std::rand``. The same tests on the same build compare
(benchmarks/llama_bench_compare.py).

With the figures: the bytes a generated token must read, for the share of a memory-bandwidth bound
(``bound = bandwidth / bytes per token``): the weights (every tensor once, except the token-embedding
table, of which one row, unless the model has no separate output matrix and multiplies by it
instead), and the KV cache at the depth (every cell's keys and values, as llama.cpp reported the
cache's size at load).

``SpeedBench`` is one part of ``engine.llamacpp.LlamaCppBackend``, over its session part."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any


def weights_read_per_token(path: Path) -> dict[str, int]:
    """(bytes of weights a generated token reads, bytes of all tensors) from the GGUF's tensor table."""
    from formats import gguf_meta

    info = gguf_meta.read(Path(path))
    sizes = {t.name: int(t.n_bytes or 0) for t in info.tensors}
    total = sum(sizes.values())
    per_token = total
    if "output.weight" in sizes and "token_embd.weight" in sizes:  # a lookup reads one row of the table
        emb = next(t for t in info.tensors if t.name == "token_embd.weight")
        rows = emb.shape[-1] if len(emb.shape) > 1 else 1
        per_token = total - sizes["token_embd.weight"] + sizes["token_embd.weight"] // max(1, rows)
    return {"weights_bytes_per_token": per_token, "tensor_bytes": total}


def _summary(name: str, n_prompt: int, n_gen: int, n_depth: int, seconds: list[float]) -> dict[str, Any]:
    ts = [(n_prompt + n_gen) / s for s in seconds]
    return {"test": name, "n_prompt": n_prompt, "n_gen": n_gen, "n_depth": n_depth, "samples_ts": ts,
            "avg_ts": statistics.fmean(ts), "stddev_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0}


class SpeedBench:
    def speed_bench(self, *, depth: int | None = None, n_prompt: int = 512, n_gen: int = 128, reps: int = 5,
                    seed: int = 0) -> dict[str, Any]:
        """llama-bench's pp{n_prompt}, tg{n_gen} and, with ``depth``, tg{n_gen} @ d{depth} on this
        engine's context (the module's text says how), with the bytes a token reads. Call it once per
        model load, before or between calls: it empties the prompt cache. A depth that does not fit
        the context beside the test is lowered to what fits (``depth`` in the answer says which)."""
        if self.ctx is None:
            raise RuntimeError("load() the backend before speed_bench()")
        import numpy as np

        L = self.L
        # a context smaller than the tests: the largest that fit (the names say which, as pp255 would)
        n_prompt, n_gen = min(n_prompt, self.n_ctx), min(n_gen, self.n_ctx - 1)
        rng = np.random.default_rng(seed)
        started = time.perf_counter()

        def random_tokens(n: int, first: bool) -> list[int]:
            toks = rng.integers(0, self.n_vocab, n).tolist()
            if first and toks and self.add_bos and self.bos >= 0:
                toks[0] = self.bos
            return toks

        def prompt_run(n: int, start: int) -> float:
            toks = random_tokens(n, start == 0)
            t0 = time.perf_counter()
            self._decode(toks)
            L.llama_synchronize(self.ctx)
            return time.perf_counter() - t0

        def gen_run(n: int) -> float:
            toks = random_tokens(n + 1, False)
            t0 = time.perf_counter()
            for t in toks[:n]:
                self._decode_one(t)
                L.llama_synchronize(self.ctx)
            return time.perf_counter() - t0

        def back_to(n: int) -> None:
            if n == 0:
                self.clear_cache()
            else:
                L.llama_memory_seq_rm(self.mem, 0, n, -1)
                del self._kv[n:]

        tests = []
        self._device_detach()  # llama-bench's tests output whole logits, as a plain context does
        try:
            self.clear_cache()
            prompt_run(n_prompt, 0)  # warm-up, as llama-bench's
            back_to(0)
            tests.append(_summary(f"pp{n_prompt}", n_prompt, 0, 0,
                                  [(back_to(0), prompt_run(n_prompt, 0))[1] for _ in range(reps)]))
            back_to(0)
            gen_run(1)
            tests.append(_summary(f"tg{n_gen}", 0, n_gen, 0, [(back_to(0), gen_run(n_gen))[1] for _ in range(reps)]))
            fit = max(0, min(int(depth or 0), self.n_ctx - n_gen - 1))
            if fit > 0:
                back_to(0)
                prompt_run(fit, 0)  # the depth: evaluated once, kept for every repetition
                tests.append(_summary(f"tg{n_gen} @ d{fit}", 0, n_gen, fit,
                                      [(back_to(fit), gen_run(n_gen))[1] for _ in range(reps)]))
        finally:
            self.clear_cache()
        kv_mb = self.memory_facts().get("kv_cache_mb")
        kv_per_cell = kv_mb * 2**20 / self.n_ctx if kv_mb else None
        return {
            "tests": tests, "reps": reps, "depth": fit if depth else None, "depth_requested": depth,
            "n_ctx": self.n_ctx, "n_batch": self.n_batch, "n_ubatch": self.n_batch, "n_threads": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers, "layers_offloaded": self.offload.get("layers_offloaded"),
            **weights_read_per_token(self.path),
            "kv_bytes_per_token_at_depth": int(kv_per_cell * fit) if (kv_per_cell and depth) else None,
            "model_bytes": int(L.llama_model_size(self.model)), "n_params": int(L.llama_model_n_params(self.model)),
            "seconds": time.perf_counter() - started,
        }
