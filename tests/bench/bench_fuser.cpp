// Fuser benchmark: one prompt's KV fusion through every receiver layer at the published widths
// (Qwen3-0.6B <- Qwen2.5-0.5B: h = m = 1024, H_r = 8, D_r = 128, H_s = 2, D_s = 64, L = 3,
// 28 layers, 170 tokens), the stacked batched forward against a loop of per-layer calls, same
// weights, same run, inference mode. Prints ms, the ratio and GFLOP/s (matrix-product FLOPs),
// and, measured in the same run, this machine's plain GEMM rate on the fuser's own product
// shapes (the same products alone, nothing else; the faster of one bmm per shape and one mm per
// layer and branch): the fraction of it each path reaches.
//
// usage: bench_fuser [--tokens 170] [--layers 28] [--batch 1] [--reps 3] [--threads 0]
//                    [--device auto|cpu|cuda] [--dtype auto|float32|bfloat16] [--peak-tflops T]
//                    [--ops auto|reference|torch]
// --device defaults to cpu; --peak-tflops (the device's dense peak for the dtype, e.g. 989 for an
// H100/H200 in bf16) adds the fraction of peak the batched pass reaches.
#include <chrono>
#include <iostream>

#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "modules/device.h"
#include "modules/fuser.h"
#include "modules/fuser_checkpoint.h"
#include "trainer/args.h"

using namespace c2c;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Matrix-product FLOPs of one fused pass, both branches, all layers.
double fuser_flops(const FuserConfig& c, int64_t layers, int64_t tokens) {
  const double h = c.hidden_dim, m = c.intermediate_dim, in = c.in_dim(), out = c.out_dim();
  const double per_token = (in + out) * h + 2 * h * m + 2 * h * h + c.target_num_heads * h +
                           (c.num_layers - 2) * 2 * h * m + out * h;
  return 2.0 * 2.0 * per_token * tokens * layers;
}

// The fuser's matrix products alone: x (G, T, k) times W (G, n, k) transposed for every (k, n)
// of one pass, G = 2 x layers, through kernels::grouped_linear under one schedule. Returns the
// best GFLOP/s of `reps`.
double plain_gemm_gflops(const FuserConfig& c, int64_t layers, int64_t tokens, int64_t reps,
                         torch::Device device, torch::Dtype dtype, kernels::GroupedGemm how) {
  const int64_t G = 2 * layers, h = c.hidden_dim, m = c.intermediate_dim;
  std::vector<std::pair<int64_t, int64_t>> shapes{{c.in_dim() + c.out_dim(), h}};
  for (int64_t j = 0; j < c.num_layers - 1; ++j) {  // mlp1 and the L-2 projection blocks
    shapes.emplace_back(h, m);
    shapes.emplace_back(m, h);
  }
  shapes.emplace_back(h, h);  // the scalar branch's block
  shapes.emplace_back(h, h);
  shapes.emplace_back(h, c.target_num_heads);
  shapes.emplace_back(h, c.out_dim());
  auto opt = torch::TensorOptions().device(device).dtype(dtype);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> operands;
  double flops = 0;
  for (auto [k, n] : shapes) {
    operands.emplace_back(torch::randn({G, tokens, k}, opt), torch::randn({G, n, k}, opt));
    flops += 2.0 * G * tokens * k * n;
  }
  torch::NoGradGuard no_grad;
  const kernels::GroupedGemm previous = kernels::grouped_gemm();
  kernels::set_grouped_gemm(how);
  double best = 1e30;
  for (int64_t r = 0; r <= reps; ++r) {  // the first is a warm-up
    const double t0 = now_ms();
    torch::Tensor s = torch::zeros({}, opt);
    for (auto& [x, w] : operands) s = s + kernels::grouped_linear(x, w).select(1, 0).sum();
    s.item<double>();
    if (r > 0) best = std::min(best, now_ms() - t0);
  }
  kernels::set_grouped_gemm(previous);
  return flops / 1e9 / (best / 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    cli::Args args("bench_fuser", std::vector<std::string>(argv + 1, argv + argc), {});
    const int64_t N = args.integer("tokens", 170), Lf = args.integer("layers", 28);
    const int64_t B = args.integer("batch", 1), reps = args.integer("reps", 3);
    const int64_t threads = args.integer("threads", 0);
    const torch::Device device = resolve_device(args.str("device", "cpu"), "bench_fuser: --device");
    const torch::Dtype dtype = resolve_dtype(args.str("dtype", "auto"), device, "bench_fuser: --dtype");
    const double peak_tflops = args.number("peak-tflops", 0.0);
    const kernels::ScopedOpPath ops(kernels::parse_op_path(args.str("ops", "auto")));
    args.finish();
    compat::keep_freed_host_memory();
    compat::set_threads(threads);

    FuserConfig c;  // the published widths are the defaults
    StackedFuser fuser(c, Lf, /*seed=*/0);
    fuser->to(device, dtype);
    fuser->eval();
    {
      torch::NoGradGuard g;
      fuser->named_parameters()["gate_logit"].fill_(1.0);  // gates open: the full computation
    }
    torch::manual_seed(0);
    auto sk = torch::randn({Lf, B, c.source_num_heads, N, c.source_head_dim}).to(device, dtype);
    auto sv = torch::randn_like(sk), rk = torch::randn({Lf, B, c.target_num_heads, N, c.target_head_dim}).to(device, dtype);
    auto rv = torch::randn_like(rk);
    torch::NoGradGuard no_grad;

    auto batched = [&] { return fuser->forward(sk, sv, rk, rv).key.sum(); };
    auto per_layer = [&] {
      torch::Tensor s = torch::zeros({}, sk.options());
      for (int64_t i = 0; i < Lf; ++i) s = s + fuser->forward_layer(i, sk[i], sv[i], rk[i], rv[i]).key.sum();
      return s;
    };
    // Same numbers from both paths (a check that the benchmark compares like with like).
    const double a = batched().item<double>(), b = per_layer().item<double>();
    C2C_CHECK(std::abs(a - b) <= 1e-3 * std::abs(a) + 1e-2, "batched and per-layer differ: ", a,
              " vs ", b);

    // The per-layer loop and the stacked batched pass under every CPU schedule of the grouped
    // products (kernels::grouped_gemm), interleaved repeat by repeat; the best of the repeats.
    using GG = kernels::GroupedGemm;
    std::vector<GG> schedules{GG::automatic};
    if (!device.is_cuda()) schedules = {GG::automatic, GG::per_group, GG::group_parallel, GG::batched};
    auto once = [&](auto&& fn) {
      const double t0 = now_ms();
      fn().template item<double>();  // .item() waits for the device
      return now_ms() - t0;
    };
    double loop_best = 1e30;
    std::vector<double> batch_best(schedules.size(), 1e30);
    for (int64_t r = 0; r < reps; ++r) {
      loop_best = std::min(loop_best, once(per_layer));
      for (size_t i = 0; i < schedules.size(); ++i) {
        const GG previous = kernels::grouped_gemm();
        kernels::set_grouped_gemm(schedules[i]);
        batch_best[i] = std::min(batch_best[i], once(batched));
        kernels::set_grouped_gemm(previous);
      }
    }
    const double gflop = fuser_flops(c, Lf, B * N) / 1e9;
    std::vector<double> gemm(schedules.size());
    double gemm_rate = 0;
    for (size_t i = 0; i < schedules.size(); ++i) {
      gemm[i] = plain_gemm_gflops(c, Lf, B * N, reps, device, dtype,
                                  i == 0 ? GG::automatic : schedules[i]);
      if (i > 0 || schedules.size() == 1) gemm_rate = std::max(gemm_rate, gemm[i]);
    }
    const double batch_auto = batch_best[0];
    std::cout << "fuser benchmark: " << Lf << " layers x " << B << " x " << N
              << " tokens, h=m=" << c.hidden_dim << ", L=" << c.num_layers << ", H_r=" << c.target_num_heads
              << " D_r=" << c.target_head_dim << " <- H_s=" << c.source_num_heads
              << " D_s=" << c.source_head_dim << ", " << dtype_name(dtype) << " on " << device << ", "
              << torch::get_num_threads() << " threads, LibTorch " << TORCH_VERSION << "\n"
              << "  parameters " << c.parameters_per_layer() * Lf / 1e6 << " M, "
              << gflop << " GFLOP per pass (K and V)\n"
              << "  op path " << kernels::op_path_name(kernels::op_path()) << "; auto schedule here: "
              << kernels::grouped_gemm_name(kernels::grouped_gemm_choice(2 * Lf, B * N, c.hidden_dim, c.hidden_dim))
              << "\n  plain GEMM rate on these shapes (same run, the best schedule): " << gemm_rate << " GFLOP/s (";
    for (size_t i = 0; i < schedules.size(); ++i)
      std::cout << (i ? ", " : "") << kernels::grouped_gemm_name(schedules[i]) << " " << gemm[i];
    std::cout << ")\n  per-layer loop : best " << loop_best << " ms, " << gflop / (loop_best / 1e3)
              << " GFLOP/s, " << 100 * gflop / (loop_best / 1e3) / gemm_rate << "% of the GEMM rate\n";
    for (size_t i = 0; i < schedules.size(); ++i)
      std::cout << "  batched stacked (" << kernels::grouped_gemm_name(schedules[i]) << "): best "
                << batch_best[i] << " ms, " << gflop / (batch_best[i] / 1e3) << " GFLOP/s, "
                << 100 * gflop / (batch_best[i] / 1e3) / gemm_rate << "% of the GEMM rate, "
                << loop_best / batch_best[i] << "x the loop's speed\n";
    if (peak_tflops > 0)
      std::cout << "  batched: " << 100.0 * gflop / (batch_auto / 1e3) / (peak_tflops * 1e3)
                << "% of the " << peak_tflops << " TFLOP/s peak\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
