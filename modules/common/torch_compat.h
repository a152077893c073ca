// Differences between LibTorch 1.13 (Debian's libtorch-dev) and 2.x live here and nowhere else.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#define C2C_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||      \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace c2c::compat {

inline const char* torch_version() { return TORCH_VERSION; }

// LibTorch 1.13 from Debian starts with one intra-op thread on this kind of machine; use every
// core unless OMP_NUM_THREADS says otherwise. Called once by each program's main().
void use_all_cores();

// Peak resident memory of this process in bytes (CPU); on CUDA the caching allocator's peak.
size_t peak_host_memory_bytes();

}  // namespace c2c::compat
