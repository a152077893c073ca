// Activation checkpointing of the receiver's response pass (train.activation_checkpointing):
// the same loss and the same fuser gradients as the plain pass, on the tiny fixture pair.
#include <gtest/gtest.h>

#include "data/paired_dataset.h"
#include "tests/common/test_util.h"
#include "tests/trainer/synthetic_pairs.h"
#include "trainer/recipe.h"
#include "trainer/trainer.h"

using namespace c2c;

TEST(ActivationCheckpointing, SameLossAndGradientsAsThePlainPass) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("ckpt_pairs"), 6, 3);
  const std::string text =
      "receiver: " + test::source_path("tests/fixtures/models/qwen3-tiny") + "\n" +
      "sharers: [" + test::source_path("tests/fixtures/models/llama3-tiny-sharded") + "]\n" +
      "alignment: identity\n"
      "fuser: {hidden_dim: 32, intermediate_dim: 32, num_layers: 3, dropout: 0.1}\n"
      "data: {train: " + data + "}\n"
      "train: {seed: 7, threads: 1}\n";
  PairedShardReader reader(read_paired_manifest(data).dir + "/shard-00000.h5");
  std::vector<PairedSample> batch;
  for (int64_t i = 0; i < reader.num_samples(); ++i) batch.push_back(reader.read(i));

  std::vector<std::vector<torch::Tensor>> grads;
  std::vector<double> losses;
  for (const char* flag : {"train.activation_checkpointing=false", "train.activation_checkpointing=true"}) {
    FuserTrainer t(Recipe::from_yaml_text(text, "r", {flag}));
    t.set_mode(true, 0);  // dropout and gate noise on: both passes draw the same (same seed)
    auto ml = t.forward(batch, 11);
    ml.loss_sum.backward();
    losses.push_back(ml.loss_sum.item<double>());
    std::vector<torch::Tensor> g;
    for (const auto& p : t.named_parameters()) {
      ASSERT_TRUE(p.second.grad().defined()) << p.first;
      g.push_back(p.second.grad().clone());
    }
    grads.push_back(g);
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-6 * std::abs(losses[0]));
  ASSERT_EQ(grads[0].size(), grads[1].size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < grads[0].size(); ++i) {
    worst = std::max(worst, (grads[0][i] - grads[1][i]).abs().max().item<double>());
    scale = std::max(scale, grads[0][i].abs().max().item<double>());
  }
  EXPECT_GT(scale, 0.0);
  EXPECT_LE(worst, 1e-5 * scale) << "max |grad difference| " << worst << " of max |grad| " << scale;
}
