// accuracy_level 4 on AVX-512 VNNI: VPDPBUSD multiplies 64 unsigned codes by 64 int8 activations and adds each
// four products into one of 16 int32 lanes, exactly; the block's two scales are applied once per block in fp32.
//
// Codes stay unsigned (0..15, the instruction's unsigned operand) and the zero point enters as z * sum(a_q)
// (added in fp32 once per output, vectorized over 16 blocks), so no per-code subtraction is needed.  32 packed
// bytes (64 k's) become 64 code bytes in the a_split order the activations were quantized in: [low nibbles of
// bytes 0-15, their high nibbles, low of 16-31, high of 16-31], i.e. each 32-k chunk as its 16 even k's then its
// 16 odd k's.  So lanes 0-7 of a step are the
// first 32-k chunk and lanes 8-15 the second, which lets block_size 32 take two blocks per step.
//
// This file alone is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; dispatch.cc calls it only when
// CPUID reports all four.
// The pragma is int4_avx512.cc's: GCC 12's intrinsic headers trip -Wuninitialized once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "int4_problem.h"
#include "int8_rows.h"

namespace awq2trt_ort {
namespace {

// 32 packed bytes -> 64 codes in the a_split order (above).
inline __m512i expand64(const uint8_t* bytes) {
  const __m512i both = _mm512_permutexvar_epi64(
      _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes))));
  // 128-bit lanes 1 and 3 take the high nibbles; a 64-bit shift is enough as the mask drops what crosses bytes.
  const __m512i nibbles = _mm512_mask_blend_epi64(0xCC, both, _mm512_srli_epi64(both, 4));
  return _mm512_and_si512(nibbles, _mm512_set1_epi8(0x0F));
}

// 16 packed bytes (one 32-k chunk) -> 32 codes in lanes 0-7, zeros above.
inline __m512i expand32(const uint8_t* bytes) {
  const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(c), _mm_srli_epi64(c, 4), 1);
  return _mm512_zextsi256_si512(_mm256_and_si256(both, _mm256_set1_epi8(0x0F)));
}

struct Path {
  // 4 x 2 tiles: 8 fp32 and 8 int32 accumulators, 2 code and 1 activation register, of 32 zmm; a single
  // activation row takes 4 output rows per tile, so one activation load serves four.
  static constexpr int kRows = 4, kCols = 2, kColsSingle = 4;
  template <int MT, int NT>
  static void tile(const Int4Problem& p, int64_t n0, int64_t m0, float out[MT][NT]) {
    __m512 acc[MT][NT];
    for (int r = 0; r < MT; ++r)
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
    const int8_t* a[MT];
    const float* a_scale[MT];
    for (int r = 0; r < MT; ++r) a[r] = p.a_q + (m0 + r) * p.k, a_scale[r] = p.a_scale + (m0 + r) * p.groups;
    const uint8_t* codes[NT];
    const float* w_scale[NT];
    for (int j = 0; j < NT; ++j) {
      codes[j] = p.codes + (n0 + j) * p.row_bytes;
      w_scale[j] = p.scales + (n0 + j) * p.groups;
    }

    // Adds the int32 dot products of one step (or block) times their per-lane scale to the fp32 accumulators.
    auto flush = [&](__m512i dots[MT][NT], auto scale_of) {
      for (int r = 0; r < MT; ++r)
        for (int j = 0; j < NT; ++j)
          acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[r][j]), scale_of(r, j), acc[r][j]);
    };
    __m512i dots[MT][NT];
    auto clear = [&] {
      for (int r = 0; r < MT; ++r)
        for (int j = 0; j < NT; ++j) dots[r][j] = _mm512_setzero_si512();
    };
    auto step = [&](int64_t k, bool whole) {  // 64 k's from k (or 32 when !whole)
      __m512i w[NT];
      for (int j = 0; j < NT; ++j) w[j] = whole ? expand64(codes[j] + k / 2) : expand32(codes[j] + k / 2);
      for (int r = 0; r < MT; ++r) {
        const __m512i x =
            whole ? _mm512_loadu_si512(a[r] + k)
                  : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r] + k)));
        for (int j = 0; j < NT; ++j) dots[r][j] = _mm512_dpbusd_epi32(dots[r][j], w[j], x);
      }
    };

    if (p.group == 32) {  // two blocks per step: lanes 0-7 block g, lanes 8-15 block g + 1
      int64_t g = 0;
      for (; g + 1 < p.groups; g += 2) {
        clear();
        step(g * 32, true);
        flush(dots, [&](int r, int j) {
          return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(w_scale[j][g] * a_scale[r][g]),
                                      _mm512_set1_ps(w_scale[j][g + 1] * a_scale[r][g + 1]));
        });
      }
      if (g < p.groups) {
        clear();
        step(g * 32, false);
        flush(dots, [&](int r, int j) { return _mm512_set1_ps(w_scale[j][g] * a_scale[r][g]); });
      }
    } else {  // block_size a multiple of 64: whole steps per block
      for (int64_t g = 0; g < p.groups; ++g) {
        clear();
        for (int64_t k = g * p.group; k < (g + 1) * p.group; k += 64) step(k, true);
        flush(dots, [&](int r, int j) { return _mm512_set1_ps(w_scale[j][g] * a_scale[r][g]); });
      }
    }
    // The zero-point term sum_g s_w * z * a_sum, 16 blocks per step, into the same accumulators before the one
    // horizontal sum.
    for (int64_t g = 0; g < p.groups; g += 16) {
      const __mmask16 live = static_cast<__mmask16>(p.groups - g >= 16 ? 0xFFFF : (1u << (p.groups - g)) - 1u);
      __m512 a_sum[MT];
      for (int r = 0; r < MT; ++r) a_sum[r] = _mm512_maskz_loadu_ps(live, p.a_sum + (m0 + r) * p.groups + g);
      for (int j = 0; j < NT; ++j) {
        const __m512 zero = p.zeros != nullptr ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(
                                                     live, p.zeros + (n0 + j) * p.groups + g)))
                                               : _mm512_set1_ps(8.0f);
        const __m512 term = _mm512_mul_ps(_mm512_maskz_loadu_ps(live, w_scale[j] + g), zero);
        for (int r = 0; r < MT; ++r) acc[r][j] = _mm512_fnmadd_ps(term, a_sum[r], acc[r][j]);
      }
    }
    for (int r = 0; r < MT; ++r)
      for (int j = 0; j < NT; ++j) out[r][j] = _mm512_reduce_add_ps(acc[r][j]);
  }
};

}  // namespace

void int8_rows_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end) { int8_rows<Path>(p, n_begin, n_end); }

}  // namespace awq2trt_ort
