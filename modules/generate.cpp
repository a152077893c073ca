#include "modules/generate.h"

#include <algorithm>
#include <chrono>

#include <ATen/CPUGeneratorImpl.h>

#include "modules/common/error.h"

namespace c2c {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> pad_batch(const std::vector<std::vector<int64_t>>& rows,
                                                  int64_t pad_id) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 0;
  for (const auto& r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r.size()));
  auto ids = torch::full({B, T}, pad_id, torch::kInt64);
  auto mask = torch::zeros({B, T}, torch::kBool);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<bool, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < rows[b].size(); ++t) {
      ids_a[b][t] = rows[b][t];
      mask_a[b][t] = true;
    }
  return {ids, mask};
}

torch::Tensor sample_next(const torch::Tensor& logits, const GenerateOptions& opts,
                          torch::Generator& gen) {
  if (opts.temperature <= 0.0) return logits.argmax(-1);
  auto l = logits / opts.temperature;
  const int64_t V = l.size(-1);
  if (opts.top_k > 0 && opts.top_k < V) {
    auto kth = std::get<0>(l.topk(opts.top_k, -1)).narrow(-1, opts.top_k - 1, 1);  // (B, 1)
    l = l.masked_fill(l < kth, -std::numeric_limits<float>::infinity());
  }
  if (opts.top_p < 1.0) {
    auto sorted = l.sort(-1, /*descending=*/true);
    auto values = std::get<0>(sorted), index = std::get<1>(sorted);
    auto cum = values.softmax(-1).cumsum(-1);
    // Drop a token once the mass before it already reaches top_p (the first token always stays).
    auto drop_sorted = (cum - values.softmax(-1)) >= opts.top_p;
    auto drop = torch::zeros_like(drop_sorted).scatter(-1, index, drop_sorted);
    l = l.masked_fill(drop, -std::numeric_limits<float>::infinity());
  }
  auto probs = l.softmax(-1);
  return torch::multinomial(probs, 1, false, gen).squeeze(-1);
}

GenerateResult generate(const LLM& model, const std::vector<std::vector<int64_t>>& prompts,
                        const GenerateOptions& opts, const PrefixHook& hook) {
  torch::NoGradGuard no_grad;
  const ModelConfig& c = model.config();
  const int64_t B = static_cast<int64_t>(prompts.size());
  C2C_CHECK(B > 0, "generate: no prompts");
  int64_t max_len = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size());
    C2C_CHECK(n > 0, "generate: prompt ", b, " is empty");
    C2C_CHECK(n <= c.max_position_embeddings, "generate: prompt ", b, " has ", n,
              " tokens, longer than the model's context of ", c.max_position_embeddings,
              " (max_position_embeddings in ", model.path(), "/config.json)\nHINT: shorten the prompt");
    max_len = std::max(max_len, n);
  }
  C2C_CHECK(opts.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  // Stop at the context's end rather than run RoPE past what the model was built for.
  const int64_t new_tokens = std::min(opts.max_new_tokens, c.max_position_embeddings - max_len + 1);
  const auto dev = model.device();

  KVCache cache = model.new_cache(B, max_len + new_tokens);
  GenerateResult result;
  result.tokens.resize(B);

  // 1. Prefix prefill: tokens [0, P-1) of every row.
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<int64_t>> prefix(B);
  std::vector<int64_t> last(B);
  for (int64_t b = 0; b < B; ++b) {
    prefix[b].assign(prompts[b].begin(), prompts[b].end() - 1);
    last[b] = prompts[b].back();
  }
  if (max_len > 1) {
    auto [ids, mask] = pad_batch(prefix);
    model.forward_hidden(ids.to(dev), mask.to(dev), cache);
  }
  result.timings.prefill_s += seconds_since(t0);
  // 2. The hook (the fuser) rewrites the prefix slots.
  if (hook) {
    auto th = std::chrono::steady_clock::now();
    hook(cache);
    result.timings.hook_s = seconds_since(th);
  }
  // 3. The last prompt token of every row, in one shared slot.
  t0 = std::chrono::steady_clock::now();
  auto cur = torch::tensor(last, torch::kInt64).view({B, 1}).to(dev);
  auto alive = torch::ones({B, 1}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  auto logits = model.forward(cur, alive, cache, /*last_only=*/true);
  for (const auto& p : prompts) result.timings.prefill_tokens += static_cast<int64_t>(p.size());
  result.timings.prefill_s += seconds_since(t0);

  // 4. Decode.
  t0 = std::chrono::steady_clock::now();
  torch::Generator gen = at::detail::createCPUGenerator(opts.seed);
  std::vector<bool> done(B, false);
  for (int64_t step = 0; step < new_tokens; ++step) {
    auto next = sample_next(logits.to(torch::kCPU), opts, gen);  // (B)
    auto next_a = next.accessor<int64_t, 1>();
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      result.tokens[b].push_back(next_a[b]);
      ++result.timings.decode_tokens;
      if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), next_a[b]) != opts.stop_ids.end())
        done[b] = true;
      all_done = all_done && done[b];
    }
    if (all_done || step + 1 == new_tokens) break;
    auto mask = torch::empty({B, 1}, torch::kBool);
    auto mask_a = mask.accessor<bool, 2>();
    for (int64_t b = 0; b < B; ++b) mask_a[b][0] = !done[b];
    logits = model.forward(next.view({B, 1}).to(dev), mask.to(dev), cache, true);
  }
  result.timings.decode_s = seconds_since(t0);
  return result;
}

}  // namespace c2c
