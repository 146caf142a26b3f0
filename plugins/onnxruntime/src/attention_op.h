// awq2trt::GroupQueryAttention: ONNX Runtime's com.microsoft.GroupQueryAttention (the same inputs, outputs and
// attributes), with the decode step (one new token per row, past and present one shared buffer) computed by our
// own kernel (decode_attention.h) and every other call handed to ONNX Runtime's own kernel through the
// standalone op invoker (OrtApi::CreateOp / InvokeOp), so prefill keeps its blocked GEMMs.
//
// Why a decode kernel of our own: ONNX Runtime's CPU kernel takes about twice our time per node on SmolLM2's
// shapes (30 nodes a run, 2 threads, cache cold: 10.1 against 6.1 us at 20 positions of context, 19.5 against 12.0
// at 100, 63 against 39 at 500; GEMM calls per head and scratch per call) and reads the cache at about half the
// memory's speed, so at a few hundred positions of context it was a fifth of a decode step.  Ours reads each key
// and value row once for the whole group of query heads that share it, in one pass split over positions across
// the pool.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <atomic>
#include <cstdint>
#include <string>

namespace awq2trt_ort {

// The node's attributes (com.microsoft.GroupQueryAttention's, with its defaults).
struct AttentionAttributes {
  std::string node;
  int64_t num_heads = 0, kv_num_heads = 0;
  float scale = 0.0f;  // 0: 1 / sqrt(head_size)
  int64_t do_rotary = 0, rotary_interleaved = 0;
  int64_t local_window_size = -1;  // -1: the whole past; else the last local_window_size positions
  float softcap = 0.0f;
  int64_t smooth_softmax = 0;
  // Whether our decode kernel implements these attributes (else every call goes to ONNX Runtime's kernel).
  bool decode_supported() const { return rotary_interleaved == 0 && softcap == 0.0f && smooth_softmax == 0; }
};

class AttentionKernel {
 public:
  AttentionKernel(const OrtKernelInfo* info, AttentionAttributes attributes);
  OrtStatusPtr ComputeV2(OrtKernelContext* context) const;
  void Compute(Ort::KernelContext& context) const;

 private:
  // Our kernel, when the call is one decode step on a shared buffer; false: the caller hands it over.
  bool compute_decode(Ort::KernelContext& context, int64_t head_size, Ort::UnownedValue& output,
                      Ort::UnownedValue& present_key, Ort::UnownedValue& present_value) const;
  AttentionAttributes attributes_;
  Ort::Op onnxruntime_kernel_{nullptr};  // com.microsoft.GroupQueryAttention, for every call ours does not take
};

// Inputs: query, key, value, past_key, past_value, seqlens_k, total_sequence_length, cos_cache, sin_cache,
// position_ids; outputs: output, present_key, present_value.  float only (an fp16 graph keeps ORT's op).
struct AttentionOp : Ort::CustomOpBase<AttentionOp, AttentionKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const;
  const char* GetName() const { return "GroupQueryAttention"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }

  size_t GetInputTypeCount() const { return 10; }
  ONNXTensorElementDataType GetInputType(size_t index) const;
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const;
  size_t GetOutputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

// How many Compute calls our decode kernel took, and how many went to ONNX Runtime's (the tests' proof of which
// ran).
uint64_t attention_decode_count();
uint64_t attention_handed_over_count();

}  // namespace awq2trt_ort
