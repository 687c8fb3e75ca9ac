"""Tokens/s of JSON-schema-constrained decoding: this engine's fast path, llama-cpp-python's
default constrained path (grammar applied to the whole vocabulary at every step), and free
decoding, on the same prompts, side by side in one run.

Usage: python benchmarks/constrained_decoding.py [--model GGUF] [--n 30] [--gpu-layers N]
"""

from __future__ import annotations

import argparse
import time

from _common import embedded_model, machine, table

from engine.llamacpp import LlamaCppBackend, schema_to_gbnf
from benchmark.tasks.sentiment.news import load_snapshot
from benchmark.tasks.sentiment import SENTIMENT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--gpu-layers", type=int, default=None)
    ap.add_argument("--temperature", type=float, default=0.0)
    args = ap.parse_args()
    path = args.model or str(embedded_model())
    arts = load_snapshot()
    prompts = [SENTIMENT.messages(a.to_item(), "few_shot") for a in (arts * 3)[: args.n]]

    eng = LlamaCppBackend(path, chat_template="gemma", n_gpu_layers=args.gpu_layers)
    eng.load()
    results = {}
    for label, mode, schema in [("fast constrained (this engine)", "fast", SENTIMENT.constraint().schema),
                                ("unconstrained (this engine)", "fast", None)]:
        eng.grammar_mode = mode
        toks = secs = valid = 0
        for i, m in enumerate(prompts):
            r = eng.chat(m, schema=schema, temperature=args.temperature, seed=i, max_tokens=args.max_tokens)
            toks += r.completion_tokens
            secs += r.gen_seconds
            parsed = SENTIMENT.parse(r.text)
            valid += parsed.valid
            if schema and not parsed.valid:
                print(f"invalid ({label}, {r.finish_reason}): {parsed.error}")
        results[label] = (toks / secs, valid, toks)
    # llama-cpp-python adds the BOS token itself
    prompt_texts = [eng.render(m).removeprefix(eng.bos_text) for m in prompts]
    eng.close()

    # llama-cpp-python's own constrained path on the same rendered prompts and the same grammar
    import llama_cpp
    from llama_cpp import Llama, LlamaGrammar

    llm = Llama(path, n_ctx=2048, n_batch=512, verbose=False, seed=0,
                n_gpu_layers=args.gpu_layers if args.gpu_layers is not None else 0)
    grammar = LlamaGrammar.from_string(schema_to_gbnf(__import__("json").dumps(SENTIMENT.constraint().schema)), verbose=False)
    toks = secs = valid = 0
    for i, text in enumerate(prompt_texts):
        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
        t0 = time.perf_counter()
        out = llm.create_completion(text, max_tokens=args.max_tokens, temperature=args.temperature, grammar=grammar,
                                    seed=i)
        wall = time.perf_counter() - t0
        perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
        gen_s = wall - perf.t_p_eval_ms / 1000.0  # everything but prompt evaluation
        toks += out["usage"]["completion_tokens"]
        secs += gen_s
        valid += SENTIMENT.parse(out["choices"][0]["text"]).valid
    results["llama-cpp-python default constrained"] = (toks / secs, valid, toks)

    free = results["unconstrained (this engine)"][0]
    rows = [[k, v[0], v[0] / free, f"{v[1]}/{args.n}", v[2]] for k, v in results.items()]
    print(f"model: {path}\nmachine: {machine()}\nprompts: {args.n} few-shot sentiment prompts, temperature "
          f"{args.temperature}, at most {args.max_tokens} tokens\n")
    print(table(["path", "gen tokens/s", "x unconstrained", "valid replies", "tokens"], rows))


if __name__ == "__main__":
    main()
