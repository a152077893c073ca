// Benchmark of the fuser's kernel ops (kernels/fused_ops.h) and of the real StackedFuser on each
// op path, side by side in one run:
// 1. each op alone at the fuser's shapes (G = 2 x layers groups, T tokens), forward and
//    forward+backward: the LibTorch ops ("torch") against the kernel path ("reference" on the
//    CPU: the plain-loop references; on a GPU: the CUDA kernels). The CPU rows are the
//    measurement behind OpPath::automatic's per-op choice (fused_ops.cpp).
// 2. the StackedFuser itself (modules/fuser.h, published widths, training mode: dropout 0.1 and
//    Gumbel gates), forward and forward+backward, on every op path.
// Ratios are measured side by side; absolute times only mean something on a GPU.
//
// usage: bench_kernels [--device auto|cpu|cuda] [--layers N] [--tokens N] [--iters N]
//                      [--threads N] [--peak-tflops X]
// --layers defaults to 28 on a GPU and 2 on the CPU; --peak-tflops (the GPU's dense bf16 peak,
// 989 for an H200) adds the fraction of peak of the fuser's matrix products.
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "modules/fuser.h"
#include "trainer/args.h"

namespace {
namespace k = c2c::kernels;
using torch::Tensor;

double time_ms(const std::function<void()>& f, int iters, bool cuda) {
  f();  // warm-up
  if (cuda) torch::cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  if (cuda) torch::cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
         iters;
}

// Matrix-product FLOPs of one fused pass, both branches, all layers.
double fuser_flops(const c2c::FuserConfig& c, int64_t layers, int64_t tokens) {
  const double h = c.hidden_dim, m = c.intermediate_dim, in = c.in_dim(), out = c.out_dim();
  const double per_token = (in + out) * h + 2 * h * m + 2 * h * h + c.target_num_heads * h +
                           (c.num_layers - 2) * 2 * h * m + out * h;
  return 2.0 * 2.0 * per_token * tokens * layers;
}

struct OpBench {
  const char* name;
  std::function<Tensor()> run;  // through the dispatch of the current op path
};

int run(int argc, char** argv) {
  c2c::cli::Args args("bench_kernels", std::vector<std::string>(argv + 1, argv + argc), {});
  const std::string device_arg = args.str("device", "auto");
  const bool have_cuda = torch::cuda::is_available();
  C2C_CHECK(device_arg == "auto" || device_arg == "cpu" || device_arg == "cuda",
            "bench_kernels: --device must be auto, cpu or cuda, got '", device_arg, "'");
  C2C_CHECK(device_arg != "cuda" || have_cuda, "bench_kernels: --device cuda but no CUDA device"
            "\nHINT: run scripts/gpu_check.sh on a GPU machine");
  const bool cuda = device_arg == "cuda" || (device_arg == "auto" && have_cuda);
  const int64_t layers = args.integer("layers", cuda ? 28 : 2);
  const int64_t T = args.integer("tokens", 170);
  const int iters = static_cast<int>(args.integer("iters", cuda ? 20 : 3));
  const int64_t threads = args.integer("threads", 0);
  const double peak_tflops = args.number("peak-tflops", 0.0);
  args.finish();
  c2c::compat::keep_freed_host_memory();
  c2c::compat::set_threads(threads);
  const auto dtype = cuda ? torch::kBFloat16 : torch::kFloat32;
  const torch::Device device = cuda ? torch::kCUDA : torch::kCPU;
  auto opt = torch::TensorOptions().dtype(dtype).device(device);
  c2c::FuserConfig c;  // the published widths are the defaults (h = m = 1024, L = 3, dropout 0.1)
  const int64_t G = 2 * layers, h = c.hidden_dim, m = c.intermediate_dim;
  const int64_t Hr = c.target_num_heads, Dr = c.target_head_dim;
  const char* kernel_path = cuda ? "CUDA kernels" : "CPU references";

  std::printf("bench_kernels: %s, %s, %d threads; CUDA kernels in this build: %s\n",
              cuda ? "CUDA" : "CPU", cuda ? "bf16" : "fp32", torch::get_num_threads(),
              k::cuda_kernels_available() ? "yes" : "no");
  if (cuda && !k::cuda_kernels_available())
    std::printf("  NOTE: no CUDA kernels built in: the kernel path falls back to LibTorch ops\n");
  std::printf("ops alone: G = %lld groups (%lld layers x K/V), T = %lld tokens, h = %lld, m = %lld,"
              " %d timed iterations\n",
              (long long)G, (long long)layers, (long long)T, (long long)h, (long long)m, iters);
  torch::manual_seed(0);
  auto x = torch::randn({G, T, h}, opt).requires_grad_(true);
  auto nw = torch::ones({G, h}, opt).requires_grad_(true);
  auto a = torch::randn({G, T, m}, opt).requires_grad_(true);
  auto a2 = torch::randn({G, T, h}, opt).requires_grad_(true);
  auto target = torch::randn({G, 1, Hr, T, Dr}, opt).requires_grad_(true);
  auto p_tok = torch::randn({G, 1, T, Hr, Dr}, opt).requires_grad_(true);
  auto w_tok = torch::randn({G, 1, T, Hr}, opt).requires_grad_(true);
  auto gl = torch::zeros({G}, opt.dtype(torch::kFloat32)).requires_grad_(true);
  auto u = torch::rand({G, 1, Hr, T}, opt.dtype(torch::kFloat32));
  auto tau = torch::full({G}, 0.5, opt.dtype(torch::kFloat32));
  std::vector<OpBench> ops{
      {"rms_norm (G,T,h)", [&] { return k::rms_norm(x, nw); }},
      {"gelu (G,T,m)", [&] { return k::gelu(a); }},
      {"dropout_residual (G,T,h) p 0.1", [&] { return k::dropout_residual(x, a2, 0.1, 7); }},
      {"gated_combine (G,1,Hr,T,Dr)",
       [&] {
         return k::gated_combine(target, w_tok.permute({0, 1, 3, 2}),
                                 p_tok.permute({0, 1, 3, 2, 4}), gl, u, tau, false);
       }},
  };
  for (bool backward : {false, true}) {
    for (auto& op : ops) {
      double ms[2];
      for (int kpath = 0; kpath < 2; ++kpath) {
        const k::ScopedOpPath path(kpath ? k::OpPath::reference : k::OpPath::torch);
        ms[kpath] = time_ms(
            [&] {
              if (!backward) {
                torch::NoGradGuard ng;
                op.run();
              } else {
                auto y = op.run();
                y.backward(torch::ones_like(y));
              }
            },
            iters, cuda);
      }
      std::printf("  %-32s %-8s torch %9.3f ms   %s %9.3f ms   kernel path %5.2fx\n", op.name,
                  backward ? "fwd+bwd" : "fwd", ms[0], kernel_path, ms[1], ms[0] / ms[1]);
    }
  }

  // The real fuser, training mode, on every op path.
  c2c::StackedFuser fuser(c, layers, /*seed=*/0);
  fuser->to(device, dtype);
  fuser->train();
  fuser->set_step(100);
  fuser->reseed(1);
  auto sk = torch::randn({layers, 1, c.source_num_heads, T, c.source_head_dim}, opt);
  auto sv = torch::randn_like(sk);
  auto rk = torch::randn({layers, 1, Hr, T, Dr}, opt), rv = torch::randn_like(rk);
  const double gflop = fuser_flops(c, layers, T) / 1e9;
  std::printf("StackedFuser (published widths, %lld layers, %lld tokens, training mode): %.2f GFLOP"
              " of matrix products per forward\n", (long long)layers, (long long)T, gflop);
  double fwd[3], step[3];
  const k::OpPath paths[] = {k::OpPath::torch, k::OpPath::reference, k::OpPath::automatic};
  for (int i = 0; i < 3; ++i) {
    const k::ScopedOpPath path(paths[i]);
    fwd[i] = time_ms(
        [&] {
          torch::NoGradGuard ng;
          fuser->forward(sk, sv, rk, rv);
        },
        iters, cuda);
    step[i] = time_ms(
        [&] {
          auto f = fuser->forward(sk, sv, rk, rv);
          (f.key.sum() + f.value.sum()).backward();
        },
        iters, cuda);
    const char* name = i == 1 ? kernel_path : k::op_path_name(paths[i]);
    std::printf("  %-15s forward %9.3f ms (%6.1f GFLOP/s)   forward+backward %9.3f ms (%6.1f GFLOP/s)",
                name, fwd[i], gflop / (fwd[i] * 1e-3), step[i], 3 * gflop / (step[i] * 1e-3));
    if (peak_tflops > 0)
      std::printf("  %4.1f%% of peak", 100 * 3 * gflop / (step[i] * 1e-3) / (peak_tflops * 1e3));
    std::printf("\n");
  }
  std::printf("  kernel path vs torch: forward %.2fx, forward+backward %.2fx; auto vs torch: "
              "forward %.2fx, forward+backward %.2fx\n",
              fwd[0] / fwd[1], step[0] / step[1], fwd[0] / fwd[2], step[0] / step[2]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
}
