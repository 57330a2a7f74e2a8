#!/usr/bin/env bash
# Set up ./.venv with torch 2.14.1 and cvg-fast (editable, extensions compiled).
# Idempotent: a second run only rebuilds when csrc/, setup.py or pyproject.toml changed.
#   PYTHON=python3.11 bash scripts/install.sh     # choose the interpreter
#   CVG_NO_EXT=1 bash scripts/install.sh          # pure-Python install (reference backend)
#   FORCE_CUDA=1 bash scripts/install.sh          # compile the .cu files even without nvcc detection
#   CVG_DALI=1 bash scripts/install.sh            # add NVIDIA DALI (GPU video decoding)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${CVG_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
. "$VENV/bin/activate"
if ! python -c "import torch, av, tqdm, numpy, scipy, PIL, cv2, pytest, ninja" 2>/dev/null; then
  echo "[install] torch 2.14.1 and dependencies"
  # The CUDA build of torch and its libraries take ~6 GB in the venv: say so in one
  # line instead of letting pip die half-way with "No space left on device".
  free_kb=$(df -Pk "$VENV" | awk 'NR==2 {print $4}')
  if [ "${free_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
    echo "[install] error: $((free_kb / 1024)) MiB free under $VENV; torch 2.14.1 needs about 8 GiB" >&2
    exit 1
  fi
  python -m pip install -q --upgrade pip
  python -m pip install -q --no-cache-dir "torch==2.14.1" numpy scipy "av>=12" tqdm pillow tensorboard opencv-python-headless pytest ninja setuptools wheel
fi
# CVG_DALI=1: NVIDIA DALI too (the [dali] extra, ~620 MB; DALI's tests skip without it)
if [ -n "${CVG_DALI:-}" ] && ! python -c "import nvidia.dali" 2>/dev/null; then
  echo "[install] nvidia-dali-cuda130 (DALI)"
  python -m pip install -q --no-cache-dir "nvidia-dali-cuda130==2.4.0"
fi
stamp="$VENV/.cvg-build-stamp"
want=$(cat setup.py pyproject.toml csrc/* 2>/dev/null | sha256sum | cut -c1-16)-${FORCE_CUDA:-0}-${CVG_NO_EXT:-0}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! python -c "import cvg_fast" 2>/dev/null; then
  echo "[install] building cvg-fast (C++ ops; CUDA ops when nvcc is found or FORCE_CUDA=1)"
  python -m pip install -q --no-build-isolation --no-deps -e .
  echo "$want" > "$stamp"
fi
python -c "import cvg_fast.ops.backends as b; print('[install] backends:', b.describe_backends())"
