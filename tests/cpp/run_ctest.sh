#!/usr/bin/env bash
# Configure, build and run the C++ tests (CMakeLists.txt) in build/cmake.
#   PYTHON=.venv/bin/python bash tests/cpp/run_ctest.sh
# PYTHON: the interpreter whose torch to build against (default: .venv/bin/python
# if present, else python3). BUILD_DIR, MAX_JOBS (default 2), CUDA_HOME and
# TORCH_CUDA_ARCH_LIST (default 9.0) are honoured. Re-runs are incremental.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
build="${BUILD_DIR:-$root/build/cmake}"

# torch's CMake prefix, and (CUDA builds of torch only) what find_package(Torch) needs
# to locate CUDA even though only CPU targets are built: see NOTES.md.
mapfile -t info < <("$PYTHON" - <<'PY'
import glob, os, torch
print(torch.utils.cmake_prefix_path)
print(torch.version.cuda or "")
site = os.path.dirname(os.path.dirname(torch.__file__))
libs = glob.glob(os.path.join(site, "nvidia", "cu*", "lib", "libnvrtc.so*"))
libs += glob.glob(os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))
print(sorted(libs)[0] if libs else "")
PY
)
args=(-DCMAKE_PREFIX_PATH="${info[0]}" -DCMAKE_BUILD_TYPE=Release)
if [[ -n "${info[1]}" ]]; then
  args+=(-DCUDA_TOOLKIT_ROOT_DIR="${CUDA_HOME:-/usr/local/cuda}"
         -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}")
  [[ -n "${info[2]}" ]] && args+=(-DCUDA_NVRTC_LIB="${info[2]}")
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[[ -f "$build/CMakeCache.txt" ]] && generator=()  # keep the generator of an existing build

cmake -S "$root" -B "$build" "${generator[@]}" "${args[@]}"
cmake --build "$build" --parallel "${MAX_JOBS:-2}"
cd "$build" && ctest --output-on-failure
