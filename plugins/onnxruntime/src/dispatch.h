// Which compute path runs: chosen by CPUID once, or forced (tests force each path in turn).
#pragma once

#include <cstdint>

#include "int4_problem.h"

namespace awq2trt_ort {

enum class Path : int { kScalar = 0, kAvx512 = 1 };

using RowsFn = void (*)(const Int4Problem&, int64_t, int64_t);

// The path the next Compute uses: the forced one if set, else the best this CPU supports.
Path active_path();
// Force a path (-1: back to CPUID's choice); false if this CPU or build cannot run it.
bool force_path(int path);
// The rows function for this problem on the active path (SIMD paths fall back to scalar on shapes they skip).
RowsFn rows_function(const Int4Problem& p);
const char* path_name(Path path);

}  // namespace awq2trt_ort
