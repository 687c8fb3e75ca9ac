"""Labelled datasets for classification studies: read the common layouts into ``Item`` s, merge
labels, split (stratified), draw few-shot examples and count what there is.

- ``readers``: ``read_items`` and the one list of formats (``FORMATS``: CSV, TSV, JSON, JSONL,
  Parquet, Alpaca, ShareGPT, class folders; the layouts in ``records`` and ``folder``);
- ``splits``: ``merge_labels``, ``split_items``, ``few_shot``, ``stratified_sample``, ``summarize``;
- ``items``: ``Item``, the one thing a task asks about.

Nothing here imports the tasks: they import the data.
"""

from __future__ import annotations

from benchmark.data.items import Item
from benchmark.data.readers import EXTENSIONS, FORMATS, read_items
from benchmark.data.splits import (DEFAULT_FRACTIONS, SPLIT_ALIASES, SPLITS, few_shot, merge_labels, split_items,
                                   stratified_sample, summarize)

__all__ = ["DEFAULT_FRACTIONS", "EXTENSIONS", "FORMATS", "Item", "SPLITS", "SPLIT_ALIASES", "few_shot",
           "merge_labels", "read_items", "split_items", "stratified_sample", "summarize"]
