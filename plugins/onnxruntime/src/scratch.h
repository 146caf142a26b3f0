// Per-call scratch buffers for the kernels' Compute.
//
// A decode step calls every node once with a few kilobytes of scratch each (the activation's int8 blocks, the
// epilogue's product, attention partials); fresh std::vectors made each call a malloc, a zero fill and a free,
// which a profile of a SmolLM2 decode step put at several percent of the calling thread's time.  Small requests
// therefore reuse a buffer kept per thread (each thread runs one Compute at a time; the pool's tasks only read
// and write through the pointers the caller hands them), left uninitialised: every caller writes all it reads.
// Large requests (a prefill's) get a buffer of the call's own, freed with it, so no thread keeps megabytes.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace awq2trt_ort {

// Requests up to this size reuse the thread's buffer.
constexpr size_t kReusedScratchBytes = size_t{1} << 20;

template <typename T>
class Scratch {
 public:
  // `reused`: a thread_local vector that belongs to this one buffer of this one op.
  explicit Scratch(std::vector<T>& reused) : reused_(reused) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // `count` elements, uninitialised where not reused.
  T* get(size_t count) {
    if (count * sizeof(T) <= kReusedScratchBytes) {
      if (reused_.size() < count) reused_.resize(count);
      return reused_.data();
    }
    owned_.reset(new T[count]);  // default-initialised: no zero fill
    return owned_.get();
  }

 private:
  std::vector<T>& reused_;
  std::unique_ptr<T[]> owned_;
};

}  // namespace awq2trt_ort
