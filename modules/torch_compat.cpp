#include "modules/common/torch_compat.h"

#include <sys/resource.h>

namespace c2c::compat {

size_t peak_host_memory_bytes() {
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<size_t>(usage.ru_maxrss) * 1024;  // ru_maxrss is in KiB on Linux
}

}  // namespace c2c::compat
