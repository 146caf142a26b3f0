// silu(gate) * up, 16 columns per vector, with e^x computed in registers (exp_avx512.h).  This file is compiled
// with -mavx512f; silu_mul.cc calls it only on the AVX-512 path (CPUID).
#include "exp_avx512.h"

#include "silu_mul.h"

namespace awq2trt_ort {
namespace {

inline __m512 silu_mul(__m512 gate, __m512 up) {
  const __m512 denominator = _mm512_add_ps(_mm512_set1_ps(1.0f), exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), gate)));
  return _mm512_mul_ps(_mm512_div_ps(gate, denominator), up);
}

}  // namespace

void silu_mul_avx512(const float* product, int64_t m, int64_t half, int64_t begin, int64_t end, float* y) {
  for (int64_t r = 0; r < m; ++r) {
    const float* gate = product + r * 2 * half;
    const float* up = gate + half;
    float* out = y + r * half;
    int64_t j = begin;
    for (; j + 16 <= end; j += 16) _mm512_storeu_ps(out + j, silu_mul(_mm512_loadu_ps(gate + j), _mm512_loadu_ps(up + j)));
    if (j < end) {
      const __mmask16 mask = static_cast<__mmask16>((1u << (end - j)) - 1u);
      const __m512 g = _mm512_maskz_loadu_ps(mask, gate + j), u = _mm512_maskz_loadu_ps(mask, up + j);
      _mm512_mask_storeu_ps(out + j, mask, silu_mul(g, u));
    }
  }
}

}  // namespace awq2trt_ort
