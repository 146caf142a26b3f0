// One decode step of grouped-query attention over a KV cache: every row has one new query token, whose keys and
// values are already in the cache.  The caller (attention_op.cc) rotates the new query and key, appends the key
// and value, and splits the work into tasks; this file holds the per-task arithmetic.
//
// A task is one (row, KV head, span of positions): it reads each cached key and value of its span once, for all
// the query heads of the group that share them, and leaves a partial softmax (running max, sum of exponentials,
// weighted sum of values) per query head.  merge_partials turns a row's spans into the attention output, as
// split-K attention does, so a short context still fills the thread pool.
#pragma once

#include <cstdint>

namespace awq2trt_ort {

struct DecodeAttentionProblem {
  int64_t batch = 0, heads = 0, kv_heads = 0, head_size = 0;
  int64_t capacity = 0;  // positions per (row, KV head) in the cache: [batch, kv_heads, capacity, head_size]
  float scale = 0.0f;    // applied to q.k before the softmax
  const float* query = nullptr;  // [batch, heads, head_size], rotated
  const float* key_cache = nullptr;
  const float* value_cache = nullptr;
  const int64_t* begin = nullptr;  // per row: the first position attended (a local window moves it)
  const int64_t* end = nullptr;    // per row: one past the last (the new token's position + 1)
  int64_t splits = 1;              // spans per (row, KV head)
  // [batch, heads, splits] partials: max and sum of e^(s - max), and [.., head_size] the weighted values.
  float* partial_max = nullptr;
  float* partial_sum = nullptr;
  float* partial_values = nullptr;
  float* output = nullptr;  // [batch, heads * head_size]
};

// The span of positions that split `split` of `row` covers.
inline void split_span(const DecodeAttentionProblem& p, int64_t row, int64_t split, int64_t* first, int64_t* last) {
  const int64_t length = p.end[row] - p.begin[row];
  const int64_t chunk = (length + p.splits - 1) / p.splits;
  *first = p.begin[row] + split * chunk;
  *last = *first + chunk < p.end[row] ? *first + chunk : p.end[row];
  if (*first > *last) *first = *last;
}

// Task t = (row, kv_head, split) in that order; tasks = batch * kv_heads * splits.
void decode_attention_task_scalar(const DecodeAttentionProblem& p, int64_t task);
void decode_attention_task_avx512(const DecodeAttentionProblem& p, int64_t task);
void decode_attention_task_avx2(const DecodeAttentionProblem& p, int64_t task);
// The one the active path (dispatch.h) runs: AVX-512 for head sizes that are a multiple of 16 up to 256, AVX2 for
// multiples of 8; the scalar reference otherwise.
void decode_attention_task(const DecodeAttentionProblem& p, int64_t task);

// output[row, head] from the row's partials (serial: heads * splits * head_size flops).
void merge_partials(const DecodeAttentionProblem& p);

}  // namespace awq2trt_ort
