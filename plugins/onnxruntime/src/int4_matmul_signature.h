// The op declaration every Int4MatMul kernel of ours registers under: the IR node's name, inputs, optional inputs
// and output, and the status-returning wrappers around kernel creation and Compute.  The CPU and CUDA kernels
// differ only in the Kernel type (its checks, its provider, its Compute), so they share this one template.
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

#include <atomic>
#include <cstdint>
#include <exception>
#include <utility>

#include "node_checks.h"

namespace awq2trt_ort {

// Runs kernel.Compute with any error as one ONNX Runtime status, and counts the runs that finished (the tests'
// proof that our kernel, not the node's function body, ran).
template <typename Kernel>
OrtStatusPtr compute_with_status(const Kernel& kernel, OrtKernelContext* context, std::atomic<uint64_t>& finished) {
  try {
    Ort::KernelContext ctx(context);
    kernel.Compute(ctx);
    finished.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  } catch (const std::exception& error) {
    return to_status(error);
  }
}

// Kernel provides:
//   static constexpr const char* kExecutionProvider;                  the provider it registers for
//   static void check_supported(const NodeAttributes&);               what it refuses beyond the common checks
//   Kernel(NodeAttributes, ONNXTensorElementDataType);
//   OrtStatusPtr ComputeV2(OrtKernelContext*) const;
// One op object is registered per activation type (float, float16, bfloat16): ONNX Runtime picks by A's type.
template <typename Kernel>
struct Int4MatMulOpFor : Ort::CustomOpBase<Int4MatMulOpFor<Kernel>, Kernel, true> {
  explicit Int4MatMulOpFor(ONNXTensorElementDataType type) : type_(type) {}

  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    try {
      NodeAttributes attributes = read_node_attributes(Ort::ConstKernelInfo(info));
      Kernel::check_supported(attributes);
      *kernel = new Kernel(std::move(attributes), type_);
      return nullptr;
    } catch (const std::exception& error) {
      return to_status(error);
    }
  }

  const char* GetName() const { return "Int4MatMul"; }
  const char* GetExecutionProviderType() const { return Kernel::kExecutionProvider; }

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

}  // namespace awq2trt_ort
