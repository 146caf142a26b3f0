// awq2trt_host_dequantize: the whole plugin-layout weight dequantized on the host, through dequant.cuh's
// __host__ __device__ functions, for the CPU tests (tests/test_cuda_kernels.py compares it with numpy).
#include <string.h>

#include "dequant.cuh"

namespace {

template <typename T>
void dequantize_all(int64_t n, int64_t k, int64_t g, const int32_t* codes, const uint16_t* scales_bits,
                    const uint8_t* zeros, float* out) {
  using Pair = typename awq2trt::Float16Traits<T>::Pair;
  const int64_t n_pad = (n + 7) / 8 * 8;
  for (int64_t tile = 0; tile < n_pad / 8; ++tile) {
    for (int64_t chunk = 0; chunk < k / 64; ++chunk) {
      for (int lane = 0; lane < 32; ++lane) {
        const int64_t row = tile * 8 + lane / 4;
        if (row >= n) continue;
        for (int h = 0; h < 2; ++h) {
          const uint32_t word = static_cast<uint32_t>(codes[awq2trt::word_offset(k, tile, chunk, lane, h)]);
          const int64_t group = (chunk * 64 + 32 * h) / g;  // a word's 32 channels share one group (G % 32 == 0)
          const uint16_t s = scales_bits[group * n_pad + row];
          const uint32_t z = zeros ? zeros[group * n_pad + row] : 8u;
          const Pair scale = awq2trt::pair_from_bits<T>(static_cast<uint32_t>(s) | (static_cast<uint32_t>(s) << 16));
          const Pair zero = awq2trt::zero_pair<T>(z);
          for (int p = 0; p < 4; ++p) {
            const Pair w = awq2trt::dequant_pair<T>(word, p, zero, scale);
            const int64_t col = chunk * 64 + awq2trt::chunk_channel(lane, h, p);
            out[row * k + col] = static_cast<float>(w.x);
            out[row * k + awq2trt::chunk_channel(lane, h, p + 4) + chunk * 64] = static_cast<float>(w.y);
          }
        }
      }
    }
  }
}

}  // namespace

extern "C" awq2trt_status awq2trt_host_dequantize(int64_t n, int64_t k, int64_t group_size, awq2trt_dtype dtype,
                                                  const int32_t* codes, const uint16_t* scales,
                                                  const uint8_t* zeros, float* out) {
  if (n <= 0 || k <= 0 || k % 64 || group_size <= 0 || group_size % 32 || k % group_size) return AWQ2TRT_BAD_SHAPE;
  if (dtype == AWQ2TRT_FP16) {
    dequantize_all<__half>(n, k, group_size, codes, scales, zeros, out);
  } else {
    dequantize_all<__nv_bfloat16>(n, k, group_size, codes, scales, zeros, out);
  }
  return AWQ2TRT_OK;
}
