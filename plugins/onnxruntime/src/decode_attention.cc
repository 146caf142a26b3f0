// The portable decode attention task (the reference the AVX-512 one is tested against) and the merge.
#include "decode_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dispatch.h"

namespace awq2trt_ort {

void decode_attention_task_scalar(const DecodeAttentionProblem& p, int64_t task) {
  const int64_t split = task % p.splits, kv_head = task / p.splits % p.kv_heads, row = task / p.splits / p.kv_heads;
  const int64_t group = p.heads / p.kv_heads, d = p.head_size;
  int64_t first = 0, last = 0;
  split_span(p, row, split, &first, &last);
  const int64_t length = last - first;
  const float* keys = p.key_cache + ((row * p.kv_heads + kv_head) * p.capacity + first) * d;
  const float* values = p.value_cache + ((row * p.kv_heads + kv_head) * p.capacity + first) * d;
  thread_local std::vector<float> weights;
  weights.resize(static_cast<size_t>(length));
  for (int64_t g = 0; g < group; ++g) {
    const int64_t head = kv_head * group + g;
    const float* q = p.query + (row * p.heads + head) * d;
    float top = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < length; ++t) {
      float dot = 0.0f;
      for (int64_t i = 0; i < d; ++i) dot += q[i] * keys[t * d + i];
      weights[static_cast<size_t>(t)] = dot * p.scale;
      top = std::max(top, weights[static_cast<size_t>(t)]);
    }
    float sum = 0.0f;
    for (int64_t t = 0; t < length; ++t) {
      weights[static_cast<size_t>(t)] = std::exp(weights[static_cast<size_t>(t)] - top);
      sum += weights[static_cast<size_t>(t)];
    }
    const int64_t slot = (row * p.heads + head) * p.splits + split;
    float* acc = p.partial_values + slot * d;
    std::fill_n(acc, d, 0.0f);
    for (int64_t t = 0; t < length; ++t) {
      for (int64_t i = 0; i < d; ++i) acc[i] += weights[static_cast<size_t>(t)] * values[t * d + i];
    }
    p.partial_max[slot] = top;  // -inf for an empty span, whose sum 0 then weighs nothing in the merge
    p.partial_sum[slot] = sum;
  }
}

void decode_attention_task(const DecodeAttentionProblem& p, int64_t task) {
#if defined(AWQ2TRT_HAVE_X86_PATHS)
  if (active_path() == Path::kAvx512 && p.head_size % 16 == 0 && p.head_size <= 256) {
    return decode_attention_task_avx512(p, task);
  }
  if (active_path() == Path::kAvx2 && p.head_size % 8 == 0) return decode_attention_task_avx2(p, task);
#endif
  decode_attention_task_scalar(p, task);
}

void merge_partials(const DecodeAttentionProblem& p) {
  const int64_t d = p.head_size;
  for (int64_t row = 0; row < p.batch; ++row) {
    for (int64_t head = 0; head < p.heads; ++head) {
      const int64_t slots = (row * p.heads + head) * p.splits;
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t s = 0; s < p.splits; ++s) top = std::max(top, p.partial_max[slots + s]);
      float* out = p.output + (row * p.heads + head) * d;
      std::fill_n(out, d, 0.0f);
      float total = 0.0f;
      for (int64_t s = 0; s < p.splits; ++s) {
        if (p.partial_sum[slots + s] == 0.0f) continue;  // an empty span
        const float weight = std::exp(p.partial_max[slots + s] - top);
        total += weight * p.partial_sum[slots + s];
        const float* acc = p.partial_values + (slots + s) * d;
        for (int64_t i = 0; i < d; ++i) out[i] += weight * acc[i];
      }
      const float inverse = 1.0f / total;  // total >= 1: the span holding the max contributes e^0 at least
      for (int64_t i = 0; i < d; ++i) out[i] *= inverse;
    }
  }
}

}  // namespace awq2trt_ort
