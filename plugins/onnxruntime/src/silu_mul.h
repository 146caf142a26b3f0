// The silu_mul epilogue of a fused gate/up Int4MatMul (awq2trt/passes/silu_mul.py): Y = silu(gate) * up.
#pragma once

#include <cstdint>

namespace awq2trt_ort {

// y[r, j] = silu(product[r, j]) * product[r, half + j] for rows r < m and columns j in [begin, end); product is
// [m, 2 * half], y [m, half], silu(x) = x / (1 + e^-x).  AVX-512 when the active path is (the forced scalar path
// takes the scalar loop, so tests compare both with numpy).
void silu_mul_columns(const float* product, int64_t m, int64_t half, int64_t begin, int64_t end, float* y);

// The loops behind it (silu_mul.cc, silu_mul_avx512.cc).
void silu_mul_scalar(const float* product, int64_t m, int64_t half, int64_t begin, int64_t end, float* y);
void silu_mul_avx512(const float* product, int64_t m, int64_t half, int64_t begin, int64_t end, float* y);

}  // namespace awq2trt_ort
