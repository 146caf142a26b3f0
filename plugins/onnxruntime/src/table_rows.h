// The row loop both table-lookup paths (AVX2, AVX-512) share: per output row, its group tables, then the
// activation rows four at a time (one pass over the row's codes serves four dot products) and the rest one by one.
//
// A path is a type with `static void build_tables(const Int4Problem&, int64_t n, float* tables)` and
// `template <int MT> static void dot_rows(const Int4Problem&, const uint8_t* row, const float* tables, int64_t m0,
// float* out)`.  This header is included only by the path files, so each instantiation is compiled with its own
// instruction-set flags.
#pragma once

#include <vector>

#include "int4_problem.h"

namespace awq2trt_ort {

template <typename Path>
void table_rows(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  std::vector<float> tables(static_cast<size_t>(p.groups * 16));
  float out[4];
  for (int64_t n = n_begin; n < n_end; ++n) {
    Path::build_tables(p, n, tables.data());
    const uint8_t* row = p.codes + n * p.row_bytes;
    const float bias = p.bias != nullptr ? p.bias[n] : 0.0f;
    int64_t m = 0;
    for (; m + 4 <= p.m; m += 4) {
      Path::template dot_rows<4>(p, row, tables.data(), m, out);
      for (int r = 0; r < 4; ++r) p.y[(m + r) * p.n + n] = out[r] + bias;
    }
    for (; m < p.m; ++m) {
      Path::template dot_rows<1>(p, row, tables.data(), m, out);
      p.y[m * p.n + n] = out[0] + bias;
    }
  }
}

}  // namespace awq2trt_ort
