// The AVX2 + FMA path, for x86 CPUs without AVX-512: the AVX-512 path's table lookup on 8-wide registers.
//
// VPERMPS on a ymm indexes only 8 entries (the low 3 bits), so a group's 16 weights (c - z) * s live in two
// registers, both are looked up, and bit 3 of the code picks one (BLENDVPS reads the sign bit, so the code is
// shifted left by 28).  The weights equal the scalar path's bit for bit.  Activations come in the same
// de-interleaved order as for the AVX-512 path (Int4Problem::a_split).
//
// This file alone is compiled with -mavx2 -mfma; dispatch.cc calls it only when CPUID reports both.
#include <immintrin.h>

#include "int4_problem.h"
#include "table_rows.h"

namespace awq2trt_ort {
namespace {

constexpr int64_t kChunk = 32;  // codes per 16-byte load

// tables[g * 16 + c] = (c - z[g]) * s[g], as two 8-float halves.
void build_tables(const Int4Problem& p, int64_t n, float* tables) {
  const __m256 low_codes = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 eight = _mm256_set1_ps(8.0f);
  for (int64_t g = 0; g < p.groups; ++g) {
    const __m256 zero =
        _mm256_set1_ps(p.zeros != nullptr ? static_cast<float>(p.zeros[n * p.groups + g]) : 8.0f);
    const __m256 scale = _mm256_set1_ps(p.scales[n * p.groups + g]);
    const __m256 low = _mm256_sub_ps(low_codes, zero);  // exact: small integers
    _mm256_storeu_ps(tables + g * 16, _mm256_mul_ps(low, scale));
    _mm256_storeu_ps(tables + g * 16 + 8, _mm256_mul_ps(_mm256_add_ps(low, eight), scale));
  }
}

inline __m256 lookup(__m256i codes, __m256 low_half, __m256 high_half) {
  const __m256 pick_high = _mm256_castsi256_ps(_mm256_slli_epi32(codes, 28));
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(low_half, codes), _mm256_permutevar8x32_ps(high_half, codes),
                          pick_high);
}

template <int MT>
void dot_rows(const Int4Problem& p, const uint8_t* row, const float* tables, int64_t m0, float* out) {
  const int64_t chunks = p.k / kChunk, chunks_per_group = p.group / kChunk;
  __m256 acc[MT][4];
  for (int r = 0; r < MT; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  for (int64_t c = 0; c < chunks; ++c) {
    const float* table = tables + (c / chunks_per_group) * 16;
    const __m256 low_half = _mm256_loadu_ps(table), high_half = _mm256_loadu_ps(table + 8);
    const uint8_t* bytes = row + c * 16;
    const __m256i first = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes)));
    const __m256i second = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes + 8)));
    // Even k's are the low nibbles: no mask needed, as VPERMPS reads bits 0-2 and << 28 drops bits 4-7.
    const __m256 w[4] = {
        lookup(first, low_half, high_half),
        lookup(second, low_half, high_half),
        lookup(_mm256_srli_epi32(first, 4), low_half, high_half),
        lookup(_mm256_srli_epi32(second, 4), low_half, high_half),
    };
    for (int r = 0; r < MT; ++r) {
      const float* a = p.a_split + (m0 + r) * p.k + c * kChunk;
      for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_fmadd_ps(w[j], _mm256_loadu_ps(a + 8 * j), acc[r][j]);
    }
  }
  for (int r = 0; r < MT; ++r) {
    const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3]));
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    half = _mm_add_ss(half, _mm_movehdup_ps(half));
    out[r] = _mm_cvtss_f32(half);
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

bool int4_avx2_handles(const Int4Problem& p) { return p.group % kChunk == 0; }

void int4_rows_avx2(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  table_rows<Path>(p, n_begin, n_end);
}

}  // namespace awq2trt_ort
