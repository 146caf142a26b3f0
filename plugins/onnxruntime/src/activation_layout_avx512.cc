// accuracy_level 4's activation blocks on AVX-512 (BW for the byte packing): the same blocks, bit for bit, as
// quantize_activations (activation_layout.cc), sixteen k's at a time.
//
// Why: a decode step quantizes each int4 node's activation row on the calling thread before the row split, while
// the pool waits; the scalar loop (a scatter per element into the split order) was about 5 % of a SmolLM2 decode
// step's critical path.
#include "avx512_intrinsics.h"

#include <cstring>

#include "activation_order.h"
#include "int4_problem.h"

namespace awq2trt_ort {
namespace {

// One block of `group` k's (a multiple of 16) into int8 codes in k order; returns their sum.
int32_t quantize_block(const float* in, int64_t group, float inverse, int8_t* codes) {
  const __m512i low = _mm512_set1_epi32(-127), high = _mm512_set1_epi32(127);
  __m512i sum = _mm512_setzero_si512();
  const __m512 factor = _mm512_set1_ps(inverse);
  for (int64_t j = 0; j < group; j += 16) {
    // cvtps2dq rounds to nearest even under the default MXCSR, as the scalar loop's add-and-remove of 1.5 * 2^23.
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(in + j), factor));
    q = _mm512_min_epi32(_mm512_max_epi32(q, low), high);
    sum = _mm512_add_epi32(sum, q);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + j), _mm512_cvtepi32_epi8(q));
  }
  return _mm512_reduce_add_epi32(sum);
}

float block_amax(const float* in, int64_t group) {
  // max_ps(x, m) returns m when x is NaN: a NaN is skipped, as the scalar loop's comparison skips it.
  __m512 amax = _mm512_setzero_ps();
  for (int64_t j = 0; j < group; j += 16) amax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(in + j)), amax);
  return _mm512_reduce_max_ps(amax);
}

}  // namespace

void quantize_activations_avx512(const float* a, int64_t k, int64_t group, int split_span, int64_t m_begin,
                                 int64_t m_end, int8_t* a_q, float* a_scale, float* a_sum) {
  if (group % 16 != 0) return quantize_activations(a, k, group, split_span, m_begin, m_end, a_q, a_scale, a_sum);
  const int64_t groups = k / group;
  // Spans of 8 (the tiles16 kernel and the int8 GEMM): each 16 codes' even bytes then odd bytes, per half.
  const __m128i spans_of_8 = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
  alignas(64) int8_t codes[1024];
  for (int64_t row = m_begin; row < m_end; ++row) {
    int8_t* out = a_q + row * k;
    for (int64_t g = 0; g < groups; ++g) {
      const float* in = a + row * k + g * group;
      const float amax = block_amax(in, group);
      const float scale = amax / 127.0f;
      const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
      int32_t sum = 0;
      for (int64_t part = 0; part < group; part += 1024) {  // blocks past 1024 k's in pieces
        const int64_t length = group - part < 1024 ? group - part : 1024;
        const int64_t first = g * group + part;
        sum += quantize_block(in + part, length, inverse, codes);
        if (split_span == 0) {
          std::memcpy(out + first, codes, static_cast<size_t>(length));
        } else if (split_span == 8) {
          for (int64_t j = 0; j < length; j += 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + j));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + first + j), _mm_shuffle_epi8(v, spans_of_8));
          }
        } else {
          for (int64_t j = 0; j < length; ++j) out[row_index(first + j, split_span, k)] = codes[j];
        }
      }
      a_scale[row * groups + g] = scale;
      a_sum[row * groups + g] = scale * static_cast<float>(sum);
    }
  }
}

}  // namespace awq2trt_ort
