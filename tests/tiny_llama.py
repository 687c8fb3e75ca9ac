"""Build a tiny Llama-architecture Hugging Face model folder: a sentencepiece tokenizer trained on
the repository's news snapshot, a chat template, and random weights from a small config.

Used by the export and fine-tune tests (model hubs cannot be reached here)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# a Llama-3-style chat template for the tiny model (its own special tokens)
CHAT_TEMPLATE = (
    "{{- bos_token -}}{%- for m in messages -%}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + (m['content'] | trim) + '<|eot_id|>' -}}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}"
    "{%- endif -%}"
)
SPECIALS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def corpus_lines() -> list[str]:
    data = json.loads((ROOT / "src" / "benchmark" / "tasks" / "sentiment" / "news_snapshot.json").read_text())
    lines = []
    for it in data["items"]:
        lines += [it["title"], it.get("summary") or "", *it.get("paragraphs", [])]
    lines += ['{"reasoning": "Orders rose.", "sentiment": 0.6, "confidence": 0.8}',
              "system user assistant positive negative neutral"]
    return [x for x in lines if x]


def build(out: Path, *, seed: int = 0, hidden: int = 256, layers: int = 2, vocab: int = 512,
          train_steps: int = 150) -> Path:
    """Write the model folder ``out`` (config.json, model.safetensors, tokenizer files)."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = out / "corpus.txt"
    text.write_text("\n".join(corpus_lines()) * 3)
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out / "tokenizer"), vocab_size=vocab, model_type="bpe",
        byte_fallback=True, user_defined_symbols=SPECIALS, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        character_coverage=1.0, num_threads=1, minloglevel=2)
    text.unlink()
    (out / "tokenizer.vocab").unlink(missing_ok=True)
    tok = LlamaTokenizer.from_pretrained(out, legacy=False, add_bos_token=True, pad_token="<pad>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False, rms_norm_eps=1e-5)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the default init so logits are far from uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
    if train_steps:
        _pretrain(model, tok, train_steps, seed)
    model.to(torch.float32).save_pretrained(out, safe_serialization=True)
    return out


def _pretrain(model, tok, steps: int, seed: int) -> None:
    """A few steps of next-token training on the corpus, so that predictions have clear winners
    (a purely random model has near-ties everywhere, which any rounding can flip)."""
    import torch

    ids = tok("\n".join(corpus_lines())).input_ids
    data = torch.tensor(ids)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    # one thread: the same weights on every machine, and far faster for a model this small on a
    # shared machine (measured on 2 busy cores: 0.11 s a step with one thread, 0.5 to 3.8 s with two)
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            starts = torch.randint(0, len(data) - 65, (8,), generator=gen)
            batch = torch.stack([data[s:s + 64] for s in starts])
            loss = model(batch, labels=batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.eval()
