// The library's entry points: RegisterCustomOps (what SessionOptions.register_custom_ops_library calls), the ABI
// hooks the awq2trt runtime reads before registering (version, build info), and small C hooks the tests read
// through ctypes (compute count, forced path).
#include <mutex>
#include <string>

#include "attention_op.h"
#include "dispatch.h"
#include "int4_matmul_op.h"
#ifdef AWQ2TRT_ORT_HAVE_CUDA
#include "int4_matmul_cuda_op.h"
#endif

#define AWQ2TRT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// The ops and the domain live for the whole process: sessions keep raw pointers to them after
// RegisterCustomOps returns, and releasing them at unload would race ONNX Runtime's own teardown.
awq2trt_ort::Int4MatMulOp g_fp32_op(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
awq2trt_ort::Int4MatMulOp g_fp16_op(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16);
awq2trt_ort::Int4MatMulOp g_bf16_op(ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16);
#ifdef AWQ2TRT_ORT_HAVE_CUDA
// The CUDA provider's kernels: ONNX Runtime gives a node to the first provider in the session's list that has a
// kernel for its op and types, so a session with CUDA first runs fp16/bf16 nodes here and float ones on the CPU.
awq2trt_ort::Int4MatMulCudaOp g_cuda_fp16_op(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16);
awq2trt_ort::Int4MatMulCudaOp g_cuda_bf16_op(ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16);
#endif
awq2trt_ort::AttentionOp g_attention_op;
OrtCustomOpDomain* g_domain = nullptr;
std::once_flag g_domain_once;

}  // namespace

AWQ2TRT_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  // The runtime hands us its API table; asking for our headers' version works on any newer runtime.
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // A runtime older than our headers: its version-1 table still makes the error, so registering fails loudly
    // instead of leaving every node to its function body.
    return api_base->GetApi(1)->CreateStatus(
        ORT_FAIL, "libawq2trt_ort was built against a newer ONNX Runtime API than this runtime has; rebuild it "
                  "against this release's include/ (plugins/onnxruntime/README.md)");
  }
  Ort::InitApi(api);
  try {
    std::call_once(g_domain_once, [] {
      Ort::CustomOpDomain domain("awq2trt");
      domain.Add(&g_fp32_op);
      domain.Add(&g_fp16_op);
      domain.Add(&g_bf16_op);
      domain.Add(&g_attention_op);
#ifdef AWQ2TRT_ORT_HAVE_CUDA
      domain.Add(&g_cuda_fp16_op);
      domain.Add(&g_cuda_bf16_op);
#endif
      g_domain = domain.release();
    });
    Ort::UnownedSessionOptions(options).Add(g_domain);
    return nullptr;
  } catch (const Ort::Exception& error) {
    return Ort::Status(error).release();
  }
}

// The runtime's contract with this library: this file's hooks, op awq2trt::Int4MatMul with the IR's inputs and
// attributes (accuracy_level 0 and 4, weight_layout rows and tiles16) and op awq2trt::GroupQueryAttention; 2 added
// the epilogue attribute (silu_mul), which a library of 1 would ignore and so compute the wrong output; 3 added
// GroupQueryAttention, which a library of 2 would leave to its function body.  Bumped whenever either changes
// incompatibly, so a runtime can refuse a library built for another contract with one clear error instead of
// running it.
AWQ2TRT_EXPORT int awq2trt_ort_abi_version(void) { return 3; }

// "awq2trt_ort 0.1.0; ONNX Runtime API 21; paths scalar avx2 avx512 avx512vnni[; cuda sm_80 sm_90]": what a bug
// report needs, and what the runtime reads to know whether --provider cuda has kernels here.
AWQ2TRT_EXPORT const char* awq2trt_ort_build_info(void) {
  static const std::string info = std::string("awq2trt_ort ") + AWQ2TRT_ORT_VERSION + "; ONNX Runtime API " +
                                  std::to_string(ORT_API_VERSION) + "; paths " + awq2trt_ort::compiled_paths()
#ifdef AWQ2TRT_ORT_HAVE_CUDA
                                  + "; cuda " + AWQ2TRT_ORT_CUDA_ARCHS
#endif
      ;
  return info.c_str();
}

AWQ2TRT_EXPORT uint64_t awq2trt_ort_compute_count() { return awq2trt_ort::compute_count(); }

// awq2trt::GroupQueryAttention's calls: those our decode kernel took, and those handed to ONNX Runtime's kernel.
AWQ2TRT_EXPORT uint64_t awq2trt_ort_attention_decode_count() { return awq2trt_ort::attention_decode_count(); }
AWQ2TRT_EXPORT uint64_t awq2trt_ort_attention_handed_over_count() {
  return awq2trt_ort::attention_handed_over_count();
}

// The CUDA kernel's Compute calls (0 in a build without CUDA).
AWQ2TRT_EXPORT uint64_t awq2trt_ort_cuda_compute_count() {
#ifdef AWQ2TRT_ORT_HAVE_CUDA
  return awq2trt_ort::cuda_compute_count();
#else
  return 0;
#endif
}

// -1 restores CPUID's choice; returns 0 when the path cannot run on this CPU or build.
AWQ2TRT_EXPORT int awq2trt_ort_force_path(int path) { return awq2trt_ort::force_path(path) ? 1 : 0; }

AWQ2TRT_EXPORT const char* awq2trt_ort_active_path() {
  return awq2trt_ort::path_name(awq2trt_ort::active_path());
}

// "none" before the first Compute.
AWQ2TRT_EXPORT const char* awq2trt_ort_last_path() {
  const int path = static_cast<int>(awq2trt_ort::last_path());
  return path < 0 ? "none" : awq2trt_ort::path_name(static_cast<awq2trt_ort::Path>(path));
}

// accuracy_level 4's activation blocks [m, k] as one path makes them (0: the scalar loop, 1: AVX-512F + BW), in
// the order split_span asks: the tests compare both with a numpy reference.  Returns 0 when this CPU or build
// cannot run the path.
AWQ2TRT_EXPORT int awq2trt_ort_quantize_activations(int path, const float* a, int64_t m, int64_t k, int64_t group,
                                                    int split_span, int8_t* a_q, float* a_scale, float* a_sum) {
  if (path == 0) {
    awq2trt_ort::quantize_activations(a, k, group, split_span, 0, m, a_q, a_scale, a_sum);
    return 1;
  }
#if defined(AWQ2TRT_HAVE_X86_PATHS)
  if (path == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
    awq2trt_ort::quantize_activations_avx512(a, k, group, split_span, 0, m, a_q, a_scale, a_sum);
    return 1;
  }
#endif
  return 0;
}
