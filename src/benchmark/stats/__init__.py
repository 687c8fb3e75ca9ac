"""Statistics: pure functions over the frames the store gives (no I/O, no report)."""
