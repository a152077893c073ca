// Which kernel back-ends this build carries; the CLI prints it in `c2c version`.
#include "kernels/fused_ops.h"

namespace c2c::kernels {
bool built_with_cuda() {
#ifdef C2C_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}
}  // namespace c2c::kernels
