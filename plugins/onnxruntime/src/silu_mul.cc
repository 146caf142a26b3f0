#include "silu_mul.h"

#include <cmath>

#include "dispatch.h"

namespace awq2trt_ort {

void silu_mul_scalar(const float* product, int64_t m, int64_t half, int64_t begin, int64_t end, float* y) {
  for (int64_t r = 0; r < m; ++r) {
    const float* gate = product + r * 2 * half;
    const float* up = gate + half;
    for (int64_t j = begin; j < end; ++j) {
      // e^-x overflows to inf below x = -88.7: x / inf is -0, the limit of silu there.
      y[r * half + j] = gate[j] / (1.0f + std::exp(-gate[j])) * up[j];
    }
  }
}

void silu_mul_columns(const float* product, int64_t m, int64_t half, int64_t begin, int64_t end, float* y) {
#if defined(AWQ2TRT_HAVE_X86_PATHS)
  if (active_path() == Path::kAvx512) return silu_mul_avx512(product, m, half, begin, end, y);
#endif
  silu_mul_scalar(product, m, half, begin, end, y);
}

}  // namespace awq2trt_ort
