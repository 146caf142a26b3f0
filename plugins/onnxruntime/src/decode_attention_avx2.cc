// The decode attention task on AVX2 + FMA (compiled with -mavx2 -mfma, reached through decode_attention_task only
// when CPUID has them and AVX-512 is not the active path).  Without it such a CPU ran the scalar reference, which
// measured 1.8x slower per node than ONNX Runtime's own kernel (SmolLM2's heads, 30-500 positions, 2 threads).
//
// The AVX-512 file keeps each query head in registers; sixteen ymm registers cannot hold a 128-float head and
// eight accumulators, so here the head is read from L1 once per eight positions instead, and the weighted sum of
// values runs in blocks of up to eight registers of the head.  The arithmetic is the same as the other paths'
// (q.k scaled, e^(s - max), the weighted sum), only the summation order differs.
#include <immintrin.h>

#include <limits>
#include <vector>

#include "decode_attention.h"

namespace awq2trt_ort {
namespace {

// e^x for x in [-88, 88] (clamped), eight lanes: the AVX-512 file's Cody-Waite reduction and degree-7 series, with
// 2^n put in the exponent bits (n in [-127, 127]: n = -127 gives 0 where AVX-512's VSCALEFPS gives a denormal of
// e^-88, below anything a softmax keeps).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440054690583e-4f), r);
  constexpr float kInverseFactorials[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
  __m256 e = _mm256_set1_ps(kInverseFactorials[0]);
  for (int i = 1; i < 8; ++i) e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(kInverseFactorials[i]));
  const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_mul_ps(e, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23)));
}

// Lane i = the sum of r[i]'s eight lanes: two rounds of pairwise adds and one across the halves, instead of a
// horizontal reduction per position.
inline __m256 sum_lanes_8(const __m256 r[8]) {
  const __m256 h01 = _mm256_hadd_ps(r[0], r[1]), h23 = _mm256_hadd_ps(r[2], r[3]);
  const __m256 h45 = _mm256_hadd_ps(r[4], r[5]), h67 = _mm256_hadd_ps(r[6], r[7]);
  const __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);  // per half: r0..r3, r4..r7
  return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
}

inline float sum_lanes(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
}

// out[t] = scale * q.keys[t] for t < length (d floats a key, d a multiple of 8): eight positions at a time.
void scores(const float* q, const float* keys, int64_t d, int64_t length, float scale, float* out) {
  const __m256 scale_v = _mm256_set1_ps(scale);
  int64_t t = 0;
  for (; t + 8 <= length; t += 8) {
    __m256 dots[8];
    for (int i = 0; i < 8; ++i) dots[i] = _mm256_setzero_ps();
    const float* k = keys + t * d;
    for (int64_t v = 0; v < d; v += 8) {
      const __m256 query = _mm256_loadu_ps(q + v);
      for (int i = 0; i < 8; ++i) dots[i] = _mm256_fmadd_ps(query, _mm256_loadu_ps(k + i * d + v), dots[i]);
    }
    _mm256_storeu_ps(out + t, _mm256_mul_ps(sum_lanes_8(dots), scale_v));
  }
  for (; t < length; ++t) {
    __m256 dot = _mm256_setzero_ps();
    for (int64_t v = 0; v < d; v += 8) dot = _mm256_fmadd_ps(_mm256_loadu_ps(q + v), _mm256_loadu_ps(keys + t * d + v), dot);
    out[t] = sum_lanes(dot) * scale;
  }
}

// weights[t] = e^(weights[t] - max) in place; returns the max and (through sum) the exponentials' sum.
float softmax_numerators(float* weights, int64_t length, float* sum) {
  const __m256 minus_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 top = minus_inf;
  int64_t t = 0;
  for (; t + 8 <= length; t += 8) top = _mm256_max_ps(top, _mm256_loadu_ps(weights + t));
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = t; i < length; ++i) max = weights[i] > max ? weights[i] : max;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, top);
  for (float lane : lanes) max = lane > max ? lane : max;
  const __m256 shift = _mm256_set1_ps(max);
  __m256 total = _mm256_setzero_ps();
  for (t = 0; t + 8 <= length; t += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(weights + t), shift));
    _mm256_storeu_ps(weights + t, e);
    total = _mm256_add_ps(total, e);
  }
  if (t < length) {  // the tail through a padded copy, its unused lanes zeroed before the sum
    alignas(32) float tail[8];
    const int64_t live = length - t;
    for (int64_t i = 0; i < 8; ++i) tail[i] = i < live ? weights[t + i] : max;
    __m256 e = exp_ps(_mm256_sub_ps(_mm256_load_ps(tail), shift));
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    e = _mm256_and_ps(e, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(live)), lane)));
    _mm256_store_ps(tail, e);
    for (int64_t i = 0; i < live; ++i) weights[t + i] = tail[i];
    total = _mm256_add_ps(total, e);
  }
  *sum = sum_lanes(total);
  return max;
}

// out[0 .. 8W) = sum over t of weights[t] * values[t][0 .. 8W), rows `stride` floats apart: W accumulators, and
// for W <= 4 a second set for odd t, so there are at least eight independent FMA chains.
template <int W>
void weighted_block(const float* weights, const float* values, int64_t stride, int64_t length, float* out) {
  constexpr bool kTwoSets = W <= 4;
  __m256 even[W], odd[W];
  for (int v = 0; v < W; ++v) even[v] = odd[v] = _mm256_setzero_ps();
  int64_t t = 0;
  if constexpr (kTwoSets) {
    for (; t + 2 <= length; t += 2) {
      const __m256 w0 = _mm256_broadcast_ss(weights + t), w1 = _mm256_broadcast_ss(weights + t + 1);
      for (int v = 0; v < W; ++v) {
        even[v] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(values + t * stride + 8 * v), even[v]);
        odd[v] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(values + (t + 1) * stride + 8 * v), odd[v]);
      }
    }
  }
  for (; t < length; ++t) {
    const __m256 w = _mm256_broadcast_ss(weights + t);
    for (int v = 0; v < W; ++v) even[v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(values + t * stride + 8 * v), even[v]);
  }
  for (int v = 0; v < W; ++v) _mm256_storeu_ps(out + 8 * v, _mm256_add_ps(even[v], odd[v]));
}

void weighted_values(const float* weights, const float* values, int64_t d, int64_t length, float* out) {
  int64_t v = 0;
  for (; v + 64 <= d; v += 64) weighted_block<8>(weights, values + v, d, length, out + v);
  switch ((d - v) / 8) {  // the rest of the head: 0 to 7 registers
    case 1: return weighted_block<1>(weights, values + v, d, length, out + v);
    case 2: return weighted_block<2>(weights, values + v, d, length, out + v);
    case 3: return weighted_block<3>(weights, values + v, d, length, out + v);
    case 4: return weighted_block<4>(weights, values + v, d, length, out + v);
    case 5: return weighted_block<5>(weights, values + v, d, length, out + v);
    case 6: return weighted_block<6>(weights, values + v, d, length, out + v);
    case 7: return weighted_block<7>(weights, values + v, d, length, out + v);
    default: return;
  }
}

}  // namespace

void decode_attention_task_avx2(const DecodeAttentionProblem& p, int64_t task) {
  const int64_t split = task % p.splits, kv_head = task / p.splits % p.kv_heads, row = task / p.splits / p.kv_heads;
  const int64_t group = p.heads / p.kv_heads, d = p.head_size;
  int64_t first = 0, last = 0;
  split_span(p, row, split, &first, &last);
  const int64_t length = last - first;
  const int64_t cache_offset = ((row * p.kv_heads + kv_head) * p.capacity + first) * d;
  thread_local std::vector<float> weights;
  weights.resize(static_cast<size_t>(length));
  for (int64_t g = 0; g < group; ++g) {
    const int64_t head = kv_head * group + g;
    const int64_t slot = (row * p.heads + head) * p.splits + split;
    if (length == 0) {
      p.partial_max[slot] = -std::numeric_limits<float>::infinity(), p.partial_sum[slot] = 0.0f;
      continue;
    }
    scores(p.query + (row * p.heads + head) * d, p.key_cache + cache_offset, d, length, p.scale, weights.data());
    p.partial_max[slot] = softmax_numerators(weights.data(), length, &p.partial_sum[slot]);
    weighted_values(weights.data(), p.value_cache + cache_offset, d, length, p.partial_values + slot * d);
  }
}

}  // namespace awq2trt_ort
