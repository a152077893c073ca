// Benchmark (not a test): one fuser training step against a plain receiver forward+backward of
// the same batch, on random models (receiver ~25M parameters, Qwen3-style; sharer ~20M,
// Llama-style). Prints tokens per second and peak resident memory after each.
//   build/bench_train [--batch 4] [--prompt 96] [--response 32] [--hidden 256] [--repeats 3]
#include <chrono>
#include <filesystem>
#include <iostream>

#include "data/paired_dataset.h"
#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "modules/random_model.h"
#include "trainer/args.h"
#include "trainer/trainer.h"

using namespace c2c;

namespace {

std::string ensure_model(const std::string& preset) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("c2c_bench_" + preset)).string();
  if (!std::filesystem::exists(dir + "/model.safetensors")) write_random_model(dir, random_model_preset(preset), 0);
  return dir;
}

double seconds(const std::function<void()>& f, int repeats) {
  f();  // warm-up
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    compat::use_all_cores();
    cli::Args args("bench_train", std::vector<std::string>(argv + 1, argv + argc), {});
    const int64_t B = args.integer("batch", 4), P = args.integer("prompt", 96),
                  R = args.integer("response", 32), hidden = args.integer("hidden", 256);
    const int repeats = static_cast<int>(args.integer("repeats", 3));
    // --checkpointing 1: train.activation_checkpointing on; --only-fused 1: skip the plain pass so
    // the peak RSS is the fuser step's own (compare two runs).
    const bool checkpointing = args.integer("checkpointing", 0) != 0;
    const bool only_fused = args.integer("only-fused", 0) != 0;
    args.finish();
    const std::string rdir = ensure_model("bench-25m"), sdir = ensure_model("bench-20m-llama");
    Recipe recipe = Recipe::from_yaml_text(
        "receiver: " + rdir + "\nsharers: [" + sdir + "]\ndata: {train: unused}\n", "bench",
        {"fuser.hidden_dim=" + std::to_string(hidden), "fuser.intermediate_dim=" + std::to_string(hidden),
         std::string("train.activation_checkpointing=") + (checkpointing ? "true" : "false")});
    FuserTrainer trainer(recipe);
    std::vector<PairedSample> batch;
    torch::manual_seed(0);
    for (int64_t b = 0; b < B; ++b) {
      PairedSample s;
      auto ids = torch::randint(3, 32000, {P + R}, torch::kInt64);
      s.receiver_ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + P + R);
      s.prompt_length = P;
      s.loss_start = P;
      s.loss_end = P + R;
      PairedSharer sh;
      sh.ids.assign(s.receiver_ids.begin(), s.receiver_ids.begin() + P - 1);
      for (int64_t t = 0; t < P + R; ++t) sh.slot_of.push_back(t < P - 1 ? t : -1);
      s.sharers.push_back(sh);
      batch.push_back(s);
    }
    const double tokens = static_cast<double>(B * (P + R));
    const auto& rc = trainer.pipeline().receiver()->config();
    std::cout << "receiver " << rc.num_parameters() / 1e6 << "M, sharer "
              << trainer.pipeline().sharers()[0]->config().num_parameters() / 1e6 << "M, fuser "
              << [&] { int64_t n = 0; for (auto& p : trainer.named_parameters()) n += p.second.numel(); return n; }() / 1e6
              << "M parameters; batch " << B << " x (" << P << " prompt + " << R << " response) tokens, "
              << torch::get_num_threads() << " threads\n";

    // Plain receiver forward+backward of the same tokens: a zero delta that requires grad on the
    // prefix KV carries the backward through the same receiver path, without a fuser or sharer.
    const LLM& rx = *trainer.pipeline().receiver();
    auto plain = [&] {
      std::vector<std::vector<int64_t>> prefix, response;
      for (auto& s : batch) {
        prefix.emplace_back(s.receiver_ids.begin(), s.receiver_ids.begin() + P - 1);
        response.emplace_back(s.receiver_ids.begin() + P - 1, s.receiver_ids.end());
      }
      KVCache cache = rx.new_cache(B, 0);
      {
        torch::NoGradGuard ng;
        auto [ids, mask] = pad_batch(prefix);
        rx.forward_hidden(ids, mask, cache);
      }
      std::vector<torch::Tensor> leaves;
      for (int64_t l = 0; l < cache.num_layers(); ++l) {
        auto d = torch::zeros_like(cache.key(l)).requires_grad_(true);
        leaves.push_back(d);
        cache.set_slice(l, 0, cache.key(l) + d, cache.value(l) + d);
      }
      auto [rids, rmask] = pad_batch(response);
      auto h = rx.forward_hidden(rids, rmask, cache);
      auto logits = rx.logits(h.narrow(1, 0, R));
      // The response section has R + 1 tokens; its first R positions predict the next R.
      auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                       rids.narrow(1, 1, R).reshape({-1}));
      loss.backward();
    };
    const double t_plain = only_fused ? 0.0 : seconds(plain, repeats);
    const size_t mem_plain = compat::peak_host_memory_bytes();
    trainer.set_mode(true, 0);
    auto fused = [&] {
      auto ml = trainer.forward(batch, 1);
      (ml.loss_sum / ml.tokens).backward();
    };
    const double t_fused = seconds(fused, repeats);
    const size_t mem_fused = compat::peak_host_memory_bytes();
    if (only_fused) {
      std::cout << "fuser training step" << (checkpointing ? " (activation checkpointing)" : "") << ": "
                << t_fused * 1e3 << " ms, " << static_cast<int64_t>(tokens / t_fused) << " tokens/s, peak RSS "
                << mem_fused / (1 << 20) << " MiB\n";
      return 0;
    }
    std::cout << "plain receiver fwd+bwd: " << t_plain * 1e3 << " ms, " << static_cast<int64_t>(tokens / t_plain)
              << " tokens/s, peak RSS " << mem_plain / (1 << 20) << " MiB\n"
              << "fuser training step:    " << t_fused * 1e3 << " ms, " << static_cast<int64_t>(tokens / t_fused)
              << " tokens/s, peak RSS " << mem_fused / (1 << 20) << " MiB (includes sharer prefill)\n"
              << "ratio (fuser step / plain): " << t_fused / t_plain << "x time\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_train: error: " << e.what() << "\n";
    return 1;
  }
}
