// Path selection.  The choice is an atomic so a test can force a path between runs without a data race
// against a session computing on another thread.
#include "dispatch.h"

#include <atomic>

namespace awq2trt_ort {
namespace {

Path best_supported() { return Path::kScalar; }

bool supported(Path path) { return path == Path::kScalar; }

std::atomic<int> g_forced{-1};

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
  if (path > static_cast<int>(Path::kAvx512) || !supported(static_cast<Path>(path))) return false;
  g_forced.store(path, std::memory_order_relaxed);
  return true;
}

RowsFn rows_function(const Int4Problem& /*p*/) { return int4_rows_scalar; }

const char* path_name(Path path) {
  switch (path) {
    case Path::kScalar:
      return "scalar";
    case Path::kAvx512:
      return "avx512";
  }
  return "unknown";
}

}  // namespace awq2trt_ort
