// LibTorch binding of the RMSNorm CUDA launchers (see bindings.h); CUDA LibTorch builds only.
#include "kernels/binding_util.h"
#include "kernels/bindings.h"
#include "kernels/rms_norm.cuh"

namespace c2c::kernels::cuda {
using namespace detail;

std::vector<torch::Tensor> rms_norm_forward(const torch::Tensor& x_in, const torch::Tensor& w_in,
                                            double eps) {
  check_cuda(x_in, "rms_norm", "x");
  check_cuda(w_in, "rms_norm", "weight");
  check_float_or_bf16(x_in, "rms_norm", "x");
  check_same(x_in, w_in, "rms_norm", "weight");
  C2C_CHECK(x_in.dim() == 3 && w_in.dim() == 2 && x_in.size(0) == w_in.size(0) &&
                x_in.size(2) == w_in.size(1),
            "rms_norm (CUDA): expected x (G, T, h) and weight (G, h)");
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto x = x_in.contiguous(), w = w_in.contiguous();
  const int64_t G = x.size(0), T = x.size(1), h = x.size(2);
  auto y = torch::empty_like(x);
  auto rstd = torch::empty({G, T}, x.options().dtype(torch::kFloat32));
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(x.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::rms_norm_forward<S>(ptr<S>(x), ptr<S>(w), ptr<S>(y), rstd.data_ptr<float>(), G, T, h,
                                 static_cast<float>(eps), stream);
  });
  return {y, rstd};
}

std::vector<torch::Tensor> rms_norm_backward(const torch::Tensor& dy_in, const torch::Tensor& x_in,
                                             const torch::Tensor& w_in,
                                             const torch::Tensor& rstd_in) {
  check_cuda(dy_in, "rms_norm backward", "grad");
  check_same(x_in, dy_in, "rms_norm backward", "grad");
  check_same(x_in, w_in, "rms_norm backward", "weight");
  C2C_CHECK(rstd_in.scalar_type() == torch::kFloat32, "rms_norm backward: rstd must be float32");
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto dy = dy_in.contiguous(), x = x_in.contiguous(), w = w_in.contiguous();
  auto rstd = rstd_in.contiguous();
  const int64_t G = x.size(0), T = x.size(1), h = x.size(2);
  auto dx = torch::empty_like(x);
  auto dw = torch::empty({G, h}, x.options().dtype(torch::kFloat32));
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(x.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::rms_norm_backward<S>(ptr<S>(dy), ptr<S>(x), ptr<S>(w), rstd.data_ptr<float>(),
                                  ptr<S>(dx), dw.data_ptr<float>(), G, T, h, stream);
  });
  return {dx, dw};
}

}  // namespace c2c::kernels::cuda
