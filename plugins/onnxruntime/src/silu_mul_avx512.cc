// silu(gate) * up, 16 columns per vector, with e^x computed in registers: a libm call per element cost as much
// as a small node's matmul.  This file alone is compiled with -mavx512f; silu_mul.cc calls it only on the AVX-512
// path (CPUID).
#include "avx512_intrinsics.h"

#include "silu_mul.h"

namespace awq2trt_ort {
namespace {

// e^x for x in [-88, 88] (clamped there; silu needs no more: beyond it the result is 0 or x to fp32 precision).
// x = n ln2 + r with |r| <= ln2 / 2, ln2 split in a high part exact in 9 bits and a low part (Cody and Waite), so
// r is exact to fp32; e^r by its Taylor series up to r^7 (truncation below 2e-9 relative, under fp32's
// rounding); 2^n applied exactly by VSCALEFPS.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440054690583e-4f), r);
  constexpr float kInverseFactorials[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
  __m512 e = _mm512_set1_ps(kInverseFactorials[0]);
  for (int i = 1; i < 8; ++i) e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(kInverseFactorials[i]));
  return _mm512_scalef_ps(e, n);
}

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
