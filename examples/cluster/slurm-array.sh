#!/bin/bash
# One SLURM array task per shard: `sbatch examples/cluster/slurm-array.sh` from the config's folder.
#SBATCH --job-name=shootout
#SBATCH --array=0-3
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
# Each task runs its quarter of the grid (by model) into results.shard-0K-of-04.sqlite beside
# run.database; a requeued task picks up where it stopped (--resume). Then, once:
#   shootout merge reports/ --out reports/all.sqlite
shootout run --config config.yaml --shard auto --resume --no-progress
