/* awq2trt_cuda.h: the C ABI of awq2trt's int4 dequant-GEMM CUDA kernels (libawq2trt_cuda).
 *
 * Y[M, N] = A[M, K] @ W.T (+ bias), W[n, k] = (q[n, k] - z[n, k / G]) * s[n, k / G], with the weight in the
 * plugin layout that awq2trt/cuda_layout.py writes (codes int32 [N_pad * K / 8], scales [K/G, N_pad] in the
 * activations' dtype, zeros uint8 [K/G, N_pad]; N_pad = N rounded up to 8).  A, Y and bias are row-major in the
 * same 16-bit float type.  Requirements: K % 64 == 0, G % 32 == 0, K % G == 0, M >= 1; A and Y 4-byte aligned,
 * codes 16-byte aligned.
 *
 * A C ABI (not C++ templates) so that the TensorRT plugin, the ONNX Runtime custom op and ctypes tests share
 * one launcher without sharing a C++ ABI or a CUDA runtime build.
 */
#ifndef AWQ2TRT_CUDA_H_
#define AWQ2TRT_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define AWQ2TRT_CUDA_API __declspec(dllexport)
#else
#define AWQ2TRT_CUDA_API __attribute__((visibility("default")))
#endif

typedef enum { AWQ2TRT_FP16 = 0, AWQ2TRT_BF16 = 1 } awq2trt_dtype;

typedef enum {
  AWQ2TRT_OK = 0,
  AWQ2TRT_BAD_SHAPE = 1,       /* K, N, G or M outside the requirements above */
  AWQ2TRT_BAD_ALIGNMENT = 2,   /* a pointer not aligned as required */
  AWQ2TRT_SMALL_WORKSPACE = 3, /* split-K needs awq2trt_int4_gemm_workspace_size bytes */
  AWQ2TRT_LAUNCH_FAILED = 4    /* cudaGetLastError after the launch was not cudaSuccess */
} awq2trt_status;

typedef struct {
  int64_t m, n, k, group_size;
  awq2trt_dtype dtype;
  const void* a;       /* [M, K] */
  const int32_t* codes;
  const void* scales;  /* [K/G, N_pad] */
  const uint8_t* zeros; /* [K/G, N_pad]; NULL = symmetric (every zero point is 8) */
  const void* bias;    /* [N]; NULL = none */
  void* y;             /* [M, N] */
} awq2trt_gemm_args;

/* How many K slices the launcher splits the work into for this shape on a device with sm_count SMs (1 = none). */
AWQ2TRT_CUDA_API int awq2trt_int4_split_k(int64_t m, int64_t n, int64_t k, int sm_count);

/* Workspace bytes the launch needs (0 when split_k is 1): split_k fp32 partial results of [M, N]. */
AWQ2TRT_CUDA_API size_t awq2trt_int4_gemm_workspace_size(int64_t m, int64_t n, int64_t k, int sm_count);

/* Enqueue the product on stream (a cudaStream_t); workspace may be NULL when the size above is 0.
 * sm_count: the device's multiprocessor count (cudaDevAttrMultiProcessorCount), which sizes split-K. */
AWQ2TRT_CUDA_API awq2trt_status awq2trt_int4_gemm(const awq2trt_gemm_args* args, void* workspace,
                                                  size_t workspace_bytes, int sm_count, void* stream);

/* Host-side dequantization of the plugin layout through the same __host__ __device__ functions the kernels
 * use (tests: compare with numpy).  out: float [N, K]. */
AWQ2TRT_CUDA_API awq2trt_status awq2trt_host_dequantize(int64_t n, int64_t k, int64_t group_size,
                                                        awq2trt_dtype dtype, const int32_t* codes,
                                                        const uint16_t* scales, const uint8_t* zeros, float* out);

/* The IR node's weight inputs (awq2trt::Int4MatMul: nibbles uint8 [N, K/2], even channel in the low nibble;
 * scales [N, K/G] as 16-bit float bits; zeros uint8 [N, K/G] or NULL) repacked into the layout above: codes_out
 * int32 [N_pad * K / 8], scales_out [K/G, N_pad], zeros_out [K/G, N_pad] (untouched when zeros is NULL).  Device
 * pointers, enqueued on stream (the ONNX Runtime CUDA op repacks each weight once); same K/G requirements. */
AWQ2TRT_CUDA_API awq2trt_status awq2trt_repack(int64_t n, int64_t k, int64_t group_size, const uint8_t* nibbles,
                                               const uint16_t* scales, const uint8_t* zeros, int32_t* codes_out,
                                               uint16_t* scales_out, uint8_t* zeros_out, void* stream);

/* The same repack on host memory (tests: compare with awq2trt/cuda_layout.py's to_cuda). */
AWQ2TRT_CUDA_API awq2trt_status awq2trt_host_repack(int64_t n, int64_t k, int64_t group_size, const uint8_t* nibbles,
                                                    const uint16_t* scales, const uint8_t* zeros, int32_t* codes_out,
                                                    uint16_t* scales_out, uint8_t* zeros_out);

#ifdef __cplusplus
}
#endif
#endif
