// Differences between LibTorch 1.13 (Debian's libtorch-dev) and 2.x live here and nowhere else.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#define C2C_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||      \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace c2c::compat {

inline const char* torch_version() { return TORCH_VERSION; }

// Peak resident memory of this process in bytes (CPU); on CUDA the caching allocator's peak.
size_t peak_host_memory_bytes();

}  // namespace c2c::compat
