// accuracy_level 4 for many activation rows on AVX-512 VNNI: a blocked GEMM in the outer-product form.
//
// As int4_gemm_avx512.cc does for exact mode: a task takes 32 output rows, lays a block of their codes out once as
// a panel, and runs 6 x 32 register tiles over all activation rows.  Per 8 k's, four panel registers and two
// broadcast dwords of A feed four VPDPBUSD per row; the block's two scales and the zero-point term
// (s_w * z * a_sum, codes stay unsigned) are applied in fp32 once per block, vectorized over the 32 n's.
//
// The panel needs no byte shuffles: a gathered dword holds the 8 codes k .. k+7 of one n, its low nibbles are
// k, k+2, k+4, k+6 and its high nibbles k+1, k+3, k+5, k+7, so A is quantized in that order (spans of 8: even
// k's then odd k's) and each nibble set is one VPDPBUSD operand.
//
// This file alone is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; dispatch.cc calls it only when CPUID
// reports all four.
#include "avx512_intrinsics.h"

#include <cstring>
#include <vector>

#include "int4_problem.h"

namespace awq2trt_ort {
namespace {

constexpr int64_t kCols = 32;   // output rows per task: two zmm of n's
constexpr int64_t kKc = 2048;   // k's per panel block (or one block when larger): 64 KiB of codes
constexpr int kRows = 6;        // activation rows per register tile: 12 int32 + 12 fp32 accumulators

struct Panel {
  // Per 8 k's, four zmm: low nibbles of n 0-15, of n 16-31, high nibbles of n 0-15, of n 16-31.
  std::vector<int32_t> codes;
  std::vector<float> scales;   // per block in the panel: s_w of the 32 n's, then s_w * z
};

__mmask16 live_lanes(int64_t count, int half) {
  const int64_t lanes = count - half * 16;
  return static_cast<__mmask16>(lanes >= 16 ? 0xFFFF : lanes <= 0 ? 0 : (1u << lanes) - 1u);
}

void make_panel(const Int4Problem& p, int64_t n0, int64_t count, int64_t k0, int64_t k_end, Panel& panel) {
  const int64_t steps = (k_end - k0) / 8, blocks = (k_end - k0) / p.group;
  panel.codes.resize(static_cast<size_t>(steps * 4 * 16));
  panel.scales.resize(static_cast<size_t>(blocks * 2 * kCols));
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int32_t>(p.row_bytes)));
  const __m512i nibbles = _mm512_set1_epi8(0x0F);
  for (int half = 0; half < 2; ++half) {
    const __mmask16 live = live_lanes(count, half);
    const uint8_t* base = p.codes + (n0 + half * 16) * p.row_bytes;
    for (int64_t s = 0; s < steps; ++s) {
      // 4 bytes at k / 2: the 8 codes k .. k + 7 (K is a multiple of 32, so the read stays inside the row).
      const __m512i offsets = _mm512_add_epi32(rows, _mm512_set1_epi32(static_cast<int32_t>((k0 + 8 * s) / 2)));
      const __m512i codes = live == 0 ? _mm512_setzero_si512()
                                      : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, offsets, base, 1);
      int32_t* out = panel.codes.data() + s * 64;
      _mm512_storeu_si512(out + 16 * half, _mm512_and_si512(codes, nibbles));
      _mm512_storeu_si512(out + 16 * (2 + half), _mm512_and_si512(_mm512_srli_epi32(codes, 4), nibbles));
    }
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t g = k0 / p.group + b;
    float* scales = panel.scales.data() + b * 2 * kCols;
    for (int64_t j = 0; j < kCols; ++j) {
      const bool live = j < count;
      const int64_t n = n0 + (live ? j : 0);
      const float zero = p.zeros != nullptr ? static_cast<float>(p.zeros[n * p.groups + g]) : 8.0f;
      scales[j] = live ? p.scales[n * p.groups + g] : 0.0f;
      scales[kCols + j] = scales[j] * zero;
    }
  }
}

inline __m512i broadcast_dword(const int8_t* bytes) {
  int32_t dword;
  std::memcpy(&dword, bytes, sizeof dword);
  return _mm512_set1_epi32(dword);
}

// Y[m0 .. m0 + MT, n0 .. n0 + 32] (+)= this block's share; the first block stores, later ones add, the last adds
// the bias.  Stores are masked to the task's count of n's.
template <int MT>
void tile(const Int4Problem& p, int64_t m0, int64_t n0, int64_t count, int64_t k0, int64_t k_end, const Panel& panel) {
  const __mmask16 live[2] = {live_lanes(count, 0), live_lanes(count, 1)};
  __m512 acc[MT][2];
  for (int r = 0; r < MT; ++r)
    for (int h = 0; h < 2; ++h)
      acc[r][h] = k0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live[h], p.y + (m0 + r) * p.n + n0 + 16 * h);
  const int64_t steps_per_block = p.group / 8;
  for (int64_t b = 0; b < (k_end - k0) / p.group; ++b) {
    __m512i dots[MT][2];
    for (int r = 0; r < MT; ++r) dots[r][0] = dots[r][1] = _mm512_setzero_si512();
    for (int64_t s = b * steps_per_block; s < (b + 1) * steps_per_block; ++s) {
      const int32_t* w = panel.codes.data() + s * 64;
      const __m512i low0 = _mm512_loadu_si512(w), low1 = _mm512_loadu_si512(w + 16);
      const __m512i high0 = _mm512_loadu_si512(w + 32), high1 = _mm512_loadu_si512(w + 48);
      const int64_t k = k0 + 8 * s;
      for (int r = 0; r < MT; ++r) {
        const int8_t* a = p.a_q + (m0 + r) * p.k + k;
        const __m512i even = broadcast_dword(a), odd = broadcast_dword(a + 4);
        dots[r][0] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(dots[r][0], low0, even), high0, odd);
        dots[r][1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(dots[r][1], low1, even), high1, odd);
      }
    }
    const int64_t g = k0 / p.group + b;
    const float* scales = panel.scales.data() + b * 2 * kCols;
    for (int r = 0; r < MT; ++r) {
      const __m512 a_scale = _mm512_set1_ps(p.a_scale[(m0 + r) * p.groups + g]);
      const __m512 a_sum = _mm512_set1_ps(p.a_sum[(m0 + r) * p.groups + g]);
      for (int h = 0; h < 2; ++h) {
        const __m512 scale = _mm512_mul_ps(_mm512_loadu_ps(scales + 16 * h), a_scale);
        acc[r][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[r][h]), scale, acc[r][h]);
        acc[r][h] = _mm512_fnmadd_ps(_mm512_loadu_ps(scales + kCols + 16 * h), a_sum, acc[r][h]);
      }
    }
  }
  const bool last = k_end == p.k;
  for (int h = 0; h < 2; ++h) {
    const __m512 bias =
        last && p.bias != nullptr ? _mm512_maskz_loadu_ps(live[h], p.bias + n0 + 16 * h) : _mm512_setzero_ps();
    for (int r = 0; r < MT; ++r)
      _mm512_mask_storeu_ps(p.y + (m0 + r) * p.n + n0 + 16 * h, live[h], _mm512_add_ps(acc[r][h], bias));
  }
}

template <int MT>
void tail_tile(int rows, const Int4Problem& p, int64_t m0, int64_t n0, int64_t count, int64_t k0, int64_t k_end,
               const Panel& panel) {
  if constexpr (MT > 0) {
    if (rows == MT) return tile<MT>(p, m0, n0, count, k0, k_end, panel);
    tail_tile<MT - 1>(rows, p, m0, n0, count, k0, k_end, panel);
  }
}

}  // namespace

void int8_gemm_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  thread_local Panel panel;  // per-thread scratch that outlives the call: no fresh pages per call
  const int64_t kc = p.group > kKc ? p.group : kKc;  // a multiple of the block size (both powers of two)
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kCols) {
    const int64_t count = n_end - n0 < kCols ? n_end - n0 : kCols;
    for (int64_t k0 = 0; k0 < p.k; k0 += kc) {
      const int64_t k_end = k0 + kc < p.k ? k0 + kc : p.k;
      make_panel(p, n0, count, k0, k_end, panel);
      int64_t m = 0;
      for (; m + kRows <= p.m; m += kRows) tile<kRows>(p, m, n0, count, k0, k_end, panel);
      if (m < p.m) tail_tile<kRows - 1>(static_cast<int>(p.m - m), p, m, n0, count, k0, k_end, panel);
    }
  }
}

}  // namespace awq2trt_ort
