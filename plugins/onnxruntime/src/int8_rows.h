// The tile loop both int8-activation SIMD paths (AVX2, AVX-512 VNNI) share: Y in tiles of MT activation rows by
// NT output rows, so one expansion of a code row serves MT rows of A and one load of A serves NT code rows.
//
// A path is a type with its tile shape `kRows`, `kCols` (what fits its register file) and `template <int MT, int NT> static void tile(const Int4Problem&, int64_t n0, int64_t m0,
// float out[MT][NT])`, giving sum_g s_w[n, g] * a_scale[m, g] * (codes . a_q over block g).  The zero-point term
// sum_g s_w * z * a_sum and the bias are added here.  Included only by the path files, so each instantiation is
// compiled with its own instruction-set flags.
#pragma once

#include <vector>

#include "int4_problem.h"

namespace awq2trt_ort {

// zero_terms[g] = s_w[n, g] * z[n, g] for one output row.
inline void int8_zero_terms(const Int4Problem& p, int64_t n, float* zero_terms) {
  for (int64_t g = 0; g < p.groups; ++g) {
    const float zero = p.zeros != nullptr ? static_cast<float>(p.zeros[n * p.groups + g]) : 8.0f;
    zero_terms[g] = p.scales[n * p.groups + g] * zero;
  }
}

template <typename Path, int MT, int NT>
void int8_tile_store(const Int4Problem& p, int64_t n0, int64_t m0, const float* zero_terms) {
  float out[MT][NT];
  Path::template tile<MT, NT>(p, n0, m0, out);
  for (int r = 0; r < MT; ++r) {
    const float* a_sum = p.a_sum + (m0 + r) * p.groups;
    for (int j = 0; j < NT; ++j) {
      const float* zt = zero_terms + j * p.groups;  // the tile's output rows are consecutive
      float correction = 0.0f;
      for (int64_t g = 0; g < p.groups; ++g) correction += zt[g] * a_sum[g];
      const int64_t n = n0 + j;
      p.y[(m0 + r) * p.n + n] = out[r][j] - correction + (p.bias != nullptr ? p.bias[n] : 0.0f);
    }
  }
}

template <typename Path, int NT>
void int8_columns(const Int4Problem& p, int64_t n0, int64_t m_begin, int64_t m_end, const float* zero_terms) {
  constexpr int kMt = Path::kRows;
  int64_t m = m_begin;
  for (; m + kMt <= m_end; m += kMt) int8_tile_store<Path, kMt, NT>(p, n0, m, zero_terms);
  for (; m < m_end; ++m) int8_tile_store<Path, 1, NT>(p, n0, m, zero_terms);
}

// Activation rows in blocks (every output row of the task per block), so a block of A is re-read from L2, not
// all of A from memory per pair of output rows.
constexpr int64_t kInt8RowBlock = 32;

template <typename Path>
void int8_rows(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  constexpr int kNt = Path::kCols;
  std::vector<float> zero_terms(static_cast<size_t>((n_end - n_begin) * p.groups));
  for (int64_t n = n_begin; n < n_end; ++n) int8_zero_terms(p, n, zero_terms.data() + (n - n_begin) * p.groups);
  for (int64_t m_block = 0; m_block < p.m; m_block += kInt8RowBlock) {
    const int64_t m_end = m_block + kInt8RowBlock < p.m ? m_block + kInt8RowBlock : p.m;
    int64_t n = n_begin;
    for (; n + kNt <= n_end; n += kNt)
      int8_columns<Path, kNt>(p, n, m_block, m_end, zero_terms.data() + (n - n_begin) * p.groups);
    for (; n < n_end; ++n) int8_columns<Path, 1>(p, n, m_block, m_end, zero_terms.data() + (n - n_begin) * p.groups);
  }
}

}  // namespace awq2trt_ort
