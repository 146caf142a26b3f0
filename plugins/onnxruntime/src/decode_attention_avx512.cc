// The decode attention task on AVX-512 (compiled with -mavx512f, reached through decode_attention_task only when
// CPUID has it).  A head of V * 16 floats is V registers: each query head's vectors stay in registers while its
// span's keys stream past, and likewise its running weighted sum while the values do.  The span's keys and values
// (a few kilobytes) are read from memory for the first head of the group and from L1 for the others.
#include <limits>
#include <utility>
#include <vector>

#include "decode_attention.h"
#include "exp_avx512.h"

namespace awq2trt_ort {
namespace {

// The lane sums of r[0..15] as one vector, lane i = the sum of r[i]: a transpose-and-add tree (fifteen adds for
// sixteen sums) instead of a horizontal reduction per position, whose serial shuffles cost more than the dot
// product itself.
inline __m512 sum_lanes_16(__m512 r[16]) {
  // 16 -> 8: each vector holds two inputs' halves-summed partials (8 lanes each).
  __m512 h[8];
  for (int i = 0; i < 8; ++i) {
    h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(r[2 * i], r[2 * i + 1], 0x44), _mm512_shuffle_f32x4(r[2 * i], r[2 * i + 1], 0xEE));
  }
  // 8 -> 4: four inputs' partials of 4 lanes, input order kept (128-bit lane j of q[i] is input 4i + j).
  __m512 q[4];
  for (int i = 0; i < 4; ++i) {
    q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0x88), _mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0xDD));
  }
  // 4 -> 2: within each 128-bit lane k, two lanes of input 4i + k and two of input 4(i + 1) + k.
  __m512 d[2];
  for (int i = 0; i < 2; ++i) {
    d[i] = _mm512_add_ps(_mm512_shuffle_ps(q[2 * i], q[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(q[2 * i], q[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // 2 -> 1: lane 4k + j is the sum of input k + 4j; the permutation puts input i at lane i.
  const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, sums);
}

// out[t] = scale * q.keys[t] for t < length; sixteen positions at a time, each with its own accumulator.
template <int V>
void scores(const float* q, const float* keys, int64_t length, float scale, float* out) {
  __m512 query[V];
  for (int v = 0; v < V; ++v) query[v] = _mm512_loadu_ps(q + 16 * v);
  const __m512 scale_v = _mm512_set1_ps(scale);
  int64_t t = 0;
  for (; t + 16 <= length; t += 16) {
    __m512 dots[16];
    for (int i = 0; i < 16; ++i) {
      const float* k = keys + (t + i) * V * 16;
      dots[i] = _mm512_mul_ps(query[0], _mm512_loadu_ps(k));
      for (int v = 1; v < V; ++v) dots[i] = _mm512_fmadd_ps(query[v], _mm512_loadu_ps(k + 16 * v), dots[i]);
    }
    _mm512_storeu_ps(out + t, _mm512_mul_ps(sum_lanes_16(dots), scale_v));
  }
  for (; t < length; ++t) {
    const float* k = keys + t * V * 16;
    __m512 dot = _mm512_mul_ps(query[0], _mm512_loadu_ps(k));
    for (int v = 1; v < V; ++v) dot = _mm512_fmadd_ps(query[v], _mm512_loadu_ps(k + 16 * v), dot);
    out[t] = _mm512_reduce_add_ps(dot) * scale;
  }
}

// weights[t] = e^(weights[t] - max) in place; returns the max and (through sum) the exponentials' sum.
float softmax_numerators(float* weights, int64_t length, float* sum) {
  __m512 top = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t t = 0;
  for (; t + 16 <= length; t += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(weights + t));
  const __mmask16 tail = static_cast<__mmask16>((1u << (length - t)) - 1u);
  if (tail != 0) top = _mm512_mask_max_ps(top, tail, top, _mm512_maskz_loadu_ps(tail, weights + t));
  const float max = _mm512_reduce_max_ps(top);
  const __m512 shift = _mm512_set1_ps(max);
  __m512 total = _mm512_setzero_ps();
  for (t = 0; t + 16 <= length; t += 16) {
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(weights + t), shift));
    _mm512_storeu_ps(weights + t, e);
    total = _mm512_add_ps(total, e);
  }
  if (tail != 0) {
    const __m512 e = _mm512_maskz_mov_ps(tail, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, weights + t), shift)));
    _mm512_mask_storeu_ps(weights + t, tail, e);
    total = _mm512_add_ps(total, e);
  }
  *sum = _mm512_reduce_add_ps(total);
  return max;
}

// out = sum over t of weights[t] * values[t]; two sets of accumulators (even and odd t) so the FMA latency is
// hidden at V = 4.
template <int V>
void weighted_values(const float* weights, const float* values, int64_t length, float* out) {
  __m512 even[V], odd[V];
  for (int v = 0; v < V; ++v) even[v] = odd[v] = _mm512_setzero_ps();
  int64_t t = 0;
  for (; t + 2 <= length; t += 2) {
    const __m512 w0 = _mm512_set1_ps(weights[t]), w1 = _mm512_set1_ps(weights[t + 1]);
    for (int v = 0; v < V; ++v) {
      even[v] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(values + t * V * 16 + 16 * v), even[v]);
      odd[v] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(values + (t + 1) * V * 16 + 16 * v), odd[v]);
    }
  }
  if (t < length) {
    const __m512 w = _mm512_set1_ps(weights[t]);
    for (int v = 0; v < V; ++v) even[v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(values + t * V * 16 + 16 * v), even[v]);
  }
  for (int v = 0; v < V; ++v) _mm512_storeu_ps(out + 16 * v, _mm512_add_ps(even[v], odd[v]));
}

template <int V>
void task(const DecodeAttentionProblem& p, int64_t task) {
  const int64_t split = task % p.splits, kv_head = task / p.splits % p.kv_heads, row = task / p.splits / p.kv_heads;
  const int64_t group = p.heads / p.kv_heads, d = V * 16;
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
    scores<V>(p.query + (row * p.heads + head) * d, p.key_cache + cache_offset, length, p.scale, weights.data());
    p.partial_max[slot] = softmax_numerators(weights.data(), length, &p.partial_sum[slot]);
    weighted_values<V>(weights.data(), p.value_cache + cache_offset, length, p.partial_values + slot * d);
  }
}

using TaskFn = void (*)(const DecodeAttentionProblem&, int64_t);
template <int... Vs>
constexpr TaskFn task_for(int v, std::integer_sequence<int, Vs...>) {
  TaskFn table[] = {nullptr, task<Vs + 1>...};
  return table[v];
}

}  // namespace

void decode_attention_task_avx512(const DecodeAttentionProblem& p, int64_t t) {
  // head_size / 16 in 1..16 (decode_attention_task checks): one instantiation each.
  task_for(static_cast<int>(p.head_size / 16), std::make_integer_sequence<int, 16>{})(p, t);
}

}  // namespace awq2trt_ort
