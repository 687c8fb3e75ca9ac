"""``Item``: one thing a task asks about. It lives with the data (which reads, merges and splits
items); ``benchmark.tasks.base`` re-exports it for the tasks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Item(BaseModel):
    """One item of a task's dataset."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str
    label: str | None = Field(None, description="gold label (classification)")
    value: float | None = Field(None, description="gold value (scored tasks, e.g. expected sentiment)")
    split: str | None = Field(None, description="train, validation or test")
    fields: dict[str, Any] = Field(default_factory=dict,
                                   description="anything else the prompt or the report uses (company, title, url...)")
