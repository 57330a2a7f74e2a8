#!/usr/bin/env bash
# Everything this project checks on a GPU, as one script for a short lease of a GPU
# machine (CI has no GPU): build the CUDA ops, run the kernel tests on CUDA tensors,
# time a training step per configuration with the per-op table (fused / eager /
# torch.compile), train the tiny cascade for a few steps end to end on the GPU, and time
# generation. Each stage has its own time limit inside an overall deadline; a failing
# stage is logged and the next one runs.
#
#   OUT=/tmp/gpu BUDGET_S=400 bash bench/gpu_checks.sh
#
# Writes $OUT/gpu_checks.log (all stages) and the benchmarks' JSON files. Needs torch
# with CUDA, nvcc, Triton and PyAV (PYTHONPATH may point at them); runs from the repo
# root without installing (the extension is built in place).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu_run}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
LOG="$OUT/gpu_checks.log"
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-400} ))
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

stage() {  # stage NAME MAX_SECONDS COMMAND...: runs within what is left of the deadline
  local name=$1 want=$2; shift 2
  local left=$(( DEADLINE - $(date +%s) ))
  local limit=$(( want < left ? want : left ))
  if [ "$limit" -lt 10 ]; then echo "== $name: skipped, ${left}s left" | tee -a "$LOG"; return; fi
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$(date +%s)
  timeout "$limit" "$@" >>"$LOG" 2>&1
  echo "== $name: rc=$? in $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
}

{ nvidia-smi -L; $PY -c "import torch, triton, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"; } >>"$LOG" 2>&1
# an uninstalled checkout: cvg_fast.kernels is the top-level kernels/ (setup.py's package_dir)
[ -e cvg_fast/kernels ] || ln -s ../kernels cvg_fast/kernels
arch=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
stage build 300 env CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST="$arch" \
  MAX_JOBS=${MAX_JOBS:-16} $PY setup.py -q build_ext --inplace
stage backends 60 $PY -c "import cvg_fast.ops.backends as b; print(b.describe_backends())"
stage kernel_tests 240 $PY -m pytest -q -p no:cacheprovider -rs tests/test_gru_blend.py \
  tests/test_triton_gru_cell.py tests/test_gru_cell_native.py tests/test_sn_power_iteration.py \
  tests/test_triton_pyramid.py tests/test_pyramid_native.py tests/test_dispatch_models.py
stage bench_train_tiny 150 $PY -m cvg_fast.cli bench train --preset tiny --device cuda \
  --out "$OUT"
data=/tmp/cvg_gpu_data run=/tmp/cvg_gpu_run
rm -rf "$run"
stage synth_data 60 $PY -c "from cvg_fast.data import write_synthetic_dataset as w; \
w('$data', num_classes=2, videos_per_class=8, frames=48, size=64, fps=8, progress=False)"
for level in 1 2; do
  stage "train_level$level" 120 $PY train/level.py --preset tiny --level $level --data "$data" \
    --out "$run" --device cuda --steps 60 --num-workers 4 --no-progress
done
stage bench_train_kinetics 150 $PY -m cvg_fast.cli bench train --preset kinetics600 --device cuda \
  --configs fp32-reference bf16-channels-last bf16-fused --batch-size 4 --steps 5 --no-ops --out "$OUT"
stage bench_generate 120 $PY -m cvg_fast.cli bench generate --preset tiny --device cuda \
  --lengths 64,1024,4096 --naive-max-frames 1024 --json "$OUT/generate_tiny_cuda.json"
echo "== done" | tee -a "$LOG"
