"""Float vs packed-ternary matmul on this machine (first version: a few shapes, hot weights).

    python benchmarks/matmul.py --quick
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import bitops


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 5 if args.quick else 20
    print(f"bitops backend: {bitops.backend()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'M':>5} {'N x K':>12} {'fp32 ms':>9} {'ternary ms':>11} {'speedup':>8}")
    for n, k in [(4096, 4096), (6912, 2560)]:
        w = torch.randn(n, k)
        wq, gamma = bitops.ternary_quantize(w)
        packed = bitops.pack_ternary(wq)
        for m in (1, 32) if args.quick else (1, 8, 32, 128, 512):
            x = torch.randn(m, k)
            t_f = median_time(lambda: F.linear(x, w), repeats)
            t_t = median_time(lambda: bitops.ternary_linear(x, packed, gamma), repeats)
            print(f"{m:>5} {f'{n}x{k}':>12} {t_f * 1e3:>9.3f} {t_t * 1e3:>11.3f} {t_f / t_t:>7.2f}x")


if __name__ == "__main__":
    main()
