// LibTorch binding of the GELU CUDA launchers (see bindings.h); CUDA LibTorch only.
#include "kernels/binding_util.h"
#include "kernels/bindings.h"
#include "kernels/gelu.cuh"

namespace c2c::kernels::cuda {
using namespace detail;

namespace {
void check_inputs(const torch::Tensor& a, const torch::Tensor& bias, const char* op) {
  check_cuda(a, op, "a");
  check_float_or_bf16(a, op, "a");
  C2C_CHECK(a.dim() == 3, op, ": a must be (groups, rows, m)");
  if (bias.defined()) {
    check_same(a, bias, op, "bias");
    C2C_CHECK(bias.dim() == 2 && bias.size(0) == a.size(0) && bias.size(1) == a.size(2), op,
              ": bias must be (groups, m) of a");
  }
}
}  // namespace

torch::Tensor gelu_forward(const torch::Tensor& a_in, const torch::Tensor& bias_in) {
  check_inputs(a_in, bias_in, "gelu");
  const c10::cuda::CUDAGuard guard(a_in.device());
  auto a = a_in.contiguous();
  auto bias = bias_in.defined() ? bias_in.contiguous() : torch::Tensor();
  auto y = torch::empty_like(a);
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(a.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::gelu_forward<S>(ptr<S>(a), ptr<S>(bias), ptr<S>(y), a.size(0), a.size(1), a.size(2),
                             stream);
  });
  return y;
}

torch::Tensor gelu_backward(const torch::Tensor& dy_in, const torch::Tensor& a_in,
                            const torch::Tensor& bias_in) {
  check_inputs(a_in, bias_in, "gelu backward");
  check_same(a_in, dy_in, "gelu backward", "grad");
  const c10::cuda::CUDAGuard guard(a_in.device());
  auto a = a_in.contiguous(), dy = dy_in.contiguous();
  auto bias = bias_in.defined() ? bias_in.contiguous() : torch::Tensor();
  auto da = torch::empty_like(a);
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(a.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::gelu_backward<S>(ptr<S>(dy), ptr<S>(a), ptr<S>(bias), ptr<S>(da), a.size(0),
                              a.size(1), a.size(2), stream);
  });
  return da;
}

}  // namespace c2c::kernels::cuda
