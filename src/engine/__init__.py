"""The in-process llama.cpp engine, shared by benchmark/, export/ and finetune/."""
