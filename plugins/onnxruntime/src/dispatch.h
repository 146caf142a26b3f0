// Which compute path runs: chosen by CPUID once, or forced (tests force each path in turn).
#pragma once

#include <cstdint>

#include "int4_problem.h"

namespace awq2trt_ort {

enum class Path : int { kScalar = 0, kAvx512 = 1, kAvx2 = 2 };

using RowsFn = void (*)(const Int4Problem&, int64_t, int64_t);
using QuantizeFn = void (*)(const float*, int64_t, int64_t, int, int64_t, int64_t, int8_t*, float*, float*);

struct PathPlan {
  RowsFn rows;
  Path path;           // the path that runs (the scalar one when a SIMD path hands the shape over)
  // The caller fills Int4Problem::a_split (exact mode) or a_q (int8 mode) first, each span of this many k's as its
  // even k's then its odd k's; 0: a_q in k order, no a_split.
  int split_span;
  int64_t rows_per_task = 32;  // rows of Y per thread-pool task
  // A tiles16 problem on a path that reads rows: each task turns its rows back into the rows layout first
  // (untile_rows) and runs `rows` on that slice; rows_per_task is then a multiple of 16.
  bool untile = false;
  // accuracy_level 4: what makes a_q (every quantizer writes the same bits; the path's own instruction set).
  QuantizeFn quantize = quantize_activations;
};

// Exact mode on AVX-512 switches from the per-row table loop to the blocked GEMM (which reads A in k order, not
// a_split) at this many activation rows.
constexpr int64_t kGemmMinRows = 16;
// The int8 mode's VNNI GEMM takes over earlier: from 8 rows it beats the row loop, which re-reads each code row
// per 4 activation rows (SmolLM2's shapes, 1 and 2 threads: 1.2-1.7x at M = 8..12; at M = 4..6 it does not pay).
constexpr int64_t kInt8GemmMinRows = 8;

// The path the next Compute uses: the forced one if set, else the best this CPU supports.
Path active_path();
// Force a path (-1: back to CPUID's choice); false if this CPU or build cannot run it.
bool force_path(int path);
// How to compute this problem on the active path (a SIMD path hands shapes it does not take to the scalar one).
PathPlan plan_for(const Int4Problem& p);
const char* path_name(Path path);
// The SIMD paths this build has, for awq2trt_ort_build_info: e.g. "scalar avx2 avx512 avx512vnni".
const char* compiled_paths();

// The path the last finished Compute ran (tests check that a forced path was not silently handed over).
void note_last_path(Path path);
Path last_path();

}  // namespace awq2trt_ort
