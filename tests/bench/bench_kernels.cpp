// Benchmark of the fused hot-path ops (kernels/fused_ops.h) against the unfused LibTorch path.
// 1. Each op alone, forward and forward+backward: CPU reference vs LibTorch ops on the CPU, CUDA
//    kernel vs LibTorch ops on a GPU.
// 2. The fusion of one prompt through every receiver layer at the published widths (stacked,
//    both K and V as one batch): milliseconds, TFLOP/s and the fraction of the GPU's bf16 peak,
//    fused vs unfused, and a training step (forward+backward) of the same.
// Dropout is left out of both paths (it is the same code in each). Ratios are measured side by
// side in one run; absolute times only mean something on a GPU (DESIGN.md section 9).
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "kernels/fused_ops.h"
#include "modules/common/error.h"

namespace {
namespace k = c2c::kernels;
using torch::Tensor;

struct Options {
  int64_t layers = -1;      // receiver layers fused (Lf); default 28 on a GPU, 2 on the CPU
  int64_t tokens = 170;     // prompt length (B = 1)
  int64_t hidden = 1024;    // h
  int64_t inter = 1024;     // m
  int64_t heads_r = 8, dim_r = 128, heads_s = 2, dim_s = 64;
  int64_t fuser_layers = 3;  // L: 1 + (L-2) projection FFN blocks (published: 3)
  double peak_tflops = 989;  // dense bf16 peak of the GPU (H200 SXM)
  int iters = -1;            // timed repetitions; default 20 on a GPU, 2 on the CPU
  std::string device = "auto";
};

void usage() {
  std::printf(
      "bench_kernels [--device auto|cpu|cuda] [--layers N] [--tokens N] [--iters N]\n"
      "              [--peak-tflops X] [--hidden N] [--intermediate N]\n"
      "  --peak-tflops: the GPU's dense bf16 peak for the fraction-of-peak column (989 = H200)\n");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      C2C_CHECK(i + 1 < argc, "bench_kernels: option ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--layers") o.layers = std::stoll(next());
    else if (a == "--tokens") o.tokens = std::stoll(next());
    else if (a == "--iters") o.iters = std::stoi(next());
    else if (a == "--peak-tflops") o.peak_tflops = std::stod(next());
    else if (a == "--hidden") o.hidden = std::stoll(next());
    else if (a == "--intermediate") o.inter = std::stoll(next());
    else if (a == "--device") o.device = next();
    else if (a == "--help" || a == "-h") { usage(); std::exit(0); }
    else c2c::fail("bench_kernels: unknown option '", a, "'\nHINT: see --help");
  }
  return o;
}

// Median-free simple timing: warm-up once, then the mean over `iters` runs, synchronised.
double time_ms(const std::function<void()>& f, int iters, bool cuda) {
  f();
  if (cuda) torch::cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) f();
  if (cuda) torch::cuda::synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / iters;
}

// Stacked random weights of both branches of Lf fusers, merged to G = 2*Lf; the layout of
// modules/fuser.h (leading dims (2, Lf) merged), without the published names.
struct Weights {
  Tensor in_w, in_b;                       // (G, h, in+out), (G, h)
  std::vector<Tensor> norm, w1, w2;        // per FFN block: (G, h), (G, m|h, h), (G, h, m|h)
  Tensor head_w, head_b, out_w, out_b;     // (G, Hr, h), (G, Hr), (G, out, h), (G, out)
  Tensor gate_logit;                       // (G)
  std::vector<Tensor> all() const {
    std::vector<Tensor> r{in_w, in_b, head_w, head_b, out_w, out_b, gate_logit};
    for (size_t j = 0; j < norm.size(); ++j) r.insert(r.end(), {norm[j], w1[j], w2[j]});
    return r;
  }
};

Weights make_weights(const Options& o, int64_t G, torch::TensorOptions opt) {
  const int64_t h = o.hidden, m = o.inter, io = o.heads_s * o.dim_s + o.heads_r * o.dim_r;
  auto lin = [&](std::vector<int64_t> s, int64_t fan_in) {
    return ((torch::rand(s, opt.dtype(torch::kFloat32)) * 2 - 1) / std::sqrt(double(fan_in)))
        .to(opt.dtype());
  };
  Weights w;
  w.in_w = lin({G, h, io}, io);
  w.in_b = lin({G, h}, io);
  // Blocks: mlp1 (m), scalar FFN (h), then L-2 projection blocks (m).
  std::vector<int64_t> widths{m, h};
  for (int64_t j = 0; j < o.fuser_layers - 2; ++j) widths.push_back(m);
  for (int64_t wd : widths) {
    w.norm.push_back(torch::ones({G, h}, opt));
    w.w1.push_back(lin({G, wd, h}, h));
    w.w2.push_back(lin({G, h, wd}, wd));
  }
  w.head_w = lin({G, o.heads_r, h}, h);
  w.head_b = lin({G, o.heads_r}, h);
  w.out_w = lin({G, o.heads_r * o.dim_r, h}, h);
  w.out_b = lin({G, o.heads_r * o.dim_r}, h);
  w.gate_logit = torch::full({G}, 0.5, opt.dtype(torch::kFloat32));
  return w;
}

// Matrix-product FLOPs of one pass (forward), all G branches: 2 * tokens * weights.
double fuser_flops(const Options& o, int64_t G) {
  const double h = o.hidden, m = o.inter, io = o.heads_s * o.dim_s + o.heads_r * o.dim_r;
  const double per_token = io * h + 2 * h * m + 2 * h * h + (o.fuser_layers - 2) * 2 * h * m +
                           o.heads_r * h + o.heads_r * o.dim_r * h;
  return 2.0 * o.tokens * G * per_token;
}

Tensor ffn(const Tensor& x, const Tensor& norm, const Tensor& w1, const Tensor& w2, bool fused) {
  if (fused) {
    auto a = torch::bmm(k::rms_norm(x, norm), w1.transpose(1, 2));
    return torch::baddbmm(x, k::gelu_residual(Tensor(), a), w2.transpose(1, 2));  // x + W2 gelu
  }
  auto hidden = torch::gelu(torch::bmm(k::rms_norm_unfused(x, norm), w1.transpose(1, 2)));
  return x + torch::bmm(hidden, w2.transpose(1, 2));  // as modules/fuser.cpp
}

// One fusion pass: x (G, T, in+out) tokens, target (G, 1, Hr, T, Dr) receiver cache, u noise.
Tensor fuser_pass(const Options& o, const Weights& w, const Tensor& x, const Tensor& target,
                  const Tensor& u, bool fused) {
  const int64_t G = x.size(0), T = x.size(1);
  auto lin = [](const Tensor& v, const Tensor& wt, const Tensor& b) {
    return torch::baddbmm(b.unsqueeze(1), v, wt.transpose(1, 2));
  };
  auto z = ffn(lin(x, w.in_w, w.in_b), w.norm[0], w.w1[0], w.w2[0], fused);
  auto p = z;
  for (size_t j = 2; j < w.norm.size(); ++j) p = ffn(p, w.norm[j], w.w1[j], w.w2[j], fused);
  p = lin(p, w.out_w, w.out_b);                                          // (G, T, Hr*Dr)
  auto s = lin(ffn(z, w.norm[1], w.w1[1], w.w2[1], fused), w.head_w, w.head_b);  // (G, T, Hr)
  auto p_heads = p.view({G, 1, T, o.heads_r, o.dim_r}).permute({0, 1, 3, 2, 4});
  auto w_heads = s.view({G, 1, T, o.heads_r}).permute({0, 1, 3, 2});
  const double tau = 0.5;
  return fused ? k::gated_combine(target, w_heads, p_heads, w.gate_logit, u, tau, false)
               : k::gated_combine_unfused(target, w_heads, p_heads, w.gate_logit, u, tau, false);
}

void print_row(const char* what, double unfused_ms, double fused_ms) {
  std::printf("  %-34s unfused %9.3f ms   fused %9.3f ms   speed-up %5.2fx\n", what, unfused_ms,
              fused_ms, unfused_ms / fused_ms);
}

void bench_ops(const Options& o, torch::TensorOptions opt, int iters, bool cuda, int64_t G) {
  const int64_t T = o.tokens, h = o.hidden;
  std::printf("ops alone (G = %lld groups, T = %lld tokens, %s):\n", (long long)G, (long long)T,
              cuda ? "CUDA kernels vs LibTorch ops" : "CPU references vs LibTorch ops");
  auto x = torch::randn({G, T, h}, opt).requires_grad_(true);
  auto nw = torch::ones({G, h}, opt).requires_grad_(true);
  auto a = torch::randn({G, T, o.inter}, opt).requires_grad_(true);
  auto target = torch::randn({G, 1, o.heads_r, T, o.dim_r}, opt).requires_grad_(true);
  auto p_tok = torch::randn({G, 1, T, o.heads_r, o.dim_r}, opt).requires_grad_(true);
  auto w_tok = torch::randn({G, 1, T, o.heads_r}, opt).requires_grad_(true);
  auto gl = torch::zeros({G}, opt.dtype(torch::kFloat32)).requires_grad_(true);
  auto u = torch::rand({G, 1, o.heads_r, T}, opt.dtype(torch::kFloat32));
  auto gc = [&](bool fused) {
    auto p = p_tok.permute({0, 1, 3, 2, 4});
    auto w = w_tok.permute({0, 1, 3, 2});
    return fused ? k::gated_combine(target, w, p, gl, u, 0.5, false)
                 : k::gated_combine_unfused(target, w, p, gl, u, 0.5, false);
  };
  struct OpCase {
    const char* name;
    std::function<Tensor(bool)> f;
  };
  std::vector<OpCase> cases{
      {"rms_norm (G,T,h)", [&](bool f) { return f ? k::rms_norm(x, nw) : k::rms_norm_unfused(x, nw); }},
      {"gelu_residual (G,T,m)",
       [&](bool f) { return f ? k::gelu_residual(x, a.narrow(2, 0, h)) : k::gelu_residual_unfused(x, a.narrow(2, 0, h)); }},
      {"gated_combine (G,1,Hr,T,Dr)", gc},
  };
  for (auto& c : cases) {
    torch::NoGradGuard ng;
    const std::string name = std::string(c.name) + " fwd";
    print_row(name.c_str(), time_ms([&] { c.f(false); }, iters, cuda),
              time_ms([&] { c.f(true); }, iters, cuda));
  }
  for (auto& c : cases) {
    auto step = [&](bool f) {
      auto y = c.f(f);
      y.backward(torch::ones_like(y));
    };
    const std::string name = std::string(c.name) + " fwd+bwd";
    print_row(name.c_str(), time_ms([&] { step(false); }, iters, cuda),
              time_ms([&] { step(true); }, iters, cuda));
  }
}

int run(int argc, char** argv) {
  Options o = parse(argc, argv);
  const bool have_cuda = torch::cuda::is_available();
  C2C_CHECK(o.device == "auto" || o.device == "cpu" || o.device == "cuda",
            "bench_kernels: --device must be auto, cpu or cuda, got '", o.device, "'");
  C2C_CHECK(o.device != "cuda" || have_cuda, "bench_kernels: --device cuda but no CUDA device"
            "\nHINT: this LibTorch may be CPU-only; run scripts/gpu_check.sh on a GPU machine");
  const bool cuda = o.device == "cuda" || (o.device == "auto" && have_cuda);
  if (o.layers < 0) o.layers = cuda ? 28 : 2;
  const int iters = o.iters > 0 ? o.iters : (cuda ? 20 : 2);
  const auto dtype = cuda ? torch::kBFloat16 : torch::kFloat32;
  auto opt = torch::TensorOptions().dtype(dtype).device(cuda ? torch::kCUDA : torch::kCPU);
  const int64_t G = 2 * o.layers;

  std::printf("bench_kernels: %s, %s; CUDA kernels in this build: %s (launchers compiled: %s)\n",
              cuda ? "CUDA" : "CPU", cuda ? "bf16" : "fp32",
              k::cuda_kernels_available() ? "yes" : "no", k::built_with_cuda() ? "yes" : "no");
  if (cuda && !k::cuda_kernels_available())
    std::printf("  NOTE: no CUDA kernels built in: the 'fused' path falls back to LibTorch ops\n");
  std::printf("fuser: %lld receiver layers x 2 branches, %lld tokens, h %lld, m %lld, Hr %lld, "
              "Dr %lld, Hs %lld, Ds %lld, L %lld; %d timed iterations\n",
              (long long)o.layers, (long long)o.tokens, (long long)o.hidden, (long long)o.inter,
              (long long)o.heads_r, (long long)o.dim_r, (long long)o.heads_s, (long long)o.dim_s,
              (long long)o.fuser_layers, iters);

  torch::manual_seed(0);
  bench_ops(o, opt, iters, cuda, G);

  auto w = make_weights(o, G, opt);
  const int64_t io = o.heads_s * o.dim_s + o.heads_r * o.dim_r;
  auto x = torch::randn({G, o.tokens, io}, opt);
  auto target = torch::randn({G, 1, o.heads_r, o.tokens, o.dim_r}, opt);
  auto u = torch::rand({G, 1, o.heads_r, o.tokens}, opt.dtype(torch::kFloat32));
  const double flops = fuser_flops(o, G);
  std::printf("fusion of one prompt (%.1f GFLOP of matrix products per forward):\n", flops / 1e9);
  double fwd[2], train[2];
  {
    torch::NoGradGuard ng;
    for (int f = 0; f < 2; ++f)
      fwd[f] = time_ms([&] { fuser_pass(o, w, x, target, u, f == 1); }, iters, cuda);
  }
  for (auto& t : w.all()) t.requires_grad_(true);
  for (int f = 0; f < 2; ++f)
    train[f] = time_ms(
        [&] {
          auto y = fuser_pass(o, w, x, target, u, f == 1);
          y.backward(torch::ones_like(y));
        },
        iters, cuda);
  for (int f = 0; f < 2; ++f) {
    const double tflops = flops / (fwd[f] * 1e-3) / 1e12;
    std::printf("  forward  %-8s %9.3f ms  %7.2f TFLOP/s", f ? "fused" : "unfused", fwd[f], tflops);
    if (cuda) std::printf("  %5.1f%% of %.0f TFLOP/s bf16 peak", 100 * tflops / o.peak_tflops,
                          o.peak_tflops);
    std::printf("\n");
  }
  for (int f = 0; f < 2; ++f) {
    const double tflops = 3 * flops / (train[f] * 1e-3) / 1e12;  // backward ~ 2x forward
    std::printf("  training %-8s %9.3f ms  %7.2f TFLOP/s", f ? "fused" : "unfused", train[f],
                tflops);
    if (cuda) std::printf("  %5.1f%% of peak", 100 * tflops / o.peak_tflops);
    std::printf("\n");
  }
  std::printf("  speed-up of the fused path: forward %.2fx, training step %.2fx\n",
              fwd[0] / fwd[1], train[0] / train[1]);
  if (!cuda)
    std::printf("  (CPU: the matrix products dominate and the fused path runs plain-loop references;"
                " the GPU figures are the ones that matter)\n");
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
