// The row loop both table-lookup paths (AVX2, AVX-512) share: per output row, its group tables, then the
// activation rows four at a time (one pass over the row's codes serves four dot products) and the rest one by one.
// Activation rows go in blocks of kRowBlock, every output row of the task per block, so a block of A is read from
// L2 once per output row instead of all of A from memory (which made M >= 128 memory-bound on A).
//
// A path is a type with `static void build_tables(const Int4Problem&, int64_t n, float* tables)` and
// `template <int MT> static void dot_rows(const Int4Problem&, const uint8_t* row, const float* tables, int64_t m0,
// float* out)`.  This header is included only by the path files, so each instantiation is compiled with its own
// instruction-set flags.
#pragma once

#include <vector>

#include "int4_problem.h"

namespace awq2trt_ort {

constexpr int64_t kRowBlock = 16;

template <typename Path>
void table_rows(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  // Tables of every output row of the task, built once (groups * 16 floats each).
  std::vector<float> tables(static_cast<size_t>((n_end - n_begin) * p.groups * 16));
  for (int64_t n = n_begin; n < n_end; ++n) Path::build_tables(p, n, tables.data() + (n - n_begin) * p.groups * 16);
  float out[4];
  for (int64_t m_block = 0; m_block < p.m; m_block += kRowBlock) {
    const int64_t m_end = m_block + kRowBlock < p.m ? m_block + kRowBlock : p.m;
    for (int64_t n = n_begin; n < n_end; ++n) {
      const float* table = tables.data() + (n - n_begin) * p.groups * 16;
      const uint8_t* row = p.codes + n * p.row_bytes;
      const float bias = p.bias != nullptr ? p.bias[n] : 0.0f;
      int64_t m = m_block;
      for (; m + 4 <= m_end; m += 4) {
        Path::template dot_rows<4>(p, row, table, m, out);
        for (int r = 0; r < 4; ++r) p.y[(m + r) * p.n + n] = out[r] + bias;
      }
      for (; m < m_end; ++m) {
        Path::template dot_rows<1>(p, row, table, m, out);
        p.y[m * p.n + n] = out[0] + bias;
      }
    }
  }
}

}  // namespace awq2trt_ort
