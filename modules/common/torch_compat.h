// Small process-level helpers around LibTorch: its version, the thread count, peak memory.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#include <string>
#include <vector>

#define C2C_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||      \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace c2c::compat {

inline const char* torch_version() { return TORCH_VERSION; }

// The one meaning of every thread setting (train.threads, eval's threads, the benchmarks'
// --threads): n > 0 is n LibTorch intra-op threads, 0 is every core (OMP_NUM_THREADS when set;
// with several ranks on the host, LOCAL_WORLD_SIZE or SLURM_NTASKS_PER_NODE, each rank's share).
// LibTorch's intra-op pool is the only one: the wheel's MKL runs inside it (same OpenMP runtime,
// one thread per core; scripts/check_linkage.sh checks that no second BLAS is linked).
int threads_for(int64_t n);
// Sets LibTorch's intra-op threads to threads_for(n) and returns that count. Each program's
// main() calls set_threads(0); a recipe's or a flag's value then replaces it.
int set_threads(int64_t n);
// "1,2" -> {1, 2}, each through threads_for ("0" -> every core); throws naming `where`.
std::vector<int> parse_thread_list(const std::string& text, const std::string& where);

// Peak resident memory of this process in bytes (CPU).
size_t peak_host_memory_bytes();
// Minor page faults of this process so far (each a fresh page the kernel mapped and zeroed).
int64_t minor_page_faults();
// Keeps freed host memory in the process for the next step's tensors instead of handing it back
// to the kernel after every free (glibc: blocks up to 32 MiB from the heap, no trimming), so a
// training step reuses last step's pages rather than faulting in new ones. Each program's
// main() calls it once, before any tensor exists.
void keep_freed_host_memory();

// Waits for the device's queued work (a no-op on the CPU): timings of CUDA work call it.
void synchronize(torch::Device device);
// Peak bytes the CUDA caching allocator handed out on `device` since the last reset (0 on the
// CPU), and its reset.
size_t peak_device_memory_bytes(torch::Device device);
void reset_peak_device_memory(torch::Device device);

}  // namespace c2c::compat
