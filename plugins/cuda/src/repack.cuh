// From the IR node's weight inputs (awq2trt::Int4MatMul: B uint8 [N, K/2] with the even channel in the low nibble,
// scales and zero points [N, K/G]) to the kernels' layout (awq2trt/cuda_layout.py), one output word or entry at a
// time, so that the device repack (ONNX Runtime's CUDA provider, where only the IR inputs exist) and the host one
// (the CPU tests, against cuda_layout.to_cuda) are the same code.
#pragma once

#include <stdint.h>

#include "dequant.cuh"

namespace awq2trt {

// Word h of lane `lane` for row tile `tile` and chunk `chunk`: its eight codes gathered from the row's nibbles.
// Rows past N (the padding up to a multiple of 8) are zero codes.
__host__ __device__ __forceinline__ uint32_t repack_word(const uint8_t* nibbles, int64_t n, int64_t k, int64_t tile,
                                                         int64_t chunk, int lane, int h) {
  const int64_t row = tile * 8 + lane / 4;
  if (row >= n) return 0;
  const uint8_t* row_bytes = nibbles + row * (k / 2);
  uint32_t word = 0;
  for (int nibble = 0; nibble < 8; ++nibble) {
    const int64_t channel = chunk * 64 + chunk_channel(lane, h, nibble);
    const uint32_t byte = row_bytes[channel / 2];
    const uint32_t code = (channel & 1) ? (byte >> 4) : (byte & 0xFu);
    word |= code << (4 * nibble);
  }
  return word;
}

// The (group, padded row) entry of the transposed scales or zero points; padded rows are 0.
template <typename T>
__host__ __device__ __forceinline__ T transposed_entry(const T* by_row, int64_t n, int64_t groups, int64_t group,
                                                       int64_t row) {
  return row < n ? by_row[row * groups + group] : T(0);
}

}  // namespace awq2trt
