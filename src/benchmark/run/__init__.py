"""Running a study: the runner, the endpoint scheduler, shard merges, config entries."""
