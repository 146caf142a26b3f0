// One Int4MatMul call as the compute paths see it: fp32 activations (or their int8 blocks), scales and bias,
// packed codes.
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
  // nibbles of 16 packed bytes); made only for the paths that read it (PathPlan::split_span = 32).
  const float* a_split = nullptr;
  // accuracy_level 4: A quantized per block of `group` k's per row, symmetric: a ~= a_q * a_scale.  a_q is in the
  // order PathPlan::split_span asks (the int8 rows: spans of 128 or 32; the int8 GEMM: 8); a_sum[m, g] is
  // a_scale * sum(a_q) over the block (the zero-point term).  Null in exact mode.
  const int8_t* a_q = nullptr;      // [M, K]
  const float* a_scale = nullptr;   // [M, groups]
  const float* a_sum = nullptr;     // [M, groups]
  bool int8_activations = false;    // accuracy_level 4 (set before plan_for: it picks the int8 rows)
  // codes, scales and zeros in the tiles16 layout (NodeAttributes::tiles16; set before plan_for): only
  // int8_tiles_avx512 reads it, every other path gets 16-row slices turned back into rows (untile_rows).
  bool tiles16 = false;
  int64_t m = 0, k = 0, n = 0, group = 0, groups = 0, row_bytes = 0;
};

// The portable reference: exact fp32 dequantization per group, fp32 accumulation.
void int4_rows_scalar(const Int4Problem& p, int64_t n_begin, int64_t n_end);

// The AVX-512F path (int4_avx512.cc): groups that are whole 32-code chunks (block_size % 32 == 0), any M.
bool int4_avx512_handles(const Int4Problem& p);
void int4_rows_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end);

// Its blocked GEMM for M >= kGemmMinRows (int4_gemm_avx512.cc): a task dequantizes its rows once into a panel.
void int4_gemm_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end);
int64_t int4_gemm_avx512_rows_per_task(const Int4Problem& p);

// The AVX2 + FMA path (int4_avx2.cc): the same shapes as the AVX-512 one.
bool int4_avx2_handles(const Int4Problem& p);
void int4_rows_avx2(const Int4Problem& p, int64_t n_begin, int64_t n_end);

// Exact mode with int8 activations (accuracy_level 4): Y ~= sum_g s_w * a_scale * (q . a_q - z * sum a_q).
void int8_rows_scalar(const Int4Problem& p, int64_t n_begin, int64_t n_end);
// AVX-512 VNNI (int8_avx512.cc, VPDPBUSD) and AVX2 (int8_avx2.cc, VPMADDUBSW): block_size % 32 == 0.
void int8_rows_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end);
void int8_rows_avx2(const Int4Problem& p, int64_t n_begin, int64_t n_end);
// The VNNI GEMM for M >= kInt8GemmMinRows (int8_gemm_avx512.cc): a_q in spans of 8, 32 output rows per task.
void int8_gemm_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end);

// accuracy_level 4 on AVX-512 VNNI with tiles16 weights (int8_tiles_avx512.cc): a_q in spans of 8, any M; n_begin
// a multiple of 16.
void int8_tiles_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end);

// Rows [n_begin, n_end) (n_begin a multiple of 16) of a tiles16 problem's weights in the rows layout: codes
// [rows, row_bytes], scales [rows, groups], zeros [rows, groups] (left empty when the problem has none).
void untile_rows(const Int4Problem& p, int64_t n_begin, int64_t n_end, uint8_t* codes, float* scales, uint8_t* zeros);

// a_split for a [M, K] activation, K a multiple of 32.
void split_activations(const float* a, int64_t m, int64_t k, float* out);
// Rows [m_begin, m_end) of A as int8 blocks of `group` k's (amax / 127 scale, round to nearest even), each span of
// split_span k's written as its even k's then its odd k's (0: k order); where a row's last span would be short,
// its rest goes in spans of 32.
void quantize_activations(const float* a, int64_t k, int64_t group, int split_span, int64_t m_begin, int64_t m_end,
                          int8_t* a_q, float* a_scale, float* a_sum);
// The same blocks, bit for bit, on AVX-512F + BW (activation_layout_avx512.cc): what the int8 plans of the AVX-512
// path use (PathPlan::quantize).
void quantize_activations_avx512(const float* a, int64_t k, int64_t group, int split_span, int64_t m_begin,
                                 int64_t m_end, int8_t* a_q, float* a_scale, float* a_sum);

}  // namespace awq2trt_ort
