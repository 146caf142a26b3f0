// awq2trt_repack (device, on a stream) and awq2trt_host_repack (host, for the CPU tests): IR weight inputs to the
// kernels' layout through repack.cuh.  The device one is what the ONNX Runtime CUDA op runs once per node.
#include <cuda_runtime.h>

#include "repack.cuh"

namespace {

bool repack_shape_ok(int64_t n, int64_t k, int64_t g) {
  return n > 0 && k > 0 && k % 64 == 0 && g > 0 && g % 32 == 0 && k % g == 0;
}

// One thread per code word: i = ((tile * chunks + chunk) * 32 + lane) * 2 + h.
__global__ void repack_codes_kernel(const uint8_t* nibbles, int64_t n, int64_t k, int32_t* codes, int64_t words) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= words) return;
  const int64_t chunks = k / 64;
  const int h = static_cast<int>(i % 2);
  const int lane = static_cast<int>((i / 2) % 32);
  const int64_t chunk = (i / 64) % chunks;
  const int64_t tile = i / 64 / chunks;
  codes[awq2trt::word_offset(k, tile, chunk, lane, h)] =
      static_cast<int32_t>(awq2trt::repack_word(nibbles, n, k, tile, chunk, lane, h));
}

// One thread per (group, padded row) entry of the scales and, when present, the zero points.
__global__ void transpose_groups_kernel(const uint16_t* scales, const uint8_t* zeros, int64_t n, int64_t n_pad,
                                        int64_t groups, uint16_t* scales_out, uint8_t* zeros_out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= groups * n_pad) return;
  const int64_t group = i / n_pad, row = i % n_pad;
  scales_out[i] = awq2trt::transposed_entry<uint16_t>(scales, n, groups, group, row);
  if (zeros != nullptr) zeros_out[i] = awq2trt::transposed_entry<uint8_t>(zeros, n, groups, group, row);
}

unsigned blocks_for(int64_t items, unsigned threads) {
  return static_cast<unsigned>((items + threads - 1) / threads);
}

}  // namespace

extern "C" awq2trt_status awq2trt_repack(int64_t n, int64_t k, int64_t group_size, const uint8_t* nibbles,
                                         const uint16_t* scales, const uint8_t* zeros, int32_t* codes_out,
                                         uint16_t* scales_out, uint8_t* zeros_out, void* stream) {
  if (!repack_shape_ok(n, k, group_size)) return AWQ2TRT_BAD_SHAPE;
  if (nibbles == nullptr || scales == nullptr || codes_out == nullptr || scales_out == nullptr ||
      (zeros != nullptr && zeros_out == nullptr)) {
    return AWQ2TRT_BAD_ALIGNMENT;
  }
  const int64_t n_pad = (n + 7) / 8 * 8, groups = k / group_size, words = n_pad * k / 8;
  const auto s = static_cast<cudaStream_t>(stream);
  constexpr unsigned kThreads = 256;
  repack_codes_kernel<<<blocks_for(words, kThreads), kThreads, 0, s>>>(nibbles, n, k, codes_out, words);
  transpose_groups_kernel<<<blocks_for(groups * n_pad, kThreads), kThreads, 0, s>>>(scales, zeros, n, n_pad, groups,
                                                                                   scales_out, zeros_out);
  return cudaGetLastError() == cudaSuccess ? AWQ2TRT_OK : AWQ2TRT_LAUNCH_FAILED;
}

extern "C" awq2trt_status awq2trt_host_repack(int64_t n, int64_t k, int64_t group_size, const uint8_t* nibbles,
                                              const uint16_t* scales, const uint8_t* zeros, int32_t* codes_out,
                                              uint16_t* scales_out, uint8_t* zeros_out) {
  if (!repack_shape_ok(n, k, group_size)) return AWQ2TRT_BAD_SHAPE;
  const int64_t n_pad = (n + 7) / 8 * 8, groups = k / group_size;
  for (int64_t tile = 0; tile < n_pad / 8; ++tile) {
    for (int64_t chunk = 0; chunk < k / 64; ++chunk) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int h = 0; h < 2; ++h) {
          codes_out[awq2trt::word_offset(k, tile, chunk, lane, h)] =
              static_cast<int32_t>(awq2trt::repack_word(nibbles, n, k, tile, chunk, lane, h));
        }
      }
    }
  }
  for (int64_t group = 0; group < groups; ++group) {
    for (int64_t row = 0; row < n_pad; ++row) {
      scales_out[group * n_pad + row] = awq2trt::transposed_entry<uint16_t>(scales, n, groups, group, row);
      if (zeros != nullptr) {
        zeros_out[group * n_pad + row] = awq2trt::transposed_entry<uint8_t>(zeros, n, groups, group, row);
      }
    }
  }
  return AWQ2TRT_OK;
}
