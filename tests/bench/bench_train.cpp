// Benchmark (not a test): one fuser training step against a plain receiver forward+backward of
// the same batch, on random models (by default receiver ~25M parameters, Qwen3-style; sharer
// ~20M, Llama-style). Prints tokens per second and peak memory after each, and with
// --peak-tflops the model FLOPs utilisation of the fuser step. The fuser step is timed twice in
// the same run: with the kernels (the default op path: CUDA kernels on a GPU, the per-op faster
// CPU implementation on the CPU) and without (every fuser op in plain LibTorch ops).
//   build/bench_train [--batch 4] [--prompt 96] [--response 32] [--hidden 256] [--repeats 3]
//                     [--threads N]
//                     [--receiver-preset bench-25m] [--sharer-preset bench-20m-llama]
//                     [--device cpu|cuda] [--dtype auto|float32|bfloat16] [--peak-tflops T]
// The published shapes on a GPU: --receiver-preset qwen3-0.6b --sharer-preset qwen2.5-0.5b
// --hidden 1024 --prompt 256 --response 256 --device cuda (the 478M-parameter fuser).
#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "data/paired_dataset.h"
#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "modules/device.h"
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

double seconds(const std::function<void()>& f, int repeats, torch::Device device) {
  f();  // warm-up
  compat::synchronize(device);
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    compat::synchronize(device);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Weight-matrix FLOPs of a decoder's forward over `tokens` tokens (2 per multiply-add), without
// the input embedding (a lookup) and the LM head (counted apart, on the loss tokens only).
double decoder_flops(const ModelConfig& c, double tokens) {
  const double embed = static_cast<double>(c.vocab_size) * c.hidden_size;
  const double head = c.tie_word_embeddings ? 0.0 : embed;
  return 2.0 * (static_cast<double>(c.num_parameters()) - embed - head) * tokens;
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
    const std::string rpreset = args.str("receiver-preset", "bench-25m");
    const std::string spreset = args.str("sharer-preset", "bench-20m-llama");
    const std::string device_name = args.str("device", "cpu"), dtype_name = args.str("dtype", "auto");
    const double peak_tflops = args.number("peak-tflops", 0.0);
    const int64_t threads = args.integer("threads", 0);
    args.finish();
    if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
    const torch::Device device = resolve_device(device_name, "bench_train: --device");
    resolve_dtype(dtype_name, device, "bench_train: --dtype");  // checked here, applied by the recipe
    const std::string rdir = ensure_model(rpreset), sdir = ensure_model(spreset);
    Recipe recipe = Recipe::from_yaml_text(
        "receiver: " + rdir + "\nsharers: [" + sdir + "]\ndata: {train: unused}\n", "bench",
        {"fuser.hidden_dim=" + std::to_string(hidden), "fuser.intermediate_dim=" + std::to_string(hidden),
         std::string("train.activation_checkpointing=") + (checkpointing ? "true" : "false"),
         "train.device=" + std::string(device.is_cuda() ? "cuda" : "cpu"), "train.dtype=" + dtype_name});
    FuserTrainer trainer(recipe);
    std::vector<PairedSample> batch;
    torch::manual_seed(0);
    for (int64_t b = 0; b < B; ++b) {
      PairedSample s;
      const int64_t vocab = std::min<int64_t>(32000, trainer.pipeline().receiver()->config().vocab_size);
      auto ids = torch::randint(3, vocab, {P + R}, torch::kInt64);
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
              << (device.is_cuda() ? "on " + device.str() : std::to_string(torch::get_num_threads()) + " threads")
              << "\n";

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
        rx.forward_hidden(ids.to(device), mask.to(device), cache);
      }
      std::vector<torch::Tensor> leaves;
      for (int64_t l = 0; l < cache.num_layers(); ++l) {
        auto d = torch::zeros_like(cache.key(l)).requires_grad_(true);
        leaves.push_back(d);
        cache.set_slice(l, 0, cache.key(l) + d, cache.value(l) + d);
      }
      auto [rids_cpu, rmask_cpu] = pad_batch(response);
      auto rids = rids_cpu.to(device), rmask = rmask_cpu.to(device);
      auto h = rx.forward_hidden(rids, rmask, cache);
      auto logits = rx.logits(h.narrow(1, 0, R));
      // The response section has R + 1 tokens; its first R positions predict the next R.
      auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                       rids.narrow(1, 1, R).reshape({-1}));
      loss.backward();
    };
    // Peak memory: the process's resident set on the CPU, the caching allocator's on a GPU.
    const std::string mem_what = device.is_cuda() ? "peak GPU memory " : "peak RSS ";
    auto peak_mib = [&] {
      return (device.is_cuda() ? compat::peak_device_memory_bytes(device) : compat::peak_host_memory_bytes()) /
             (1 << 20);
    };
    compat::reset_peak_device_memory(device);
    const double t_plain = only_fused ? 0.0 : seconds(plain, repeats, device);
    const size_t mem_plain = peak_mib();
    compat::reset_peak_device_memory(device);
    trainer.set_mode(true, 0);
    auto fused = [&] {
      auto ml = trainer.forward(batch, 1);
      (ml.loss_sum / ml.tokens).backward();
    };
    // With and without the kernels, interleaved repeat by repeat so both see the same machine.
    double t_fused = 1e30, t_unfused = 1e30;
    size_t mem_fused = 0;
    for (int r = 0; r < repeats; ++r) {
      t_fused = std::min(t_fused, seconds(fused, 1, device));
      mem_fused = std::max(mem_fused, peak_mib());
      const kernels::ScopedOpPath off(kernels::OpPath::torch);
      t_unfused = std::min(t_unfused, seconds(fused, 1, device));
    }
    // The fuser step's weight FLOPs: sharer prefill and receiver prefix prefill (forward), the
    // fuser over the P - 1 fused positions (forward + backward with weight gradients: 3x), the
    // receiver's response pass (forward + backward to its inputs only, frozen weights: 2x) and
    // its LM head on the R loss tokens (2x). Attention scores are not counted: a lower bound.
    const auto& sc = trainer.pipeline().sharers()[0]->config();
    int64_t fuser_params = 0;
    for (auto& p : trainer.named_parameters()) fuser_params += p.second.numel();
    const double fused_tokens = static_cast<double>(B * (P - 1)), resp = static_cast<double>(B * (R + 1));
    const double head = 2.0 * static_cast<double>(rc.vocab_size) * rc.hidden_size * B * R;
    const double step_flops = decoder_flops(sc, fused_tokens) + decoder_flops(rc, fused_tokens) +
                              3.0 * 2.0 * static_cast<double>(fuser_params) * fused_tokens +
                              2.0 * decoder_flops(rc, resp) + 2.0 * head;
    std::ostringstream mfu;
    mfu << step_flops / 1e12 << " TFLOP per step, " << step_flops / t_fused / 1e12 << " TFLOP/s";
    if (peak_tflops > 0) mfu << ", MFU " << 100.0 * step_flops / t_fused / (peak_tflops * 1e12) << "% of " << peak_tflops;
    const std::string kernels_line =
        "  without kernels (fuser ops in LibTorch ops): " + std::to_string(t_unfused * 1e3) +
        " ms; with / without: " + std::to_string(t_unfused / t_fused) + "x speed\n";
    if (only_fused) {
      std::cout << "fuser training step" << (checkpointing ? " (activation checkpointing)" : "") << ": "
                << t_fused * 1e3 << " ms, " << static_cast<int64_t>(tokens / t_fused) << " tokens/s, " << mem_what
                << mem_fused << " MiB\n  " << mfu.str() << "\n" << kernels_line;
      return 0;
    }
    std::cout << "plain receiver fwd+bwd: " << t_plain * 1e3 << " ms, " << static_cast<int64_t>(tokens / t_plain)
              << " tokens/s, " << mem_what << mem_plain << " MiB\n"
              << "fuser training step:    " << t_fused * 1e3 << " ms, " << static_cast<int64_t>(tokens / t_fused)
              << " tokens/s, " << mem_what << mem_fused << " MiB (includes sharer prefill)\n"
              << "  " << mfu.str() << "\n" << kernels_line
              << "ratio (fuser step / plain): " << t_fused / t_plain << "x time\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_train: error: " << e.what() << "\n";
    return 1;
  }
}
