// The fuser's hot-path ops (tier 3), each an autograd function with a custom backward:
//   rms_norm          y = RMSNorm(x) * w over the stacked layout (G, T, h), saves only 1/rms;
//   gelu              y = GELU(a + bias) after W1 (bias optional), backward recomputes from a;
//   dropout_residual  y = x + Dropout(a) after W2, the mask regenerated from a counter seed;
//   gated_combine     out = target + g * sigmoid(w) * p with the Gumbel-sigmoid, hard or no gate.
// One dispatch per op, set by set_op_path():
//   automatic  CUDA tensors (fp32/bf16) take the CUDA kernels when this build has them
//              (bindings.h -> *.cuh launchers); CPU tensors take, per op, the faster of the CPU
//              reference and the LibTorch ops (measured with bench_kernels);
//   reference  CUDA tensors as above; CPU tensors take the CPU references on raw pointers
//              (*_ref.h): the kernel path's CPU twin, on which the fuser's goldens also run;
//   torch      every tensor takes the same math in plain LibTorch ops (the *_unfused functions,
//              autograd by LibTorch): "kernels off", the benchmarks' baseline.
// The *_unfused functions are also the tests' oracle. CUDA tensors of builds without the kernels
// take the LibTorch ops. Double backward is not supported.
//
// Shape legend: G groups (2 branches x Lf layers merged), T tokens (B*N), h/m widths; S gate
// groups, B batch, H receiver KV heads, N tokens, D head dim.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>

namespace c2c::kernels {

// True when CUDA tensors take the fused kernels (launchers and LibTorch CUDA bindings built in).
bool cuda_kernels_available();
// True when the CUDA launchers were compiled (C2C_CUDA), whatever the LibTorch.
bool built_with_cuda();

// The dispatch of every op (see above); process-wide, default automatic.
enum class OpPath { automatic, reference, torch };
void set_op_path(OpPath path);
OpPath op_path();
const char* op_path_name(OpPath path);
OpPath parse_op_path(const std::string& name);  // "auto" | "reference" | "torch"; throws
// Sets the CPU path for a scope (tests, benchmarks) and restores the previous one.
class ScopedOpPath {
 public:
  explicit ScopedOpPath(OpPath path) : previous_(op_path()) { set_op_path(path); }
  ~ScopedOpPath() { set_op_path(previous_); }
  ScopedOpPath(const ScopedOpPath&) = delete;
  ScopedOpPath& operator=(const ScopedOpPath&) = delete;

 private:
  OpPath previous_;
};

// Grouped linear: y[g] = x[g] w[g]^T (+ bias[g]) for G independent products, the fuser's stacked
// layers; x (G, T, k), w (G, o, k), bias (G, o) or undefined; returns (G, T, o) contiguous.
// CUDA tensors and OpPath::torch take LibTorch's bmm/baddbmm (one strided-batched GEMM). CPU
// tensors otherwise take one matrix product per group, written in place into one output, with
// the backward's products the same way (no per-group copies), scheduled by grouped_gemm():
//   per_group       group after group, each product on every intra-op thread (MKL's own split);
//   group_parallel  the groups dealt out over the intra-op threads, each product on one thread;
//   batched         LibTorch's bmm (the CUDA path's form), for comparison;
//   automatic       the measured choice (bench_fuser, bench_train; README "Measured figures").
enum class GroupedGemm { automatic, per_group, group_parallel, batched };
void set_grouped_gemm(GroupedGemm how);
GroupedGemm grouped_gemm();
const char* grouped_gemm_name(GroupedGemm how);
GroupedGemm parse_grouped_gemm(const std::string& name);  // "auto" | "per_group" | ...; throws
// The schedule automatic picks for G products of (T, k) x (k, o) at the current thread count.
GroupedGemm grouped_gemm_choice(int64_t G, int64_t T, int64_t k, int64_t o);
torch::Tensor grouped_linear(const torch::Tensor& x, const torch::Tensor& w,
                             const torch::Tensor& bias = {});
torch::Tensor grouped_linear_unfused(const torch::Tensor& x, const torch::Tensor& w,
                                     const torch::Tensor& bias = {});

// RMSNorm with scale: y = x / sqrt(mean(x^2, -1) + eps) * weight, statistics in fp32 (double for
// double inputs), the normalised value cast to x's dtype before scaling (the fuser's numerics).
// x (..., h) with weight (h), or the batched layout x (G, T, h) with weight (G, h).
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps = 1e-6);
torch::Tensor rms_norm_unfused(const torch::Tensor& x, const torch::Tensor& weight,
                               double eps = 1e-6);

// y = gelu_erf(a + bias); a (G, T, m), bias (G, m) or undefined. Same dtype out.
torch::Tensor gelu(const torch::Tensor& a, const torch::Tensor& bias = {});
torch::Tensor gelu_unfused(const torch::Tensor& a, const torch::Tensor& bias = {});

// y = x + a * keep/(1-p), keep_i = counter_uniform(seed, first + i) >= p over the contiguous
// element index i of a (kernel_types.h); `first` places a inside a larger tensor (a chunk of
// groups draws the mask the whole would). p = 0: y = x + a. x, a of one shape, dtype, device.
torch::Tensor dropout_residual(const torch::Tensor& x, const torch::Tensor& a, double p,
                               uint64_t seed, int64_t first = 0);
torch::Tensor dropout_residual_unfused(const torch::Tensor& x, const torch::Tensor& a, double p,
                                       uint64_t seed, int64_t first = 0);

// out = target + g * sigmoid(w_logit) * p, with g = sigmoid((gate_logit + Gumbel(u)) / tau)
// (u undefined: no noise), or with `hard` g = (gate_logit > 0) (no gradient to the logit), or
// with gate_logit undefined no gate (g = 1). target, p (S, B, H, N, D) (target may be undefined:
// the delta alone); w_logit (S, B, H, N); gate_logit and tau (S); u (S, B, H, N) or
// (S, B, H, N, 1). Any strides. Formed in fp32 (double for double p) and rounded once into
// out_type: by default target's dtype (p's when target is undefined); a bf16 fuser's delta asks
// for float32 and is never rounded to bf16 (the parallel multi-sharer sum).
torch::Tensor gated_combine(const torch::Tensor& target, const torch::Tensor& w_logit,
                            const torch::Tensor& p, const torch::Tensor& gate_logit,
                            const torch::Tensor& u, const torch::Tensor& tau, bool hard,
                            std::optional<torch::ScalarType> out_type = std::nullopt);
torch::Tensor gated_combine_unfused(const torch::Tensor& target, const torch::Tensor& w_logit,
                                    const torch::Tensor& p, const torch::Tensor& gate_logit,
                                    const torch::Tensor& u, const torch::Tensor& tau, bool hard,
                                    std::optional<torch::ScalarType> out_type = std::nullopt);

}  // namespace c2c::kernels
