"""Where a generated token's time goes beyond llama_decode + llama_synchronize, on one GGUF (GPU or
CPU), measured side by side in one process, in rounds (each configuration once per round):

    python benchmarks/decode_overhead.py [--model GGUF] [--rounds 3] [--threads 1,16] [--json OUT]

- ``same token``: decode + synchronize after the prompt, one token fed again and again (the loop
  gpu_ceiling.py calls "decode alone");
- ``real tokens``: the same loop fed the tokens of a greedy reply (each row of the embedding table
  read once);
- ``sample+decode``: the engine's own step (its sampler on the last logits, then decode) with no
  call bookkeeping, per sampling mode (``--sampling``, as gpu_ceiling.py names them);
- ``chat``: whole greedy calls (tokens over generation seconds), as the benchmark measures them,
  per sampling mode;
each at every CPU thread count given (``llama_set_n_threads``: with every layer on a GPU the CPU
only reads the embedding row; a larger OpenMP team must wake up at each token).
Figures: microseconds per token, median of the rounds."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _common import embedded_model, table

from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import load_snapshot
from engine.llamacpp import LlamaCppBackend
from gpu_ceiling import decode_step, per_token_us, use_mode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,16")
    ap.add_argument("--sampling", default="fast,device")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import llama_cpp

    path = Path(a.model) if a.model else embedded_model()
    ngl = 999 if llama_cpp.llama_supports_gpu_offload() else 0
    eng = LlamaCppBackend(path, n_ctx=4096, n_gpu_layers=ngl, chat_template="gemma" if a.model is None else None)
    eng.load()
    L = eng.L
    msgs = SENTIMENT.messages(load_snapshot()[0].to_item(), "few_shot")
    prompt = eng.prompt_tokens(msgs)
    reply = eng.chat(msgs, temperature=0.0, max_tokens=128)
    real = eng.tokenize(reply.text)[:128] or [prompt[-1]]
    real = (real * (128 // len(real) + 1))[:128]
    chain = eng._chain(0.0, 0)
    eng._greedy = True

    decode = decode_step(eng)

    def sample_decode(t):
        eng._decode_one(eng._sample(chain, None))

    threads = [int(x) for x in a.threads.split(",")]
    modes = [m for m in a.sampling.split(",") if m]
    raw: dict = {}
    for _ in range(a.rounds):
        for n in threads:
            L.llama_set_n_threads(eng.ctx, n, n)
            use_mode(eng, "fast")  # nothing on the device: the decode loops output whole logits
            raw.setdefault(f"same token, {n} threads", []).append(per_token_us(eng, prompt, [prompt[-1]] * 128, decode))
            raw.setdefault(f"real tokens, {n} threads", []).append(per_token_us(eng, prompt, real, decode))
            for m in modes:
                use_mode(eng, m)
                eng._device_ready(False)
                raw.setdefault(f"{m} sample+decode, {n} threads", []).append(
                    per_token_us(eng, prompt, real, sample_decode))
                r = eng.chat(msgs, temperature=0.0, max_tokens=128)
                raw.setdefault(f"{m} chat, {n} threads", []).append(r.gen_seconds / max(1, r.completion_tokens) * 1e6)
    rows = [[k, f"{statistics.median(v):.1f}", f"{min(v):.1f}-{max(v):.1f}", f"{1e6 / statistics.median(v):.1f}"]
            for k, v in raw.items()]
    print(f"{path.name}, layers offloaded {eng.offload.get('layers_offloaded')}/"
          f"{eng.offload.get('layers_offloadable')}, prompt {len(prompt)} tokens")
    print(table(["loop", "us/token (median)", "range", "tokens/s"], rows))
    if a.json:
        Path(a.json).write_text(json.dumps({"model": str(path), "raw": raw}, indent=2))
    L.llama_sampler_free(chain)
    eng.close()


if __name__ == "__main__":
    main()
