#!/bin/bash
# Multi-node training without SLURM: run this on every node, each with its own NODE_RANK (0..NNODES-1);
# MASTER_ADDR is node 0's address. torchrun starts one process per GPU; Lightning reads the layout from it.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 experiments/launch/torchrun.sh --config experiments/dna/lstm.yaml
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 experiments/launch/torchrun.sh --config experiments/dna/lstm.yaml
# On CPU-only machines set NPROC_PER_NODE and TRAINER=experiments/trainer/ddp_cpu.yaml (what the tests run
# with two "nodes" on localhost).
set -euo pipefail
NNODES="${NNODES:-2}"
NODE_RANK="${NODE_RANK:?set NODE_RANK (0 on the first node)}"
MASTER_ADDR="${MASTER_ADDR:?set MASTER_ADDR (the first node)}"
MASTER_PORT="${MASTER_PORT:-29500}"
if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE="$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)"
  if [ "$NPROC_PER_NODE" -lt 1 ]; then
    echo "torchrun.sh: no GPU found (nvidia-smi); on a CPU-only node set NPROC_PER_NODE (processes per node)" \
      "and TRAINER=experiments/trainer/ddp_cpu.yaml" >&2
    exit 2
  fi
fi
# The project's files are found from this script's place, so it runs from any working folder (a job's own).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TRAINER="${TRAINER:-experiments/trainer/multinode.yaml}"
if [ ! -e "$TRAINER" ] && [ -e "$ROOT/$TRAINER" ]; then TRAINER="$ROOT/$TRAINER"; fi
PY="${PY:-$ROOT/.venv/bin/python}"
if ! command -v "$PY" >/dev/null 2>&1; then  # a path, or a command on PATH (python3 of a cluster's module)
  echo "torchrun.sh: no Python at $PY; set PY to the interpreter that has the project installed" >&2
  exit 2
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# Your --config files first, then the trainer preset and the layout torchrun was given (a config's own
# trainer.devices would not match the processes started), then your other options, which win over all of them.
# A config path that is not found here but is in the project (experiments/...) is taken from the project, as
# TRAINER is; another name of a .yaml/.yml/.json file stops here in one line, not in every process under
# torchrun's traceback. Settings given inline (--config "trainer: {max_epochs: 1}") pass as they are.
CONFIGS=()
OTHERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config|--config=*)
      if [ "$1" = "--config" ]; then
        [ $# -ge 2 ] || { echo "torchrun.sh: --config needs a file" >&2; exit 2; }
        FILE="$2"; shift 2
      else
        FILE="${1#--config=}"; shift
      fi
      if [ ! -e "$FILE" ] && [ -e "$ROOT/$FILE" ]; then FILE="$ROOT/$FILE"; fi
      # a name of a config file found nowhere; anything else is settings given inline ("trainer: {...}")
      case "$FILE" in
        *$'\n'*) LOOKS_LIKE_FILE=0 ;;
        *.yaml|*.yml|*.json|*.YAML|*.YML|*.JSON) LOOKS_LIKE_FILE=1 ;;
        *) LOOKS_LIKE_FILE=0 ;;
      esac
      if [ "$LOOKS_LIKE_FILE" = 1 ] && [ ! -e "$FILE" ]; then
        echo "torchrun.sh: --config: file '$FILE' not found (looked in $(pwd) and in $ROOT)" >&2
        exit 2
      fi
      CONFIGS+=(--config "$FILE")
      ;;
    *) OTHERS+=("$1"); shift ;;
  esac
done

exec "$PY" -m torch.distributed.run \
  --nnodes "$NNODES" --node-rank "$NODE_RANK" --nproc-per-node "$NPROC_PER_NODE" \
  --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
  -m experiments fit \
  ${CONFIGS[@]+"${CONFIGS[@]}"} \
  --trainer "$TRAINER" \
  --trainer.num_nodes "$NNODES" \
  --trainer.devices "$NPROC_PER_NODE" \
  --ckpt_path last \
  ${OTHERS[@]+"${OTHERS[@]}"}
