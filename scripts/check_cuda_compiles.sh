#!/usr/bin/env bash
# Compile-checks the CUDA code without a GPU: every .cu under csrc/ for sm_80 and
# sm_90, and the CUDA torch glue (csrc/cuda_ops.cpp) for syntax against torch's
# headers. Skips (exit 0) when nvcc is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null; then
  echo "nvcc not found: CUDA compile check skipped"
  exit 0
fi
PY=${PYTHON:-.venv/bin/python}
# The CUDA headers: $CUDA_HOME, else the usual install places.
CUDA_INC=""
for d in "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include /usr/local/cuda-*/include \
         "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/include"; do
  if [ -f "$d/cuda_runtime_api.h" ]; then CUDA_INC=$d; break; fi
done
status=0
shopt -s nullglob globstar
for f in csrc/**/*.cu; do
  if nvcc -std=c++17 -c -o /dev/null -I csrc -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 "$f"; then
    echo "nvcc ok: $f (sm_80, sm_90)"
  else
    echo "nvcc FAILED: $f"; status=1
  fi
done
if [ -f csrc/cuda_ops.cpp ] && [ -z "$CUDA_INC" ]; then
  echo "CUDA headers not found: csrc/cuda_ops.cpp syntax check skipped"
elif [ -f csrc/cuda_ops.cpp ]; then
  # A CPU build of torch ships c10/cuda headers but not the generated
  # cuda_cmake_macros.h they include: an empty stand-in is enough for a syntax check.
  stub=$(mktemp -d)
  mkdir -p "$stub/c10/cuda/impl"
  : >"$stub/c10/cuda/impl/cuda_cmake_macros.h"
  TORCH_INC=$("$PY" -c "from torch.utils.cpp_extension import include_paths; print(' '.join('-I' + p for p in include_paths()))")
  PY_INC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  if g++ -std=c++17 -w -fsyntax-only -DBITOPS_WITH_CUDA -I csrc -I "$CUDA_INC" -I "$PY_INC" $TORCH_INC -I "$stub" csrc/cuda_ops.cpp; then
    echo "g++ ok: csrc/cuda_ops.cpp (syntax, with CUDA headers)"
  else
    echo "g++ FAILED: csrc/cuda_ops.cpp"; status=1
  fi
fi
exit $status
