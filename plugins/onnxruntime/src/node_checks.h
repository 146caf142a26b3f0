// What both Int4MatMul kernels (CPU and CUDA) check before and while they run: the node's attributes, the static
// input shapes at session creation, and the run-time shapes, each failure one message naming the node.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

namespace awq2trt_ort {

// The attributes of one node, checked against what every kernel of ours supports.
struct NodeAttributes {
  std::string node;  // named in every error
  int64_t k = 0, n = 0, group = 0;
  int64_t accuracy_level = 0;  // 0: fp32 activations (exact); 4: int8 activations per block
  // weight_layout "tiles16" (awq2trt/cpu_layout.py): B [T, K/8, 16, 4], scales and zero_points [T, K/G, 16] with
  // T = ceil(N / 16); "rows" (the default, the IR's): B [N, ceil(K/2)], scales and zero_points [N, K/G].
  bool tiles16 = false;
  // epilogue "silu_mul" (awq2trt/passes/silu_mul.py): the N product columns are a gate half and an up half, and Y
  // is silu(gate) * up, N / 2 columns; "none" (the default): Y is the product.
  bool silu_mul = false;
  // Inputs B, scales, zero_points and bias (1..4) that are constant initializers, whose shapes were checked at
  // session creation: a constant cannot change between runs, so Compute does not check them again.
  bool constant_input[5] = {false, false, false, false, false};
  int64_t output_columns() const { return silu_mul ? n / 2 : n; }
};

// The shapes of B, scales and zero_points (the same) in the node's weight layout.
std::vector<int64_t> codes_dims(const NodeAttributes& node);
std::vector<int64_t> scales_dims(const NodeAttributes& node);

// Reads and checks K, N, block_size, bits, accuracy_level and the inputs' static shapes; throws
// std::invalid_argument naming the node.
NodeAttributes read_node_attributes(const Ort::ConstKernelInfo& info);

[[noreturn]] void fail(const std::string& node, const std::string& what);
std::string dims_text(const std::vector<int64_t>& dims);
void expect_dims(const std::string& node, const char* name, const std::vector<int64_t>& got,
                 const std::vector<int64_t>& want);

// The run-time inputs of one Compute, shape-checked: M (the product of A's leading dims), Y's dims, and the
// optional inputs (null values when omitted).
struct NodeInputs {
  int64_t m = 0;
  std::vector<int64_t> y_dims;
  Ort::ConstValue a{nullptr}, b{nullptr}, scales{nullptr}, zero_points{nullptr}, bias{nullptr};
};
NodeInputs read_node_inputs(Ort::KernelContext& ctx, const NodeAttributes& node);

inline OrtStatusPtr to_status(const std::exception& error) {
  return Ort::Status(error.what(), ORT_INVALID_ARGUMENT).release();
}

}  // namespace awq2trt_ort
