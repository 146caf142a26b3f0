// Exact mode for many activation rows on AVX-512F: a blocked GEMM in the outer-product form.
//
// The per-row table loop (int4_avx512.cc) dequantizes each code row once per four activation rows and computes
// dot products, which at M >= kGemmMinRows is bound by loads and horizontal sums.  Here a task takes 32 output
// rows (two zmm of n's), dequantizes a block of KC k's of their codes once into an fp32 panel laid out [k][32 n],
// then runs 8 x 32 register tiles over all activation rows: per k, two panel loads and eight broadcasts of A feed
// 16 FMAs, with no horizontal sums.  The weights are (c - z) * s formed in fp32 exactly as the other paths form
// them (integer c - z, one rounding in the multiply); only summation order differs.
//
// The panel is made with gathers: one 32-bit gather per 16 n's fetches 8 k's of codes for each n.
//
// This file alone is compiled with -mavx512f (with int4_avx512.cc); dispatch.cc calls it only when CPUID reports it.
#include "avx512_intrinsics.h"

#include <vector>

#include "int4_problem.h"

namespace awq2trt_ort {
namespace {

constexpr int64_t kCols = 32;   // output rows per task: two zmm of n's
constexpr int64_t kKc = 1024;   // k's per panel block: 1024 * 32 * 4 bytes = 128 KiB (L2)
constexpr int kRows = 8;        // activation rows per register tile: 16 accumulators

// panel[k - k0][j] = W[n0 + j, k] for k in [k0, k_end), j < count (zero beyond: masked lanes of a short task).
void dequantize_panel(const Int4Problem& p, int64_t n0, int64_t count, int64_t k0, int64_t k_end, float* panel) {
  alignas(64) int32_t zeros[kCols];
  alignas(64) float scales[kCols];
  for (int half = 0; half < 2; ++half) {
    const int64_t first = half * 16;
    const int64_t lanes = count - first < 0 ? 0 : count - first > 16 ? 16 : count - first;
    const __mmask16 live = static_cast<__mmask16>((1u << lanes) - 1u);
    if (lanes == 0) {
      for (int64_t k = k0; k < k_end; ++k) _mm512_storeu_ps(panel + (k - k0) * kCols + first, _mm512_setzero_ps());
      continue;
    }
    const uint8_t* base = p.codes + (n0 + first) * p.row_bytes;
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(static_cast<int32_t>(p.row_bytes)));
    for (int64_t k = k0; k < k_end; k += 8) {
      const int64_t g = k / p.group;
      if (k == k0 || k % p.group == 0) {  // this group's zero points and scales for the 16 n's
        for (int64_t j = 0; j < 16; ++j) {
          const int64_t n = n0 + first + (j < lanes ? j : 0);
          zeros[j] = p.zeros != nullptr ? p.zeros[n * p.groups + g] : 8;
          scales[j] = p.scales[n * p.groups + g];
        }
      }
      const __m512i zero = _mm512_load_si512(zeros);
      const __m512 scale = _mm512_load_ps(scales);
      // 4 bytes = the 8 codes k .. k + 7 of each n (K is a multiple of 32, so the read stays inside the row).
      const __m512i offsets = _mm512_add_epi32(rows, _mm512_set1_epi32(static_cast<int32_t>(k / 2)));
      const __m512i codes = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, offsets, base, 1);
      for (int i = 0; i < 8; ++i) {
        const __m512i code = _mm512_and_si512(_mm512_srli_epi32(codes, 4 * i), _mm512_set1_epi32(0x0F));
        const __m512 weight = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(code, zero)), scale);
        _mm512_storeu_ps(panel + (k - k0 + i) * kCols + first, _mm512_maskz_mov_ps(live, weight));
      }
    }
  }
}

// Y[m0 .. m0 + MT, n0 .. n0 + 32] += A[m0 .. m0 + MT, k0 .. k_end] @ panel (first block: = instead of +=, and the
// bias on the last).  Stores are masked to the task's count of n's.
template <int MT>
void tile(const Int4Problem& p, int64_t m0, int64_t n0, int64_t count, int64_t k0, int64_t k_end, const float* panel) {
  const __mmask16 live0 = static_cast<__mmask16>(count >= 16 ? 0xFFFF : (1u << count) - 1u);
  const __mmask16 live1 = static_cast<__mmask16>(count >= 32 ? 0xFFFF : count <= 16 ? 0 : (1u << (count - 16)) - 1u);
  __m512 acc[MT][2];
  for (int r = 0; r < MT; ++r) {
    float* y = p.y + (m0 + r) * p.n + n0;
    acc[r][0] = k0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live0, y);
    acc[r][1] = k0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live1, y + 16);
  }
  const float* a = p.a + m0 * p.k;
  for (int64_t k = k0; k < k_end; ++k) {
    const __m512 w0 = _mm512_loadu_ps(panel + (k - k0) * kCols), w1 = _mm512_loadu_ps(panel + (k - k0) * kCols + 16);
    for (int r = 0; r < MT; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * p.k + k]);
      acc[r][0] = _mm512_fmadd_ps(x, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, w1, acc[r][1]);
    }
  }
  const bool last = k_end == p.k;
  const __m512 b0 = last && p.bias != nullptr ? _mm512_maskz_loadu_ps(live0, p.bias + n0) : _mm512_setzero_ps();
  const __m512 b1 = last && p.bias != nullptr ? _mm512_maskz_loadu_ps(live1, p.bias + n0 + 16) : _mm512_setzero_ps();
  for (int r = 0; r < MT; ++r) {
    float* y = p.y + (m0 + r) * p.n + n0;
    _mm512_mask_storeu_ps(y, live0, _mm512_add_ps(acc[r][0], b0));
    _mm512_mask_storeu_ps(y + 16, live1, _mm512_add_ps(acc[r][1], b1));
  }
}

template <int MT>
void tail_tile(int rows, const Int4Problem& p, int64_t m0, int64_t n0, int64_t count, int64_t k0, int64_t k_end,
               const float* panel) {
  if constexpr (MT > 0) {
    if (rows == MT) return tile<MT>(p, m0, n0, count, k0, k_end, panel);
    tail_tile<MT - 1>(rows, p, m0, n0, count, k0, k_end, panel);
  }
}

}  // namespace

int64_t int4_gemm_avx512_rows_per_task(const Int4Problem& /*p*/) { return kCols; }

void int4_gemm_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  // Per-thread scratch that outlives the call (128 KiB would otherwise be fresh zeroed pages every call).
  thread_local std::vector<float> panel(static_cast<size_t>(kKc * kCols));
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kCols) {
    const int64_t count = n_end - n0 < kCols ? n_end - n0 : kCols;
    for (int64_t k0 = 0; k0 < p.k; k0 += kKc) {
      const int64_t k_end = k0 + kKc < p.k ? k0 + kKc : p.k;
      dequantize_panel(p, n0, count, k0, k_end, panel.data());
      int64_t m = 0;
      for (; m + kRows <= p.m; m += kRows) tile<kRows>(p, m, n0, count, k0, k_end, panel.data());
      if (m < p.m) tail_tile<kRows - 1>(static_cast<int>(p.m - m), p, m, n0, count, k0, k_end, panel.data());
    }
  }
}

}  // namespace awq2trt_ort
