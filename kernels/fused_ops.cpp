// The autograd functions of fused_ops.h: argument checks, the one dispatch (CUDA kernel via
// bindings.h, the CPU reference on raw pointers, or the LibTorch ops), and the LibTorch forms.
// CPU references compute in double for double tensors and in float otherwise (bf16/half are
// widened and rounded back once).
#include "kernels/fused_ops.h"

#include <atomic>
#include <cstring>
#include <functional>
#include <string>

#include <ATen/Parallel.h>

#include "kernels/dropout_residual_ref.h"
#include "kernels/gated_combine_ref.h"
#include "kernels/gelu_ref.h"
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

std::atomic<int> g_op_path{static_cast<int>(OpPath::automatic)};

enum class Op { rms_norm, gelu, dropout_residual, gated_combine };

// OpPath::automatic: which CPU implementation is faster for each op on the fuser's shapes,
// forward + backward (bench_kernels at 1 and 2 threads, published widths, 170 tokens; README
// "Kernels"). The references are single-threaded loops; LibTorch's ops vectorise and use every
// intra-op thread. RMSNorm's one-pass reference beats LibTorch's five ops at 1 and 2 threads
// (3.5x, 2.5x); GELU's scalar erf loses (0.07x); dropout + residual loses (0.9x, 0.6x); the gated
// combine's reference wins on one thread (2.2x) and ties or loses on more (0.94x).
bool reference_is_faster(Op op) {
  switch (op) {
    case Op::rms_norm: return true;
    case Op::gelu: return false;
    case Op::dropout_residual: return false;
    case Op::gated_combine: return at::get_num_threads() == 1;
  }
  return false;
}

bool kernel_dtype(const Tensor& t) {
  return t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kBFloat16;
}

// true: the op's autograd function (CUDA kernel or CPU reference); false: the LibTorch form.
bool use_kernel_path(const Tensor& t, Op op) {
  if (op_path() == OpPath::torch) return false;
  if (t.is_cuda()) return cuda_kernels_available() && kernel_dtype(t);
  if (!t.device().is_cpu()) return false;
  switch (op_path()) {
    case OpPath::reference: return true;
    case OpPath::torch: return false;
    case OpPath::automatic: return reference_is_faster(op);
  }
  return false;
}

std::string shape_of(const Tensor& t) {
  if (!t.defined()) return "undefined";
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}

torch::ScalarType compute_type(torch::ScalarType t) {
  return t == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

template <typename T>
T* data(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Calls f(T{}) with T = double or float, the CPU references' compute type for `t`.
template <typename F>
void cpu_dispatch(torch::ScalarType t, F&& f) {
  if (compute_type(t) == torch::kFloat64)
    f(double{});
  else
    f(float{});
}

// The CPU reference's view of a tensor: compute type, contiguous (undefined stays undefined).
Tensor cpu_input(const Tensor& t, torch::ScalarType ct) {
  return t.defined() ? t.to(ct).contiguous() : Tensor();
}

// Runs a CPU reference that writes one tensor shaped like `like`: `inputs` widened to the compute
// type of `type` and made contiguous, f(T{}, inputs, out) with T that type, and the result in the
// compute type (the caller rounds it once to the dtype it returns).
template <typename F>
Tensor run_cpu_ref(torch::ScalarType type, std::vector<Tensor> inputs, const Tensor& like, F&& f) {
  const auto ct = compute_type(type);
  for (auto& t : inputs) t = cpu_input(t, ct);
  auto out = torch::empty(like.sizes(), torch::TensorOptions().dtype(ct));
  cpu_dispatch(ct, [&](auto tag) { f(tag, inputs, out); });
  return out;
}

// The CPU references run on LibTorch's intra-op threads (at::parallel_for): elementwise ops in
// chunks of at least this many elements, the others in whole groups (so every reduction sums in
// one order whatever the thread count).
constexpr int64_t kElementGrain = 1 << 15;

// Function::apply reads the device of every tensor argument, so optional tensors cross it as
// empty placeholders and are turned back into undefined ones inside.
Tensor placeholder_if_undefined(const Tensor& t, const Tensor& like) {
  return t.defined() ? t : torch::empty({0}, like.options().requires_grad(false));
}
Tensor undefined_if_placeholder(const Tensor& t, bool present) { return present ? t : Tensor(); }

// Seeds cross IValues as int64 bit patterns.
int64_t seed_bits(uint64_t s) {
  int64_t r;
  std::memcpy(&r, &s, sizeof r);
  return r;
}
uint64_t seed_of(int64_t bits) {
  uint64_t r;
  std::memcpy(&r, &bits, sizeof r);
  return r;
}

#ifdef C2C_WITH_CUDA_BINDINGS
#define C2C_CUDA_OR_FAIL(stmt) stmt
#else
#define C2C_CUDA_OR_FAIL(stmt) C2C_ASSERT(false)
#endif

// ---- grouped linear ------------------------------------------------------------------------

std::atomic<int> g_grouped_gemm{static_cast<int>(GroupedGemm::automatic)};

GroupedGemm resolved_schedule(int64_t G, int64_t T, int64_t k, int64_t o) {
  const auto how = grouped_gemm();
  return how == GroupedGemm::automatic ? grouped_gemm_choice(G, T, k, o) : how;
}

// Calls f(g) for every group under a CPU schedule (per_group or group_parallel).
void for_groups(GroupedGemm how, int64_t G, const std::function<void(int64_t)>& f) {
  if (how == GroupedGemm::group_parallel && at::get_num_threads() > 1 && G > 1) {
    // Inside the parallel region every ATen op (and MKL) runs on its calling thread.
    at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) f(g);
    });
  } else {
    for (int64_t g = 0; g < G; ++g) f(g);
  }
}

// x (G, T, k), w (G, o, k), bias (G, o) or a placeholder. Saves x and w (as bmm's autograd does).
struct GroupedLinearFunction : public torch::autograd::Function<GroupedLinearFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x_in, const Tensor& w_in,
                        const Tensor& bias_in, bool has_bias, int64_t schedule) {
    const auto how = static_cast<GroupedGemm>(schedule);
    auto x = x_in.contiguous(), w = w_in.contiguous();
    const int64_t G = x.size(0), T = x.size(1), o = w.size(1);
    auto y = torch::empty({G, T, o}, x.options());
    for_groups(how, G, [&](int64_t g) {
      auto yg = y.select(0, g);
      if (has_bias)
        at::addmm_out(yg, bias_in.select(0, g).unsqueeze(0).expand({T, o}), x.select(0, g),
                      w.select(0, g).t());
      else
        at::mm_out(yg, x.select(0, g), w.select(0, g).t());
    });
    ctx->save_for_backward({x, w});
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["schedule"] = schedule;
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &w = saved[1];
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const auto how = static_cast<GroupedGemm>(ctx->saved_data["schedule"].toInt());
    auto dy = grads[0].contiguous();
    const int64_t G = x.size(0);
    Tensor dx, dw, db;
    const bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    if (want_x) dx = torch::empty_like(x);
    if (want_w) dw = torch::empty_like(w);
    for_groups(how, G, [&](int64_t g) {
      const auto dyg = dy.select(0, g);
      if (want_x) {
        auto dxg = dx.select(0, g);
        at::mm_out(dxg, dyg, w.select(0, g));  // (T, o) x (o, k)
      }
      if (want_w) {
        auto dwg = dw.select(0, g);
        at::mm_out(dwg, dyg.t(), x.select(0, g));  // (o, T) x (T, k)
      }
    });
    if (has_bias && ctx->needs_input_grad(2)) db = dy.sum(1);
    return {dx, dw, db, Tensor(), Tensor()};
  }
};

// ---- RMSNorm -------------------------------------------------------------------------------

// x (G, T, h), w (G, h). Saves x, w and rstd (not y).
struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& w, double eps) {
    Tensor y, rstd;
    if (x.is_cuda()) {
      C2C_CUDA_OR_FAIL(auto r = cuda::rms_norm_forward(x, w.to(x.scalar_type()), eps);
                       y = r[0]; rstd = r[1]);
    } else {
      const auto ct = compute_type(x.scalar_type());
      auto xc = cpu_input(x, ct), wc = cpu_input(w, ct);
      auto yc = torch::empty_like(xc);
      rstd = torch::empty({x.size(0), x.size(1)}, xc.options());
      cpu_dispatch(ct, [&](auto tag) {
        using T = decltype(tag);
        const int64_t R = x.size(1), h = x.size(2);
        at::parallel_for(0, x.size(0), 1, [&](int64_t g0, int64_t g1) {  // whole groups
          rms_norm_forward_ref<T>(data<T>(xc) + g0 * R * h, data<T>(wc) + g0 * h,
                                  data<T>(yc) + g0 * R * h, data<T>(rstd) + g0 * R, g1 - g0, R, h,
                                  eps);
        });
      });
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
      C2C_CUDA_OR_FAIL(auto r = cuda::rms_norm_backward(grads[0].to(x.scalar_type()), x,
                                                        w.to(x.scalar_type()), rstd);
                       dx = r[0]; dw = r[1]);
    } else {
      const auto ct = compute_type(x.scalar_type());
      auto xc = cpu_input(x, ct), wc = cpu_input(w, ct), dy = cpu_input(grads[0], ct);
      dx = torch::empty_like(xc);
      dw = torch::empty_like(wc);
      cpu_dispatch(ct, [&](auto tag) {
        using T = decltype(tag);
        const int64_t R = x.size(1), h = x.size(2);
        // Whole groups per thread: each group's dw sums its rows in one fixed order.
        at::parallel_for(0, x.size(0), 1, [&](int64_t g0, int64_t g1) {
          const int64_t o = g0 * R * h;
          rms_norm_backward_ref<T>(data<T>(dy) + o, data<T>(xc) + o, data<T>(wc) + g0 * h,
                                   data<T>(rstd) + g0 * R, data<T>(dx) + o, data<T>(dw) + g0 * h,
                                   g1 - g0, R, h);
        });
      });
    }
    return {dx.to(x.scalar_type()), dw.to(w.scalar_type()), Tensor()};
  }
};

// ---- GELU ----------------------------------------------------------------------------------

// a (G, T, m), bias (G, m) or a placeholder. Saves a and bias; the backward recomputes gelu'.
struct GeluFunction : public torch::autograd::Function<GeluFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& bias_in,
                        bool has_bias) {
    const Tensor bias = undefined_if_placeholder(bias_in, has_bias);
    Tensor y;
    if (a.is_cuda()) {
      C2C_CUDA_OR_FAIL(y = cuda::gelu_forward(a, has_bias ? bias.to(a.scalar_type()) : bias));
    } else {
      y = run_cpu_ref(a.scalar_type(), {a, bias}, a, [&](auto tag, const auto& in, auto& out) {
            using T = decltype(tag);
            const int64_t R = a.size(1), m = a.size(2);
            at::parallel_for(0, a.size(0), 1, [&](int64_t g0, int64_t g1) {
              const T* bias = data<T>(in[1]);
              gelu_forward_ref<T>(data<T>(in[0]) + g0 * R * m, bias ? bias + g0 * m : nullptr,
                                  data<T>(out) + g0 * R * m, g1 - g0, R, m);
            });
          }).to(a.scalar_type());
    }
    ctx->save_for_backward({a, bias_in});
    ctx->saved_data["has_bias"] = has_bias;
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const Tensor a = saved[0], bias = undefined_if_placeholder(saved[1], has_bias);
    Tensor da;
    if (a.is_cuda()) {
      C2C_CUDA_OR_FAIL(da = cuda::gelu_backward(grads[0].to(a.scalar_type()), a,
                                                has_bias ? bias.to(a.scalar_type()) : bias));
    } else {
      da = run_cpu_ref(a.scalar_type(), {grads[0], a, bias}, a,
                       [&](auto tag, const auto& in, auto& out) {
                         using T = decltype(tag);
                         const int64_t R = a.size(1), m = a.size(2), o = R * m;
                         at::parallel_for(0, a.size(0), 1, [&](int64_t g0, int64_t g1) {
                           const T* bias = data<T>(in[2]);
                           gelu_backward_ref<T>(data<T>(in[0]) + g0 * o, data<T>(in[1]) + g0 * o,
                                                bias ? bias + g0 * m : nullptr,
                                                data<T>(out) + g0 * o, g1 - g0, R, m);
                         });
                       });
    }
    Tensor d_bias;
    if (has_bias) d_bias = da.sum(1).to(bias.scalar_type());
    return {da.to(a.scalar_type()), d_bias, Tensor()};
  }
};

// ---- dropout + residual --------------------------------------------------------------------

// Saves nothing but p, the seed and the dtypes: the backward regenerates the mask.
struct DropoutResidualFunction : public torch::autograd::Function<DropoutResidualFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& a, double p,
                        int64_t seed, int64_t first) {
    Tensor y;
    if (a.is_cuda()) {
      C2C_CUDA_OR_FAIL(y = cuda::dropout_residual_forward(x.to(a.scalar_type()), a, p,
                                                          seed_of(seed), first));
    } else {
      y = run_cpu_ref(a.scalar_type(), {x, a}, a, [&](auto tag, const auto& in, auto& out) {
            using T = decltype(tag);
            at::parallel_for(0, a.numel(), kElementGrain, [&](int64_t b, int64_t e) {
              dropout_residual_forward_ref<T>(data<T>(in[0]) + b, data<T>(in[1]) + b,
                                              data<T>(out) + b, e - b, p, seed_of(seed),
                                              first + b);
            });
          }).to(a.scalar_type());
    }
    ctx->saved_data["p"] = p;
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["first"] = first;
    ctx->saved_data["x_type"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["a_type"] = static_cast<int64_t>(a.scalar_type());
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const double p = ctx->saved_data["p"].toDouble();
    const uint64_t seed = seed_of(ctx->saved_data["seed"].toInt());
    const int64_t first = ctx->saved_data["first"].toInt();
    const auto x_type = static_cast<torch::ScalarType>(ctx->saved_data["x_type"].toInt());
    const auto a_type = static_cast<torch::ScalarType>(ctx->saved_data["a_type"].toInt());
    const Tensor& dy = grads[0];
    Tensor da;
    if (dy.is_cuda()) {
      C2C_CUDA_OR_FAIL(da = cuda::dropout_residual_backward(dy.to(a_type), p, seed, first));
    } else {
      da = run_cpu_ref(a_type, {dy}, dy, [&](auto tag, const auto& in, auto& out) {
        using T = decltype(tag);
        at::parallel_for(0, dy.numel(), kElementGrain, [&](int64_t b, int64_t e) {
          dropout_residual_backward_ref<T>(data<T>(in[0]) + b, data<T>(out) + b, e - b, p, seed,
                                           first + b);
        });
      });
    }
    return {dy.to(x_type), da.to(a_type), Tensor(), Tensor(), Tensor()};
  }
};

// ---- gated combine -------------------------------------------------------------------------

struct GatedCombineFunction : public torch::autograd::Function<GatedCombineFunction> {
  // target, gate_logit, u and tau may be placeholders (has_*). Shapes checked by gated_combine().
  static Tensor forward(AutogradContext* ctx, const Tensor& target_in, const Tensor& w,
                        const Tensor& p, const Tensor& gate_in, const Tensor& u_in,
                        const Tensor& tau_in, bool hard, int64_t present, int64_t out_type_in) {
    const bool has_target = present & 1, has_gate = present & 2, has_u = present & 4;
    const Tensor target = undefined_if_placeholder(target_in, has_target);
    const Tensor gate_logit = undefined_if_placeholder(gate_in, has_gate);
    const Tensor u = undefined_if_placeholder(u_in, has_u);
    const Tensor tau = undefined_if_placeholder(tau_in, has_gate && !hard);
    const auto out_type = static_cast<torch::ScalarType>(out_type_in);
    Tensor out, gl, uu, tt;  // gate logit, u and tau as the back-end takes them
    if (p.is_cuda()) {
      auto f32 = [](const Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; };
      gl = f32(gate_logit);
      uu = f32(u);
      tt = f32(tau);
      // The kernel writes p's dtype or fp32; any other output is rounded from fp32 once.
      const auto kernel_out = out_type == p.scalar_type() ? out_type : torch::kFloat32;
      C2C_CUDA_OR_FAIL(out = cuda::gated_combine_forward(
                           has_target ? target.to(kernel_out) : target, w.to(p.scalar_type()), p,
                           gl, uu, tt, hard, kernel_out));
    } else {
      const auto ct = compute_type(p.scalar_type());
      auto tc = target.defined() ? target.to(ct) : Tensor();
      auto wc = w.to(ct), pc = p.to(ct);
      gl = cpu_input(gate_logit, ct);
      uu = u.defined() ? u.to(ct) : Tensor();
      tt = cpu_input(tau, ct);
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
      cpu_dispatch(ct, [&](auto tag) {
        using T = decltype(tag);
        const int64_t per_group = sh.B * sh.H * sh.N;
        at::parallel_for(0, sh.S, 1, [&](int64_t s0, int64_t s1) {  // whole groups
          GatedCombineShape part = sh;
          part.S = s1 - s0;
          const T* t = data<T>(tc);
          const T* u = data<T>(uu);
          const T *g = data<T>(gl), *tau = data<T>(tt);
          gated_combine_forward_ref<T>(t ? t + s0 * st.target[0] : nullptr,
                                       data<T>(wc) + s0 * st.w[0], data<T>(pc) + s0 * st.p[0],
                                       g ? g + s0 : nullptr, u ? u + s0 * st.u[0] : nullptr,
                                       tau ? tau + s0 : nullptr, hard,
                                       data<T>(out) + s0 * per_group * sh.D, part, st);
        });
      });
    }
    ctx->save_for_backward({w, p, placeholder_if_undefined(gl, p), placeholder_if_undefined(uu, p),
                            placeholder_if_undefined(tt, p)});
    ctx->saved_data["present"] = present;
    ctx->saved_data["hard"] = hard;
    ctx->saved_data["target_type"] =
        static_cast<int64_t>(has_target ? target.scalar_type() : out_type);
    ctx->saved_data["gate_type"] =
        static_cast<int64_t>(has_gate ? gate_logit.scalar_type() : p.scalar_type());
    return out.to(out_type);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const int64_t present = ctx->saved_data["present"].toInt();
    const bool has_target = present & 1, has_gate = present & 2, has_u = present & 4;
    const bool hard = ctx->saved_data["hard"].toBool();
    const Tensor &w = saved[0], &p = saved[1];
    const Tensor gl = undefined_if_placeholder(saved[2], has_gate);
    const Tensor uu = undefined_if_placeholder(saved[3], has_u);
    const Tensor tt = undefined_if_placeholder(saved[4], has_gate && !hard);
    const auto target_type = static_cast<torch::ScalarType>(ctx->saved_data["target_type"].toInt());
    const auto gate_type = static_cast<torch::ScalarType>(ctx->saved_data["gate_type"].toInt());
    const Tensor& d_out = grads[0];
    Tensor d_p, d_w, d_gate;
    if (p.is_cuda()) {
      C2C_CUDA_OR_FAIL(auto r = cuda::gated_combine_backward(d_out.to(p.scalar_type()),
                                                             w.to(p.scalar_type()), p, gl, uu,
                                                             tt, hard);
                       d_p = r[0]; d_w = r[1]; d_gate = r[2]);
    } else {
      const auto ct = compute_type(p.scalar_type());
      auto wc = w.to(ct), pc = p.to(ct), dc = cpu_input(d_out, ct);
      const GatedCombineShape sh{p.size(0), p.size(1), p.size(2), p.size(3), p.size(4)};
      GatedCombineStrides st;
      for (int i = 0; i < 5; ++i) st.p[i] = pc.stride(i);
      for (int i = 0; i < 4; ++i) {
        st.w[i] = wc.stride(i);
        st.u[i] = uu.defined() ? uu.stride(i) : 0;
      }
      d_p = torch::empty(p.sizes(), pc.options());
      d_w = torch::empty(w.sizes(), pc.options());
      if (has_gate) d_gate = torch::empty({sh.S}, pc.options());
      cpu_dispatch(ct, [&](auto tag) {
        using T = decltype(tag);
        const int64_t per_group = sh.B * sh.H * sh.N;
        // Whole groups per thread: each gate gradient sums its rows in one fixed order.
        at::parallel_for(0, sh.S, 1, [&](int64_t s0, int64_t s1) {
          GatedCombineShape part = sh;
          part.S = s1 - s0;
          const T* u = data<T>(uu);
          const T *g = data<T>(gl), *tau = data<T>(tt);
          T* dg = data<T>(d_gate);
          gated_combine_backward_ref<T>(
              data<T>(dc) + s0 * per_group * sh.D, data<T>(wc) + s0 * st.w[0],
              data<T>(pc) + s0 * st.p[0], g ? g + s0 : nullptr, u ? u + s0 * st.u[0] : nullptr,
              tau ? tau + s0 : nullptr, hard, data<T>(d_p) + s0 * per_group * sh.D,
              data<T>(d_w) + s0 * per_group, dg ? dg + s0 : nullptr, part, st);
        });
      });
    }
    Tensor d_target;
    if (has_target) d_target = d_out.to(target_type);
    if (has_gate) d_gate = hard ? Tensor() : d_gate.to(gate_type);
    return {d_target, d_w.to(w.scalar_type()), d_p.to(p.scalar_type()), d_gate,
            Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

void check_same_device(const Tensor& t, const Tensor& ref, const char* op, const char* name) {
  C2C_CHECK(!t.defined() || t.device() == ref.device(), op, ": '", name, "' is on ",
            t.device().str(), ", expected ", ref.device().str());
}

}  // namespace

// ---- the op path ---------------------------------------------------------------------------

void set_op_path(OpPath path) { g_op_path = static_cast<int>(path); }
OpPath op_path() { return static_cast<OpPath>(g_op_path.load()); }

const char* op_path_name(OpPath path) {
  switch (path) {
    case OpPath::automatic: return "auto";
    case OpPath::reference: return "reference";
    case OpPath::torch: return "torch";
  }
  return "?";
}

OpPath parse_op_path(const std::string& name) {
  for (auto p : {OpPath::automatic, OpPath::reference, OpPath::torch})
    if (name == op_path_name(p)) return p;
  fail("unknown kernel op path '", name, "'\nHINT: use auto, reference or torch");
}

// ---- the grouped GEMM schedule -------------------------------------------------------------

void set_grouped_gemm(GroupedGemm how) { g_grouped_gemm = static_cast<int>(how); }
GroupedGemm grouped_gemm() { return static_cast<GroupedGemm>(g_grouped_gemm.load()); }

const char* grouped_gemm_name(GroupedGemm how) {
  switch (how) {
    case GroupedGemm::automatic: return "auto";
    case GroupedGemm::per_group: return "per_group";
    case GroupedGemm::group_parallel: return "group_parallel";
    case GroupedGemm::batched: return "batched";
  }
  return "?";
}

GroupedGemm parse_grouped_gemm(const std::string& name) {
  for (auto h : {GroupedGemm::automatic, GroupedGemm::per_group, GroupedGemm::group_parallel,
                 GroupedGemm::batched})
    if (name == grouped_gemm_name(h)) return h;
  fail("unknown grouped GEMM schedule '", name,
       "'\nHINT: use auto, per_group, group_parallel or batched");
}

// The measured choice on the CPU (bench_fuser --gemm, README "Measured figures"): with one
// thread the groups run one after another; with more, dealing whole groups out to the threads
// beats splitting each product across them whenever there are groups for every thread (the
// fuser's products are small: T ~ 10^2-10^3 rows of widths 10^2-10^3). LibTorch's CPU bmm is
// slower than either at every shape measured.
GroupedGemm grouped_gemm_choice(int64_t G, int64_t T, int64_t k, int64_t o) {
  (void)T;
  (void)k;
  (void)o;
  const int threads = at::get_num_threads();
  return threads > 1 && G >= threads ? GroupedGemm::group_parallel : GroupedGemm::per_group;
}

// ---- public ops ----------------------------------------------------------------------------

Tensor grouped_linear_unfused(const Tensor& x, const Tensor& w, const Tensor& bias) {
  if (bias.defined()) return torch::baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2));
  return torch::bmm(x, w.transpose(1, 2));
}

Tensor grouped_linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  C2C_CHECK(x.defined() && x.dim() == 3, "grouped_linear: x must be (G, T, k), got ", shape_of(x));
  C2C_CHECK(w.defined() && w.dim() == 3 && w.size(0) == x.size(0) && w.size(2) == x.size(2),
            "grouped_linear: w ", shape_of(w), " must be (G, o, k) of x ", shape_of(x));
  C2C_CHECK(!bias.defined() || (bias.dim() == 2 && bias.size(0) == w.size(0) &&
                                bias.size(1) == w.size(1)),
            "grouped_linear: bias ", shape_of(bias), " must be (G, o) of w ", shape_of(w));
  check_same_device(w, x, "grouped_linear", "w");
  check_same_device(bias, x, "grouped_linear", "bias");
  if (!x.device().is_cpu() || op_path() == OpPath::torch) return grouped_linear_unfused(x, w, bias);
  const auto how = resolved_schedule(x.size(0), x.size(1), x.size(2), w.size(1));
  if (how == GroupedGemm::batched) return grouped_linear_unfused(x, w, bias);
  return GroupedLinearFunction::apply(x, w, placeholder_if_undefined(bias, x), bias.defined(),
                                      static_cast<int64_t>(how));
}


Tensor rms_norm_unfused(const Tensor& x, const Tensor& weight, double eps) {
  const auto ct = compute_type(x.scalar_type());
  auto xf = x.to(ct);
  auto normed = (xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps)).to(x.scalar_type());
  return normed * (weight.dim() == 2 && x.dim() == 3 ? weight.unsqueeze(1) : weight);
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  C2C_CHECK(x.defined() && weight.defined() && x.dim() >= 1, "rms_norm: x ", shape_of(x),
            " and weight ", shape_of(weight), " must be defined");
  const bool batched = weight.dim() == 2;
  C2C_CHECK((weight.dim() == 1 && weight.size(0) == x.size(-1)) ||
                (batched && x.dim() == 3 && x.size(0) == weight.size(0) &&
                 x.size(2) == weight.size(1)),
            "rms_norm: x ", shape_of(x), " does not match weight ", shape_of(weight),
            "\nHINT: x (..., h) with weight (h), or x (G, T, h) with weight (G, h)");
  check_same_device(weight, x, "rms_norm", "weight");
  C2C_CHECK(eps >= 0, "rms_norm: eps must be >= 0, got ", eps);
  if (!use_kernel_path(x, Op::rms_norm)) return rms_norm_unfused(x, weight, eps);
  if (batched) return RmsNormFunction::apply(x, weight, eps);
  const int64_t h = x.size(-1);
  auto y = RmsNormFunction::apply(x.reshape({1, -1, h}), weight.view({1, h}), eps);
  return y.view(x.sizes());
}

Tensor gelu_unfused(const Tensor& a, const Tensor& bias) {
  return torch::gelu(bias.defined() ? a + bias.unsqueeze(1) : a);
}

Tensor gelu(const Tensor& a, const Tensor& bias) {
  C2C_CHECK(a.defined() && a.dim() == 3, "gelu: a must be (G, T, m), got ", shape_of(a));
  C2C_CHECK(!bias.defined() || (bias.dim() == 2 && bias.size(0) == a.size(0) &&
                                bias.size(1) == a.size(2)),
            "gelu: bias ", shape_of(bias), " must be (G, m) of a ", shape_of(a));
  check_same_device(bias, a, "gelu", "bias");
  if (!use_kernel_path(a, Op::gelu)) return gelu_unfused(a, bias);
  return GeluFunction::apply(a, placeholder_if_undefined(bias, a), bias.defined());
}

Tensor dropout_residual_unfused(const Tensor& x, const Tensor& a, double p, uint64_t seed,
                                int64_t first) {
  if (p <= 0) return x + a;
  // The same counter mask as the kernels, made by the reference on the host.
  const auto ct = compute_type(a.scalar_type());
  auto scale = torch::empty({a.numel()}, torch::TensorOptions().dtype(ct));
  cpu_dispatch(ct, [&](auto tag) {
    using T = decltype(tag);
    at::parallel_for(0, a.numel(), kElementGrain, [&](int64_t b, int64_t e) {
      dropout_scale_ref<T>(data<T>(scale) + b, e - b, p, seed, first + b);
    });
  });
  return x + a * scale.view(a.sizes()).to(a.device(), a.scalar_type());
}

Tensor dropout_residual(const Tensor& x, const Tensor& a, double p, uint64_t seed,
                        int64_t first) {
  C2C_CHECK(x.defined() && a.defined() && x.sizes() == a.sizes(), "dropout_residual: x ",
            shape_of(x), " and a ", shape_of(a), " must have one shape");
  check_same_device(x, a, "dropout_residual", "x");
  C2C_CHECK(p >= 0 && p < 1, "dropout_residual: p must be in [0, 1), got ", p);
  C2C_CHECK(first >= 0, "dropout_residual: first must be >= 0, got ", first);
  if (p == 0) return x + a;
  if (!use_kernel_path(a, Op::dropout_residual))
    return dropout_residual_unfused(x, a, p, seed, first);
  return DropoutResidualFunction::apply(x, a.contiguous(), p, seed_bits(seed), first);
}

Tensor gated_combine_unfused(const Tensor& target, const Tensor& w_logit, const Tensor& p,
                             const Tensor& gate_logit, const Tensor& u, const Tensor& tau,
                             bool hard, std::optional<torch::ScalarType> out_type) {
  const auto ct = compute_type(p.scalar_type());
  const auto out = out_type.value_or(target.defined() ? target.scalar_type() : p.scalar_type());
  auto delta = torch::sigmoid(w_logit.to(ct)).unsqueeze(-1) * p.to(ct);
  if (gate_logit.defined()) {
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
      gate = torch::sigmoid(noisy / tau.to(ct).view({p.size(0), 1, 1, 1, 1}));
    }
    delta = gate * delta;
  }
  if (!target.defined()) return delta.to(out);
  return (target.to(ct) + delta).to(out);
}

Tensor gated_combine(const Tensor& target, const Tensor& w_logit, const Tensor& p,
                     const Tensor& gate_logit, const Tensor& u_in, const Tensor& tau, bool hard,
                     std::optional<torch::ScalarType> out_type) {
  C2C_CHECK(p.defined() && p.dim() == 5, "gated_combine: p must be (S, B, H, N, D), got ",
            shape_of(p));
  const auto rows = p.sizes().slice(0, 4);
  C2C_CHECK(!target.defined() || target.sizes() == p.sizes(), "gated_combine: target ",
            shape_of(target), " must have p's shape ", shape_of(p));
  C2C_CHECK(w_logit.defined() && w_logit.sizes() == rows, "gated_combine: w_logit ",
            shape_of(w_logit), " must be (S, B, H, N) of p ", shape_of(p));
  C2C_CHECK(!gate_logit.defined() || gate_logit.numel() == p.size(0),
            "gated_combine: gate_logit ", shape_of(gate_logit), " must hold one logit per S = ",
            p.size(0));
  const bool soft = gate_logit.defined() && !hard;
  C2C_CHECK(!soft || (tau.defined() && tau.numel() == p.size(0)), "gated_combine: tau ",
            shape_of(tau), " must hold one temperature per S = ", p.size(0));
  Tensor u = u_in;
  if (u.defined() && u.dim() == 5 && u.size(4) == 1) u = u.squeeze(4);
  C2C_CHECK(!u.defined() || u.sizes() == rows, "gated_combine: noise u ", shape_of(u_in),
            " must be (S, B, H, N) or (S, B, H, N, 1) of p ", shape_of(p));
  check_same_device(target, p, "gated_combine", "target");
  check_same_device(w_logit, p, "gated_combine", "w_logit");
  check_same_device(gate_logit, p, "gated_combine", "gate_logit");
  check_same_device(u, p, "gated_combine", "u");
  check_same_device(tau, p, "gated_combine", "tau");
  auto gl = gate_logit.defined() ? gate_logit.reshape({p.size(0)}) : Tensor();
  auto tt = soft ? tau.reshape({p.size(0)}) : Tensor();
  const auto out = out_type.value_or(target.defined() ? target.scalar_type() : p.scalar_type());
  if (!use_kernel_path(p, Op::gated_combine))
    return gated_combine_unfused(target, w_logit, p, gl, u, tt, hard, out);
  const int64_t present = (target.defined() ? 1 : 0) | (gl.defined() ? 2 : 0) | (u.defined() ? 4 : 0);
  return GatedCombineFunction::apply(placeholder_if_undefined(target, p), w_logit, p,
                                     placeholder_if_undefined(gl, p), placeholder_if_undefined(u, p),
                                     placeholder_if_undefined(tt, p), hard, present,
                                     static_cast<int64_t>(out));
}

}  // namespace c2c::kernels
