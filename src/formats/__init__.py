"""File and prompt formats: the GGUF header, chat families, Go templates, JSON schema -> GBNF."""
