// The C ABI launcher (include/awq2trt_cuda.h): checks the arguments, picks M_TILES and split-K, launches.
#include <cuda_runtime.h>

#include <algorithm>

#include "int4_gemm_kernel.cuh"

namespace {

constexpr int kMinChunksPerSplit = 4;  // >= 256 channels per split: fewer would cost more in partials than it hides

int max_m_tiles(int64_t m) { return m <= 16 ? 1 : m <= 32 ? 2 : awq2trt::kMaxMTiles; }

int blocks_n(int64_t n) { return static_cast<int>(((n + 7) / 8 + awq2trt::kWarps - 1) / awq2trt::kWarps); }

int chunks_per_split(int64_t k, int splits) {
  const int64_t chunks = k / 64;
  int64_t per = (chunks + splits - 1) / splits;
  per += per & 1;  // even, so that each 128-bit pair of chunks belongs to one split
  return static_cast<int>(per);
}

bool shape_ok(int64_t m, int64_t n, int64_t k, int64_t g) {
  // Grid limits: M tiles of 64 rows go in gridDim.z (at most 65535); N and K index in int32 in the kernel.
  return m >= 1 && n >= 1 && k >= 64 && k % 64 == 0 && g >= 32 && g % 32 == 0 && k % g == 0 &&
         m <= 64ll * 65535 && n < (1ll << 30) && k < (1ll << 30) && m * n < (1ll << 40);
}

template <typename T, int MT>
void launch(const awq2trt::GemmParams& p, int splits, cudaStream_t stream) {
  const dim3 grid(blocks_n(p.n), splits, static_cast<unsigned>((p.m + 16 * MT - 1) / (16 * MT)));
  awq2trt::int4_gemm_kernel<T, MT><<<grid, awq2trt::kWarps * 32, 0, stream>>>(p);
}

template <typename T>
awq2trt_status run(const awq2trt_gemm_args& args, float* partial, int splits, cudaStream_t stream) {
  awq2trt::GemmParams p{};
  p.a = args.a;
  p.codes = reinterpret_cast<const uint4*>(args.codes);
  p.scales = args.scales;
  p.zeros = args.zeros;
  p.bias = args.bias;
  p.y = args.y;
  p.partial = splits > 1 ? partial : nullptr;
  p.m = static_cast<int>(args.m);
  p.n = static_cast<int>(args.n);
  p.k = static_cast<int>(args.k);
  p.group_size = static_cast<int>(args.group_size);
  p.n_pad = static_cast<int>((args.n + 7) / 8 * 8);
  p.chunks = static_cast<int>(args.k / 64);
  p.chunks_per_split = chunks_per_split(args.k, splits);
  switch (max_m_tiles(args.m)) {
    case 1: launch<T, 1>(p, splits, stream); break;
    case 2: launch<T, 2>(p, splits, stream); break;
    default: launch<T, awq2trt::kMaxMTiles>(p, splits, stream); break;
  }
  if (splits > 1) {
    const int64_t mn = args.m * args.n;
    const int blocks = static_cast<int>(std::min<int64_t>((mn + 255) / 256, 4096));
    awq2trt::split_k_reduce_kernel<T><<<blocks, 256, 0, stream>>>(partial, splits, mn, p.n,
                                                                 static_cast<const T*>(args.bias),
                                                                 static_cast<T*>(args.y));
  }
  return cudaGetLastError() == cudaSuccess ? AWQ2TRT_OK : AWQ2TRT_LAUNCH_FAILED;
}

}  // namespace

extern "C" int awq2trt_int4_split_k(int64_t m, int64_t n, int64_t k, int sm_count) {
  if (!shape_ok(m, n, k, 32) || sm_count < 1) return 1;
  // Aim for about four blocks of 4 warps per SM in flight (enough loads in flight to cover DRAM latency).
  const int64_t m_blocks = (m + 16 * max_m_tiles(m) - 1) / (16 * max_m_tiles(m));
  const int64_t have = blocks_n(n) * m_blocks;
  const int64_t want = 4ll * sm_count;
  if (have >= want) return 1;
  const int64_t most = std::max<int64_t>(1, (k / 64) / kMinChunksPerSplit);
  const int splits = static_cast<int>(std::min<int64_t>(most, (want + have - 1) / have));
  // The even chunk count per split can leave the last splits empty: count the splits that have work.
  const int per = chunks_per_split(k, splits);
  return static_cast<int>((k / 64 + per - 1) / per);
}

extern "C" size_t awq2trt_int4_gemm_workspace_size(int64_t m, int64_t n, int64_t k, int sm_count) {
  const int splits = awq2trt_int4_split_k(m, n, k, sm_count);
  return splits > 1 ? static_cast<size_t>(splits) * m * n * sizeof(float) : 0;
}

extern "C" awq2trt_status awq2trt_int4_gemm(const awq2trt_gemm_args* args, void* workspace, size_t workspace_bytes,
                                            int sm_count, void* stream) {
  if (!args || !shape_ok(args->m, args->n, args->k, args->group_size)) return AWQ2TRT_BAD_SHAPE;
  if (!args->a || !args->codes || !args->scales || !args->y) return AWQ2TRT_BAD_SHAPE;
  if (reinterpret_cast<uintptr_t>(args->a) % 4 || reinterpret_cast<uintptr_t>(args->y) % 2 ||
      reinterpret_cast<uintptr_t>(args->codes) % 16 || reinterpret_cast<uintptr_t>(args->scales) % 2) {
    return AWQ2TRT_BAD_ALIGNMENT;
  }
  const int splits = awq2trt_int4_split_k(args->m, args->n, args->k, sm_count);
  const size_t need = awq2trt_int4_gemm_workspace_size(args->m, args->n, args->k, sm_count);
  if (need > 0 && (!workspace || workspace_bytes < need)) return AWQ2TRT_SMALL_WORKSPACE;
  auto* partial = static_cast<float*>(workspace);
  auto* s = static_cast<cudaStream_t>(stream);
  return args->dtype == AWQ2TRT_BF16 ? run<__nv_bfloat16>(*args, partial, splits, s)
                                     : run<__half>(*args, partial, splits, s);
}
