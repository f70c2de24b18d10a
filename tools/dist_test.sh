#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py options]
# NPROC processes per node through torchrun: one per GPU (nccl), or, on a
# machine without GPU, CPU processes talking over gloo.
# Environment: NNODES, NODE_RANK, MASTER_ADDR, PORT (multi-node);
# PYTHON_EXEC (default: the repo's .venv python if present, else python).
set -e
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$PYTHON_EXEC" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then
        PYTHON_EXEC="$ROOT/.venv/bin/python"
    else
        PYTHON_EXEC=python
    fi
fi

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON_EXEC" -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$NPROC \
    --master_port=$PORT \
    "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
