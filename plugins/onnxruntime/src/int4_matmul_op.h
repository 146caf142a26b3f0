// The awq2trt::Int4MatMul custom op and its kernel, on ONNX Runtime's C++ custom-op interface.
//
// Why Ort::CustomOpBase and not the lite API: the op has two optional inputs in the middle and end of its
// signature (zero_points, bias) and one activation type per registered op; CustomOpBase states both directly
// (GetInputCharacteristic, GetInputType), and its status-returning form (CreateKernelV2 / ComputeV2) lets every
// bad attribute or shape come back to the caller as one ONNX Runtime error instead of an exception crossing the
// C boundary.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cstdint>
#include <string>

#include "node_checks.h"

namespace awq2trt_ort {

class Int4MatMulKernel {
 public:
  Int4MatMulKernel(NodeAttributes attributes, ONNXTensorElementDataType type)
      : attributes_(std::move(attributes)), type_(type) {}
  OrtStatusPtr ComputeV2(OrtKernelContext* context) const;

 private:
  void Compute(Ort::KernelContext& context) const;
  NodeAttributes attributes_;
  ONNXTensorElementDataType type_;
};

// One registered op per activation type (float, float16, bfloat16): ONNX Runtime picks the kernel by A's type.
struct Int4MatMulOp : Ort::CustomOpBase<Int4MatMulOp, Int4MatMulKernel, true> {
  explicit Int4MatMulOp(ONNXTensorElementDataType type) : type_(type) {}

  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const;

  const char* GetName() const { return "Int4MatMul"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }

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

// How many Compute calls finished in this process (the tests' proof that our kernel, not the body, ran).
uint64_t compute_count();

}  // namespace awq2trt_ort
