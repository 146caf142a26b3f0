// Path selection.  The choice is an atomic so a test can force a path between runs without a data race
// against a session computing on another thread.
#include "dispatch.h"

#include <atomic>
#include <initializer_list>

namespace awq2trt_ort {
namespace {

bool supported(Path path) {
  switch (path) {
    case Path::kScalar:
      return true;
    case Path::kAvx512:
#if defined(AWQ2TRT_HAVE_X86_PATHS)
      // GCC's CPUID reader also checks that the OS saves the AVX-512 state (XGETBV), not only the CPU bit.
      return __builtin_cpu_supports("avx512f");
#else
      return false;
#endif
    case Path::kAvx2:
#if defined(AWQ2TRT_HAVE_X86_PATHS)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
  }
  return false;
}

// Widest first.
Path best_supported() {
  for (Path path : {Path::kAvx512, Path::kAvx2}) {
    if (supported(path)) return path;
  }
  return Path::kScalar;
}

// The int8 AVX-512 rows need VNNI (VPDPBUSD) and BW + VL (masked byte loads) on top of the exact path's AVX-512F; a
// CPU without them (Skylake-SP lacks VNNI) runs int8 mode on the AVX2 rows.
bool has_vnni() {
#if defined(AWQ2TRT_HAVE_X86_PATHS)
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

std::atomic<int> g_forced{-1};
std::atomic<int> g_last{-1};

}  // namespace

Path active_path() {
  static const Path best = best_supported();  // CPUID once
  const int forced = g_forced.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<Path>(forced) : best;
}

bool force_path(int path) {
  if (path < 0) {
    g_forced.store(-1, std::memory_order_relaxed);
    return true;
  }
  if (path > static_cast<int>(Path::kAvx2) || !supported(static_cast<Path>(path))) return false;
  g_forced.store(path, std::memory_order_relaxed);
  return true;
}

namespace {

PathPlan compute_plan(const Int4Problem& p);

}  // namespace

PathPlan plan_for(const Int4Problem& p) {
  PathPlan plan = compute_plan(p);
#if defined(AWQ2TRT_HAVE_X86_PATHS)
  // The int8 plans of the AVX-512 path all need VNNI, hence AVX512BW, which the vector quantizer's packing uses.
  if (p.int8_activations && plan.path == Path::kAvx512) plan.quantize = quantize_activations_avx512;
#endif
  return plan;
}

namespace {

PathPlan compute_plan(const Int4Problem& p) {
  if (p.tiles16) {
#if defined(AWQ2TRT_HAVE_X86_PATHS)
    if (p.int8_activations && active_path() == Path::kAvx512 && has_vnni()) return {int8_tiles_avx512, Path::kAvx512, 8};
#endif
    Int4Problem rows = p;
    rows.tiles16 = false;
    PathPlan plan = compute_plan(rows);
    plan.untile = true;
    plan.rows_per_task = (plan.rows_per_task + 15) / 16 * 16;
    return plan;
  }
#if defined(AWQ2TRT_HAVE_X86_PATHS)
  const Path path = active_path();
  if (p.int8_activations) {
    // The int8 rows take the same shapes as the exact SIMD ones (whole 32-k chunks per block).
    if (path != Path::kScalar && int4_avx2_handles(p)) {
      if (path == Path::kAvx512 && has_vnni()) {
        if (p.m >= kInt8GemmMinRows) return {int8_gemm_avx512, Path::kAvx512, 8, 32};
        return {int8_rows_avx512, Path::kAvx512, 128};
      }
      if (supported(Path::kAvx2)) return {int8_rows_avx2, Path::kAvx2, 32};
    }
    return {int8_rows_scalar, Path::kScalar, 0};
  }
  if (path == Path::kAvx512 && int4_avx512_handles(p)) {
    if (p.m >= kGemmMinRows) return {int4_gemm_avx512, Path::kAvx512, 0, int4_gemm_avx512_rows_per_task(p)};
    return {int4_rows_avx512, Path::kAvx512, 32};
  }
  if (path == Path::kAvx2 && int4_avx2_handles(p)) return {int4_rows_avx2, Path::kAvx2, 32};
#else
  (void)p;
  if (p.int8_activations) return {int8_rows_scalar, Path::kScalar, 0};
#endif
  return {int4_rows_scalar, Path::kScalar, 0};
}

}  // namespace

void note_last_path(Path path) { g_last.store(static_cast<int>(path), std::memory_order_relaxed); }

Path last_path() { return static_cast<Path>(g_last.load(std::memory_order_relaxed)); }

const char* path_name(Path path) {
  switch (path) {
    case Path::kScalar:
      return "scalar";
    case Path::kAvx512:
      return "avx512";
    case Path::kAvx2:
      return "avx2";
  }
  return "unknown";
}

const char* compiled_paths() {
#if defined(AWQ2TRT_HAVE_X86_PATHS)
  return "scalar avx2 avx512 avx512vnni";
#else
  return "scalar";
#endif
}

}  // namespace awq2trt_ort
