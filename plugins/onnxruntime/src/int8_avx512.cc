// accuracy_level 4 on AVX-512 VNNI: VPDPBUSD multiplies 64 unsigned codes by 64 int8 activations and adds each
// four products into one of 16 int32 lanes, exactly; the block's two scales are applied once per block in fp32.
//
// Codes stay unsigned (0..15, the instruction's unsigned operand) and the zero point enters as z * sum(a_q)
// (added in fp32 once per output, vectorized over 16 blocks), so no per-code subtraction is needed.
//
// A step is 64 packed bytes (128 k's) in one load with no shuffles: its low nibbles are the 64 even k's and its
// high nibbles the 64 odd k's, so A is quantized in spans of 128 (even k's, then odd k's) and each nibble set is
// one VPDPBUSD operand.  Lane l of a step covers k's 8l .. 8l + 7, so for block_size 32 or 64 one step holds 4 or 2
// blocks and the block scales go to the lanes by a permute.  A row's last K % 128 k's go in 32-k chunks (A in
// spans of 32 there: [16 low nibbles, 16 high nibbles] of 16 bytes).
//
// This file alone is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; dispatch.cc calls it only when
// CPUID reports all four.
#include "avx512_intrinsics.h"

#include "int4_problem.h"
#include "int8_rows.h"

namespace awq2trt_ort {
namespace {

constexpr int64_t kStep = 128;  // k's per 64-byte load

// 16 packed bytes (one 32-k chunk) -> 32 codes in lanes 0-7, zeros above.
inline __m512i expand32(const uint8_t* bytes) {
  const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(c), _mm_srli_epi64(c, 4), 1);
  return _mm512_zextsi256_si512(_mm256_and_si256(both, _mm256_set1_epi8(0x0F)));
}

struct Path {
  // 4 x 2 tiles: 8 fp32 and 8 int32 accumulators, 4 code and 2 activation registers, of 32 zmm; a single
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
    __m512i dots[MT][NT];
    auto clear = [&] {
      for (int r = 0; r < MT; ++r)
        for (int j = 0; j < NT; ++j) dots[r][j] = _mm512_setzero_si512();
    };
    // Adds the int32 dot products times their per-lane scale to the fp32 accumulators.
    auto flush = [&](auto scale_of) {
      for (int r = 0; r < MT; ++r)
        for (int j = 0; j < NT; ++j)
          acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[r][j]), scale_of(r, j), acc[r][j]);
    };
    auto step = [&](int64_t k) {  // 128 k's from k
      const __m512i nibbles = _mm512_set1_epi8(0x0F);
      __m512i low[NT], high[NT];
      for (int j = 0; j < NT; ++j) {
        const __m512i bytes = _mm512_loadu_si512(codes[j] + k / 2);
        low[j] = _mm512_and_si512(bytes, nibbles);
        high[j] = _mm512_and_si512(_mm512_srli_epi64(bytes, 4), nibbles);  // bits crossing bytes are masked off
      }
      for (int r = 0; r < MT; ++r) {
        const __m512i even = _mm512_loadu_si512(a[r] + k), odd = _mm512_loadu_si512(a[r] + k + 64);
        for (int j = 0; j < NT; ++j)
          dots[r][j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(dots[r][j], low[j], even), high[j], odd);
      }
    };

    const int64_t main_end = p.k / kStep * kStep;
    if (p.group >= kStep) {  // whole steps per block
      const int64_t steps_per_block = p.group / kStep;
      for (int64_t g = 0; g < p.groups; ++g) {
        clear();
        for (int64_t s = 0; s < steps_per_block; ++s) step(g * p.group + s * kStep);
        flush([&](int r, int j) { return _mm512_set1_ps(w_scale[j][g] * a_scale[r][g]); });
      }
    } else {  // 128 / G blocks per step; lane l belongs to block (8 l) / G of the step
      const int64_t per_step = kStep / p.group;
      const __m512i lane_block = _mm512_srli_epi32(_mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96,
                                                                     104, 112, 120),
                                                   p.group == 64 ? 6 : 5);
      const __mmask16 blocks = static_cast<__mmask16>((1u << per_step) - 1u);
      for (int64_t k = 0; k < main_end; k += kStep) {
        clear();
        step(k);
        const int64_t g = k / p.group;
        __m512 a_scales[MT];
        for (int r = 0; r < MT; ++r) a_scales[r] = _mm512_maskz_loadu_ps(blocks, a_scale[r] + g);
        flush([&](int r, int j) {
          const __m512 products = _mm512_mul_ps(_mm512_maskz_loadu_ps(blocks, w_scale[j] + g), a_scales[r]);
          return _mm512_permutexvar_ps(lane_block, products);
        });
      }
      for (int64_t k = main_end; k < p.k; k += 32) {  // the row's rest: 32-k chunks, each inside one block
        clear();
        __m512i w[NT];
        for (int j = 0; j < NT; ++j) w[j] = expand32(codes[j] + k / 2);
        for (int r = 0; r < MT; ++r) {
          const __m512i x = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r] + k)));
          for (int j = 0; j < NT; ++j) dots[r][j] = _mm512_dpbusd_epi32(dots[r][j], w[j], x);
        }
        const int64_t g = k / p.group;
        flush([&](int r, int j) { return _mm512_set1_ps(w_scale[j][g] * a_scale[r][g]); });
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
