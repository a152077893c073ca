#include "modules/common/torch_compat.h"

#include <sys/resource.h>
#include <torch/cuda.h>
#ifdef C2C_TORCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <cstdlib>
#include <thread>

namespace c2c::compat {

void use_all_cores() {
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (env && *env) return;
  const unsigned n = std::thread::hardware_concurrency();
  if (n > 0 && static_cast<unsigned>(torch::get_num_threads()) < n) torch::set_num_threads(static_cast<int>(n));
}

size_t peak_host_memory_bytes() {
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<size_t>(usage.ru_maxrss) * 1024;  // ru_maxrss is in KiB on Linux
}

void synchronize(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

size_t peak_device_memory_bytes(torch::Device device) {
#ifdef C2C_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(std::max<c10::DeviceIndex>(device.index(), 0));
    return static_cast<size_t>(stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak);
  }
#endif
  (void)device;
  return 0;
}

void reset_peak_device_memory(torch::Device device) {
#ifdef C2C_TORCH_HAS_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(std::max<c10::DeviceIndex>(device.index(), 0));
#endif
  (void)device;
}

}  // namespace c2c::compat
