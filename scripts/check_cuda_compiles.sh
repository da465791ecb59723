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
CUDA_INC="$(dirname "$(dirname "$(command -v nvcc)")")/include"
status=0
shopt -s nullglob globstar
for f in csrc/**/*.cu; do
  if nvcc -std=c++17 -c -o /dev/null -I csrc -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 "$f"; then
    echo "nvcc ok: $f (sm_80, sm_90)"
  else
    echo "nvcc FAILED: $f"; status=1
  fi
done
if [ -f csrc/cuda_ops.cpp ]; then
  TORCH_INC=$("$PY" -c "from torch.utils.cpp_extension import include_paths; print(' '.join('-I' + p for p in include_paths()))")
  PY_INC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  if g++ -std=c++17 -fsyntax-only -DBITOPS_WITH_CUDA -I csrc -I "$CUDA_INC" -I "$PY_INC" $TORCH_INC csrc/cuda_ops.cpp; then
    echo "g++ ok: csrc/cuda_ops.cpp (syntax, with CUDA headers)"
  else
    echo "g++ FAILED: csrc/cuda_ops.cpp"; status=1
  fi
fi
exit $status
