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
#include "node_checks.h"
#include "scratch.h"
#include "silu_mul.h"

namespace awq2trt_ort {
namespace {

std::atomic<uint64_t> g_compute_count{0};


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
  bool untile;            // PathPlan::untile: a tiles16 problem on a path that reads rows
  // The silu_mul epilogue: problem->y is then the [M, N] product (per call scratch), `half` = N / 2 and `out` the
  // [M, N / 2] output; a task computes its gate rows and the matching up rows, then their columns of out, while
  // they are in cache.  half = 0: no epilogue, problem->y is the output.
  int64_t half = 0;
  float* out = nullptr;
};

// A tiles16 problem on a path that reads rows: the rows go back into the rows layout in per-thread scratch, the
// path computes them as a problem of their own, and its columns are copied into Y.  The slice is rows_per_task
// rows (kilobytes), so nothing the size of the weight is ever copied.
void compute_untiled_rows(const Job& job, int64_t begin, int64_t end) {
  const Int4Problem& p = *job.problem;
  const int64_t rows = end - begin;
  thread_local std::vector<uint8_t> codes, zeros;
  thread_local std::vector<float> scales, y;
  codes.resize(static_cast<size_t>(rows * p.row_bytes));
  scales.resize(static_cast<size_t>(rows * p.groups));
  zeros.resize(p.zeros != nullptr ? static_cast<size_t>(rows * p.groups) : 0);
  y.resize(static_cast<size_t>(p.m * rows));
  untile_rows(p, begin, end, codes.data(), scales.data(), zeros.data());
  Int4Problem slice = p;
  slice.tiles16 = false;
  slice.n = rows;
  slice.codes = codes.data(), slice.scales = scales.data(), slice.zeros = p.zeros != nullptr ? zeros.data() : nullptr;
  slice.bias = p.bias != nullptr ? p.bias + begin : nullptr;
  slice.y = y.data();
  job.rows(slice, 0, rows);
  for (int64_t m = 0; m < p.m; ++m) std::copy_n(y.data() + m * rows, rows, p.y + m * p.n + begin);
}

void compute_rows(const Job& job, int64_t begin, int64_t end) {
  if (job.untile) return compute_untiled_rows(job, begin, end);
  job.rows(*job.problem, begin, end);
}

void run_task(void* data, size_t task) {
  const Job& job = *static_cast<const Job*>(data);
  const int64_t columns = job.half != 0 ? job.half : job.problem->n;
  const int64_t begin = static_cast<int64_t>(task) * job.rows_per_task;
  const int64_t end = std::min(begin + job.rows_per_task, columns);
  compute_rows(job, begin, end);
  if (job.half == 0) return;
  compute_rows(job, job.half + begin, job.half + end);
  silu_mul_columns(job.problem->y, job.problem->m, job.half, begin, end, job.out);
}

// accuracy_level 4: the activations' int8 blocks, rows of A split across the pool like rows of Y.
struct QuantizeJob {
  const Int4Problem* problem;
  QuantizeFn quantize;
  int split_span;
  int8_t* a_q;
  float *a_scale, *a_sum;
};

constexpr int64_t kActivationRowsPerTask = 8;

// The calling thread's reused scratch (scratch.h), one vector per buffer.
struct CallBuffers {
  std::vector<float> product, a_split, a_scale, a_sum;
  std::vector<int8_t> a_q;
};

void quantize_task(void* data, size_t task) {
  const QuantizeJob& job = *static_cast<const QuantizeJob*>(data);
  const Int4Problem& p = *job.problem;
  const int64_t begin = static_cast<int64_t>(task) * kActivationRowsPerTask;
  job.quantize(p.a, p.k, p.group, job.split_span, begin, std::min(begin + kActivationRowsPerTask, p.m), job.a_q,
               job.a_scale, job.a_sum);
}

}  // namespace

uint64_t compute_count() { return g_compute_count.load(std::memory_order_relaxed); }

OrtStatusPtr Int4MatMulKernel::ComputeV2(OrtKernelContext* context) const {
  return compute_with_status(*this, context, g_compute_count);
}

void Int4MatMulKernel::Compute(Ort::KernelContext& ctx) const {
  const NodeInputs in = read_node_inputs(ctx, attributes_);
  const int64_t m = in.m, k = attributes_.k, n = attributes_.n, group = attributes_.group;
  const int64_t groups = k / group, row_bytes = (k + 1) / 2;
  const Ort::ConstValue &a_value = in.a, &b_value = in.b, &s_value = in.scales;
  const Ort::ConstValue &z_value = in.zero_points, &bias_value = in.bias;
  Ort::UnownedValue y_value = ctx.GetOutput(0, in.y_dims);
  if (m == 0) return;
  const int64_t columns = attributes_.output_columns();  // Y's: N, or N / 2 after the silu_mul epilogue

  Int4Problem p;
  p.m = m, p.k = k, p.n = n, p.group = group, p.groups = groups, p.row_bytes = row_bytes;
  p.tiles16 = attributes_.tiles16;
  const int64_t weight_rows = p.tiles16 ? (n + 15) / 16 * 16 : n;  // tiles16 pads N to whole tiles
  p.codes = b_value.GetTensorData<uint8_t>();
  p.zeros = z_value ? z_value.GetTensorData<uint8_t>() : nullptr;
  // Half-precision activations, scales and bias become fp32 here: the paths compute in fp32 only.
  std::vector<float> a32, s32, bias32, y32;
  float* out = nullptr;  // Y in fp32: the output tensor itself, or y32 to convert at the end
  if (type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    p.a = a_value.GetTensorData<float>();
    p.scales = s_value.GetTensorData<float>();
    p.bias = bias_value ? bias_value.GetTensorData<float>() : nullptr;
    out = y_value.GetTensorMutableData<float>();
  } else {
    auto convert = [&](const Ort::ConstValue& value, size_t count) {
      if (type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16) return to_float(value.GetTensorData<Ort::Float16_t>(), count);
      return to_float(value.GetTensorData<Ort::BFloat16_t>(), count);
    };
    a32 = convert(a_value, static_cast<size_t>(m * k));
    s32 = convert(s_value, static_cast<size_t>(weight_rows * groups));
    if (bias_value) bias32 = convert(bias_value, static_cast<size_t>(n));
    y32.resize(static_cast<size_t>(m * columns));
    p.a = a32.data(), p.scales = s32.data(), p.bias = bias_value ? bias32.data() : nullptr, out = y32.data();
  }
  thread_local CallBuffers buffers;
  Scratch<float> product(buffers.product), a_split(buffers.a_split), a_scale(buffers.a_scale), a_sum(buffers.a_sum);
  Scratch<int8_t> a_q(buffers.a_q);
  // The silu_mul epilogue's [M, N] gate and up columns.
  p.y = attributes_.silu_mul ? product.get(static_cast<size_t>(m * n)) : out;

  p.int8_activations = attributes_.accuracy_level == 4;
  const PathPlan plan = plan_for(p);
  if (p.int8_activations) {
    QuantizeJob job{&p, plan.quantize, plan.split_span, a_q.get(static_cast<size_t>(m * k)),
                    a_scale.get(static_cast<size_t>(m * groups)), a_sum.get(static_cast<size_t>(m * groups))};
    const size_t tasks = static_cast<size_t>((m + kActivationRowsPerTask - 1) / kActivationRowsPerTask);
    if (tasks == 1) {
      quantize_task(&job, 0);  // decode: a few microseconds of work, less than waking the pool
    } else {
      ctx.ParallelFor(quantize_task, tasks, 0, &job);
    }
    p.a_q = job.a_q, p.a_scale = job.a_scale, p.a_sum = job.a_sum;
  } else if (plan.split_span != 0) {
    float* split = a_split.get(static_cast<size_t>(m * k));
    split_activations(p.a, m, k, split);
    p.a_split = split;
  }
  Job job{&p, plan.rows, plan.rows_per_task, plan.untile};
  if (attributes_.silu_mul) job.half = columns, job.out = out;
  ctx.ParallelFor(run_task, static_cast<size_t>((columns + job.rows_per_task - 1) / job.rows_per_task), 0, &job);
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
