// e^x sixteen lanes at a time, in registers: a libm call per element costs as much as a small node's matmul.
// Included only by files compiled with -mavx512f (the silu_mul epilogue, the decode attention's softmax).
#pragma once

#include "avx512_intrinsics.h"

namespace awq2trt_ort {

// e^x for x in [-88, 88] (clamped there: beyond it the result is 0 or inf to fp32 precision, and neither caller
// needs more).  x = n ln2 + r with |r| <= ln2 / 2, ln2 split in a high part exact in 9 bits and a low part (Cody
// and Waite), so r is exact to fp32; e^r by its Taylor series up to r^7 (truncation below 2e-9 relative, under
// fp32's rounding); 2^n applied exactly by VSCALEFPS.
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

}  // namespace awq2trt_ort
