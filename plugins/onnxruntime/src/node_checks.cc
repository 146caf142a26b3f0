#include "node_checks.h"

#include <stdexcept>

namespace awq2trt_ort {
namespace {

// Inputs whose shapes the graph fixes (initializers, typed inputs) must agree with K and N already at session
// creation; symbolic dimensions are checked again at run time (read_node_inputs).
void check_static_shapes(const Ort::ConstKernelInfo& info, const NodeAttributes& a) {
  const std::vector<std::vector<int64_t>> want = {{-1, a.k}, codes_dims(a), scales_dims(a), scales_dims(a), {a.n}};
  const char* names[] = {"A", "B", "scales", "zero_points", "bias"};
  for (size_t i = 0; i < info.GetInputCount() && i < want.size(); ++i) {
    std::vector<int64_t> got;
    try {
      got = info.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape();
    } catch (const Ort::Exception&) {
      continue;  // an omitted optional input, or no type known
    }
    if (got.empty()) continue;  // unknown rank
    const std::vector<int64_t>& expected = want[i];
    const bool is_a = i == 0;
    bool agrees = is_a ? got.back() < 0 || got.back() == a.k : got.size() == expected.size();
    for (size_t d = 0; !is_a && agrees && d < got.size(); ++d) agrees = got[d] < 0 || got[d] == expected[d];
    if (!agrees) {
      fail(a.node, std::string(names[i]) + " has shape " + dims_text(got) + ", expected " +
                       (is_a ? "[..., " + std::to_string(a.k) + "]" : dims_text(expected)) + " for K=" +
                       std::to_string(a.k) + ", N=" + std::to_string(a.n) + ", block_size=" + std::to_string(a.group) +
                       (a.tiles16 ? ", weight_layout=tiles16" : ""));
    }
  }
}

// The real shapes of the inputs that are constant initializers, once (read_node_inputs then skips them).
void check_constant_inputs(const Ort::ConstKernelInfo& info, NodeAttributes& a) {
  const char* names[] = {"A", "B", "scales", "zero_points", "bias"};
  for (size_t i = 1; i < info.GetInputCount() && i < 5; ++i) {
    int is_constant = 0;
    Ort::ConstValue value{nullptr};
    try {
      value = info.GetTensorConstantInput(i, &is_constant);
    } catch (const Ort::Exception&) {
      continue;  // an omitted optional input
    }
    if (is_constant == 0 || !value) continue;
    const std::vector<int64_t> want = i == 1 ? codes_dims(a) : i == 4 ? std::vector<int64_t>{a.n} : scales_dims(a);
    expect_dims(a.node, names[i], value.GetTensorTypeAndShapeInfo().GetShape(), want);
    a.constant_input[i] = true;
  }
}

}  // namespace

std::vector<int64_t> codes_dims(const NodeAttributes& node) {
  if (node.tiles16) return {(node.n + 15) / 16, node.k / 8, 16, 4};
  return {node.n, (node.k + 1) / 2};
}

std::vector<int64_t> scales_dims(const NodeAttributes& node) {
  if (node.tiles16) return {(node.n + 15) / 16, node.k / node.group, 16};
  return {node.n, node.k / node.group};
}

void fail(const std::string& node, const std::string& what) {
  throw std::invalid_argument("awq2trt::Int4MatMul node '" + node + "': " + what);
}

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + "]";
}

void expect_dims(const std::string& node, const char* name, const std::vector<int64_t>& got,
                 const std::vector<int64_t>& want) {
  if (got != want) fail(node, std::string(name) + " has shape " + dims_text(got) + ", expected " + dims_text(want));
}

NodeAttributes read_node_attributes(const Ort::ConstKernelInfo& info) {
  NodeAttributes a;
  a.node = info.GetNodeName();
  if (a.node.empty()) a.node = "(unnamed)";
  auto attribute = [&](const char* name) {
    try {
      return info.GetAttribute<int64_t>(name);
    } catch (const Ort::Exception&) {
      fail(a.node, std::string("missing int attribute ") + name);
    }
  };
  auto optional_attribute = [&](const char* name, int64_t fallback) {
    try {
      return info.GetAttribute<int64_t>(name);
    } catch (const Ort::Exception&) {
      return fallback;  // absent: the schema's default
    }
  };
  // A string attribute that must be one of two values; absent, the first (the schema's default).
  auto choice = [&](const char* name, const std::string& fallback, const std::string& other) {
    std::string value = fallback;
    try {
      value = info.GetAttribute<std::string>(name);
    } catch (const Ort::Exception&) {
    }
    if (value != fallback && value != other) {
      fail(a.node, std::string(name) + "='" + value + "' is not supported (\"" + fallback + "\" or \"" + other + "\")");
    }
    return value;
  };
  a.k = attribute("K"), a.n = attribute("N"), a.group = attribute("block_size");
  a.tiles16 = choice("weight_layout", "rows", "tiles16") == "tiles16";
  a.silu_mul = choice("epilogue", "none", "silu_mul") == "silu_mul";
  const int64_t bits = optional_attribute("bits", 4);
  a.accuracy_level = optional_attribute("accuracy_level", 0);
  if (bits != 4) fail(a.node, "bits=" + std::to_string(bits) + " is not supported (only 4)");
  // Powers of two >= 16, as MatMulNBits takes: the SIMD paths work in 32-k chunks, the scalar one any size.
  if (a.group < 16 || (a.group & (a.group - 1)) != 0) {
    fail(a.node, "block_size=" + std::to_string(a.group) + " is not supported (a power of two >= 16)");
  }
  if (a.k <= 0 || a.n <= 0 || a.k % a.group != 0) {
    fail(a.node, "K=" + std::to_string(a.k) + ", N=" + std::to_string(a.n) + ", block_size=" +
                     std::to_string(a.group) + ": need positive K and N with K a multiple of block_size");
  }
  // The up half must start on a 16-row tile, so that a task's gate and up rows are whole tiles in either layout.
  if (a.silu_mul && a.n % 32 != 0) {
    fail(a.node, "epilogue='silu_mul' needs N a multiple of 32 (two halves of whole 16-row tiles), got N=" +
                     std::to_string(a.n));
  }
  if (a.accuracy_level != 0 && a.accuracy_level != 4) {
    fail(a.node, "accuracy_level=" + std::to_string(a.accuracy_level) +
                     " is not supported (0: fp32 activations, 4: int8 activations per block)");
  }
  check_static_shapes(info, a);
  check_constant_inputs(info, a);
  return a;
}

NodeInputs read_node_inputs(Ort::KernelContext& ctx, const NodeAttributes& node) {
  NodeInputs in;
  const size_t count = ctx.GetInputCount();
  in.a = ctx.GetInput(0);
  const std::vector<int64_t> a_dims = in.a.GetTensorTypeAndShapeInfo().GetShape();
  if (a_dims.empty() || a_dims.back() != node.k) {
    fail(node.node, "A has shape " + dims_text(a_dims) + ", expected [..., K]");
  }
  in.m = 1;
  for (size_t i = 0; i + 1 < a_dims.size(); ++i) in.m *= a_dims[i];
  in.b = ctx.GetInput(1), in.scales = ctx.GetInput(2);
  if (count > 3) in.zero_points = ctx.GetInput(3);
  if (count > 4) in.bias = ctx.GetInput(4);
  // Each check makes a shape object and vectors in ONNX Runtime: a constant's was done at session creation.
  if (!node.constant_input[1]) expect_dims(node.node, "B", in.b.GetTensorTypeAndShapeInfo().GetShape(), codes_dims(node));
  if (!node.constant_input[2]) {
    expect_dims(node.node, "scales", in.scales.GetTensorTypeAndShapeInfo().GetShape(), scales_dims(node));
  }
  if (in.zero_points && !node.constant_input[3]) {
    expect_dims(node.node, "zero_points", in.zero_points.GetTensorTypeAndShapeInfo().GetShape(), scales_dims(node));
  }
  if (in.bias && !node.constant_input[4]) {
    expect_dims(node.node, "bias", in.bias.GetTensorTypeAndShapeInfo().GetShape(), {node.n});
  }
  in.y_dims = a_dims;
  in.y_dims.back() = node.output_columns();
  return in;
}

}  // namespace awq2trt_ort
