// awq2trt::Int4MatMul on ONNX Runtime's CUDA execution provider: the node's inputs are already on the GPU, and the
// product runs on the provider's compute stream through plugins/cuda's kernels (awq2trt_cuda.h).
//
// The kernels read their own weight layout (awq2trt/cuda_layout.py), and a graph holds the IR's: each kernel
// repacks its node's weight once, on the device, at its first Compute, and keeps the copy for the session's
// life.  That doubles the int4 weight's device memory (the session's initializer stays), the price of running
// the same exported graph on the CPU and the GPU; the trt-plugin target writes the kernels' layout at export
// instead.  fp16 and bf16 activations only (the tensor-core path); a float graph's nodes stay on our CPU kernel.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cstdint>
#include <mutex>

#include "node_checks.h"

namespace awq2trt_ort {

class Int4MatMulCudaKernel {
 public:
  Int4MatMulCudaKernel(NodeAttributes attributes, ONNXTensorElementDataType type)
      : attributes_(std::move(attributes)), type_(type) {}
  ~Int4MatMulCudaKernel();
  Int4MatMulCudaKernel(const Int4MatMulCudaKernel&) = delete;
  Int4MatMulCudaKernel& operator=(const Int4MatMulCudaKernel&) = delete;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) const;

 private:
  void Compute(Ort::KernelContext& context) const;
  // The kernels' layout of the node's weight, made (again) when the source tensors are not the ones it was made
  // from: initializers never move, so that is once per session.
  void ensure_packed(const NodeInputs& in, void* stream) const;

  NodeAttributes attributes_;
  ONNXTensorElementDataType type_;
  mutable std::mutex pack_mutex_;
  mutable const void* packed_from_[3] = {nullptr, nullptr, nullptr};  // B, scales, zero_points it was made from
  mutable int32_t* codes_ = nullptr;
  mutable uint16_t* scales_ = nullptr;
  mutable uint8_t* zeros_ = nullptr;
  mutable int sm_count_ = 0;
};

struct Int4MatMulCudaOp : Ort::CustomOpBase<Int4MatMulCudaOp, Int4MatMulCudaKernel, true> {
  explicit Int4MatMulCudaOp(ONNXTensorElementDataType type) : type_(type) {}

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const;

  const char* GetName() const { return "Int4MatMul"; }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }

  size_t GetInputTypeCount() const { return 5; }  // A, B, scales, zero_points, bias
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 1 || index == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : type_;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index >= 3 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }

  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return type_; }

 private:
  ONNXTensorElementDataType type_;
};

// How many CUDA Compute calls finished in this process (the GPU tests' proof that this kernel ran).
uint64_t cuda_compute_count();

}  // namespace awq2trt_ort
