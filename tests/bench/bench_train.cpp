// Benchmark (not a test): one fuser training step against a plain receiver forward+backward of
// the same batch, on random models (by default receiver ~25M parameters, Qwen3-style; sharer
// ~20M, Llama-style). Prints tokens per second and peak memory after each, and with
// --peak-tflops the model FLOPs utilisation of the fuser step. The fuser step is timed twice in
// the same run: with the kernels (the default op path: CUDA kernels on a GPU, the per-op faster
// CPU implementation on the CPU) and without (every fuser op in plain LibTorch ops).
//   build/bench_train [--batch 4] [--prompt 96] [--response 32] [--hidden 256] [--repeats 3]
//                     [--threads N[,N...]] [--trace FILE] [--keep-freed-memory 1]
//                     [--receiver-preset bench-25m] [--sharer-preset bench-20m-llama]
//                     [--device cpu|cuda] [--dtype auto|float32|bfloat16] [--peak-tflops T]
// --threads 1,2 measures every figure at each thread count, interleaved in one run, and prints
// the speed-ups (0: every core). --keep-freed-memory 0 leaves glibc's default of handing freed
// memory back (compat::keep_freed_host_memory). --trace FILE writes LibTorch's chrome://tracing profile of one fusion and one training step.
// The published shapes on a GPU: --receiver-preset qwen3-0.6b --sharer-preset qwen2.5-0.5b
// --hidden 1024 --prompt 256 --response 256 --device cuda (the 478M-parameter fuser).
#include <chrono>
#include <filesystem>
#include <iostream>
#include <limits>
#include <sstream>

#include <torch/csrc/autograd/profiler_legacy.h>

#include "data/paired_dataset.h"
#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "modules/device.h"
#include "modules/fused_pipeline.h"
#include "modules/fuser.h"
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
    const std::vector<int> thread_counts = compat::parse_thread_list(args.str("threads", "0"), "bench_train: --threads");
    const std::string trace = args.str("trace", "");
    const bool keep_freed = args.integer("keep-freed-memory", 1) != 0;
    args.finish();
    if (keep_freed) compat::keep_freed_host_memory();  // as c2c's main() does
    torch::set_num_threads(thread_counts[0]);
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
              << (device.is_cuda() ? "on " + device.str() : "CPU") << "\n";

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
    trainer.set_mode(true, 0);
    auto fused = [&] {
      auto ml = trainer.forward(batch, 1);
      (ml.loss_sum / ml.tokens).backward();
    };
    // The fuser step's weight FLOPs: sharer prefill and receiver prefix prefill (forward), the
    // fuser over the P - 1 fused positions (forward + backward with weight gradients: 3x), the
    // receiver's response pass (forward + backward to its inputs only, frozen weights: 2x) and
    // its LM head on the R loss tokens (2x). Attention scores are not counted: a lower bound.
    // The plain pass is the same without the sharer and the fuser.
    const auto& sc = trainer.pipeline().sharers()[0]->config();
    int64_t fuser_params = 0;
    for (auto& p : trainer.named_parameters()) fuser_params += p.second.numel();
    const double fused_tokens = static_cast<double>(B * (P - 1)), resp = static_cast<double>(B * (R + 1));
    const double head = 2.0 * static_cast<double>(rc.vocab_size) * rc.hidden_size * B * R;
    const double sharer_flops = decoder_flops(sc, fused_tokens);
    const double fuser_flops = 3.0 * 2.0 * static_cast<double>(fuser_params) * fused_tokens;
    const double plain_flops = decoder_flops(rc, fused_tokens) + 2.0 * decoder_flops(rc, resp) + 2.0 * head;
    const double step_flops = plain_flops + sharer_flops + fuser_flops;

    // The step's two extra parts timed alone: the sharer's prefill (no grad), and the fusion of
    // the prefilled caches (fuse_into, forward and backward of a sum of the fused K/V).
    std::vector<SharerInput> sharer_inputs(1);
    std::vector<std::vector<int64_t>> prefixes;
    for (const auto& smp : batch) {
      const auto& sh = smp.sharers[0];
      sharer_inputs[0].ids.push_back(sh.ids);
      sharer_inputs[0].slot_of.emplace_back(sh.slot_of.begin(), sh.slot_of.begin() + P - 1);
      prefixes.emplace_back(smp.receiver_ids.begin(), smp.receiver_ids.begin() + P - 1);
    }
    const FusedPipeline& pipe = trainer.pipeline();
    auto prefill_sharer = [&] {
      torch::NoGradGuard ng;
      return pipe.prefill_sharers(sharer_inputs);
    };
    const auto sharer_caches = prefill_sharer();
    KVCache prefix_cache = rx.new_cache(B, 0);
    {
      torch::NoGradGuard ng;
      auto [ids, mask] = pad_batch(prefixes);
      rx.forward_hidden(ids.to(device), mask.to(device), prefix_cache);
    }
    auto fusion = [&] {
      KVCache c = prefix_cache;
      pipe.fuse_into(c, sharer_caches, sharer_inputs);
      auto total = torch::zeros({}, c.key(0).options().dtype(torch::kFloat32));
      for (int64_t l = 0; l < c.num_layers(); ++l) total = total + c.key(l).sum() + c.value(l).sum();
      total.backward();
    };

    // Every measurement at every thread count, interleaved repeat by repeat (after one warm-up
    // round) so that all of them see the same machine; the best of the repeats is kept.
    struct Times {
      double plain = 1e30, fused = 1e30, unfused = 1e30, sharer = 1e30, fusion = 1e30, unchunked = 1e30;
      std::vector<double> by_schedule;  // the step under each CPU schedule of the grouped products
      size_t mem_plain = 0, mem_fused = 0;
      int64_t faults = std::numeric_limits<int64_t>::max();  // minor page faults of one step
    };
    using GG = kernels::GroupedGemm;
    const std::vector<GG> schedules = device.is_cuda() ? std::vector<GG>{}
                                                       : std::vector<GG>{GG::per_group, GG::group_parallel, GG::batched};
    std::vector<Times> times(thread_counts.size());
    const StackedFuser& fuser0 = trainer.pipeline().fusers().sharers[0].fuser;
    auto once = [&](const std::function<void()>& f) {
      compat::synchronize(device);
      auto t0 = std::chrono::steady_clock::now();
      f();
      compat::synchronize(device);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    for (int r = 0; r <= repeats; ++r) {
      for (size_t i = 0; i < thread_counts.size(); ++i) {
        if (!device.is_cuda()) torch::set_num_threads(thread_counts[i]);
        Times& t = times[i];
        auto keep = [&](double& best, double v) { if (r > 0) best = std::min(best, v); };
        if (!only_fused) {
          compat::reset_peak_device_memory(device);
          keep(t.plain, once(plain));
          t.mem_plain = std::max(t.mem_plain, peak_mib());
        }
        compat::reset_peak_device_memory(device);
        const int64_t faults0 = compat::minor_page_faults();
        keep(t.fused, once(fused));
        if (r > 0) t.faults = std::min(t.faults, compat::minor_page_faults() - faults0);
        t.mem_fused = std::max(t.mem_fused, peak_mib());
        {
          const kernels::ScopedOpPath off(kernels::OpPath::torch);
          keep(t.unfused, once(fused));
        }
        if (!only_fused) {
          keep(t.sharer, once([&] { prefill_sharer(); }));
          keep(t.fusion, once(fusion));
        }
        if (!device.is_cuda()) {  // the same step with the fuser's groups in one chunk
          set_fusion_chunk_groups(1 << 20);
          keep(t.unchunked, once(fused));
          set_fusion_chunk_groups(0);
        }
        t.by_schedule.resize(schedules.size(), 1e30);
        for (size_t j = 0; j < schedules.size(); ++j) {
          const GG previous = kernels::grouped_gemm();
          kernels::set_grouped_gemm(schedules[j]);
          keep(t.by_schedule[j], once(fused));
          kernels::set_grouped_gemm(previous);
        }
      }
    }
    if (!trace.empty()) {  // LibTorch's op-level trace of one fusion step and one training step
      torch::autograd::profiler::RecordProfile profile(trace);
      fusion();
      fused();
    }

    auto part = [&](const char* what, double t, double flops) {
      std::cout << "    " << what << t * 1e3 << " ms, " << flops / 1e9 << " GFLOP, " << flops / t / 1e9
                << " GFLOP/s\n";
    };
    for (size_t i = 0; i < thread_counts.size(); ++i) {
      const Times& t = times[i];
      if (!device.is_cuda()) torch::set_num_threads(thread_counts[i]);  // for the schedule's name
      std::cout << (device.is_cuda() ? "on " + device.str() : std::to_string(thread_counts[i]) + " thread(s)") << ":\n";
      std::ostringstream mfu;
      mfu << step_flops / 1e12 << " TFLOP per step, " << step_flops / t.fused / 1e12 << " TFLOP/s";
      if (peak_tflops > 0) mfu << ", MFU " << 100.0 * step_flops / t.fused / (peak_tflops * 1e12) << "% of " << peak_tflops;
      std::string kernels_line =
          "  without kernels (fuser ops in LibTorch ops): " + std::to_string(t.unfused * 1e3) +
          " ms; with / without: " + std::to_string(t.unfused / t.fused) + "x speed\n";
      if (!schedules.empty()) {
        kernels_line += "  the step by grouped-GEMM schedule (auto: " +
                        std::string(kernels::grouped_gemm_name(kernels::grouped_gemm_choice(
                            2 * fuser0->num_fusers(), static_cast<int64_t>(fused_tokens), hidden, hidden))) + "):";
        for (size_t j = 0; j < schedules.size(); ++j)
          kernels_line += std::string(j ? "," : "") + " " + kernels::grouped_gemm_name(schedules[j]) + " " +
                          std::to_string(t.by_schedule[j] * 1e3) + " ms";
        kernels_line += "\n  the step with all fuser groups in one chunk: " + std::to_string(t.unchunked * 1e3) +
                        " ms (auto chunks of " +
                        std::to_string(fusion_chunk_groups(fuser0->config(), 2 * fuser0->num_fusers(),
                                                           static_cast<int64_t>(fused_tokens), torch::kCPU)) +
                        " groups: " + std::to_string(t.unchunked / t.fused) + "x speed)\n";
      }
      if (only_fused) {
        std::cout << "  fuser training step" << (checkpointing ? " (activation checkpointing)" : "") << ": "
                  << t.fused * 1e3 << " ms, " << static_cast<int64_t>(tokens / t.fused) << " tokens/s, "
                  << mem_what << t.mem_fused << " MiB, " << t.faults << " page faults\n  " << mfu.str() << "\n"
                  << kernels_line;
        continue;
      }
      std::cout << "  plain receiver fwd+bwd: " << t.plain * 1e3 << " ms, " << static_cast<int64_t>(tokens / t.plain)
                << " tokens/s, " << mem_what << t.mem_plain << " MiB\n"
                << "  fuser training step:    " << t.fused * 1e3 << " ms, " << static_cast<int64_t>(tokens / t.fused)
                << " tokens/s, " << mem_what << t.mem_fused << " MiB (includes sharer prefill), "
                << t.faults << " page faults\n"
                << "  " << mfu.str() << "\n" << kernels_line
                << "  ratio (fuser step / plain): " << t.fused / t.plain << "x time\n"
                << "  parts (weight FLOPs, attention not counted):\n";
      part("plain receiver fwd+bwd: ", t.plain, plain_flops);
      part("sharer prefill alone:   ", t.sharer, sharer_flops);
      part("fusion fwd+bwd alone:   ", t.fusion, fuser_flops);
      part("fuser training step:    ", t.fused, step_flops);
      // The step against its FLOPs: the plain pass's rate applied to the step's FLOPs.
      const double predicted = t.plain * step_flops / plain_flops;
      std::cout << "  step time / time its FLOPs predict at the plain pass's rate: " << t.fused / predicted
                << "x (predicted " << predicted * 1e3 << " ms)\n";
    }
    for (size_t i = 1; i < thread_counts.size() && !device.is_cuda(); ++i) {
      const Times &a = times[0], &b = times[i];
      std::cout << "speed at " << thread_counts[i] << " threads over " << thread_counts[0]
                << " (same run): fuser step " << a.fused / b.fused << "x";
      if (!only_fused)
        std::cout << ", plain " << a.plain / b.plain << "x, sharer prefill " << a.sharer / b.sharer
                  << "x, fusion " << a.fusion / b.fusion << "x";
      std::cout << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_train: error: " << e.what() << "\n";
    return 1;
  }
}
