// Small process-level helpers around LibTorch: its version, the thread count, peak memory.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#define C2C_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||      \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace c2c::compat {

inline const char* torch_version() { return TORCH_VERSION; }

// Use every core for LibTorch's intra-op threads unless OMP_NUM_THREADS says otherwise. Called
// once by each program's main().
void use_all_cores();

// Peak resident memory of this process in bytes (CPU).
size_t peak_host_memory_bytes();

// Waits for the device's queued work (a no-op on the CPU): timings of CUDA work call it.
void synchronize(torch::Device device);
// Peak bytes the CUDA caching allocator handed out on `device` since the last reset (0 on the
// CPU), and its reset.
size_t peak_device_memory_bytes(torch::Device device);
void reset_peak_device_memory(torch::Device device);

}  // namespace c2c::compat
