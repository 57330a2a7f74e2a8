#!/usr/bin/env bash
# Set up ./.venv with torch 2.14.1 and cvg-fast (editable, extensions compiled).
# Idempotent: a second run only rebuilds when csrc/, setup.py or pyproject.toml changed.
#   PYTHON=python3.11 bash scripts/install.sh     # choose the interpreter
#   CVG_NO_EXT=1 bash scripts/install.sh          # pure-Python install (reference backend)
#   FORCE_CUDA=1 bash scripts/install.sh          # compile the .cu files even without nvcc detection
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${CVG_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
. "$VENV/bin/activate"
if ! python -c "import torch, av, tqdm, numpy, scipy, PIL, pytest, ninja" 2>/dev/null; then
  echo "[install] torch 2.14.1 and dependencies"
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==2.14.1" numpy scipy "av>=12" tqdm pillow pytest ninja setuptools wheel
fi
stamp="$VENV/.cvg-build-stamp"
want=$(cat setup.py pyproject.toml csrc/* 2>/dev/null | sha256sum | cut -c1-16)-${FORCE_CUDA:-0}-${CVG_NO_EXT:-0}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! python -c "import cvg_fast" 2>/dev/null; then
  echo "[install] building cvg-fast (C++ ops; CUDA ops when nvcc is found or FORCE_CUDA=1)"
  python -m pip install -q --no-build-isolation --no-deps -e .
  echo "$want" > "$stamp"
fi
python -c "import cvg_fast.ops.backends as b; print('[install] backends:', b.describe_backends())"
