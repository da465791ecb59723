// Prints this core's clock and int8 peak rates as JSON (benchmark only; built and
// run by benchmarks/int8_gemm.py). One thread; CPU time, so lost slices do not count.
#include "int8_peak.h"

int main() {
  const double hz = peak::clock_hz(), mps = peak::maddubs_per_second(0.3, peak::now);
  const double vnni = peak::vnni_macs_per_second(0.3, peak::now);
  std::printf("{\"clock_ghz\": %.3f, \"maddubs_per_cycle\": %.3f, \"int8_peak_gmacs_per_core\": %.1f, "
              "\"vnni_peak_gmacs_per_core\": %.1f}\n",
              hz / 1e9, mps / hz, 32 * mps / 1e9, vnni / 1e9);
  return 0;
}
