// The tile loop both int8-activation row paths (AVX2, AVX-512 VNNI) share: Y in tiles of MT activation rows by
// NT output rows, so one expansion of a code row serves MT rows of A and one load of A serves NT code rows.
//
// A path is a type with its tile shapes `kRows` x `kCols` (what fits its register file), `kColsSingle` (the NT
// of single activation rows, as in decode) and `template <int MT, int NT> static void tile(const Int4Problem&,
// int64_t n0, int64_t m0, float out[MT][NT])`, giving sum_g s_w[n, g] * (a_scale[m, g] * (codes . a_q over block
// g) - z[n, g] * a_sum[m, g]).  The bias is added here.  Included only by the path files, so each instantiation
// is compiled with its own instruction-set flags.
#pragma once

#include "int4_problem.h"

namespace awq2trt_ort {

template <typename Path, int MT, int NT>
void int8_tile_store(const Int4Problem& p, int64_t n0, int64_t m0) {
  float out[MT][NT];
  Path::template tile<MT, NT>(p, n0, m0, out);
  for (int r = 0; r < MT; ++r)
    for (int j = 0; j < NT; ++j) p.y[(m0 + r) * p.n + n0 + j] = out[r][j] + (p.bias != nullptr ? p.bias[n0 + j] : 0.0f);
}

template <typename Path, int MT, int NT>
void int8_rows_of(const Int4Problem& p, int64_t n_begin, int64_t n_end, int64_t m_begin, int64_t m_end) {
  for (int64_t m = m_begin; m + MT <= m_end; m += MT) {
    int64_t n = n_begin;
    for (; n + NT <= n_end; n += NT) int8_tile_store<Path, MT, NT>(p, n, m);
    for (; n < n_end; ++n) int8_tile_store<Path, MT, 1>(p, n, m);
  }
}

// Activation rows in blocks (every output row of the task per block), so a block of A is re-read from L2, not
// all of A from memory per tile of output rows.
constexpr int64_t kInt8RowBlock = 32;

template <typename Path>
void int8_rows(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  constexpr int kMt = Path::kRows;
  for (int64_t m_block = 0; m_block < p.m; m_block += kInt8RowBlock) {
    const int64_t m_end = m_block + kInt8RowBlock < p.m ? m_block + kInt8RowBlock : p.m;
    const int64_t m_tiles_end = m_block + (m_end - m_block) / kMt * kMt;
    int8_rows_of<Path, kMt, Path::kCols>(p, n_begin, n_end, m_block, m_tiles_end);
    int8_rows_of<Path, 1, Path::kColsSingle>(p, n_begin, n_end, m_tiles_end, m_end);
  }
}

}  // namespace awq2trt_ort
