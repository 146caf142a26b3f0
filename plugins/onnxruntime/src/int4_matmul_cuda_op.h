// awq2trt::Int4MatMul on ONNX Runtime's CUDA execution provider: the node's inputs are already on the GPU, and the
// product runs on the provider's compute stream through plugins/cuda's kernels (awq2trt_cuda.h).
//
// The kernels read their own weight layout (awq2trt/cuda_layout.py), and a graph holds the IR's: each kernel
// repacks its node's weight once, on the device, at its first Compute, and keeps the copy for the session's
// life.  That doubles the int4 weight's device memory (the session's initializer stays), the price of running
// the same exported graph on the CPU and the GPU; the trt-plugin target writes the kernels' layout at export
// instead.  fp16 and bf16 activations only (the tensor-core path); a float graph's nodes stay on our CPU kernel.
#pragma once

#include <cstdint>
#include <mutex>

#include "int4_matmul_signature.h"
#include "node_checks.h"

namespace awq2trt_ort {

class Int4MatMulCudaKernel {
 public:
  static constexpr const char* kExecutionProvider = "CUDAExecutionProvider";
  // The tensor cores take 64-channel chunks and a scale per 32 channels at most (awq2trt_cuda.h).
  static void check_supported(const NodeAttributes& attributes);

  Int4MatMulCudaKernel(NodeAttributes attributes, ONNXTensorElementDataType type)
      : attributes_(std::move(attributes)), type_(type) {}
  ~Int4MatMulCudaKernel();
  Int4MatMulCudaKernel(const Int4MatMulCudaKernel&) = delete;
  Int4MatMulCudaKernel& operator=(const Int4MatMulCudaKernel&) = delete;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) const;
  void Compute(Ort::KernelContext& context) const;

 private:
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

using Int4MatMulCudaOp = Int4MatMulOpFor<Int4MatMulCudaKernel>;

// How many CUDA Compute calls finished in this process (the GPU tests' proof that this kernel ran).
uint64_t cuda_compute_count();

}  // namespace awq2trt_ort
