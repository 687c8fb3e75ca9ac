"""Export: a model folder or a GGUF -> F16 GGUF -> a ladder of quantized GGUFs -> Modelfiles."""
