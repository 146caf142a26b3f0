// Int4MatMul: attribute and shape checks, dtype conversion to the fp32 problem, and the split over N across
// ONNX Runtime's intra-op thread pool (KernelContext::ParallelFor), so we never start threads that would fight
// its spinning workers.
#include "int4_matmul_op.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <stdexcept>
#include <vector>

#include "dispatch.h"
#include "int4_problem.h"

namespace awq2trt_ort {
namespace {

std::atomic<uint64_t> g_compute_count{0};


[[noreturn]] void fail(const std::string& node, const std::string& what) {
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

template <typename T>
std::vector<float> to_float(const T* data, size_t count) {
  std::vector<float> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = data[i].ToFloat();
  return out;
}

struct Job {
  const Int4Problem* problem;
  RowsFn rows;
  int64_t rows_per_task;  // PathPlan's: enough work per task (>= 32 rows x K/2 bytes of codes) that scheduling is noise
};

void run_task(void* data, size_t task) {
  const Job& job = *static_cast<const Job*>(data);
  const int64_t begin = static_cast<int64_t>(task) * job.rows_per_task;
  job.rows(*job.problem, begin, std::min(begin + job.rows_per_task, job.problem->n));
}

// accuracy_level 4: the activations' int8 blocks, rows of A split across the pool like rows of Y.
struct QuantizeJob {
  const Int4Problem* problem;
  int split_span;
  int8_t* a_q;
  float *a_scale, *a_sum;
};

constexpr int64_t kActivationRowsPerTask = 8;

void quantize_task(void* data, size_t task) {
  const QuantizeJob& job = *static_cast<const QuantizeJob*>(data);
  const Int4Problem& p = *job.problem;
  const int64_t begin = static_cast<int64_t>(task) * kActivationRowsPerTask;
  quantize_activations(p.a, p.k, p.group, job.split_span, begin, std::min(begin + kActivationRowsPerTask, p.m), job.a_q,
                       job.a_scale, job.a_sum);
}

// Inputs whose shapes the graph fixes (initializers, typed inputs) must agree with K and N already at session
// creation; symbolic dimensions are checked again at run time (Compute).
void check_static_shapes(const Ort::ConstKernelInfo& info, const std::string& node, int64_t k, int64_t n,
                         int64_t group) {
  const int64_t groups = k / group;
  const std::vector<std::vector<int64_t>> want = {{-1, k}, {n, (k + 1) / 2}, {n, groups}, {n, groups}, {n}};
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
    bool agrees = is_a ? got.back() < 0 || got.back() == k : got.size() == expected.size();
    for (size_t d = 0; !is_a && agrees && d < got.size(); ++d) agrees = got[d] < 0 || got[d] == expected[d];
    if (!agrees) {
      fail(node, std::string(names[i]) + " has shape " + dims_text(got) + ", expected " +
                     (is_a ? "[..., " + std::to_string(k) + "]" : dims_text(expected)) + " for K=" +
                     std::to_string(k) + ", N=" + std::to_string(n) + ", block_size=" + std::to_string(group));
    }
  }
}

OrtStatusPtr to_status(const std::exception& error) {
  return Ort::Status(error.what(), ORT_INVALID_ARGUMENT).release();
}

}  // namespace

uint64_t compute_count() { return g_compute_count.load(std::memory_order_relaxed); }

OrtStatusPtr Int4MatMulOp::CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
  std::string node = "?";
  try {
    Ort::ConstKernelInfo kernel_info(info);
    node = kernel_info.GetNodeName();
    if (node.empty()) node = "(unnamed)";
    auto attribute = [&](const char* name) {
      try {
        return kernel_info.GetAttribute<int64_t>(name);
      } catch (const Ort::Exception&) {
        fail(node, std::string("missing int attribute ") + name);
      }
    };
    auto optional_attribute = [&](const char* name, int64_t fallback) {
      try {
        return kernel_info.GetAttribute<int64_t>(name);
      } catch (const Ort::Exception&) {
        return fallback;  // absent: the schema's default
      }
    };
    const int64_t k = attribute("K"), n = attribute("N"), group = attribute("block_size");
    const int64_t bits = optional_attribute("bits", 4), accuracy_level = optional_attribute("accuracy_level", 0);
    if (bits != 4) fail(node, "bits=" + std::to_string(bits) + " is not supported (only 4)");
    // Powers of two >= 16, as MatMulNBits takes: the SIMD paths work in 32-k chunks, the scalar one any size.
    if (group < 16 || (group & (group - 1)) != 0) {
      fail(node, "block_size=" + std::to_string(group) + " is not supported (a power of two >= 16)");
    }
    if (k <= 0 || n <= 0 || k % group != 0) {
      fail(node, "K=" + std::to_string(k) + ", N=" + std::to_string(n) + ", block_size=" + std::to_string(group) +
                     ": need positive K and N with K a multiple of block_size");
    }
    if (accuracy_level != 0 && accuracy_level != 4) {
      fail(node, "accuracy_level=" + std::to_string(accuracy_level) +
                     " is not supported (0: fp32 activations, 4: int8 activations per block)");
    }
    check_static_shapes(kernel_info, node, k, n, group);
    *kernel = new Int4MatMulKernel(k, n, group, accuracy_level, type_, node);
    return nullptr;
  } catch (const std::exception& error) {
    return to_status(error);
  }
}

OrtStatusPtr Int4MatMulKernel::ComputeV2(OrtKernelContext* context) const {
  try {
    Ort::KernelContext ctx(context);
    Compute(ctx);
    g_compute_count.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  } catch (const std::exception& error) {
    return to_status(error);
  }
}

void Int4MatMulKernel::Compute(Ort::KernelContext& ctx) const {
  const size_t inputs = ctx.GetInputCount();
  const Ort::ConstValue a_value = ctx.GetInput(0);
  std::vector<int64_t> a_dims = a_value.GetTensorTypeAndShapeInfo().GetShape();
  if (a_dims.empty() || a_dims.back() != k_) fail(node_, "A has shape " + dims_text(a_dims) + ", expected [..., K]");
  int64_t m = 1;
  for (size_t i = 0; i + 1 < a_dims.size(); ++i) m *= a_dims[i];
  const int64_t groups = k_ / group_, row_bytes = (k_ + 1) / 2;

  const Ort::ConstValue b_value = ctx.GetInput(1), s_value = ctx.GetInput(2);
  expect_dims(node_, "B", b_value.GetTensorTypeAndShapeInfo().GetShape(), {n_, row_bytes});
  expect_dims(node_, "scales", s_value.GetTensorTypeAndShapeInfo().GetShape(), {n_, groups});
  Ort::ConstValue z_value{nullptr}, bias_value{nullptr};
  if (inputs > 3) z_value = ctx.GetInput(3);
  if (inputs > 4) bias_value = ctx.GetInput(4);
  if (z_value) expect_dims(node_, "zero_points", z_value.GetTensorTypeAndShapeInfo().GetShape(), {n_, groups});
  if (bias_value) expect_dims(node_, "bias", bias_value.GetTensorTypeAndShapeInfo().GetShape(), {n_});

  std::vector<int64_t> y_dims = a_dims;
  y_dims.back() = n_;
  Ort::UnownedValue y_value = ctx.GetOutput(0, y_dims);
  if (m == 0) return;

  Int4Problem p;
  p.m = m, p.k = k_, p.n = n_, p.group = group_, p.groups = groups, p.row_bytes = row_bytes;
  p.codes = b_value.GetTensorData<uint8_t>();
  p.zeros = z_value ? z_value.GetTensorData<uint8_t>() : nullptr;
  // Half-precision activations, scales and bias become fp32 here: the paths compute in fp32 only.
  std::vector<float> a32, s32, bias32, y32;
  if (type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    p.a = a_value.GetTensorData<float>();
    p.scales = s_value.GetTensorData<float>();
    p.bias = bias_value ? bias_value.GetTensorData<float>() : nullptr;
    p.y = y_value.GetTensorMutableData<float>();
  } else {
    auto convert = [&](const Ort::ConstValue& value, size_t count) {
      if (type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) return to_float(value.GetTensorData<Ort::Float16_t>(), count);
      return to_float(value.GetTensorData<Ort::BFloat16_t>(), count);
    };
    a32 = convert(a_value, static_cast<size_t>(m * k_));
    s32 = convert(s_value, static_cast<size_t>(n_ * groups));
    if (bias_value) bias32 = convert(bias_value, static_cast<size_t>(n_));
    y32.resize(static_cast<size_t>(m * n_));
    p.a = a32.data(), p.scales = s32.data(), p.bias = bias_value ? bias32.data() : nullptr, p.y = y32.data();
  }

  p.int8_activations = accuracy_level_ == 4;
  const PathPlan plan = plan_for(p);
  std::vector<float> a_split, a_scale, a_sum;
  std::vector<int8_t> a_q;
  if (p.int8_activations) {
    a_q.resize(static_cast<size_t>(m * k_));
    a_scale.resize(static_cast<size_t>(m * groups));
    a_sum.resize(static_cast<size_t>(m * groups));
    QuantizeJob job{&p, plan.split_span, a_q.data(), a_scale.data(), a_sum.data()};
    const size_t tasks = static_cast<size_t>((m + kActivationRowsPerTask - 1) / kActivationRowsPerTask);
    if (tasks == 1) {
      quantize_task(&job, 0);  // decode: a few microseconds of work, less than waking the pool
    } else {
      ctx.ParallelFor(quantize_task, tasks, 0, &job);
    }
    p.a_q = a_q.data(), p.a_scale = a_scale.data(), p.a_sum = a_sum.data();
  } else if (plan.split_span != 0) {
    a_split.resize(static_cast<size_t>(m * k_));
    split_activations(p.a, m, k_, a_split.data());
    p.a_split = a_split.data();
  }
  Job job{&p, plan.rows, plan.rows_per_task};
  ctx.ParallelFor(run_task, static_cast<size_t>((n_ + job.rows_per_task - 1) / job.rows_per_task), 0, &job);
  note_last_path(plan.path);

  if (type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) {
    auto* y = y_value.GetTensorMutableData<Ort::Float16_t>();
    for (size_t i = 0; i < y32.size(); ++i) y[i] = Ort::Float16_t(y32[i]);
  } else if (type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16) {
    auto* y = y_value.GetTensorMutableData<Ort::BFloat16_t>();
    for (size_t i = 0; i < y32.size(); ++i) y[i] = Ort::BFloat16_t(y32[i]);
  }
}

}  // namespace awq2trt_ort
