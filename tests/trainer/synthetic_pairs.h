// A synthetic paired data set for the trainer tests: n samples, a prompt of 6-9 tokens and a
// response of 4-6 tokens that repeats part of the prompt (learnable through the fused cache), one
// sharer with identity alignment, for the tiny fixture pair (vocabulary 1024).
#pragma once
#include <torch/torch.h>

#include <string>

#include "data/paired_dataset.h"
#include "tests/common/test_util.h"

namespace c2c::test {

// copy = false: the response is random tokens instead (a held-out set whose loss rises as the
// fuser learns to copy).
inline std::string write_synthetic_pairs(const std::string& dir, int n, uint64_t seed, bool copy = true) {
  torch::manual_seed(seed);
  PairedDatasetWriter w(dir, /*num_sharers=*/1, /*shard_size=*/7);
  for (int i = 0; i < n; ++i) {
    const int64_t p = 6 + i % 4, r = 4 + i % 3;
    auto prompt = torch::randint(3, 1000, {p}, torch::kInt64);
    PairedSample s;
    s.receiver_ids.assign(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + p);
    for (int64_t t = 0; t < r; ++t)
      s.receiver_ids.push_back(copy ? s.receiver_ids[t % p] : torch::randint(3, 1000, {1}).item<int64_t>());
    s.prompt_length = p;
    s.loss_start = p;
    s.loss_end = p + r;
    PairedSharer sh;
    sh.ids.assign(s.receiver_ids.begin(), s.receiver_ids.begin() + p - 1);
    sh.mask.assign(sh.ids.size(), 1);
    for (int64_t t = 0; t < p + r; ++t) sh.slot_of.push_back(t < p - 1 ? t : -1);
    s.sharers.push_back(sh);
    w.add(std::move(s));
  }
  w.finish();
  return dir;
}

// A recipe of the tiny fixture pair (receiver qwen3-tiny, sharer llama3-tiny-sharded) over
// `data`, writing to `run_dir`: 2 x 2 sequences per step, one thread.
inline std::string tiny_recipe_text(const std::string& data, const std::string& run_dir, int steps) {
  return "receiver: " + source_path("tests/fixtures/models/qwen3-tiny") + "\n" +
         "sharers: [" + source_path("tests/fixtures/models/llama3-tiny-sharded") + "]\n" +
         "alignment: identity\n"
         "fuser: {hidden_dim: 32, intermediate_dim: 32, num_layers: 3, dropout: 0.1}\n"
         "data: {train: " + data + ", shuffle_buffer: 8, pack_window: 2}\n"
         "train: {max_steps: " + std::to_string(steps) +
         ", micro_batch_size: 2, grad_accum: 2, lr: 3.0e-3, warmup_ratio: 0.1, seed: 7, threads: 1}\n"
         "checkpoint: {dir: " + run_dir + ", every: 0, keep_last: 2}\n";
}

}  // namespace c2c::test
