// Benchmark (not a test): prefill and decode tokens per second and peak memory of one model.
//   build/bench_llm MODEL_DIR [--prompt-tokens 128] [--new-tokens 64] [--batch 1] [--repeats 3]
//   build/bench_llm --preset bench-25m     (writes a random ~25M-parameter model to a temp folder)
//   --threads 1,2 measures each thread count interleaved in one run and prints the speed-ups.
// Beside each prefill rate: its weight FLOPs per second (2 x the layers' projection weights per
// token, the LM head on the last token only, attention not counted) and, measured in the same
// run at the same thread count, this machine's plain GEMM rate on the prefill's own product
// shapes (B * T tokens through q, k, v, o, gate, up and down), so each figure is also a ratio.
#include <chrono>
#include <filesystem>
#include <iostream>

#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "modules/generate.h"
#include "modules/llm.h"
#include "modules/random_model.h"
#include "trainer/args.h"

using namespace c2c;

namespace {

// One layer's seven projections as (in, out): q, k, v, o, gate, up, down.
std::vector<std::pair<int64_t, int64_t>> layer_shapes(const ModelConfig& c) {
  const int64_t h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim,
                m = c.intermediate_size;
  return {{h, q}, {h, kv}, {h, kv}, {q, h}, {h, m}, {h, m}, {m, h}};
}

// GFLOP/s of torch::linear over one layer's seven projection shapes at `tokens` rows (the best
// of `reps` passes over all seven).
double plain_gemm_gflops(const ModelConfig& c, int64_t tokens, int64_t reps) {
  const auto shapes = layer_shapes(c);
  std::vector<torch::Tensor> xs, ws;
  double flop = 0;
  for (const auto& [in, out] : shapes) {
    xs.push_back(torch::randn({tokens, in}));
    ws.push_back(torch::randn({out, in}));
    flop += 2.0 * static_cast<double>(tokens * in * out);
  }
  torch::NoGradGuard no_grad;
  double best = 0;
  for (int64_t r = 0; r <= reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < shapes.size(); ++i) torch::linear(xs[i], ws[i]);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::max(best, flop / s / 1e9);  // r == 0 warms up
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    cli::Args args("bench_llm", std::vector<std::string>(argv + 1, argv + argc), {});
    const int64_t prompt_tokens = args.integer("prompt-tokens", 128);
    const int64_t new_tokens = args.integer("new-tokens", 64);
    const int64_t batch = args.integer("batch", 1);
    const int64_t repeats = args.integer("repeats", 3);
    const std::vector<int> thread_counts = compat::parse_thread_list(args.str("threads", "0"), "bench_llm: --threads");
    std::string dir = args.positional().empty() ? "" : args.positional()[0];
    const std::string preset = args.str("preset", "");
    args.finish();
    compat::keep_freed_host_memory();
    compat::set_threads(thread_counts[0]);
    if (dir.empty()) {
      C2C_CHECK(!preset.empty(), "usage: bench_llm MODEL_DIR | --preset NAME [--prompt-tokens N] "
                                 "[--new-tokens N] [--batch B] [--repeats R]");
      dir = (std::filesystem::temp_directory_path() / ("c2c_bench_" + preset)).string();
      if (!std::filesystem::exists(dir + "/model.safetensors"))
        write_random_model(dir, random_model_preset(preset), 0);
    }
    auto model = LLM::load(dir);
    const auto& c = model->config();
    std::cout << "model " << dir << ": " << c.model_type << ", " << c.num_parameters() / 1e6
              << "M parameters, " << c.num_layers << " layers, hidden " << c.hidden_size
              << "; LibTorch " << compat::torch_version() << ", " << torch::get_num_threads()
              << " threads\n";
    torch::manual_seed(0);
    std::vector<std::vector<int64_t>> prompts(batch);
    for (auto& p : prompts) {
      auto r = torch::randint(3, c.vocab_size, {prompt_tokens}, torch::kInt64);
      p.assign(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + prompt_tokens);
    }
    GenerateOptions opts;
    opts.max_new_tokens = new_tokens;
    // Every thread count interleaved repeat by repeat (after one warm-up each), best of the repeats.
    std::vector<double> best_prefill(thread_counts.size(), 0), best_decode(thread_counts.size(), 0),
        gemm(thread_counts.size(), 0);
    for (int64_t r = 0; r <= repeats; ++r)
      for (size_t i = 0; i < thread_counts.size(); ++i) {
        torch::set_num_threads(thread_counts[i]);
        auto res = generate(*model, prompts, opts);
        gemm[i] = std::max(gemm[i], plain_gemm_gflops(c, batch * prompt_tokens, 2));
        if (r == 0) continue;  // warm-up
        best_prefill[i] = std::max(best_prefill[i], res.timings.prefill_tokens / res.timings.prefill_s);
        best_decode[i] = std::max(best_decode[i], res.timings.decode_tokens / res.timings.decode_s);
      }
    // Weight FLOPs of one prefill token (the LM head once per prompt, on its last token).
    double layer_weights = 0;
    for (const auto& [in, out] : layer_shapes(c)) layer_weights += static_cast<double>(in * out);
    const double flop_per_token = 2.0 * (static_cast<double>(c.num_layers) * layer_weights +
                                         static_cast<double>(c.hidden_size * c.vocab_size) / prompt_tokens);
    std::cout << "batch " << batch << ", prompt " << prompt_tokens << " tokens, " << new_tokens
              << " new tokens (best of " << repeats << ")\n";
    for (size_t i = 0; i < thread_counts.size(); ++i)
      std::cout << "  " << thread_counts[i] << " thread(s): prefill " << static_cast<int64_t>(best_prefill[i])
                << " tokens/s (" << best_prefill[i] * flop_per_token / 1e9 << " GFLOP/s, "
                << 100 * best_prefill[i] * flop_per_token / 1e9 / gemm[i] << "% of the plain GEMM rate "
                << gemm[i] << " GFLOP/s on its shapes), decode " << static_cast<int64_t>(best_decode[i])
                << " tokens/s\n";
    for (size_t i = 1; i < thread_counts.size(); ++i)
      std::cout << "  speed at " << thread_counts[i] << " threads over " << thread_counts[0]
                << " (same run): prefill " << best_prefill[i] / best_prefill[0] << "x, decode "
                << best_decode[i] / best_decode[0] << "x\n";
    std::cout << "  peak resident memory: " << compat::peak_host_memory_bytes() / (1 << 20) << " MiB\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_llm: error: " << e.what() << "\n";
    return 1;
  }
}
