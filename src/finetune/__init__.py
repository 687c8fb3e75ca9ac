"""Fine-tune: dataset builders and LoRA SFT (Unsloth on CUDA, transformers + PEFT + TRL elsewhere)."""
