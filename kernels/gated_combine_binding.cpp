// LibTorch binding of the gated combine CUDA launchers (see bindings.h); CUDA LibTorch builds only.
// Inputs keep their strides (the launcher reads views in place); outputs are contiguous.
#include "kernels/binding_util.h"
#include "kernels/bindings.h"
#include "kernels/gated_combine.cuh"

namespace c2c::kernels::cuda {
using namespace detail;

namespace {

GatedCombineShape shape_of(const torch::Tensor& p) {
  C2C_CHECK(p.dim() == 5, "gated_combine (CUDA): p must be (S, B, H, N, D)");
  return {p.size(0), p.size(1), p.size(2), p.size(3), p.size(4)};
}

GatedCombineStrides strides_of(const torch::Tensor& target, const torch::Tensor& p,
                               const torch::Tensor& w, const torch::Tensor& u) {
  GatedCombineStrides st;
  for (int i = 0; i < 5; ++i) {
    st.p[i] = p.stride(i);
    st.target[i] = target.defined() ? target.stride(i) : 0;
  }
  for (int i = 0; i < 4; ++i) {
    st.w[i] = w.stride(i);
    st.u[i] = u.defined() ? u.stride(i) : 0;
  }
  return st;
}

void check_inputs(const torch::Tensor& target, const torch::Tensor& w, const torch::Tensor& p,
                  const torch::Tensor& gate_logit, const torch::Tensor& u,
                  const torch::Tensor& tau, bool hard) {
  const char* op = "gated_combine";
  check_cuda(p, op, "p");
  check_float_or_bf16(p, op, "p");
  check_same(p, w, op, "w_logit");
  if (target.defined()) {
    check_cuda(target, op, "target");
    C2C_CHECK(target.device() == p.device(), op, ": target is on ", target.device().str(),
              ", p on ", p.device().str());
    C2C_CHECK(target.sizes() == p.sizes(), op, ": target and p differ in shape");
  }
  C2C_CHECK(w.dim() == 4 && w.sizes() == p.sizes().slice(0, 4), op,
            ": w_logit must be (S, B, H, N)");
  if (gate_logit.defined())
    C2C_CHECK(gate_logit.scalar_type() == torch::kFloat32 && gate_logit.numel() == p.size(0) &&
                  gate_logit.device() == p.device(),
              op, ": gate_logit must be float32 (S) on the device of p");
  if (gate_logit.defined() && !hard)
    C2C_CHECK(tau.defined() && tau.scalar_type() == torch::kFloat32 &&
                  tau.numel() == p.size(0) && tau.device() == p.device(),
              op, ": tau must be float32 (S) on the device of p");
  if (u.defined())
    C2C_CHECK(u.scalar_type() == torch::kFloat32 && u.sizes() == p.sizes().slice(0, 4) &&
                  u.device() == p.device(),
              op, ": u must be float32 (S, B, H, N) on the device of p");
}

}  // namespace

torch::Tensor gated_combine_forward(const torch::Tensor& target, const torch::Tensor& w,
                                    const torch::Tensor& p, const torch::Tensor& gate_logit_in,
                                    const torch::Tensor& u, const torch::Tensor& tau_in,
                                    bool hard, torch::ScalarType out_type) {
  check_inputs(target, w, p, gate_logit_in, u, tau_in, hard);
  C2C_CHECK(out_type == p.scalar_type() || out_type == torch::kFloat32,
            "gated_combine (CUDA): the output must be in p's dtype or float32");
  C2C_CHECK(!target.defined() || target.scalar_type() == out_type,
            "gated_combine (CUDA): target must be in the output dtype");
  const c10::cuda::CUDAGuard guard(p.device());
  auto gate_logit = gate_logit_in.defined() ? gate_logit_in.contiguous() : torch::Tensor();
  auto tau = tau_in.defined() ? tau_in.contiguous() : torch::Tensor();
  const auto shape = shape_of(p);
  const auto strides = strides_of(target, p, w, u);
  auto out = torch::empty(
      p.sizes(), p.options().dtype(out_type).memory_format(at::MemoryFormat::Contiguous));
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(p.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    auto launch = [&](auto out_tag) {
      using O = decltype(out_tag);
      kernels::gated_combine_forward<S, O>(ptr<O>(target), ptr<S>(w), ptr<S>(p),
                                           ptr<float>(gate_logit), ptr<float>(u), ptr<float>(tau),
                                           hard, ptr<O>(out), shape, strides, stream);
    };
    if (out_type == p.scalar_type())
      launch(S{});
    else
      launch(float{});
  });
  return out;
}

std::vector<torch::Tensor> gated_combine_backward(const torch::Tensor& d_out_in,
                                                  const torch::Tensor& w, const torch::Tensor& p,
                                                  const torch::Tensor& gate_logit_in,
                                                  const torch::Tensor& u,
                                                  const torch::Tensor& tau_in, bool hard) {
  check_inputs(torch::Tensor(), w, p, gate_logit_in, u, tau_in, hard);
  check_same(p, d_out_in, "gated_combine backward", "grad");
  const c10::cuda::CUDAGuard guard(p.device());
  auto d_out = d_out_in.contiguous();
  auto gate_logit = gate_logit_in.defined() ? gate_logit_in.contiguous() : torch::Tensor();
  auto tau = tau_in.defined() ? tau_in.contiguous() : torch::Tensor();
  const auto shape = shape_of(p);
  const auto strides = strides_of(torch::Tensor(), p, w, u);
  auto opts = p.options().memory_format(at::MemoryFormat::Contiguous);
  auto d_p = torch::empty(p.sizes(), opts);
  auto d_w = torch::empty(w.sizes(), opts);
  auto d_gate = gate_logit.defined() ? torch::empty({shape.S}, opts.dtype(torch::kFloat32))
                                     : torch::Tensor();
  auto scratch = torch::empty({shape.rows()}, opts.dtype(torch::kFloat32));
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_float_bf16(p.scalar_type(), [&](auto tag) {
    using S = decltype(tag);
    kernels::gated_combine_backward<S>(ptr<S>(d_out), ptr<S>(w), ptr<S>(p),
                                       ptr<float>(gate_logit), ptr<float>(u), ptr<float>(tau),
                                       hard, ptr<S>(d_p), ptr<S>(d_w),
                                       ptr<float>(d_gate), scratch.data_ptr<float>(), shape,
                                       strides, stream);
  });
  return {d_p, d_w, d_gate};
}

}  // namespace c2c::kernels::cuda
