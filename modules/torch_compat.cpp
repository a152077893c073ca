#include "modules/common/torch_compat.h"

#include "modules/common/error.h"

#include <sys/resource.h>
#include <torch/cuda.h>
#ifdef C2C_TORCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <malloc.h>

#include <algorithm>
#include <limits>
#include <cstdlib>
#include <string>
#include <thread>

namespace c2c::compat {

int threads_for(int64_t n) {
  C2C_CHECK(n >= 0, "a thread count must be >= 0 (0: every core), got ", n);
  if (n > 0) return static_cast<int>(n);
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env && *env) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    C2C_CHECK(end && *end == '\0' && v > 0, "OMP_NUM_THREADS='", env,
              "' is not a positive integer\nHINT: unset it to use every core");
    return static_cast<int>(v);
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Several ranks on one host (torchrun and scripts/launch_local.sh set LOCAL_WORLD_SIZE; Slurm
  // SLURM_NTASKS_PER_NODE): each takes its share of the cores, not all of them.
  for (const char* name : {"LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"}) {
    const char* env = std::getenv(name);
    if (!env || !*env) continue;
    char* end = nullptr;
    const long ranks = std::strtol(env, &end, 10);
    if (std::string(name) == "SLURM_NTASKS_PER_NODE" && !(end && *end == '\0')) continue;  // e.g. "2(x3)"
    C2C_CHECK(end && *end == '\0' && ranks > 0, name, "='", env, "' is not a positive integer");
    return std::max(1, cores / static_cast<int>(ranks));
  }
  return cores;
}

int set_threads(int64_t n) {
  const int t = threads_for(n);
  if (torch::get_num_threads() != t) torch::set_num_threads(t);
  return t;
}

std::vector<int> parse_thread_list(const std::string& text, const std::string& where) {
  std::vector<int> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    const long v = item.empty() ? -1 : std::strtol(item.c_str(), &end, 10);
    C2C_CHECK(!item.empty() && end && *end == '\0' && v >= 0, where, ": '", text,
              "' is not a list of thread counts\nHINT: e.g. 2, or 1,2 (0: every core)");
    out.push_back(threads_for(v));
    start = comma + 1;
  }
  return out;
}

int64_t minor_page_faults() {
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_minflt);
}

void keep_freed_host_memory() {
#ifdef __GLIBC__
  // The largest threshold glibc takes (HEAP_MAX / 2 on 64-bit); fixed values also stop its
  // dynamic threshold from dropping back after a large free.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
#endif
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
