// Fused inference on the tiny fixture pair (receiver qwen3-tiny, sharer llama3-tiny-sharded):
// a zero projection output or closed gates leave the receiver's generation unchanged token for
// token; open gates with random weights change it. Batches with rows of different lengths.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "modules/c2c_forward.h"
#include "modules/fused_pipeline.h"
#include "modules/official_checkpoint.h"
#include "modules/layer_map.h"
#include "tests/common/test_util.h"

using namespace c2c;

namespace {

struct Pair {
  std::shared_ptr<LLM> receiver, sharer;
};

Pair load_pair() {
  return {LLM::load(test::source_path("tests/fixtures/models/qwen3-tiny")),
          LLM::load(test::source_path("tests/fixtures/models/llama3-tiny-sharded"))};
}

FuserCheckpoint make_fusers(const Pair& p, uint64_t seed) {
  FuserCheckpoint ck;
  FuserSet set;
  set.alignment = "identity";
  set.layer_map = last_aligned_layer_map(p.receiver->config().num_layers, p.sharer->config().num_layers);
  set.config.source_num_heads = p.sharer->config().num_kv_heads;
  set.config.source_head_dim = p.sharer->config().head_dim;
  set.config.target_num_heads = p.receiver->config().num_kv_heads;
  set.config.target_head_dim = p.receiver->config().head_dim;
  set.config.hidden_dim = 32;
  set.config.intermediate_dim = 48;
  set.config.num_layers = 3;
  set.fuser = StackedFuser(set.config, set.layer_map.size(), seed);
  set.fuser->eval();
  ck.sharers.push_back(set);
  return ck;
}

void set_gates(FuserCheckpoint& ck, float logit) {
  torch::NoGradGuard no_grad;
  for (auto& s : ck.sharers) s.fuser->gate_logits().fill_(logit);
}

const std::vector<std::vector<int64_t>> kPrompts = {{5, 9, 33, 120, 7, 64, 800}, {17, 250, 3, 999},
                                                     {44, 45, 46, 47, 48, 49, 50, 51, 52, 53}};

std::vector<std::vector<int64_t>> receiver_alone(const Pair& p) {
  GenerateOptions o;
  o.max_new_tokens = 12;
  return generate(*p.receiver, kPrompts, o).tokens;
}

std::vector<std::vector<int64_t>> fused(const Pair& p, FuserCheckpoint ck) {
  FusedPipeline pipe(p.receiver, {p.sharer}, std::move(ck));
  GenerateOptions o;
  o.max_new_tokens = 12;
  auto r = pipe.generate(kPrompts, o);
  EXPECT_GT(r.timings.hook_s, 0.0);
  return r.tokens;
}

TEST(FusedPipeline, ZeroProjectionOutputEqualsReceiverAlone) {
  Pair p = load_pair();
  FuserCheckpoint ck = make_fusers(p, 1);
  set_gates(ck, 2.0f);  // gates open: only the zero projection keeps the cache unchanged
  {
    torch::NoGradGuard no_grad;
    for (auto& prm : ck.sharers[0].fuser->named_parameters())
      if (prm.key().find("proj_out") != std::string::npos) prm.value().zero_();
  }
  EXPECT_EQ(fused(p, ck), receiver_alone(p));
}

TEST(FusedPipeline, ClosedGatesEqualReceiverAlone) {
  Pair p = load_pair();
  FuserCheckpoint ck = make_fusers(p, 2);
  set_gates(ck, -0.5f);  // hard gate at inference: logit <= 0 is closed
  EXPECT_EQ(fused(p, ck), receiver_alone(p));
}

TEST(FusedPipeline, OpenGatesWithRandomWeightsChangeTheAnswer) {
  Pair p = load_pair();
  FuserCheckpoint ck = make_fusers(p, 3);
  set_gates(ck, 0.5f);
  {
    // Large projection weights so the fused cache moves far enough to flip greedy tokens.
    torch::NoGradGuard no_grad;
    for (auto& prm : ck.sharers[0].fuser->named_parameters())
      if (prm.key().find("proj_out") != std::string::npos) prm.value().normal_(0.0, 2.0);
  }
  auto a = fused(p, ck), b = receiver_alone(p);
  int differing_rows = 0;
  for (size_t i = 0; i < a.size(); ++i) differing_rows += a[i] != b[i];
  EXPECT_GE(differing_rows, 2) << "open gates with random weights should change most rows";
}

TEST(FusedPipeline, BatchedEqualsOneRowAtATime) {
  // Per-row lengths: the batch of three gives each row what it gets alone.
  Pair p = load_pair();
  FuserCheckpoint ck = make_fusers(p, 4);
  set_gates(ck, 0.5f);
  FusedPipeline pipe(p.receiver, {p.sharer}, ck);
  GenerateOptions o;
  o.max_new_tokens = 8;
  auto batched = pipe.generate(kPrompts, o).tokens;
  for (size_t i = 0; i < kPrompts.size(); ++i)
    EXPECT_EQ(pipe.generate({kPrompts[i]}, o).tokens[0], batched[i]) << "row " << i;
}

TEST(FusedPipeline, MismatchedShapesAreNamed) {
  Pair p = load_pair();
  FuserCheckpoint ck = make_fusers(p, 5);
  ck.sharers[0].config.source_head_dim = 99;
  try {
    FusedPipeline pipe(p.receiver, {p.sharer}, ck);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("dim 99"), std::string::npos) << e.what();
  }
}

TEST(FusedPipeline, OtherModelsThanTheFuserWasTrainedWithAreWarnedAbout) {
  // model_fingerprint: stable for one folder; another model of the same shapes (one weight byte
  // changed, as a fine-tune would) gets another.
  const std::string rdir = test::source_path("tests/fixtures/models/qwen3-tiny");
  const std::string sdir = test::source_path("tests/fixtures/models/llama3-tiny-sharded");
  const std::string fp = model_fingerprint(rdir);
  EXPECT_EQ(fp, model_fingerprint(rdir));
  EXPECT_NE(fp, model_fingerprint(sdir));
  const std::string other = test::temp_dir("fingerprint") + "/qwen3-tiny-tuned";
  std::filesystem::create_directories(other);
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json"})
    std::filesystem::copy_file(rdir + "/" + f, other + "/" + f,
                               std::filesystem::copy_options::overwrite_existing);
  {
    std::fstream w(other + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    w.seekg(0, std::ios::end);
    const auto size = static_cast<int64_t>(w.tellg());
    w.seekp(size / 2);
    w.put('\x7f');
  }
  EXPECT_NE(model_fingerprint(other), fp);

  Pair p = load_pair();
  FuserCheckpoint ck = make_fusers(p, 6);
  ck.receiver_model = rdir;
  ck.receiver_fingerprint = fp;
  ck.sharers[0].sharer_model = sdir;
  ck.sharers[0].sharer_fingerprint = model_fingerprint(sdir);
  // The fingerprints survive our checkpoint format.
  const std::string dir = test::temp_dir("fingerprint") + "/fuser";
  save_fuser_checkpoint(dir, ck);
  FuserCheckpoint loaded = load_fuser_checkpoint(dir);
  EXPECT_EQ(loaded.receiver_fingerprint, fp);
  EXPECT_EQ(loaded.sharers[0].sharer_fingerprint, ck.sharers[0].sharer_fingerprint);

  std::ostringstream same, changed;
  warn_if_other_models(loaded, *p.receiver, {p.sharer}, same);
  EXPECT_EQ(same.str(), "");
  warn_if_other_models(loaded, *LLM::load(other), {p.sharer}, changed);
  EXPECT_NE(changed.str().find("trained with the receiver"), std::string::npos) << changed.str();
  EXPECT_NE(changed.str().find(other), std::string::npos) << changed.str();
}

TEST(FusedPipeline, GenerationIsTheSameAfterAnOfficialExportAndImport) {
  Pair p = load_pair();
  FuserCheckpoint ck = make_fusers(p, 7);
  set_gates(ck, 2.0f);  // open: the fuser changes the answer
  const std::string out = test::temp_dir("export_gen") + "/official";
  OfficialExportOptions eo;
  eo.dtype = torch::kFloat32;
  ck.sharers[0].alignment = "reference_longest";
  export_official_checkpoint(ck, out, eo);
  FuserCheckpoint back = import_official_checkpoint(out);
  for (auto& s : back.sharers) s.fuser->eval();
  const auto a = fused(p, ck), b = fused(p, back);
  EXPECT_EQ(a, b);
  EXPECT_FALSE(a.empty());
}

}  // namespace

// The held-out accuracy's unit: a row is exact when every supervised token is the argmax of the
// logits that predict it; one wrong token, or no supervised token, makes it not exact.
TEST(NextTokenLoss, ExactRowsAreThoseWhoseEveryTokenIsTheArgmax) {
  auto model = LLM::load(test::source_path("tests/fixtures/models/qwen3-tiny"));
  torch::manual_seed(5);
  const auto ids = torch::randint(3, 500, {3, 7}, torch::kInt64);
  KVCache cache = model->new_cache(3, 0);
  torch::NoGradGuard ng;
  const auto hidden = model->forward_hidden(ids, {}, cache);
  const auto argmax = model->logits(hidden).argmax(-1);  // (3, 7)
  auto labels = torch::full({3, 7}, -1, torch::kInt64);
  for (int64_t r = 0; r < 2; ++r) labels[r].narrow(0, 2, 3).copy_(argmax[r].narrow(0, 2, 3));
  labels[1][3] = (argmax[1][3].item<int64_t>() + 1) % model->config().vocab_size;  // one miss in row 1
  const TokenLoss tl = next_token_loss(*model, hidden, labels, /*exact_match=*/true);
  ASSERT_EQ(tl.rows_exact.sizes(), torch::IntArrayRef({3}));
  EXPECT_TRUE(tl.rows_exact[0].item<bool>());
  EXPECT_FALSE(tl.rows_exact[1].item<bool>());
  EXPECT_FALSE(tl.rows_exact[2].item<bool>());  // no supervised token
  EXPECT_EQ(tl.tokens, 6);
  EXPECT_GT(tl.rows[1].item<double>(), tl.rows[0].item<double>());
  EXPECT_FALSE(next_token_loss(*model, hidden, labels).rows_exact.defined());  // not asked: no argmax
}
