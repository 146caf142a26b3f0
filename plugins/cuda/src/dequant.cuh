// The int4 dequantization shared by the kernels (device) and the CPU tests (host): one definition, so the tests
// exercise the arithmetic the GPU runs.  Layout: awq2trt/cuda_layout.py.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "awq2trt_cuda.h"

namespace awq2trt {

// Per 16-bit float type: the pair type, and the bit pattern of the "magic" number whose last mantissa bits a
// 4-bit code can be OR-ed into exactly: 1024 in fp16 (mantissa step 1 at 2^10), 128 in bf16 (step 1 at 2^7).
// OR-ing a code q into it gives magic + q with no arithmetic, which is why the codes are stored so that one
// shift and mask put two of them into the two halves of a 32-bit register.
template <typename T>
struct Float16Traits;

template <>
struct Float16Traits<__half> {
  using Pair = __half2;
  static constexpr uint32_t kMagicPair = 0x64006400u;  // two fp16 1024.0
  static constexpr float kMagic = 1024.0f;
};

template <>
struct Float16Traits<__nv_bfloat16> {
  using Pair = __nv_bfloat162;
  static constexpr uint32_t kMagicPair = 0x43004300u;  // two bf16 128.0
  static constexpr float kMagic = 128.0f;
};

// Two codes of a word (nibbles p and p + 4) as magic + q in the two halves of a 32-bit value.
__host__ __device__ __forceinline__ uint32_t code_pair_bits(uint32_t word, int p, uint32_t magic_pair) {
  return ((word >> (4 * p)) & 0x000F000Fu) | magic_pair;
}

template <typename T>
__host__ __device__ __forceinline__ typename Float16Traits<T>::Pair pair_from_bits(uint32_t bits) {
  typename Float16Traits<T>::Pair pair;
  static_assert(sizeof(pair) == sizeof(bits), "a pair of 16-bit floats is 32 bits");
  memcpy(static_cast<void*>(&pair), &bits, sizeof(bits));  // __half2 is trivially copyable in practice
  return pair;
}

template <typename T>
__host__ __device__ __forceinline__ uint32_t bits_from_pair(typename Float16Traits<T>::Pair pair) {
  uint32_t bits;
  memcpy(&bits, static_cast<const void*>(&pair), sizeof(bits));
  return bits;
}

// The "zero" operand: magic + z in both halves (exact), so (magic + q) - (magic + z) = q - z is exact too.
template <typename T>
__host__ __device__ __forceinline__ typename Float16Traits<T>::Pair zero_pair(uint32_t zero_code) {
  const uint32_t one = zero_code | (Float16Traits<T>::kMagicPair & 0xFFFFu);
  return pair_from_bits<T>(one | (one << 16));
}

// w = (q - z) * s for the two codes of pair p: q - z is exact in 16 bits, so the only rounding is the product's,
// the same single rounding as dequantizing in fp32 and casting to the 16-bit type (the torch reference).
template <typename T>
__host__ __device__ __forceinline__ typename Float16Traits<T>::Pair dequant_pair(
    uint32_t word, int p, typename Float16Traits<T>::Pair zero, typename Float16Traits<T>::Pair scale) {
  const auto codes = pair_from_bits<T>(code_pair_bits(word, p, Float16Traits<T>::kMagicPair));
  return __hmul2(__hsub2(codes, zero), scale);
}

// Where nibble `nibble` of word h of lane `lane` sits within its 64-channel chunk (awq2trt/cuda_layout.py).
__host__ __device__ __forceinline__ int chunk_channel(int lane, int h, int nibble) {
  const int p = nibble & 3;
  const int step = 2 * h + p / 2;
  return 16 * step + 2 * (lane & 3) + 8 * (p & 1) + (nibble >> 2);
}

// Word offset of (row tile t, chunk j, lane, word h) in the codes array.
__host__ __device__ __forceinline__ int64_t word_offset(int64_t k, int64_t tile, int64_t chunk, int lane, int h) {
  const int64_t chunks = k / 64;
  const int64_t base = tile * k + (chunk / 2) * 128;
  const bool paired = (chunk / 2) * 2 + 1 < chunks;
  return paired ? base + lane * 4 + (chunk % 2) * 2 + h : base + lane * 2 + h;
}

}  // namespace awq2trt
