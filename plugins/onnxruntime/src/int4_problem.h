// One Int4MatMul call as the compute paths see it: fp32 activations, scales and bias, packed codes.
//
// The op's public contract (awq2trt/ir/int4_op.py): W[n, k] = (q[n, k] - z[n, k / G]) * s[n, k / G], packed
// B [N, ceil(K/2)] with even k in the low nibble, Y = A @ W^T + bias.  Every path computes rows [n_begin, n_end)
// of Y for all M activation rows, so the caller can split N across ONNX Runtime's thread pool.
#pragma once

#include <cstdint>

namespace awq2trt_ort {

struct Int4Problem {
  const float* a = nullptr;        // [M, K]
  const uint8_t* codes = nullptr;  // [N, row_bytes]
  const float* scales = nullptr;   // [N, groups]
  const uint8_t* zeros = nullptr;  // [N, groups] or null: symmetric, zero point 8
  const float* bias = nullptr;     // [N] or null
  float* y = nullptr;              // [M, N]
  // A with each 32-k chunk reordered as its 16 even k's then its 16 odd k's (the order of the low and high
  // nibbles of 16 packed bytes); made only for the paths that read it (PathPlan::wants_split_a).
  const float* a_split = nullptr;
  int64_t m = 0, k = 0, n = 0, group = 0, groups = 0, row_bytes = 0;
};

// The portable reference: exact fp32 dequantization per group, fp32 accumulation.
void int4_rows_scalar(const Int4Problem& p, int64_t n_begin, int64_t n_end);

// The AVX-512F path (int4_avx512.cc): groups that are whole 32-code chunks (block_size % 32 == 0), any M.
bool int4_avx512_handles(const Int4Problem& p);
void int4_rows_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end);

// The AVX2 + FMA path (int4_avx2.cc): the same shapes as the AVX-512 one.
bool int4_avx2_handles(const Int4Problem& p);
void int4_rows_avx2(const Int4Problem& p, int64_t n_begin, int64_t n_end);

// a_split for a [M, K] activation, K a multiple of 32.
void split_activations(const float* a, int64_t m, int64_t k, float* out);

}  // namespace awq2trt_ort
