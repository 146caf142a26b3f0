// The split orders the int8 and exact SIMD paths read A in (int4_problem.h): each span of `span` k's (a power of
// two) as its even k's then its odd k's.  Shared by the scalar and the AVX-512 layout files; the anonymous
// namespace gives each file its own copy, so none compiled for one instruction set stands in for another's.
#pragma once

#include <cstdint>

namespace awq2trt_ort {
namespace {

// Position of k within its span: with 32, the order of the low and high nibbles of 16 packed bytes (a_split);
// with 8, of the nibbles of 4 bytes (the int8 GEMM and tiles16).
inline int64_t split_index(int64_t k, int64_t span) {
  return (k & ~(span - 1)) + (k & 1) * (span / 2) + ((k & (span - 1)) >> 1);
}

// Spans of `span` k's while whole, the rest of the row (K is a multiple of 32) in spans of 32.
inline int64_t row_index(int64_t k, int64_t span, int64_t k_total) {
  return k < k_total / span * span ? split_index(k, span) : split_index(k, 32);
}

}  // namespace
}  // namespace awq2trt_ort
