// LibTorch binding of the dropout + residual CUDA launchers (see bindings.h); CUDA LibTorch only.
#include "kernels/binding_util.h"
#include "kernels/bindings.h"
#include "kernels/dropout_residual.cuh"

namespace c2c::kernels::cuda {
using namespace detail;

torch::Tensor dropout_residual_forward(const torch::Tensor& x_in, const torch::Tensor& a_in,
                                       double p, uint64_t seed, int64_t first) {
  const char* op = "dropout_residual";
  check_cuda(a_in, op, "a");
  check_float_or_bf16(a_in, op, "a");
  check_same(a_in, x_in, op, "x");
  C2C_CHECK(x_in.sizes() == a_in.sizes(), op, ": x and a differ in shape");
  const c10::cuda::CUDAGuard guard(a_in.device());
  auto a = a_in.contiguous(), x = x_in.contiguous();
  auto y = torch::empty_like(a);
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(a.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::dropout_residual_forward<S>(ptr<S>(x), ptr<S>(a), ptr<S>(y), a.numel(),
                                         static_cast<float>(p), seed, first, stream);
  });
  return y;
}

torch::Tensor dropout_residual_backward(const torch::Tensor& dy_in, double p, uint64_t seed,
                                        int64_t first) {
  check_cuda(dy_in, "dropout_residual backward", "grad");
  check_float_or_bf16(dy_in, "dropout_residual backward", "grad");
  const c10::cuda::CUDAGuard guard(dy_in.device());
  auto dy = dy_in.contiguous();
  auto da = torch::empty_like(dy);
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(dy.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::dropout_residual_backward<S>(ptr<S>(dy), ptr<S>(da), dy.numel(),
                                          static_cast<float>(p), seed, first, stream);
  });
  return da;
}

}  // namespace c2c::kernels::cuda
