#include "int4_matmul_cuda_op.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <string>

#include "awq2trt_cuda.h"

namespace awq2trt_ort {
namespace {

std::atomic<uint64_t> g_cuda_compute_count{0};

const char* status_text(awq2trt_status status) {
  switch (status) {
    case AWQ2TRT_OK: return "ok";
    case AWQ2TRT_BAD_SHAPE: return "a shape the CUDA kernels do not take";
    case AWQ2TRT_BAD_ALIGNMENT: return "a misaligned or missing tensor";
    case AWQ2TRT_SMALL_WORKSPACE: return "a workspace smaller than split-K needs";
    case AWQ2TRT_LAUNCH_FAILED: return "a failed kernel launch";
  }
  return "an unknown status";
}

void check_cuda(const std::string& node, cudaError_t error, const char* what) {
  if (error != cudaSuccess) fail(node, std::string(what) + ": " + cudaGetErrorString(error));
}

void check_status(const std::string& node, awq2trt_status status, const char* what) {
  if (status != AWQ2TRT_OK) fail(node, std::string(what) + " refused: " + status_text(status));
}

}  // namespace

uint64_t cuda_compute_count() { return g_cuda_compute_count.load(std::memory_order_relaxed); }

void Int4MatMulCudaKernel::check_supported(const NodeAttributes& attributes) {
  if (attributes.tiles16) {
    fail(attributes.node, "weight_layout='tiles16' is a CPU kernel layout (export with --weight-layout rows for CUDA)");
  }
  if (attributes.silu_mul) {
    fail(attributes.node,
         "epilogue='silu_mul' is computed by the CPU kernel only (export with --disable-passes fuse_silu_mul for CUDA)");
  }
  if (attributes.k % 64 != 0 || attributes.group % 32 != 0) {
    fail(attributes.node, "K=" + std::to_string(attributes.k) + ", block_size=" + std::to_string(attributes.group) +
                              ": the CUDA kernels need K % 64 == 0 and block_size % 32 == 0 (run this graph on "
                              "the CPU provider)");
  }
}

Int4MatMulCudaKernel::~Int4MatMulCudaKernel() {
  // Errors are ignored here: a destructor cannot report them, and the process may be tearing the context down.
  cudaFree(codes_);
  cudaFree(scales_);
  cudaFree(zeros_);
}

void Int4MatMulCudaKernel::ensure_packed(const NodeInputs& in, void* stream) const {
  const void* sources[3] = {in.b.GetTensorRawData(), in.scales.GetTensorRawData(),
                            in.zero_points ? in.zero_points.GetTensorRawData() : nullptr};
  std::lock_guard<std::mutex> lock(pack_mutex_);
  if (codes_ != nullptr && sources[0] == packed_from_[0] && sources[1] == packed_from_[1] &&
      sources[2] == packed_from_[2]) {
    return;
  }
  const std::string& node = attributes_.node;
  const int64_t n = attributes_.n, k = attributes_.k, n_pad = (n + 7) / 8 * 8, groups = k / attributes_.group;
  if (codes_ == nullptr) {
    check_cuda(node, cudaMalloc(reinterpret_cast<void**>(&codes_), static_cast<size_t>(n_pad * k / 8) * 4),
               "allocating the repacked codes");
    check_cuda(node, cudaMalloc(reinterpret_cast<void**>(&scales_), static_cast<size_t>(groups * n_pad) * 2),
               "allocating the repacked scales");
    if (in.zero_points) {
      check_cuda(node, cudaMalloc(reinterpret_cast<void**>(&zeros_), static_cast<size_t>(groups * n_pad)),
                 "allocating the repacked zero points");
    }
    int device = 0;
    check_cuda(node, cudaGetDevice(&device), "cudaGetDevice");
    check_cuda(node, cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device),
               "reading the multiprocessor count");
  }
  if (in.zero_points && zeros_ == nullptr) fail(node, "zero_points appeared after the first run");
  check_status(node,
               awq2trt_repack(n, k, attributes_.group, static_cast<const uint8_t*>(sources[0]),
                              static_cast<const uint16_t*>(sources[1]), static_cast<const uint8_t*>(sources[2]),
                              codes_, scales_, zeros_, stream),
               "awq2trt_repack");
  // Another thread's run may use the copy on another stream: it is complete before anyone sees it.
  check_cuda(node, cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "repacking the weight");
  for (int i = 0; i < 3; ++i) packed_from_[i] = sources[i];
}

OrtStatusPtr Int4MatMulCudaKernel::ComputeV2(OrtKernelContext* context) const {
  return compute_with_status(*this, context, g_cuda_compute_count);
}

void Int4MatMulCudaKernel::Compute(Ort::KernelContext& ctx) const {
  const NodeInputs in = read_node_inputs(ctx, attributes_);
  Ort::UnownedValue y = ctx.GetOutput(0, in.y_dims);
  if (in.m == 0) return;
  void* stream = ctx.GetGPUComputeStream();
  ensure_packed(in, stream);

  awq2trt_gemm_args args{};
  args.m = in.m, args.n = attributes_.n, args.k = attributes_.k, args.group_size = attributes_.group;
  args.dtype = type_ == ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16 ? AWQ2TRT_BF16 : AWQ2TRT_FP16;
  args.a = in.a.GetTensorRawData();
  args.codes = codes_;
  args.scales = scales_;
  args.zeros = in.zero_points ? zeros_ : nullptr;
  args.bias = in.bias ? in.bias.GetTensorRawData() : nullptr;
  args.y = y.GetTensorMutableRawData();

  // Split-K's partial sums: stream-ordered memory, so the pool hands the same block back every step without a
  // device synchronization (and a captured CUDA graph replays it).
  const size_t workspace_bytes = awq2trt_int4_gemm_workspace_size(args.m, args.n, args.k, sm_count_);
  void* workspace = nullptr;
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  if (workspace_bytes != 0) {
    check_cuda(attributes_.node, cudaMallocAsync(&workspace, workspace_bytes, cuda_stream), "allocating split-K space");
  }
  const awq2trt_status status = awq2trt_int4_gemm(&args, workspace, workspace_bytes, sm_count_, stream);
  if (workspace != nullptr) cudaFreeAsync(workspace, cuda_stream);
  check_status(attributes_.node, status, "awq2trt_int4_gemm");
}

}  // namespace awq2trt_ort
