// The AVX-512F path: one pass over each row's packed codes, dequantized in registers by a table lookup.
//
// With 4-bit codes, a group's 16 possible weights (c - z) * s fit one zmm register, so dequantizing 16 codes is a
// single VPERMPS (it reads only the low 4 bits of each index) instead of convert, subtract and multiply.  The
// weights equal the scalar path's bit for bit; only the summation order differs.  Within a 16-byte chunk the low
// nibbles are the even k's and the high nibbles the odd k's, so the activations come de-interleaved the same way
// (Int4Problem::a_split, made once per call) and no byte shuffles are needed.
//
// This file alone is compiled with -mavx512f; dispatch.cc calls it only when CPUID reports AVX-512F.
#include "avx512_intrinsics.h"

#include "int4_problem.h"
#include "table_rows.h"

namespace awq2trt_ort {
namespace {

constexpr int64_t kChunk = 32;  // codes per 16-byte load

// The per-group lookup tables of one output row: tables[g * 16 + c] = (c - z[g]) * s[g].
void build_tables(const Int4Problem& p, int64_t n, float* tables) {
  const __m512 codes = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t g = 0; g < p.groups; ++g) {
    const float zero = p.zeros != nullptr ? static_cast<float>(p.zeros[n * p.groups + g]) : 8.0f;
    const __m512 centered = _mm512_sub_ps(codes, _mm512_set1_ps(zero));  // exact: small integers
    _mm512_storeu_ps(tables + g * 16, _mm512_mul_ps(centered, _mm512_set1_ps(p.scales[n * p.groups + g])));
  }
}

// MT activation rows against one code row; two chunks per step with separate accumulators so the FMA latency
// chain does not bound the M = 1 case.
template <int MT>
void dot_rows(const Int4Problem& p, const uint8_t* row, const float* tables, int64_t m0, float* out) {
  const int64_t chunks = p.k / kChunk, chunks_per_group = p.group / kChunk;
  __m512 acc[MT][4];
  for (int r = 0; r < MT; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  auto step = [&](int64_t c, int slot) {
    const __m512 table = _mm512_loadu_ps(tables + (c / chunks_per_group) * 16);
    const __m512i low = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c * 16)));
    const __m512 even = _mm512_permutexvar_ps(low, table);
    const __m512 odd = _mm512_permutexvar_ps(_mm512_srli_epi32(low, 4), table);
    for (int r = 0; r < MT; ++r) {
      const float* a = p.a_split + (m0 + r) * p.k + c * kChunk;
      acc[r][slot] = _mm512_fmadd_ps(even, _mm512_loadu_ps(a), acc[r][slot]);
      acc[r][slot + 1] = _mm512_fmadd_ps(odd, _mm512_loadu_ps(a + 16), acc[r][slot + 1]);
    }
  };
  int64_t c = 0;
  for (; c + 1 < chunks; c += 2) {
    step(c, 0);
    step(c + 1, 2);
  }
  if (c < chunks) step(c, 0);
  for (int r = 0; r < MT; ++r) {
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3]));
    out[r] = _mm512_reduce_add_ps(sum);
  }
}

// The path as table_rows drives it.
struct Path {
  static void build_tables(const Int4Problem& p, int64_t n, float* tables) { awq2trt_ort::build_tables(p, n, tables); }
  template <int MT>
  static void dot_rows(const Int4Problem& p, const uint8_t* row, const float* tables, int64_t m0, float* out) {
    awq2trt_ort::dot_rows<MT>(p, row, tables, m0, out);
  }
};

}  // namespace

bool int4_avx512_handles(const Int4Problem& p) { return p.group % kChunk == 0; }

void int4_rows_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  table_rows<Path>(p, n_begin, n_end);
}

}  // namespace awq2trt_ort
