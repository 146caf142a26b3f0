// The CPU provider's awq2trt::Int4MatMul kernel (int4_matmul_signature.h declares the op around it).
#pragma once

#include <cstdint>

#include "int4_matmul_signature.h"
#include "node_checks.h"

namespace awq2trt_ort {

class Int4MatMulKernel {
 public:
  static constexpr const char* kExecutionProvider = "CPUExecutionProvider";
  static void check_supported(const NodeAttributes& /*attributes*/) {}  // node_checks' checks are all it needs

  Int4MatMulKernel(NodeAttributes attributes, ONNXTensorElementDataType type)
      : attributes_(std::move(attributes)), type_(type) {}
  OrtStatusPtr ComputeV2(OrtKernelContext* context) const;
  void Compute(Ort::KernelContext& context) const;

 private:
  NodeAttributes attributes_;
  ONNXTensorElementDataType type_;
};

using Int4MatMulOp = Int4MatMulOpFor<Int4MatMulKernel>;

// How many Compute calls finished in this process (the tests' proof that our kernel, not the body, ran).
uint64_t compute_count();

}  // namespace awq2trt_ort
