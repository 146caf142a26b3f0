// accuracy_level 4 on AVX2, for x86 CPUs without AVX-512 VNNI: VPMADDUBSW multiplies 32 unsigned codes by 32 int8
// activations and adds pairs into int16 (at most 2 * 15 * 127, no saturation), VPMADDWD widens pairs of those to
// int32; the block's two scales are applied once per block in fp32, as in int8_avx512.cc.  16 packed bytes (one
// 32-k chunk) become [16 low nibbles, 16 high nibbles], the a_split order the activations were quantized in.
//
// This file alone is compiled with -mavx2 -mfma; dispatch.cc calls it only when CPUID reports both.
#include <immintrin.h>

#include "int4_problem.h"
#include "int8_rows.h"

namespace awq2trt_ort {
namespace {

inline __m256i expand32(const uint8_t* bytes) {
  const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(c), _mm_srli_epi64(c, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

struct Path {
  // 2 x 2 tiles: 4 fp32 and 4 int32 accumulators, 2 code, 1 activation and 1 constant register, of 16 ymm.
  static constexpr int kRows = 2, kCols = 2, kColsSingle = 2;
  template <int MT, int NT>
  static void tile(const Int4Problem& p, int64_t n0, int64_t m0, float out[MT][NT]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[MT][NT];
    for (int r = 0; r < MT; ++r)
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm256_setzero_ps();
    for (int64_t g = 0; g < p.groups; ++g) {
      __m256i dots[MT][NT];
      for (int r = 0; r < MT; ++r)
        for (int j = 0; j < NT; ++j) dots[r][j] = _mm256_setzero_si256();
      for (int64_t k = g * p.group; k < (g + 1) * p.group; k += 32) {
        __m256i w[NT];
        for (int j = 0; j < NT; ++j) w[j] = expand32(p.codes + (n0 + j) * p.row_bytes + k / 2);
        for (int r = 0; r < MT; ++r) {
          const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.a_q + (m0 + r) * p.k + k));
          for (int j = 0; j < NT; ++j)
            dots[r][j] = _mm256_add_epi32(dots[r][j], _mm256_madd_epi16(_mm256_maddubs_epi16(w[j], x), ones));
        }
      }
      for (int r = 0; r < MT; ++r) {
        const float a_scale = p.a_scale[(m0 + r) * p.groups + g];
        for (int j = 0; j < NT; ++j) {
          const __m256 scale = _mm256_set1_ps(p.scales[(n0 + j) * p.groups + g] * a_scale);
          acc[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[r][j]), scale, acc[r][j]);
        }
      }
    }
    for (int r = 0; r < MT; ++r) {
      for (int j = 0; j < NT; ++j) {
        __m128 half = _mm_add_ps(_mm256_castps256_ps128(acc[r][j]), _mm256_extractf128_ps(acc[r][j], 1));
        half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        // The zero-point term sum_g s_w * z * a_sum, once per output.
        const int64_t n = n0 + j;
        float correction = 0.0f;
        for (int64_t g = 0; g < p.groups; ++g) {
          const float zero = p.zeros != nullptr ? static_cast<float>(p.zeros[n * p.groups + g]) : 8.0f;
          correction += p.scales[n * p.groups + g] * zero * p.a_sum[(m0 + r) * p.groups + g];
        }
        out[r][j] = _mm_cvtss_f32(_mm_add_ss(half, _mm_movehdup_ps(half))) - correction;
      }
    }
  }
};

}  // namespace

void int8_rows_avx2(const Int4Problem& p, int64_t n_begin, int64_t n_end) { int8_rows<Path>(p, n_begin, n_end); }

}  // namespace awq2trt_ort
