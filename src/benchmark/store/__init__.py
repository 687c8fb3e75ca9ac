"""The results database: ``Store`` (``db``, reading half in ``reads``), its rows declared once
(``rows``), numbered migrations (``migrations``), what other processes and disks do to the file
(``files``), and ``recover`` for a damaged file."""

from benchmark.store.db import CALL_FIELDS, MIN_FREE_BYTES, RunSummary, Store, free_bytes, is_disk_full, now_iso
from benchmark.store.files import Damaged, RunBusy, StoreBusy

__all__ = ["CALL_FIELDS", "MIN_FREE_BYTES", "Damaged", "RunBusy", "RunSummary", "Store", "StoreBusy", "free_bytes",
           "is_disk_full", "now_iso"]
