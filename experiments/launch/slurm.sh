#!/bin/bash
# Multi-node training under SLURM: one task per GPU, Lightning reads the rank layout from SLURM.
#   sbatch experiments/launch/slurm.sh --config experiments/text/rotten_tomatoes.yaml --config experiments/text/transformer.yaml
# Nodes and GPUs per node are set here once; the Trainer gets the same numbers from the SLURM variables below.
# On pre-emption or the time limit SLURM sends SIGUSR1 90 s early: Lightning saves a checkpoint and requeues
# the job, and the requeued job resumes it (`--ckpt_path last`: the same run folder and W&B run).
#SBATCH --job-name=archbench
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@90
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=runs/slurm-%j.out

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
PY="${PY:-.venv/bin/python}"

# Your --config files first, then the preset and the layout SLURM gave (a config's own trainer.devices would not
# match the tasks started), then your other options, which win over all of them.
CONFIGS=()
OTHERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIGS+=("$1" "${2:?--config needs a file}"); shift 2 ;;
    --config=*) CONFIGS+=("$1"); shift ;;
    *) OTHERS+=("$1"); shift ;;
  esac
done

srun "$PY" -m experiments fit \
  ${CONFIGS[@]+"${CONFIGS[@]}"} \
  --trainer experiments/trainer/multinode.yaml \
  --trainer.num_nodes "$SLURM_JOB_NUM_NODES" \
  --trainer.devices "$SLURM_NTASKS_PER_NODE" \
  --ckpt_path last \
  ${OTHERS[@]+"${OTHERS[@]}"}
