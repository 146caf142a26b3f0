// The int4 dequant-GEMM kernel: one warp per 8-row tile of W, tensor-core mma.m16n8k16 with fp32 accumulators.
//
// Why one kernel for "GEMV" (M <= 16) and "GEMM" (larger M): at M = 1 the tensor cores idle 15 of 16 rows, but
// an H100/H200 has so much tensor throughput that the kernel stays bound by the weight stream, and one code path
// dequantizes each weight once into registers that every 16-row tile of A then reuses (M_TILES of them per
// launch: the dequantization cost per output falls with M, which CUDA-core FMAs cannot do: at M = 16 they would
// need ~300 TFLOP/s of fp32 to keep up with the weight stream).  Decode shapes get their parallelism from
// split-K (blockIdx.y), not from more M.
//
// Weights: each lane reads its own 16 bytes of codes per pair of 64-channel chunks (one 128-bit load, the layout
// in awq2trt/cuda_layout.py puts them there), already in mma B-fragment order: a shift, a mask and an OR give
// magic + q for two channels, one HSUB2 and one HMUL2 give w.  A is read straight from global memory into A
// fragments (32-bit loads through the read-only cache; every warp of a block reads the same A slice, so L1
// serves most of it).  Known cost at large M: A is re-read once per 32 output columns; a shared-memory A stage
// (cp.async) is the next step if M = 128 falls short of fp16 cuBLAS (GPU-unverified, see README).
#pragma once

#include <stdint.h>

#include "dequant.cuh"
#include "mma.cuh"

namespace awq2trt {

constexpr int kWarps = 4;        // warps per block: 4 row tiles = 32 output columns
constexpr int kPairsInFlight = 4;  // 128-bit code loads each lane issues before it computes on them
constexpr int kMaxMTiles = 4;     // 16-row A tiles per launch: 8 needs ~255 registers on sm_80 (no spills, 1 block/SM)

struct GemmParams {
  const void* a;
  const uint4* codes;  // viewed as 16-byte units; 8-byte units where a chunk is unpaired
  const void* scales;
  const uint8_t* zeros;
  const void* bias;
  void* y;
  float* partial;  // [splits, M, N] fp32 when split-K is on, else nullptr
  int m, n, k, group_size, n_pad, chunks, chunks_per_split;
};

template <typename T>
__device__ __forceinline__ uint32_t load_pair(const T* row, int col) {
  return __ldg(reinterpret_cast<const unsigned int*>(row + col));
}

template <typename T, int M_TILES>
__global__ void __launch_bounds__(kWarps * 32) int4_gemm_kernel(GemmParams p) {
  using Pair = typename Float16Traits<T>::Pair;
  const int lane = threadIdx.x & 31;
  const int tile = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (tile * 8 >= p.n_pad) return;  // no __syncthreads in this kernel: early exit is safe
  const int split = blockIdx.y;
  const int m0 = blockIdx.z * 16 * M_TILES;
  const int row = tile * 8 + (lane >> 2);  // the W row (output column) this lane dequantizes
  const int c = lane & 3;
  const int chunk_begin = split * p.chunks_per_split;  // even: pairs never straddle two splits
  const int chunk_end = min(p.chunks, chunk_begin + p.chunks_per_split);
  const T* a = static_cast<const T*>(p.a);
  const uint16_t* scales = static_cast<const uint16_t*>(p.scales);  // bit patterns of T
  const uint32_t* words_base = reinterpret_cast<const uint32_t*>(p.codes) + static_cast<int64_t>(tile) * p.k;

  // A rows this lane feeds into the fragments (g and g + 8 of each 16-row tile); rows past M read as zero.
  const T* a_rows[M_TILES][2];
  bool a_valid[M_TILES][2];
#pragma unroll
  for (int mt = 0; mt < M_TILES; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = m0 + mt * 16 + (lane >> 2) + 8 * half;
      a_valid[mt][half] = r < p.m;
      a_rows[mt][half] = a + static_cast<int64_t>(a_valid[mt][half] ? r : 0) * p.k;
    }
  }
  float acc[M_TILES][4];
#pragma unroll
  for (int mt = 0; mt < M_TILES; ++mt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[mt][i] = 0.0f;
  }

  for (int first = chunk_begin; first < chunk_end; first += 2 * kPairsInFlight) {
    // Issue every code load of this round before any arithmetic, so several are in flight per lane.
    uint32_t words[kPairsInFlight][4];
#pragma unroll
    for (int u = 0; u < kPairsInFlight; ++u) {
      const int chunk = first + 2 * u;
      words[u][0] = words[u][1] = words[u][2] = words[u][3] = 0u;
      if (chunk < chunk_end) {
        const uint32_t* base = words_base + (chunk / 2) * 128;
        if (chunk + 1 < p.chunks) {
          const uint4 v = __ldcs(reinterpret_cast<const uint4*>(base) + lane);  // read once: stream it past L1
          words[u][0] = v.x, words[u][1] = v.y, words[u][2] = v.z, words[u][3] = v.w;
        } else {
          const uint2 v = __ldcs(reinterpret_cast<const uint2*>(base) + lane);
          words[u][0] = v.x, words[u][1] = v.y;
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kPairsInFlight; ++u) {
      const int pair_chunk = first + 2 * u;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int chunk = pair_chunk + i / 2;
        const int h = i & 1;
        if (chunk >= chunk_end) break;
        const int group = (chunk * 64 + 32 * h) / p.group_size;
        const uint32_t s = __ldg(scales + static_cast<int64_t>(group) * p.n_pad + row);
        const uint32_t z = p.zeros ? p.zeros[static_cast<int64_t>(group) * p.n_pad + row] : 8u;
        const Pair scale = pair_from_bits<T>(s | (s << 16));  // bit copies: no 16-bit float ops, no conversions
        const Pair zero = zero_pair<T>(z);
        uint32_t b[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) b[q] = bits_from_pair<T>(dequant_pair<T>(words[u][i], q, zero, scale));
#pragma unroll
        for (int step = 0; step < 2; ++step) {  // the word's two k16 steps: pairs (0, 1) and (2, 3)
          const int kcol = chunk * 64 + 16 * (2 * h + step) + 2 * c;
#pragma unroll
          for (int mt = 0; mt < M_TILES; ++mt) {
            uint32_t frag[4];
            frag[0] = a_valid[mt][0] ? load_pair(a_rows[mt][0], kcol) : 0u;
            frag[1] = a_valid[mt][1] ? load_pair(a_rows[mt][1], kcol) : 0u;
            frag[2] = a_valid[mt][0] ? load_pair(a_rows[mt][0], kcol + 8) : 0u;
            frag[3] = a_valid[mt][1] ? load_pair(a_rows[mt][1], kcol + 8) : 0u;
            mma_16816<T>(acc[mt], frag, b[2 * step], b[2 * step + 1]);
          }
        }
      }
    }
  }

  // D fragment: rows g and g + 8 of each m tile, columns tile * 8 + 2c and + 1.
  const int col = tile * 8 + 2 * c;
  const T* bias = static_cast<const T*>(p.bias);
#pragma unroll
  for (int mt = 0; mt < M_TILES; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = m0 + mt * 16 + (lane >> 2) + 8 * half;
      if (r >= p.m) continue;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        if (col + j >= p.n) continue;
        const float v = acc[mt][2 * half + j];
        const int64_t at = static_cast<int64_t>(r) * p.n + col + j;
        if (p.partial) {
          p.partial[static_cast<int64_t>(split) * p.m * p.n + at] = v;
        } else {
          const float with_bias = bias ? v + static_cast<float>(bias[col + j]) : v;
          static_cast<T*>(p.y)[at] = static_cast<T>(with_bias);
        }
      }
    }
  }
}

// Split-K epilogue: Y = sum of the partial products (fixed order, so results do not depend on timing) + bias.
template <typename T>
__global__ void __launch_bounds__(256) split_k_reduce_kernel(const float* partial, int splits, int64_t mn, int n,
                                                             const T* bias, T* y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < mn;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) sum += partial[s * mn + i];
    if (bias) sum += static_cast<float>(bias[i % n]);
    y[i] = static_cast<T>(sum);
  }
}

}  // namespace awq2trt
