// The activation layouts the paths read, made once per call before the rows of Y are split across threads:
// the de-interleaved fp32 order of the SIMD paths (Int4Problem::a_split) and the int8 blocks of accuracy_level 4.
#include <cmath>

#include "activation_order.h"
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

// The same blocks as MatMulNBits' accuracy level 4 (one symmetric scale per block of block_size k's per row,
// amax / 127), so the two modes have the same quantization error and only summation order differs.
void quantize_activations(const float* a, int64_t k, int64_t group, int split_span, int64_t m_begin, int64_t m_end,
                          int8_t* a_q, float* a_scale, float* a_sum) {
  const int64_t groups = k / group;
  for (int64_t row = m_begin; row < m_end; ++row) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* in = a + row * k + g * group;
      float amax = 0.0f;
      for (int64_t j = 0; j < group; ++j) {
        const float magnitude = std::fabs(in[j]);
        amax = magnitude > amax ? magnitude : amax;  // inline, unlike fmax (a libm call per element at -O2)
      }
      const float scale = amax / 127.0f;
      const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
      int8_t* out = a_q + row * k;
      int32_t sum = 0;
      for (int64_t j = 0; j < group; ++j) {
        // Round to nearest, ties to even (as MLAS' cvtps2dq) by adding and removing 1.5 * 2^23: exact for |x| <=
        // 2^22 under the default rounding mode, and inline where nearbyint was a libm call per element (at M = 128
        // it cost as much as the int8 GEMM itself).
        constexpr float kRound = 12582912.0f;
        const float scaled = in[j] * inverse;
        const int32_t q = static_cast<int32_t>((scaled + kRound) - kRound);
        const int32_t clamped = q > 127 ? 127 : q < -127 ? -127 : q;
        const int64_t at = g * group + j;
        out[split_span != 0 ? row_index(at, split_span, k) : at] = static_cast<int8_t>(clamped);
        sum += clamped;
      }
      a_scale[row * groups + g] = scale;
      a_sum[row * groups + g] = scale * static_cast<float>(sum);
    }
  }
}

}  // namespace awq2trt_ort
