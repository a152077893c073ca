// Batched generation with a frozen LLM: greedy or sampled (temperature, top-k, top-p), stop
// tokens, per-row prompt lengths. The prompt prefill is split as C2C needs it (DESIGN.md
// section 3): tokens [0, P-1) first, then a hook may rewrite those cache slots (the fuser), then
// the last prompt token runs against the (fused) cache and decoding starts.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "modules/llm.h"

namespace c2c {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0 means greedy
  int64_t top_k = 0;         // 0 means off
  double top_p = 1.0;        // 1 means off
  std::vector<int64_t> stop_ids;
  uint64_t seed = 0;
};

struct GenerateTimings {
  // prefill_s: the prompt prefill, sharers' included (sharer_prefill_s of it, fused generation
  // only); hook_s: the cache hook (the fusion); decode_s: the generated tokens.
  double prefill_s = 0, sharer_prefill_s = 0, hook_s = 0, decode_s = 0;
  int64_t prefill_tokens = 0, decode_tokens = 0;
};

struct GenerateResult {
  std::vector<std::vector<int64_t>> tokens;  // generated ids per row (stop token included)
  GenerateTimings timings;
};

// Called after the prefix prefill with the cache (slots [0, max P-1)) and the (B, S) validity.
using PrefixHook = std::function<void(KVCache& cache)>;

GenerateResult generate(const LLM& model, const std::vector<std::vector<int64_t>>& prompts,
                        const GenerateOptions& opts, const PrefixHook& hook = nullptr);

// Right-pads rows into ids (B, T) and mask (B, T) bool; rows may be empty.
std::pair<torch::Tensor, torch::Tensor> pad_batch(const std::vector<std::vector<int64_t>>& rows,
                                                  int64_t pad_id = 0);

// Picks the next token of each row from fp32 logits (B, V).
torch::Tensor sample_next(const torch::Tensor& logits, const GenerateOptions& opts,
                          torch::Generator& gen);

}  // namespace c2c
