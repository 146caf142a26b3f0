// The de-interleaved activation layout the SIMD paths read (Int4Problem::a_split): made once per call, before
// the rows are split across threads, so each thread reads it instead of shuffling nibbles.
#include "int4_problem.h"

namespace awq2trt_ort {

void split_activations(const float* a, int64_t m, int64_t k, float* out) {
  for (int64_t row = 0; row < m; ++row) {
    for (int64_t c = 0; c < k; c += 32) {
      const float* in = a + row * k + c;
      float* chunk = out + row * k + c;
      for (int j = 0; j < 16; ++j) {
        chunk[j] = in[2 * j];
        chunk[16 + j] = in[2 * j + 1];
      }
    }
  }
}

}  // namespace awq2trt_ort
