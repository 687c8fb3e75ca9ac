"""Tasks: the prompt messages for an article, the reply schema, and how a reply is parsed.

A task module exposes a ``Task`` object with:
- ``name``
- ``messages(article, prompt_style, system_prompt=None) -> list[dict]``
- ``schema`` (JSON schema of a valid reply)
- ``parse(text) -> Parsed``
- ``warmup_article`` (a short article used for the uncounted warm-up call)
"""

from __future__ import annotations

from benchmark.tasks.sentiment import SENTIMENT

TASKS = {SENTIMENT.name: SENTIMENT}


def get_task(name: str):
    return TASKS[name]
