#include "modules/common/torch_compat.h"

#include <sys/resource.h>

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

}  // namespace c2c::compat
