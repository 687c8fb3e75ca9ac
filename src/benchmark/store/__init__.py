"""The results database: ``Store`` (``db``) and its numbered migrations (``migrations``)."""

from benchmark.store.db import CALL_FIELDS, MIN_FREE_BYTES, Store, free_bytes, is_disk_full, now_iso

__all__ = ["CALL_FIELDS", "MIN_FREE_BYTES", "Store", "free_bytes", "is_disk_full", "now_iso"]
