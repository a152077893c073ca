// Autograd functions over the fused kernels: argument checks, device dispatch (CUDA kernel via
// bindings.h, or the CPU reference on raw pointers), and the unfused LibTorch equivalents.
// CPU paths compute in double for double tensors and in float otherwise (bf16/half are widened
// and rounded back once).
#include "kernels/fused_ops.h"

#include <string>

#include "kernels/gated_combine_ref.h"
#include "kernels/gelu_residual_ref.h"
#include "kernels/rms_norm_ref.h"
#include "modules/common/error.h"
#ifdef C2C_WITH_CUDA_BINDINGS
#include "kernels/bindings.h"
#endif

namespace c2c::kernels {

bool cuda_kernels_available() {
#ifdef C2C_WITH_CUDA_BINDINGS
  return true;
#else
  return false;
#endif
}

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

std::string shape_of(const Tensor& t) {
  if (!t.defined()) return "undefined";
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}

torch::ScalarType compute_type(torch::ScalarType t) {
  return t == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// The CUDA kernels take fp32 and bf16; other dtypes (and builds without kernels) go unfused.
bool kernel_dtype(const Tensor& t) {
  return t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kBFloat16;
}

template <typename T>
T* data(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// LibTorch 1.13's Function::apply reads the device of every tensor argument, so optional
// tensors cross it as empty placeholders and are turned back into undefined ones inside.
Tensor placeholder_if_undefined(const Tensor& t, const Tensor& like) {
  return t.defined() ? t : torch::empty({0}, like.options().requires_grad(false));
}
Tensor undefined_if_placeholder(const Tensor& t, bool present) {
  return present ? t : Tensor();
}

// ---- RMSNorm -------------------------------------------------------------------------------

// x (G, T, h), w (G, h).
struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, double eps) {
    Tensor y, rstd;
    if (x.is_cuda()) {
#ifdef C2C_WITH_CUDA_BINDINGS
      auto r = cuda::rms_norm_forward(x, w.to(x.scalar_type()), eps);
      y = r[0];
      rstd = r[1];
#else
      C2C_ASSERT(false);
#endif
    } else {
      const auto ct = compute_type(x.scalar_type());
      auto xc = x.to(ct).contiguous(), wc = w.to(ct).contiguous();
      auto yc = torch::empty_like(xc);
      rstd = torch::empty({x.size(0), x.size(1)}, xc.options());
      const int64_t G = x.size(0), T = x.size(1), h = x.size(2);
      if (ct == torch::kFloat64)
        rms_norm_forward_ref<double>(data<double>(xc), data<double>(wc), data<double>(yc),
                                     data<double>(rstd), G, T, h, eps);
      else
        rms_norm_forward_ref<float>(data<float>(xc), data<float>(wc), data<float>(yc),
                                    data<float>(rstd), G, T, h, eps);
      y = yc.to(x.scalar_type());
    }
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    Tensor dx, dw;
    if (x.is_cuda()) {
#ifdef C2C_WITH_CUDA_BINDINGS
      auto r = cuda::rms_norm_backward(grads[0].to(x.scalar_type()), x, w.to(x.scalar_type()),
                                       rstd);
      dx = r[0];
      dw = r[1];
#endif
    } else {
      const auto ct = compute_type(x.scalar_type());
      auto xc = x.to(ct).contiguous(), wc = w.to(ct).contiguous();
      auto dy = grads[0].to(ct).contiguous();
      dx = torch::empty_like(xc);
      dw = torch::empty_like(wc);
      const int64_t G = x.size(0), T = x.size(1), h = x.size(2);
      if (ct == torch::kFloat64)
        rms_norm_backward_ref<double>(data<double>(dy), data<double>(xc), data<double>(wc),
                                      data<double>(rstd), data<double>(dx), data<double>(dw), G,
                                      T, h);
      else
        rms_norm_backward_ref<float>(data<float>(dy), data<float>(xc), data<float>(wc),
                                     data<float>(rstd), data<float>(dx), data<float>(dw), G, T,
                                     h);
    }
    return {dx.to(x.scalar_type()), dw.to(w.scalar_type()), Tensor()};
  }
};

// ---- gated combine -------------------------------------------------------------------------

struct GatedCombineFunction : public torch::autograd::Function<GatedCombineFunction> {
  // target may be undefined; u may be undefined. Shapes checked by gated_combine().
  static Tensor forward(AutogradContext* ctx, const Tensor& target_in, const Tensor& w,
                        const Tensor& p, const Tensor& gate_logit, const Tensor& u_in, double tau,
                        bool hard, bool has_target, bool has_u) {
    const Tensor target = undefined_if_placeholder(target_in, has_target);
    const Tensor u = undefined_if_placeholder(u_in, has_u);
    const auto out_type = target.defined() ? target.scalar_type() : p.scalar_type();
    Tensor out;
    Tensor gl, uu;  // as the back-end takes them
    if (p.is_cuda()) {
#ifdef C2C_WITH_CUDA_BINDINGS
      gl = gate_logit.to(torch::kFloat32);
      uu = u.defined() ? u.to(torch::kFloat32) : Tensor();
      out = cuda::gated_combine_forward(target.defined() ? target.to(p.scalar_type()) : target,
                                        w.to(p.scalar_type()), p, gl, uu, tau, hard);
#else
      C2C_ASSERT(false);
#endif
    } else {
      const auto ct = compute_type(p.scalar_type());
      auto tc = target.defined() ? target.to(ct) : Tensor();
      auto wc = w.to(ct), pc = p.to(ct);
      gl = gate_logit.to(ct).contiguous();
      uu = u.defined() ? u.to(ct) : Tensor();
      const GatedCombineShape sh{p.size(0), p.size(1), p.size(2), p.size(3), p.size(4)};
      GatedCombineStrides st;
      for (int i = 0; i < 5; ++i) {
        st.p[i] = pc.stride(i);
        st.target[i] = tc.defined() ? tc.stride(i) : 0;
      }
      for (int i = 0; i < 4; ++i) {
        st.w[i] = wc.stride(i);
        st.u[i] = uu.defined() ? uu.stride(i) : 0;
      }
      out = torch::empty(p.sizes(), pc.options());
      if (ct == torch::kFloat64)
        gated_combine_forward_ref<double>(data<double>(tc), data<double>(wc), data<double>(pc),
                                          data<double>(gl), data<double>(uu), tau, hard,
                                          data<double>(out), sh, st);
      else
        gated_combine_forward_ref<float>(data<float>(tc), data<float>(wc), data<float>(pc),
                                         data<float>(gl), data<float>(uu), tau, hard,
                                         data<float>(out), sh, st);
    }
    ctx->save_for_backward({w, p, gl, placeholder_if_undefined(uu, p)});
    ctx->saved_data["has_u"] = has_u;
    ctx->saved_data["tau"] = tau;
    ctx->saved_data["hard"] = hard;
    ctx->saved_data["has_target"] = target.defined();
    ctx->saved_data["target_type"] = static_cast<int64_t>(out_type);
    ctx->saved_data["gate_type"] = static_cast<int64_t>(gate_logit.scalar_type());
    return out.to(out_type);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &w = saved[0], &p = saved[1], &gl = saved[2];
    const Tensor uu = undefined_if_placeholder(saved[3], ctx->saved_data["has_u"].toBool());
    const double tau = ctx->saved_data["tau"].toDouble();
    const bool hard = ctx->saved_data["hard"].toBool();
    const auto target_type = static_cast<torch::ScalarType>(ctx->saved_data["target_type"].toInt());
    const auto gate_type = static_cast<torch::ScalarType>(ctx->saved_data["gate_type"].toInt());
    const Tensor& d_out = grads[0];
    Tensor d_p, d_w, d_gate;
    if (p.is_cuda()) {
#ifdef C2C_WITH_CUDA_BINDINGS
      auto r = cuda::gated_combine_backward(d_out.to(p.scalar_type()), w.to(p.scalar_type()), p,
                                            gl, uu, tau, hard);
      d_p = r[0];
      d_w = r[1];
      d_gate = r[2];
#endif
    } else {
      const auto ct = compute_type(p.scalar_type());
      auto wc = w.to(ct), pc = p.to(ct), dc = d_out.to(ct).contiguous();
      const GatedCombineShape sh{p.size(0), p.size(1), p.size(2), p.size(3), p.size(4)};
      GatedCombineStrides st;
      for (int i = 0; i < 5; ++i) st.p[i] = pc.stride(i);
      for (int i = 0; i < 4; ++i) {
        st.w[i] = wc.stride(i);
        st.u[i] = uu.defined() ? uu.stride(i) : 0;
      }
      d_p = torch::empty(p.sizes(), pc.options());
      d_w = torch::empty(w.sizes(), pc.options());
      d_gate = torch::empty({sh.S}, pc.options());
      if (ct == torch::kFloat64)
        gated_combine_backward_ref<double>(data<double>(dc), data<double>(wc), data<double>(pc),
                                           data<double>(gl), data<double>(uu), tau, hard,
                                           data<double>(d_p), data<double>(d_w),
                                           data<double>(d_gate), sh, st);
      else
        gated_combine_backward_ref<float>(data<float>(dc), data<float>(wc), data<float>(pc),
                                          data<float>(gl), data<float>(uu), tau, hard,
                                          data<float>(d_p), data<float>(d_w), data<float>(d_gate),
                                          sh, st);
    }
    Tensor d_target;
    if (ctx->saved_data["has_target"].toBool()) d_target = d_out.to(target_type);
    return {d_target, d_w.to(w.scalar_type()), d_p.to(p.scalar_type()), d_gate.to(gate_type),
            Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// ---- GELU + residual -----------------------------------------------------------------------

struct GeluResidualFunction : public torch::autograd::Function<GeluResidualFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x_in, const Tensor& a, bool has_x) {
    const Tensor x = undefined_if_placeholder(x_in, has_x);
    Tensor y;
    if (a.is_cuda()) {
#ifdef C2C_WITH_CUDA_BINDINGS
      y = cuda::gelu_residual_forward(x.defined() ? x.to(a.scalar_type()) : x, a);
#else
      C2C_ASSERT(false);
#endif
    } else {
      const auto ct = compute_type(a.scalar_type());
      auto ac = a.to(ct).contiguous();
      auto xc = x.defined() ? x.to(ct).contiguous() : Tensor();
      auto yc = torch::empty_like(ac);
      if (ct == torch::kFloat64)
        gelu_residual_forward_ref<double>(data<double>(xc), data<double>(ac), data<double>(yc),
                                          ac.numel());
      else
        gelu_residual_forward_ref<float>(data<float>(xc), data<float>(ac), data<float>(yc),
                                         ac.numel());
      y = yc.to(a.scalar_type());
    }
    ctx->save_for_backward({a});
    ctx->saved_data["has_x"] = x.defined();
    ctx->saved_data["x_type"] =
        static_cast<int64_t>(x.defined() ? x.scalar_type() : a.scalar_type());
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const Tensor a = ctx->get_saved_variables()[0];
    const Tensor& dy = grads[0];
    Tensor da;
    if (a.is_cuda()) {
#ifdef C2C_WITH_CUDA_BINDINGS
      da = cuda::gelu_residual_backward(dy.to(a.scalar_type()), a);
#endif
    } else {
      const auto ct = compute_type(a.scalar_type());
      auto ac = a.to(ct).contiguous(), dc = dy.to(ct).contiguous();
      da = torch::empty_like(ac);
      if (ct == torch::kFloat64)
        gelu_residual_backward_ref<double>(data<double>(dc), data<double>(ac), data<double>(da),
                                           ac.numel());
      else
        gelu_residual_backward_ref<float>(data<float>(dc), data<float>(ac), data<float>(da),
                                          ac.numel());
    }
    Tensor dx;
    if (ctx->saved_data["has_x"].toBool())
      dx = dy.to(static_cast<torch::ScalarType>(ctx->saved_data["x_type"].toInt()));
    return {dx, da.to(a.scalar_type()), Tensor()};
  }
};

bool use_kernel_path(const Tensor& t) {
  return !t.is_cuda() || (cuda_kernels_available() && kernel_dtype(t));
}

}  // namespace

// ---- public ops ----------------------------------------------------------------------------

torch::Tensor rms_norm_unfused(const Tensor& x, const Tensor& weight, double eps) {
  const auto ct = compute_type(x.scalar_type());
  auto xf = x.to(ct);
  auto normed = (xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps)).to(x.scalar_type());
  return normed * (weight.dim() == 2 && x.dim() == 3 ? weight.unsqueeze(1) : weight);
}

torch::Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  C2C_CHECK(x.defined() && weight.defined() && x.dim() >= 1, "rms_norm: x ", shape_of(x),
            " and weight ", shape_of(weight), " must be defined");
  const bool batched = weight.dim() == 2;
  C2C_CHECK((weight.dim() == 1 && weight.size(0) == x.size(-1)) ||
                (batched && x.dim() == 3 && x.size(0) == weight.size(0) &&
                 x.size(2) == weight.size(1)),
            "rms_norm: x ", shape_of(x), " does not match weight ", shape_of(weight),
            "\nHINT: x (..., h) with weight (h), or x (G, T, h) with weight (G, h)");
  C2C_CHECK(x.device() == weight.device(), "rms_norm: x on ", x.device().str(), ", weight on ",
            weight.device().str());
  C2C_CHECK(eps >= 0, "rms_norm: eps must be >= 0, got ", eps);
  if (!use_kernel_path(x)) return rms_norm_unfused(x, weight, eps);
  if (batched) return RmsNormFunction::apply(x, weight, eps);
  const int64_t h = x.size(-1);
  auto y = RmsNormFunction::apply(x.reshape({1, -1, h}), weight.view({1, h}), eps);
  return y.view(x.sizes());
}

torch::Tensor gated_combine_unfused(const Tensor& target, const Tensor& w_logit, const Tensor& p,
                                    const Tensor& gate_logit, const Tensor& u, double tau,
                                    bool hard) {
  const auto ct = compute_type(p.scalar_type());
  auto logit = gate_logit.to(ct).view({p.size(0), 1, 1, 1, 1});
  Tensor gate;
  if (hard) {
    gate = (logit > 0).to(ct);
  } else {
    auto noisy = logit;
    if (u.defined()) {
      auto uc = u.to(ct).reshape(w_logit.sizes()).unsqueeze(-1);
      noisy = logit - torch::log(-torch::log(uc + 1e-20) + 1e-20);
    }
    gate = torch::sigmoid(noisy / tau);
  }
  auto delta = gate * torch::sigmoid(w_logit.to(ct)).unsqueeze(-1) * p.to(ct);
  if (!target.defined()) return delta.to(p.scalar_type());
  return (target.to(ct) + delta).to(target.scalar_type());
}

torch::Tensor gated_combine(const Tensor& target, const Tensor& w_logit, const Tensor& p,
                            const Tensor& gate_logit, const Tensor& u_in, double tau, bool hard) {
  C2C_CHECK(p.defined() && p.dim() == 5, "gated_combine: p must be (S, B, H, N, D), got ",
            shape_of(p));
  const auto rows = p.sizes().slice(0, 4);
  C2C_CHECK(!target.defined() || target.sizes() == p.sizes(), "gated_combine: target ",
            shape_of(target), " must have p's shape ", shape_of(p));
  C2C_CHECK(w_logit.defined() && w_logit.sizes() == rows, "gated_combine: w_logit ",
            shape_of(w_logit), " must be (S, B, H, N) of p ", shape_of(p));
  C2C_CHECK(gate_logit.defined() && gate_logit.numel() == p.size(0), "gated_combine: gate_logit ",
            shape_of(gate_logit), " must hold one logit per S = ", p.size(0));
  Tensor u = u_in;
  if (u.defined() && u.dim() == 5 && u.size(4) == 1) u = u.squeeze(4);
  C2C_CHECK(!u.defined() || u.sizes() == rows, "gated_combine: noise u ", shape_of(u_in),
            " must be (S, B, H, N) or (S, B, H, N, 1) of p ", shape_of(p));
  C2C_CHECK(hard || tau > 0, "gated_combine: temperature tau must be > 0, got ", tau);
  for (const Tensor* t :
       std::initializer_list<const Tensor*>{&target, &w_logit, &gate_logit, &u})
    C2C_CHECK(!t->defined() || t->device() == p.device(), "gated_combine: inputs on ",
              t->device().str(), " and ", p.device().str());
  auto gl = gate_logit.reshape({p.size(0)});
  if (!use_kernel_path(p)) return gated_combine_unfused(target, w_logit, p, gl, u, tau, hard);
  return GatedCombineFunction::apply(placeholder_if_undefined(target, p), w_logit, p, gl,
                                     placeholder_if_undefined(u, p), tau, hard, target.defined(),
                                     u.defined());
}

torch::Tensor gelu_residual_unfused(const Tensor& x, const Tensor& a) {
  auto g = torch::gelu(a);
  return x.defined() ? x + g : g;
}

torch::Tensor gelu_residual(const Tensor& x, const Tensor& a) {
  C2C_CHECK(a.defined(), "gelu_residual: a is undefined");
  C2C_CHECK(!x.defined() || (x.sizes() == a.sizes() && x.device() == a.device()),
            "gelu_residual: x ", shape_of(x), " must have a's shape ", shape_of(a),
            " and device");
  if (!use_kernel_path(a)) return gelu_residual_unfused(x, a);
  return GeluResidualFunction::apply(placeholder_if_undefined(x, a), a, x.defined());
}

}  // namespace c2c::kernels
