// The scalar reference path: correct for every shape the op allows, and the yardstick for the SIMD paths.
#include "int4_problem.h"

namespace awq2trt_ort {

void int4_rows_scalar(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = p.codes + n * p.row_bytes;
    const float* row_scales = p.scales + n * p.groups;
    for (int64_t m = 0; m < p.m; ++m) {
      const float* a = p.a + m * p.k;
      float acc = 0.0f;
      for (int64_t g = 0; g < p.groups; ++g) {
        const int zero = p.zeros != nullptr ? p.zeros[n * p.groups + g] : 8;
        const float scale = row_scales[g];
        const int64_t k_end = (g + 1) * p.group < p.k ? (g + 1) * p.group : p.k;
        for (int64_t k = g * p.group; k < k_end; ++k) {
          const int code = (row[k >> 1] >> ((k & 1) * 4)) & 0x0F;
          // (q - z) * s is the dequantized weight exactly as the function body forms it, in fp32.
          acc += static_cast<float>(code - zero) * scale * a[k];
        }
      }
      p.y[m * p.n + n] = acc + (p.bias != nullptr ? p.bias[n] : 0.0f);
    }
  }
}

}  // namespace awq2trt_ort

namespace awq2trt_ort {

// accuracy_level 4 reference: the integer dot product of codes and int8 activations per block, then the two
// scales; the zero point enters as z * sum(a_q) (a_sum), so the codes stay unsigned as in the SIMD paths.
void int8_rows_scalar(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = p.codes + n * p.row_bytes;
    for (int64_t m = 0; m < p.m; ++m) {
      const int8_t* a = p.a_q + m * p.k;
      float acc = 0.0f;
      for (int64_t g = 0; g < p.groups; ++g) {
        int32_t dot = 0;
        for (int64_t k = g * p.group; k < (g + 1) * p.group; ++k) dot += ((row[k >> 1] >> ((k & 1) * 4)) & 0x0F) * a[k];
        const float zero = p.zeros != nullptr ? static_cast<float>(p.zeros[n * p.groups + g]) : 8.0f;
        const float scale = p.scales[n * p.groups + g];
        acc += scale * (p.a_scale[m * p.groups + g] * static_cast<float>(dot) - zero * p.a_sum[m * p.groups + g]);
      }
      p.y[m * p.n + n] = acc + (p.bias != nullptr ? p.bias[n] : 0.0f);
    }
  }
}

}  // namespace awq2trt_ort
