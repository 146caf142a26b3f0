// The tiles16 weight layout (awq2trt/cpu_layout.py) turned back into rows, a slice at a time, for the paths that
// read rows: chunk [t, c] of B holds bytes 4c .. 4c + 3 of rows 16t .. 16t + 15, and scales and zero points are
// [T, K/G, 16].
#include <cstring>

#include "int4_problem.h"

namespace awq2trt_ort {

void untile_rows(const Int4Problem& p, int64_t n_begin, int64_t n_end, uint8_t* codes, float* scales, uint8_t* zeros) {
  const int64_t chunks = p.k / 8;
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int64_t t = n / 16, r = n % 16, out = n - n_begin;
    const uint8_t* tile = p.codes + t * chunks * 64 + r * 4;
    uint8_t* row = codes + out * p.row_bytes;
    for (int64_t c = 0; c < chunks; ++c) std::memcpy(row + c * 4, tile + c * 64, 4);
    for (int64_t g = 0; g < p.groups; ++g) {
      scales[out * p.groups + g] = p.scales[(t * p.groups + g) * 16 + r];
      if (p.zeros != nullptr) zeros[out * p.groups + g] = p.zeros[(t * p.groups + g) * 16 + r];
    }
  }
}

}  // namespace awq2trt_ort
