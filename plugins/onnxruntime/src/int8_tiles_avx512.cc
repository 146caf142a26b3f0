// accuracy_level 4 on AVX-512 VNNI for weights in the tiles16 layout (awq2trt/cpu_layout.py): the decode kernel.
//
// Why a layout of its own: in the rows layout a 64-byte load is 128 k's of one output row, so its 16 int32 lanes
// straddle 2 to 4 blocks and every load needs its own block-scale shuffle, and every output row ends in a
// horizontal sum.  That made the row kernel compute-bound at M = 1 (about 40 % of one core's read bandwidth on
// Zen 4).  In tiles16 a 64-byte chunk is 8 k's of 16 output rows, 4 bytes per row: lane r of every VPDPBUSD
// belongs to output row 16t + r for the whole of K.  So a block's dot products stay in int32 lanes across its
// G / 8 chunks, the block scales of 16 rows are one contiguous 16-float load, the zero points 16 bytes, and the
// 16 outputs are one vector store, with no shuffles and no horizontal sums.  The activation operand of a chunk
// is 4 bytes broadcast to every lane (EVEX embedded broadcast), so A is quantized in spans of 8 (4 even k's,
// then 4 odd k's), which is the order of a lane's low and high nibbles.
//
// Per chunk and activation row: one load, two ANDs (0x0F and 0xF0: the high nibbles stay in place, so their dot
// products are 16x too large and are shifted back once per block, exactly), two VPDPBUSD.  Tiles of 4 activation
// rows share each chunk load; tiles of 8 (batched decode, prefill) shift the high nibbles down once per chunk
// instead, so that each row needs one accumulator and 8 rows fit the registers (5-8 % faster than two tiles of 4
// at M = 8 on SmolLM2's shapes, one thread, cache-hot).  Every row tile forms the same integer dot product per
// block and scales it with the same operations, so a row's output has the same bits in any batch.
//
// This file alone is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; dispatch.cc calls it only when
// CPUID reports all four.
#include "avx512_intrinsics.h"

#include "int4_problem.h"

namespace awq2trt_ort {
namespace {

constexpr int64_t kTileRows = 16;  // output rows per tile (one int32 lane each)
constexpr int64_t kChunkK = 8;     // k's per 4-byte lane group

inline __m512i broadcast_dword(const int8_t* at) {
  int32_t value;
  __builtin_memcpy(&value, at, 4);
  return _mm512_set1_epi32(value);
}

// Rows m0 .. m0 + MT of Y for output tiles t0 .. t0 + NT (NT tiles of 16 rows).
template <int MT, int NT>
void tiles(const Int4Problem& p, int64_t t0, int64_t m0) {
  const int64_t chunks = p.k / kChunkK, chunks_per_block = p.group / kChunkK;
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F), high_nibbles = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512 acc[MT][NT];
  for (int r = 0; r < MT; ++r)
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
  const uint8_t* codes[NT];
  const float* scales[NT];
  const uint8_t* zeros[NT];
  for (int j = 0; j < NT; ++j) {
    codes[j] = p.codes + (t0 + j) * chunks * 64;
    scales[j] = p.scales + (t0 + j) * p.groups * kTileRows;
    zeros[j] = p.zeros != nullptr ? p.zeros + (t0 + j) * p.groups * kTileRows : nullptr;
  }
  const int8_t* a[MT];
  for (int r = 0; r < MT; ++r) a[r] = p.a_q + (m0 + r) * p.k;

  for (int64_t g = 0; g < p.groups; ++g) {
    __m512i low_dots[MT][NT], high_dots[MT][NT];
    for (int r = 0; r < MT; ++r)
      for (int j = 0; j < NT; ++j) low_dots[r][j] = high_dots[r][j] = _mm512_setzero_si512();
    const int64_t c_end = (g + 1) * chunks_per_block;
    for (int64_t c = g * chunks_per_block; c < c_end; ++c) {
      __m512i low[NT], high[NT];
      for (int j = 0; j < NT; ++j) {
        const __m512i bytes = _mm512_loadu_si512(codes[j] + c * 64);
        low[j] = _mm512_and_si512(bytes, low_nibbles);
        high[j] = _mm512_and_si512(bytes, high_nibbles);
      }
      for (int r = 0; r < MT; ++r) {
        const __m512i even = broadcast_dword(a[r] + c * kChunkK), odd = broadcast_dword(a[r] + c * kChunkK + 4);
        for (int j = 0; j < NT; ++j) {
          low_dots[r][j] = _mm512_dpbusd_epi32(low_dots[r][j], low[j], even);
          high_dots[r][j] = _mm512_dpbusd_epi32(high_dots[r][j], high[j], odd);
        }
      }
    }
    // Block g: acc += s_w * (a_scale * (q . a_q) - z * a_sum), 16 output rows per vector.
    for (int j = 0; j < NT; ++j) {
      const __m512 s = _mm512_loadu_ps(scales[j] + g * kTileRows);
      const __m512 z =
          zeros[j] != nullptr
              ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(zeros[j] + g * kTileRows))))
              : _mm512_set1_ps(8.0f);
      for (int r = 0; r < MT; ++r) {
        const __m512i dots = _mm512_add_epi32(low_dots[r][j], _mm512_srai_epi32(high_dots[r][j], 4));
        const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(dots), _mm512_set1_ps(p.a_scale[(m0 + r) * p.groups + g]));
        const __m512 centred = _mm512_fnmadd_ps(z, _mm512_set1_ps(p.a_sum[(m0 + r) * p.groups + g]), scaled);
        acc[r][j] = _mm512_fmadd_ps(s, centred, acc[r][j]);
      }
    }
  }
  for (int j = 0; j < NT; ++j) {
    const int64_t n0 = (t0 + j) * kTileRows;
    const int64_t live = p.n - n0 < kTileRows ? p.n - n0 : kTileRows;
    const __mmask16 mask = static_cast<__mmask16>(live == kTileRows ? 0xFFFF : (1u << live) - 1u);
    const __m512 bias = p.bias != nullptr ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
    for (int r = 0; r < MT; ++r) _mm512_mask_storeu_ps(p.y + (m0 + r) * p.n + n0, mask, _mm512_add_ps(acc[r][j], bias));
  }
}

// Rows m0 .. m0 + MT of Y for output tile t, MT >= 8 (batched decode, prefill): the high nibbles are shifted down
// once per chunk (shared by the MT rows), so each row needs one int32 accumulator instead of two and 8 rows fit
// the 32 registers; the block's dot product is the same integer either way, so a row's output has the same bits
// as in `tiles` (batch invariance).
template <int MT>
void tiles_shifted(const Int4Problem& p, int64_t t, int64_t m0) {
  const int64_t chunks = p.k / kChunkK, chunks_per_block = p.group / kChunkK;
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
  __m512 acc[MT];
  for (int r = 0; r < MT; ++r) acc[r] = _mm512_setzero_ps();
  const uint8_t* codes = p.codes + t * chunks * 64;
  const float* scales = p.scales + t * p.groups * kTileRows;
  const uint8_t* zeros = p.zeros != nullptr ? p.zeros + t * p.groups * kTileRows : nullptr;
  const int8_t* a = p.a_q + m0 * p.k;

  for (int64_t g = 0; g < p.groups; ++g) {
    __m512i dots[MT];
    for (int r = 0; r < MT; ++r) dots[r] = _mm512_setzero_si512();
    const int64_t c_end = (g + 1) * chunks_per_block;
    for (int64_t c = g * chunks_per_block; c < c_end; ++c) {
      const __m512i bytes = _mm512_loadu_si512(codes + c * 64);
      const __m512i low = _mm512_and_si512(bytes, low_nibbles);
      const __m512i high = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low_nibbles);
      for (int r = 0; r < MT; ++r) {
        const int8_t* row = a + r * p.k + c * kChunkK;
        dots[r] = _mm512_dpbusd_epi32(dots[r], low, broadcast_dword(row));
        dots[r] = _mm512_dpbusd_epi32(dots[r], high, broadcast_dword(row + 4));
      }
    }
    const __m512 s = _mm512_loadu_ps(scales + g * kTileRows);
    const __m512 z = zeros != nullptr ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                                            reinterpret_cast<const __m128i*>(zeros + g * kTileRows))))
                                      : _mm512_set1_ps(8.0f);
    for (int r = 0; r < MT; ++r) {
      const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(dots[r]), _mm512_set1_ps(p.a_scale[(m0 + r) * p.groups + g]));
      const __m512 centred = _mm512_fnmadd_ps(z, _mm512_set1_ps(p.a_sum[(m0 + r) * p.groups + g]), scaled);
      acc[r] = _mm512_fmadd_ps(s, centred, acc[r]);
    }
  }
  const int64_t n0 = t * kTileRows;
  const int64_t live = p.n - n0 < kTileRows ? p.n - n0 : kTileRows;
  const __mmask16 mask = static_cast<__mmask16>(live == kTileRows ? 0xFFFF : (1u << live) - 1u);
  const __m512 bias = p.bias != nullptr ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
  for (int r = 0; r < MT; ++r) _mm512_mask_storeu_ps(p.y + (m0 + r) * p.n + n0, mask, _mm512_add_ps(acc[r], bias));
}

// One activation row (decode) of tile t: alone, a row's two accumulators are two dependency chains through
// VPDPBUSD's latency.  Even and odd chunks of a block accumulate apart, four chains, summed at the block's end
// (1-8 % faster than `tiles<1, 1>` cache-hot on one thread, SmolLM2's shapes): the same integers, so the same bits.
void tile_one_row(const Int4Problem& p, int64_t t, int64_t m) {
  const int64_t chunks = p.k / kChunkK, chunks_per_block = p.group / kChunkK;
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F), high_nibbles = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512 acc = _mm512_setzero_ps();
  const uint8_t* codes = p.codes + t * chunks * 64;
  const float* scales = p.scales + t * p.groups * kTileRows;
  const uint8_t* zeros = p.zeros != nullptr ? p.zeros + t * p.groups * kTileRows : nullptr;
  const int8_t* a = p.a_q + m * p.k;
  for (int64_t g = 0; g < p.groups; ++g) {
    __m512i low0 = _mm512_setzero_si512(), high0 = low0, low1 = low0, high1 = low0;
    const int64_t c_begin = g * chunks_per_block, c_end = c_begin + chunks_per_block;
    int64_t c = c_begin;
    for (; c + 2 <= c_end; c += 2) {
      const __m512i bytes0 = _mm512_loadu_si512(codes + c * 64), bytes1 = _mm512_loadu_si512(codes + c * 64 + 64);
      low0 = _mm512_dpbusd_epi32(low0, _mm512_and_si512(bytes0, low_nibbles), broadcast_dword(a + c * kChunkK));
      high0 = _mm512_dpbusd_epi32(high0, _mm512_and_si512(bytes0, high_nibbles), broadcast_dword(a + c * kChunkK + 4));
      low1 = _mm512_dpbusd_epi32(low1, _mm512_and_si512(bytes1, low_nibbles), broadcast_dword(a + c * kChunkK + 8));
      high1 = _mm512_dpbusd_epi32(high1, _mm512_and_si512(bytes1, high_nibbles), broadcast_dword(a + c * kChunkK + 12));
    }
    if (c < c_end) {  // a block of one chunk (G = 8 never reaches here: block sizes are >= 16)
      const __m512i bytes = _mm512_loadu_si512(codes + c * 64);
      low0 = _mm512_dpbusd_epi32(low0, _mm512_and_si512(bytes, low_nibbles), broadcast_dword(a + c * kChunkK));
      high0 = _mm512_dpbusd_epi32(high0, _mm512_and_si512(bytes, high_nibbles), broadcast_dword(a + c * kChunkK + 4));
    }
    const __m512i low = _mm512_add_epi32(low0, low1), high = _mm512_add_epi32(high0, high1);
    const __m512i dots = _mm512_add_epi32(low, _mm512_srai_epi32(high, 4));
    const __m512 s = _mm512_loadu_ps(scales + g * kTileRows);
    const __m512 z = zeros != nullptr ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                                            reinterpret_cast<const __m128i*>(zeros + g * kTileRows))))
                                      : _mm512_set1_ps(8.0f);
    const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(dots), _mm512_set1_ps(p.a_scale[m * p.groups + g]));
    const __m512 centred = _mm512_fnmadd_ps(z, _mm512_set1_ps(p.a_sum[m * p.groups + g]), scaled);
    acc = _mm512_fmadd_ps(s, centred, acc);
  }
  const int64_t n0 = t * kTileRows;
  const int64_t live = p.n - n0 < kTileRows ? p.n - n0 : kTileRows;
  const __mmask16 mask = static_cast<__mmask16>(live == kTileRows ? 0xFFFF : (1u << live) - 1u);
  const __m512 bias = p.bias != nullptr ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
  _mm512_mask_storeu_ps(p.y + m * p.n + n0, mask, _mm512_add_ps(acc, bias));
}

template <int MT>
void tiles_of_rows(const Int4Problem& p, int64_t t_begin, int64_t t_end, int64_t m0) {
  for (int64_t t = t_begin; t < t_end; ++t) {
    if constexpr (MT >= 8) {
      tiles_shifted<MT>(p, t, m0);
    } else if constexpr (MT == 1) {
      tile_one_row(p, t, m0);
    } else {
      tiles<MT, 1>(p, t, m0);
    }
  }
}

}  // namespace

void int8_tiles_avx512(const Int4Problem& p, int64_t n_begin, int64_t n_end) {
  const int64_t t_begin = n_begin / kTileRows, t_end = (n_end + kTileRows - 1) / kTileRows;
  int64_t m = 0;
  for (; m + 8 <= p.m; m += 8) tiles_of_rows<8>(p, t_begin, t_end, m);
  for (; m + 4 <= p.m; m += 4) tiles_of_rows<4>(p, t_begin, t_end, m);
  // Single rows (decode) one output tile at a time, four accumulators: two tiles side by side measured slower
  // (Zen 4, K = 576: 13 against 21 GB/s streamed) and four no faster than one.
  for (; m < p.m; ++m) tiles_of_rows<1>(p, t_begin, t_end, m);
}

}  // namespace awq2trt_ort
