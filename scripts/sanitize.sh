#!/usr/bin/env bash
# Builds the CPU kernels (every csrc/kernels/cpu/*.cpp) with AddressSanitizer and
# UndefinedBehaviorSanitizer into tests/native/sanitize_driver.cpp (no torch) and
# runs it. No -march flags: the AVX2 and AVX-512 code turns on its ISA per file
# (#pragma GCC target), and must build and be dispatched exactly as in the wheel.
# Exits non-zero on any finding.
#   bash scripts/sanitize.sh [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX:-g++}
OUT=${BITOPS_SANITIZE_DIR:-build/sanitize}
mkdir -p "$OUT"
rm -f "$OUT"/*.o
# Same semantics flags as setup.py (-ffp-contract=off keeps a*b+c as two roundings).
export CXX OUT FLAGS="-std=c++17 -g -O1 -fno-omit-frame-pointer -ffp-contract=off -fno-math-errno
  -fsanitize=address,undefined -fno-sanitize-recover=all -Wall -Wno-unused-function"
# One object per source, compiled in parallel (the sanitized AVX2 files dominate the time).
ls tests/native/sanitize_driver.cpp csrc/kernels/cpu/*.cpp |
  xargs -P "$(nproc)" -I{} sh -c 'o="$OUT/$(echo {} | tr / _).o"; $CXX $FLAGS -c {} -o "$o"'
# shellcheck disable=SC2086
"$CXX" $FLAGS "$OUT"/*.o -o "$OUT/sanitize_driver"
# halt_on_error: the first finding fails the run; detect_leaks: the driver frees everything.
ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$OUT/sanitize_driver" "$@"
