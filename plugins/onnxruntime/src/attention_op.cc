// awq2trt::GroupQueryAttention: the decode step in our kernel (decode_attention.h), everything else in ONNX
// Runtime's com.microsoft.GroupQueryAttention, invoked from here (attention_op.h says why).
#include "attention_op.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "decode_attention.h"
#include "node_checks.h"
#include "scratch.h"

namespace awq2trt_ort {
namespace {

std::atomic<uint64_t> g_decode_count{0};
std::atomic<uint64_t> g_handed_over_count{0};

enum Input : size_t {
  kQuery = 0,
  kKey,
  kValue,
  kPastKey,
  kPastValue,
  kSeqlensK,
  kTotalSequenceLength,
  kCosCache,
  kSinCache,
  kPositionIds,
  kInputCount
};

// The attributes com.microsoft.GroupQueryAttention reads that awq2trt graphs may set; the node's own values are
// passed on to ONNX Runtime's kernel unchanged.
constexpr const char* kIntAttributes[] = {"num_heads",      "kv_num_heads",      "do_rotary",
                                          "rotary_interleaved", "local_window_size", "smooth_softmax"};
constexpr const char* kFloatAttributes[] = {"scale", "softcap"};

// A splits-per-(row, KV head) rule: about 16 tasks in all, so a pool of a few threads stays busy on one row, but
// never spans under 32 positions, where a task's fixed costs would outweigh its reads.
constexpr int64_t kTargetTasks = 16;
constexpr int64_t kMinSpan = 32;
constexpr int64_t kMaxSplits = 64;

// Below this many bytes of keys and values to read, one thread computes the step: waking the pool costs more
// than the reads (SmolLM2, 100 positions, cache hot: 17 us a node on 2 threads, 12.5 us on one).
constexpr int64_t kSerialCacheBytes = int64_t{192} << 10;
// The calling thread's reused scratch of a decode step (scratch.h), one vector per buffer.
struct DecodeBuffers {
  std::vector<float> rotated, partial_max, partial_sum, partial_values;
  std::vector<int64_t> begin, end;
};

bool serial_cache_bytes(int64_t floats_per_cache) { return 2 * floats_per_cache * 4 < kSerialCacheBytes; }

int64_t choose_splits(int64_t rows_times_kv_heads, int64_t longest) {
  const int64_t wanted = (kTargetTasks + rows_times_kv_heads - 1) / rows_times_kv_heads;
  return std::clamp(std::min(wanted, longest / kMinSpan), int64_t{1}, kMaxSplits);
}

// x rotated by the angle table row (cos, sin: rotary_dim / 2 values), the non-interleaved form (the first half of
// the rotated dimensions against the second); dimensions past rotary_dim are copied.
void rotate(const float* x, const float* cos, const float* sin, int64_t rotary_dim, int64_t head_size, float* out) {
  const int64_t half = rotary_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = x[i], x2 = x[i + half];
    out[i] = x1 * cos[i] - x2 * sin[i];
    out[i + half] = x2 * cos[i] + x1 * sin[i];
  }
  std::copy(x + rotary_dim, x + head_size, out + rotary_dim);
}

void run_decode_task(void* data, size_t task) {
  decode_attention_task(*static_cast<const DecodeAttentionProblem*>(data), static_cast<int64_t>(task));
}

Ort::ConstValue optional_input(Ort::KernelContext& ctx, size_t index) {
  return index < ctx.GetInputCount() ? ctx.GetInput(index) : Ort::ConstValue{nullptr};
}

}  // namespace

uint64_t attention_decode_count() { return g_decode_count.load(std::memory_order_relaxed); }
uint64_t attention_handed_over_count() { return g_handed_over_count.load(std::memory_order_relaxed); }

AttentionKernel::AttentionKernel(const OrtKernelInfo* info, AttentionAttributes attributes)
    : attributes_(std::move(attributes)) {
  const Ort::ConstKernelInfo kernel_info(info);
  std::vector<Ort::OpAttr> passed;
  std::vector<int64_t> ints(std::size(kIntAttributes));
  std::vector<float> floats(std::size(kFloatAttributes));
  for (size_t i = 0; i < std::size(kIntAttributes); ++i) {
    try {
      ints[i] = kernel_info.GetAttribute<int64_t>(kIntAttributes[i]);
      passed.emplace_back(kIntAttributes[i], &ints[i], 1, OrtOpAttrType::ORT_OP_ATTR_INT);
    } catch (const Ort::Exception&) {
    }
  }
  for (size_t i = 0; i < std::size(kFloatAttributes); ++i) {
    try {
      floats[i] = kernel_info.GetAttribute<float>(kFloatAttributes[i]);
      passed.emplace_back(kFloatAttributes[i], &floats[i], 1, OrtOpAttrType::ORT_OP_ATTR_FLOAT);
    } catch (const Ort::Exception&) {
    }
  }
  const char* type_names[] = {"T", "M"};
  const ONNXTensorElementDataType types[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32};
  try {
    onnxruntime_kernel_ = Ort::Op::Create(info, "GroupQueryAttention", "com.microsoft", 1, type_names, types, 2,
                                          passed.data(), passed.size(), kInputCount, 3);
  } catch (const Ort::Exception& error) {
    fail(attributes_.node, std::string("this ONNX Runtime has no com.microsoft.GroupQueryAttention kernel to hand "
                                       "prefill to: ") + error.what());
  }
}

OrtStatusPtr AttentionKernel::ComputeV2(OrtKernelContext* context) const {
  try {
    Ort::KernelContext ctx(context);
    Compute(ctx);
    return nullptr;
  } catch (const std::exception& error) {
    return to_status(error);
  }
}

void AttentionKernel::Compute(Ort::KernelContext& ctx) const {
  const AttentionAttributes& a = attributes_;
  const Ort::ConstValue query = ctx.GetInput(kQuery), key = optional_input(ctx, kKey);
  const Ort::ConstValue past_key = optional_input(ctx, kPastKey), past_value = optional_input(ctx, kPastValue);
  const Ort::ConstValue total = ctx.GetInput(kTotalSequenceLength);
  const std::vector<int64_t> q_dims = query.GetTensorTypeAndShapeInfo().GetShape();
  if (q_dims.size() != 3) fail(a.node, "query has shape " + dims_text(q_dims) + ", expected [batch, sequence, hidden]");
  const int64_t batch = q_dims[0], sequence = q_dims[1];
  const bool packed = !key;
  const int64_t head_size = q_dims[2] / (packed ? a.num_heads + 2 * a.kv_num_heads : a.num_heads);
  int64_t past_length = 0;
  if (past_key) {
    const std::vector<int64_t> past_dims = past_key.GetTensorTypeAndShapeInfo().GetShape();
    if (past_dims.size() == 4) past_length = past_dims[2];
  }
  if (total.GetTensorTypeAndShapeInfo().GetElementCount() != 1) fail(a.node, "total_sequence_length must be one value");
  const int64_t total_length = total.GetTensorData<int32_t>()[0];
  // The present buffers' shape as ONNX Runtime's kernel makes them: past and present are one buffer when the
  // caller bound them so and the past already holds total_sequence_length positions.
  const int64_t present_length = std::max(past_length, total_length);
  Ort::UnownedValue output = ctx.GetOutput(0, {batch, sequence, a.num_heads * head_size});
  Ort::UnownedValue present_key = ctx.GetOutput(1, {batch, a.kv_num_heads, present_length, head_size});
  Ort::UnownedValue present_value = ctx.GetOutput(2, {batch, a.kv_num_heads, present_length, head_size});

  const bool shared = past_key && past_value &&
                      past_key.GetTensorRawData() == present_key.GetTensorRawData() &&
                      past_value.GetTensorRawData() == present_value.GetTensorRawData();
  // A packed row must be exactly (heads + 2 kv_heads) heads of the cache's size, or ONNX Runtime's kernel says why.
  const bool whole_heads = packed && q_dims[2] == (a.num_heads + 2 * a.kv_num_heads) * head_size;
  if (a.decode_supported() && whole_heads && sequence == 1 && shared && batch > 0 &&
      compute_decode(ctx, head_size, output, present_key, present_value)) {
    g_decode_count.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const OrtValue* inputs[kInputCount] = {};
  for (size_t i = 0; i < kInputCount; ++i) inputs[i] = optional_input(ctx, i);
  OrtValue* outputs[] = {output, present_key, present_value};
  Ort::ThrowOnError(Ort::GetApi().InvokeOp(ctx.GetOrtKernelContext(), onnxruntime_kernel_, inputs,
                                            static_cast<int>(kInputCount), outputs, 3));
  g_handed_over_count.fetch_add(1, std::memory_order_relaxed);
}

bool AttentionKernel::compute_decode(Ort::KernelContext& ctx, int64_t head_size, Ort::UnownedValue& output,
                                     Ort::UnownedValue& present_key, Ort::UnownedValue& present_value) const {
  const AttentionAttributes& a = attributes_;
  const Ort::ConstValue query = ctx.GetInput(kQuery), seqlens = ctx.GetInput(kSeqlensK);
  const Ort::ConstValue cos = optional_input(ctx, kCosCache), sin = optional_input(ctx, kSinCache);
  const Ort::ConstValue positions = optional_input(ctx, kPositionIds);
  const std::vector<int64_t> cache_dims = present_key.GetTensorTypeAndShapeInfo().GetShape();
  DecodeAttentionProblem p;
  p.batch = cache_dims[0], p.heads = a.num_heads, p.kv_heads = a.kv_num_heads, p.capacity = cache_dims[2];
  p.head_size = cache_dims[3];
  if (p.head_size != head_size || cache_dims[1] != a.kv_num_heads) return false;
  const int64_t d = p.head_size;
  int64_t rotary_dim = 0, angles = 0;
  if (a.do_rotary != 0) {
    if (!cos || !sin) return false;  // ONNX Runtime's kernel gives the error
    const std::vector<int64_t> cos_dims = cos.GetTensorTypeAndShapeInfo().GetShape();
    if (cos_dims.size() != 2 || cos_dims != sin.GetTensorTypeAndShapeInfo().GetShape() || 2 * cos_dims[1] > d) {
      return false;
    }
    angles = cos_dims[0], rotary_dim = 2 * cos_dims[1];
  }
  if (seqlens.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(p.batch)) return false;
  if (positions && positions.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(p.batch)) {
    return false;
  }
  p.scale = a.scale != 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(d));

  const float* qkv = query.GetTensorData<float>();
  const int32_t* lengths = seqlens.GetTensorData<int32_t>();
  float* key_cache = present_key.GetTensorMutableData<float>();
  float* value_cache = present_value.GetTensorMutableData<float>();
  const int64_t row_width = (p.heads + 2 * p.kv_heads) * d;
  thread_local DecodeBuffers buffers;
  Scratch<float> rotated_buffer(buffers.rotated), max_buffer(buffers.partial_max), sum_buffer(buffers.partial_sum);
  Scratch<float> values_buffer(buffers.partial_values);
  Scratch<int64_t> begin_buffer(buffers.begin), end_buffer(buffers.end);
  float* rotated = rotated_buffer.get(static_cast<size_t>(p.batch * p.heads * d));
  int64_t* begin = begin_buffer.get(static_cast<size_t>(p.batch));
  int64_t* end = end_buffer.get(static_cast<size_t>(p.batch));
  int64_t longest = 0;
  for (int64_t row = 0; row < p.batch; ++row) {
    // seqlens_k: the row's valid positions minus one, the new token's included: it goes at that index.
    const int64_t last = lengths[row];
    if (last < 0 || last >= p.capacity) {
      fail(a.node, "seqlens_k[" + std::to_string(row) + "] = " + std::to_string(last) + ": the new token's position "
                       "must be in the KV buffer's " + std::to_string(p.capacity) + " positions");
    }
    const int64_t position = positions ? positions.GetTensorData<int64_t>()[row] : last;
    if (a.do_rotary != 0 && (position < 0 || position >= angles)) {
      fail(a.node, "position_ids[" + std::to_string(row) + "] = " + std::to_string(position) +
                       " is outside the rotary tables' " + std::to_string(angles) + " positions");
    }
    const float* q = qkv + row * row_width;
    const float* k = q + p.heads * d;
    const float* v = k + p.kv_heads * d;
    const float* c = a.do_rotary != 0 ? cos.GetTensorData<float>() + position * (rotary_dim / 2) : nullptr;
    const float* s = a.do_rotary != 0 ? sin.GetTensorData<float>() + position * (rotary_dim / 2) : nullptr;
    for (int64_t head = 0; head < p.heads; ++head) {
      float* out = rotated + (row * p.heads + head) * d;
      if (c != nullptr) {
        rotate(q + head * d, c, s, rotary_dim, d, out);
      } else {
        std::copy_n(q + head * d, d, out);
      }
    }
    for (int64_t head = 0; head < p.kv_heads; ++head) {
      const int64_t slot = ((row * p.kv_heads + head) * p.capacity + last) * d;
      if (c != nullptr) {
        rotate(k + head * d, c, s, rotary_dim, d, key_cache + slot);
      } else {
        std::copy_n(k + head * d, d, key_cache + slot);
      }
      std::copy_n(v + head * d, d, value_cache + slot);
    }
    // A local window attends to the last local_window_size positions, the new one included (as ONNX Runtime's
    // kernel does, and transformers' sliding_window: the exporter writes that value, awq2trt/passes/attention.py).
    end[row] = last + 1;
    begin[row] = a.local_window_size > 0 ? std::max<int64_t>(0, end[row] - a.local_window_size) : 0;
    longest = std::max(longest, end[row] - begin[row]);
  }
  p.splits = choose_splits(p.batch * p.kv_heads, longest);
  const size_t slots = static_cast<size_t>(p.batch * p.heads * p.splits);
  p.query = rotated, p.key_cache = key_cache, p.value_cache = value_cache;
  p.begin = begin, p.end = end;
  // Every task writes all its slots, an empty span's included (decode_attention.h).
  p.partial_max = max_buffer.get(slots), p.partial_sum = sum_buffer.get(slots);
  p.partial_values = values_buffer.get(slots * static_cast<size_t>(d));
  p.output = output.GetTensorMutableData<float>();
  const size_t tasks = static_cast<size_t>(p.batch * p.kv_heads * p.splits);
  if (tasks == 1 || serial_cache_bytes(p.batch * p.kv_heads * longest * d)) {
    for (size_t task = 0; task < tasks; ++task) run_decode_task(&p, task);
  } else {
    ctx.ParallelFor(run_decode_task, tasks, 0, &p);
  }
  merge_partials(p);
  return true;
}

OrtStatusPtr AttentionOp::CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
  try {
    const Ort::ConstKernelInfo kernel_info(info);
    AttentionAttributes a;
    a.node = kernel_info.GetNodeName();
    if (a.node.empty()) a.node = "(unnamed)";
    auto int_attribute = [&](const char* name, int64_t fallback) {
      try {
        return kernel_info.GetAttribute<int64_t>(name);
      } catch (const Ort::Exception&) {
        return fallback;
      }
    };
    auto float_attribute = [&](const char* name, float fallback) {
      try {
        return kernel_info.GetAttribute<float>(name);
      } catch (const Ort::Exception&) {
        return fallback;
      }
    };
    a.num_heads = int_attribute("num_heads", 0), a.kv_num_heads = int_attribute("kv_num_heads", 0);
    if (a.num_heads <= 0 || a.kv_num_heads <= 0 || a.num_heads % a.kv_num_heads != 0) {
      fail(a.node, "num_heads=" + std::to_string(a.num_heads) + " and kv_num_heads=" + std::to_string(a.kv_num_heads) +
                       ": expected positive head counts, num_heads a multiple of kv_num_heads");
    }
    a.scale = float_attribute("scale", 0.0f), a.softcap = float_attribute("softcap", 0.0f);
    a.do_rotary = int_attribute("do_rotary", 0), a.rotary_interleaved = int_attribute("rotary_interleaved", 0);
    a.local_window_size = int_attribute("local_window_size", -1);
    a.smooth_softmax = int_attribute("smooth_softmax", 0);
    *kernel = new AttentionKernel(info, std::move(a));
    return nullptr;
  } catch (const std::exception& error) {
    return to_status(error);
  }
}

ONNXTensorElementDataType AttentionOp::GetInputType(size_t index) const {
  switch (index) {
    case kSeqlensK:
    case kTotalSequenceLength:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case kPositionIds:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    default:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
}

OrtCustomOpInputOutputCharacteristic AttentionOp::GetInputCharacteristic(size_t index) const {
  switch (index) {
    case kQuery:
    case kSeqlensK:
    case kTotalSequenceLength:
      return INPUT_OUTPUT_REQUIRED;
    default:
      return INPUT_OUTPUT_OPTIONAL;
  }
}

}  // namespace awq2trt_ort
