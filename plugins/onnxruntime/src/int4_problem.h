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
  int64_t m = 0, k = 0, n = 0, group = 0, groups = 0, row_bytes = 0;
};

// The portable reference: exact fp32 dequantization per group, fp32 accumulation.
void int4_rows_scalar(const Int4Problem& p, int64_t n_begin, int64_t n_end);

}  // namespace awq2trt_ort
