#!/usr/bin/env bash
# The GPU suite (DESIGN.md section 5): on a GPU machine with torch already
# installed and no internet, in one go:
#   build in place with the CUDA kernels, run the CUDA tests (then the rest of
#   the suite if time allows), run the CUDA benchmark, build a wheel and import
#   it from a clean --target directory, run compute-sanitizer (memcheck and
#   racecheck) on a small test run.
# Everything is logged to OUTDIR/suite.log; OUTDIR also gets summary.txt
# (one line per step: name, exit status, seconds), cuda_bench.json and cuda_bench.md.
#
#   bash scripts/gpu_suite.sh OUTDIR
#
# SUITE_BUDGET_S (default 580) bounds the whole run: each step gets at most what
# is left, most important steps first, so a time limit never loses the results.
# TORCH_CUDA_ARCH_LIST defaults to 9.0 (Hopper) here; GPU wheels for users use
# "8.0;8.6;8.9;9.0" (docs/gpu.md).
set -uo pipefail
OUT=${1:?usage: bash scripts/gpu_suite.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 BITOPS_CUDA=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the in-place build, for benchmarks/
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
PY=${PYTHON:-python3}
# Build with the system g++ (the one torch was built with, sharing its libstdc++):
# on the H100 machine CXX pointed at /opt/gcc/bin/g++, whose extension did not
# share torch's C++ runtime, and any C++ exception raised by an op (bad input)
# then segfaulted the process. BITOPS_KEEP_CXX=1 keeps the caller's CC/CXX.
if [ -z "${BITOPS_KEEP_CXX:-}" ] && [ -x /usr/bin/g++ ] && [ -x /usr/bin/gcc ]; then
  export CC=/usr/bin/gcc CXX=/usr/bin/g++
fi
LOG=$OUT/suite.log
SUMMARY=$OUT/summary.txt
BUDGET=${SUITE_BUDGET_S:-580}
T0=$(date +%s)
: >"$LOG"
: >"$SUMMARY"
failed=0

# step NAME MAX_SECONDS CMD...: runs CMD with a timeout of min(MAX, time left).
step() {
  local name=$1 max=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - T0)))
  local limit=$((max < left ? max : left))
  if [ "$limit" -lt 20 ]; then
    echo "=== $name: SKIPPED (no time left)" | tee -a "$LOG"
    echo "$name skipped 0" >>"$SUMMARY"
    return
  fi
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local s=$(date +%s)
  # bash -c: the steps may be functions of this script (exported below)
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  local secs=$(($(date +%s) - s))
  echo "=== $name: rc=$rc (${secs}s)" | tee -a "$LOG"
  echo "$name $rc $secs" >>"$SUMMARY"
  [ "$rc" -eq 0 ] || failed=1
}

info() {
  nvidia-smi || true
  nvcc --version | tail -2
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
}

build() {
  rm -f bitops/_C*.so
  "$PY" setup.py build_ext --inplace -j "$MAX_JOBS" && "$PY" -c "import bitops; b = bitops.backend('cuda'); print('backend(cuda):', b); assert b == 'cuda'"
}

wheel() {
  local w=/tmp/bitops_wheel
  rm -rf "$w" && mkdir -p "$w"
  "$PY" -m pip wheel -v --no-build-isolation --no-deps -w "$w/dist" . >"$w/pip.log" 2>&1 || { tail -50 "$w/pip.log"; return 1; }
  tail -3 "$w/pip.log"
  ls -la "$w/dist"
  "$PY" -m pip install --no-deps --target "$w/target" "$w"/dist/bitops-*.whl || return 1
  # import from another cwd, with only the target on the path: not the in-place build
  (cd "$w" && PYTHONPATH="$w/target" "$PY" - <<'PYCODE'
import torch, bitops
assert "/tmp/bitops_wheel/target" in bitops.__file__, bitops.__file__
assert bitops.backend("cuda") == "cuda", bitops.backend("cuda")
x = torch.randn(3, 300, device="cuda")
wq, gamma = bitops.ternary_quantize(torch.randn(17, 300, device="cuda"))
packed = bitops.pack_ternary(wq)
y = bitops.ternary_linear(x, packed, gamma)
assert torch.equal(y.cpu(), bitops.reference.ternary_linear(x.cpu(), packed.cpu(), gamma.cpu()))
print("wheel OK: bitops", bitops.__version__, "from", bitops.__file__, "backend(cuda) =", bitops.backend("cuda"))
PYCODE
  )
}

sanitize() {
  local tool=$1 k=$2
  BITOPS_CUDA_EXAMPLES=${3:-4} compute-sanitizer --tool "$tool" --error-exitcode 99 \
    "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -k "$k"
}

export -f info build wheel sanitize
export PY
step info 60 info
step build 300 build
step cuda_tests 240 "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider
step bench 200 "$PY" benchmarks/cuda_matmul.py --out "$OUT"
step wheel 150 wheel
step memcheck 200 sanitize memcheck "not huge and not model_shapes and not graph"
step racecheck 120 sanitize racecheck "ternary_linear_i8 or binary_linear_bit or quantize_activations_bit" 2
step other_tests 200 "$PY" -m pytest tests -q -p no:cacheprovider --ignore=tests/test_cuda.py -m "not slow"

echo "=== total $(($(date +%s) - T0))s; summary:" | tee -a "$LOG"
cat "$SUMMARY" | tee -a "$LOG"
exit $failed
