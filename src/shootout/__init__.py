"""gguf-shootout: fine-tune -> GGUF quant ladder -> benchmark -> statistics."""

__version__ = "0.1.0"
