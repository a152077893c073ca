// The frozen LLMs against transformers: logits of a padded batch, 20 greedy decode steps,
// for every architecture in the table, from fixtures made by scripts/make_model_fixtures.py.
//
// Tolerance: the fixtures are fp32 with logits of magnitude ~1-10; the same arithmetic in a
// different order (fused QKV GEMM, grouped attention, BLAS blocking) differs by a few ulps per
// op, ~1e-6 relative after two layers. 1e-4 absolute leaves two orders of margin while still
// catching any real mistake (a wrong norm, RoPE or mask moves logits by 1e-2 or more).
#include <gtest/gtest.h>

#include "modules/generate.h"
#include "modules/llm.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"

using namespace c2c;

namespace {

constexpr double kLogitTol = 1e-4;

struct Golden {
  std::vector<std::vector<int64_t>> prompts;
  std::vector<torch::Tensor> logits, step_logits;
  std::vector<std::vector<int64_t>> generated;
};

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

Golden read_golden(const std::string& dir) {
  auto t = load_safetensors(dir + "/golden.safetensors");
  Golden g;
  for (int i = 0; t.count("row" + std::to_string(i) + ".ids"); ++i) {
    const std::string p = "row" + std::to_string(i) + ".";
    g.prompts.push_back(to_vec(t[p + "ids"]));
    g.logits.push_back(t[p + "logits"]);
    g.generated.push_back(to_vec(t[p + "generated"]));
    g.step_logits.push_back(t[p + "step_logits"]);
  }
  return g;
}

class LlmGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(LlmGolden, PaddedBatchLogitsMatchTransformers) {
  const std::string dir = test::source_path("tests/fixtures/models/" + GetParam());
  auto model = LLM::load(dir);
  Golden g = read_golden(dir);
  ASSERT_EQ(g.prompts.size(), 3u);
  auto [ids, mask] = pad_batch(g.prompts);
  KVCache cache = model->new_cache(ids.size(0), ids.size(1));
  torch::NoGradGuard no_grad;
  auto logits = model->forward(ids, mask, cache);  // (B, T, V)
  for (size_t b = 0; b < g.prompts.size(); ++b) {
    const int64_t n = static_cast<int64_t>(g.prompts[b].size());
    auto ours = logits[b].narrow(0, 0, n);
    const double err = (ours - g.logits[b]).abs().max().item<double>();
    EXPECT_LT(err, kLogitTol) << GetParam() << " row " << b << " (length " << n << ")";
    EXPECT_GT(g.logits[b].abs().max().item<double>(), 0.5) << "golden logits look degenerate";
  }
}

TEST_P(LlmGolden, GreedyDecodeMatchesTransformersTokenForToken) {
  const std::string dir = test::source_path("tests/fixtures/models/" + GetParam());
  auto model = LLM::load(dir);
  Golden g = read_golden(dir);
  GenerateOptions opts;
  opts.max_new_tokens = 20;
  auto result = generate(*model, g.prompts, opts);  // batched, rows of lengths 7, 12, 4
  for (size_t b = 0; b < g.prompts.size(); ++b)
    EXPECT_EQ(result.tokens[b], g.generated[b]) << GetParam() << " row " << b;
}

TEST_P(LlmGolden, DecodeStepLogitsMatchTransformers) {
  // Teacher-forced decode one token at a time, all rows together, per-row positions.
  const std::string dir = test::source_path("tests/fixtures/models/" + GetParam());
  auto model = LLM::load(dir);
  Golden g = read_golden(dir);
  torch::NoGradGuard no_grad;
  const int64_t B = static_cast<int64_t>(g.prompts.size());
  auto [ids, mask] = pad_batch(g.prompts);
  KVCache cache = model->new_cache(B, ids.size(1) + 20);
  auto logits = model->forward(ids, mask, cache, /*last_only=*/true);  // (B, V)
  for (int step = 0; step < 20; ++step) {
    for (int64_t b = 0; b < B; ++b) {
      const double err = (logits[b] - g.step_logits[b][step]).abs().max().item<double>();
      ASSERT_LT(err, kLogitTol) << GetParam() << " row " << b << " step " << step;
    }
    std::vector<int64_t> next;
    for (int64_t b = 0; b < B; ++b) next.push_back(g.generated[b][step]);
    logits = model->forward(torch::tensor(next).view({B, 1}), torch::Tensor(), cache, true);
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, LlmGolden,
                         ::testing::Values("qwen3-tiny", "qwen2-tiny-bf16", "llama3-tiny-sharded"));

TEST(Llm, EveryArchitectureInTheTableHasAFixture) {
  // The table of architectures and the fixtures cannot drift apart (STYLE.md item 8).
  std::map<std::string, std::string> fixture_of = {
      {"qwen3", "qwen3-tiny"}, {"qwen2", "qwen2-tiny-bf16"}, {"llama", "llama3-tiny-sharded"}};
  for (const auto& a : architectures()) {
    ASSERT_TRUE(fixture_of.count(a.model_type)) << "no golden fixture for " << a.model_type;
    auto cfg = ModelConfig::from_folder(test::source_path("tests/fixtures/models/" + fixture_of[a.model_type]));
    EXPECT_EQ(cfg.model_type, a.model_type);
  }
}

TEST(Llm, FrozenWeightsCarryNoGradButActivationsDo) {
  auto model = LLM::load(test::source_path("tests/fixtures/models/qwen3-tiny"));
  for (const auto& kv : model->weights()) EXPECT_FALSE(kv.second.requires_grad()) << kv.first;
  // A rewritten cache slice that requires grad receives a gradient through the frozen model.
  KVCache cache = model->new_cache(1, 0);
  auto ids = torch::tensor({{5, 6, 7, 8}}, torch::kInt64);
  model->forward(ids, torch::Tensor(), cache);
  auto k0 = cache.key(0).detach().clone().requires_grad_(true);
  auto v0 = cache.value(0).detach().clone().requires_grad_(true);
  cache.set_slice(0, 0, k0 * 1.5, v0 * 1.5);
  auto logits = model->forward(torch::tensor({{9, 10}}, torch::kInt64), torch::Tensor(), cache);
  logits.sum().backward();
  ASSERT_TRUE(k0.grad().defined());
  EXPECT_GT(k0.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(v0.grad().abs().sum().item<double>(), 0.0);
}

TEST(Llm, RewrittenSliceChangesLaterLogitsAndIdentityRewriteDoesNot) {
  auto model = LLM::load(test::source_path("tests/fixtures/models/llama3-tiny-sharded"));
  torch::NoGradGuard no_grad;
  auto run = [&](double scale) {
    KVCache cache = model->new_cache(1, 16);
    model->forward(torch::tensor({{11, 12, 13, 14, 15}}, torch::kInt64), torch::Tensor(), cache);
    for (int64_t l = 0; l < cache.num_layers(); ++l)
      cache.set_slice(l, 1, cache.key(l).narrow(2, 1, 2) * scale, cache.value(l).narrow(2, 1, 2) * scale);
    return model->forward(torch::tensor({{16}}, torch::kInt64), torch::Tensor(), cache, true);
  };
  auto base = run(1.0);
  EXPECT_TRUE(torch::equal(base, run(1.0)));
  EXPECT_GT((base - run(3.0)).abs().max().item<double>(), 1e-3);
}

}  // namespace
