// One whole `c2c` training step and one evaluation forward in every scored mode against an
// independent PyTorch computation (scripts/train_step_reference.py: transformers runs the tiny
// fixture receiver and sharer, scripts/fuser_reference.py the fuser, in float64; golden
// tests/fixtures/train_step/train_step_golden.safetensors). The step goes through the product's
// own path: a recipe with fuser.init_from, FuserTrainer::forward (the one C2C forward,
// modules/c2c_forward.h) and backward; the evaluation through c2c_loss with the evaluation's
// shared-prompt grouping. The golden's rows exercise padding (two lengths), token alignment with
// a prompt position no sharer token covers, a crossed layer map and a loss range short of the end.
//
// Tolerance: 2e-5 of each tensor's largest magnitude plus 1e-4 of each element. The C++ side runs
// in fp32 through two tiny models and the fuser; measured against the float64 golden, the losses
// and every gradient but the gate logits' stay within 2.5e-6 of their tensor's largest value; a
// gate logit's gradient is one scalar summed over every fused position with cancelling signs and
// is off by 3.3e-5 relative (within the 1e-4). An error in the method (a wrong slot, layer, gate,
// temperature or mask) moves these numbers by 1e-2 or more.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "kernels/fused_ops.h"
#include "modules/c2c_forward.h"
#include "modules/fuser_checkpoint.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"
#include "tests/kernels/kernel_test_util.h"
#include "trainer/recipe.h"
#include "trainer/trainer.h"

using namespace c2c;

namespace {

const char* kReceiver = "tests/fixtures/models/qwen3-tiny";
const char* kSharer = "tests/fixtures/models/llama3-tiny-sharded";

struct StepGolden {
  FuserConfig config;
  LayerMap map;
  int64_t step = 0;
  std::vector<PairedSample> rows, eval_rows;
  std::map<std::string, torch::Tensor> t;
};

std::vector<PairedSample> parse_rows(const nlohmann::json& j) {
  std::vector<PairedSample> rows;
  for (const auto& r : j) {
    PairedSample s;
    s.index = static_cast<int64_t>(rows.size());
    s.receiver_ids = r["receiver_ids"].get<std::vector<int64_t>>();
    s.prompt_length = r["prompt_length"];
    s.loss_start = r["loss_start"];
    s.loss_end = r["loss_end"];
    PairedSharer sh;
    sh.ids = r["sharer_ids"].get<std::vector<int64_t>>();
    sh.slot_of = r["slot_of"].get<std::vector<int64_t>>();
    s.sharers.push_back(sh);
    rows.push_back(s);
  }
  return rows;
}

StepGolden load_step_golden() {
  auto file = SafetensorsFile::open(test::source_path("tests/fixtures/train_step/train_step_golden.safetensors"));
  auto meta = file->metadata();
  EXPECT_EQ(meta.at("format_version"), "1") << "HINT: python3 scripts/train_step_reference.py";
  StepGolden g;
  g.config = FuserConfig::from_json(nlohmann::json::parse(meta.at("config")), "golden config");
  for (const auto& p : nlohmann::json::parse(meta.at("map")))
    g.map.pairs.push_back({p[0].get<int64_t>(), p[1].get<int64_t>()});
  g.step = std::stoll(meta.at("step"));
  g.rows = parse_rows(nlohmann::json::parse(meta.at("rows")));
  g.eval_rows = parse_rows(nlohmann::json::parse(meta.at("eval_rows")));
  for (const auto& name : file->names()) g.t[name] = file->load(name);
  return g;
}

// The golden's fuser written as our checkpoint, for fuser.init_from.
std::string write_fuser(const StepGolden& g) {
  FuserCheckpoint ck;
  ck.receiver_model = kReceiver;
  FuserSet set;
  set.sharer_model = kSharer;
  set.layer_map = g.map;
  set.config = g.config;
  set.fuser = StackedFuser(g.config, g.map.size());
  for (int64_t i = 0; i < g.map.size(); ++i) {
    std::map<std::string, torch::Tensor> state;
    const std::string prefix = "layer" + std::to_string(i) + ".";
    for (const auto& [name, t] : g.t)
      if (name.rfind(prefix, 0) == 0) state[name.substr(prefix.size())] = t;
    set.fuser->load_layer_state(i, state, "train_step_golden");
  }
  ck.sharers.push_back(set);
  const std::string dir = test::temp_dir("train_step_golden") + "/fuser";
  save_fuser_checkpoint(dir, ck);
  return dir;
}

void expect_near(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  const double scale = std::max(want.abs().max().item<double>(), 1e-30);
  test::expect_close(got, want, 2e-5 * scale, 1e-4, what);
}

// A recipe for the fixture pair that starts from the golden's fuser.
Recipe golden_recipe(const StepGolden& g, std::vector<std::string> overrides) {
  overrides.push_back("fuser.init_from=" + write_fuser(g));
  overrides.push_back("train.device=cpu");
  return Recipe::from_yaml_text("receiver: " + test::source_path(kReceiver) + "\nsharers: [" +
                                    test::source_path(kSharer) + "]\ndata: {train: unused}\n",
                                "golden", overrides);
}

class TrainStepGolden : public ::testing::TestWithParam<kernels::OpPath> {};

TEST_P(TrainStepGolden, LossAndEveryFuserGradientMatchPyTorch) {
  const kernels::ScopedOpPath path(GetParam());
  const StepGolden g = load_step_golden();
  FuserTrainer trainer(golden_recipe(g, {"fuser.gate_noise=false"}));
  trainer.set_mode(/*training=*/true, g.step);
  C2CLoss loss = trainer.forward(g.rows, /*noise_seed=*/1);
  loss.loss_sum.backward();
  expect_near(loss.loss_sum, g.t.at("train.loss_sum"), "loss sum");
  expect_near(loss.row_loss, g.t.at("train.row_loss"), "row losses");
  EXPECT_EQ(loss.tokens, 3 + 2);

  const StackedFuser& f = trainer.fusers().sharers.at(0).fuser;
  int compared = 0, expected = 0;
  for (const auto& [name, t] : g.t) expected += name.rfind("grad.layer", 0) == 0;
  for (int64_t i = 0; i < f->num_fusers(); ++i)
    for (const auto& [name, grad] : f->layer_state(i, /*gradients=*/true)) {
      const std::string key = "grad.layer" + std::to_string(i) + "." + name;
      ASSERT_TRUE(g.t.count(key)) << key;
      expect_near(grad, g.t.at(key), key);
      ++compared;
    }
  EXPECT_EQ(compared, expected);
}

TEST_P(TrainStepGolden, EvaluationForwardInEveryModeMatchesPyTorch) {
  const kernels::ScopedOpPath path(GetParam());
  const StepGolden g = load_step_golden();
  FuserTrainer trainer(golden_recipe(g, {}));
  trainer.set_mode(/*training=*/false, g.step);
  torch::NoGradGuard no_grad;
  C2CLossOptions shared;
  shared.prompt_group = {0, 1, 0};  // row 2 shares row 0's prompt, as the evaluation groups it
  const FusedPipeline& pipe = trainer.pipeline();
  expect_near(c2c_loss(*pipe.receiver(), &pipe, g.eval_rows, shared).row_loss,
              g.t.at("eval.c2c.row_loss"), "c2c");
  expect_near(c2c_loss(*pipe.receiver(), &pipe, g.eval_rows).row_loss,
              g.t.at("eval.c2c.row_loss"), "c2c, no shared prefill");
  expect_near(c2c_loss(*pipe.receiver(), nullptr, g.eval_rows, shared).row_loss,
              g.t.at("eval.receiver.row_loss"), "receiver alone");
  expect_near(c2c_loss(*pipe.sharers().at(0), nullptr, g.eval_rows, shared).row_loss,
              g.t.at("eval.sharer.row_loss"), "sharer alone");
  // The fusion matters for these rows: C2C differs from the receiver alone.
  EXPECT_GT((g.t.at("eval.c2c.row_loss") - g.t.at("eval.receiver.row_loss")).abs().max().item<double>(), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(OpPaths, TrainStepGolden,
                         ::testing::Values(kernels::OpPath::automatic, kernels::OpPath::reference,
                                           kernels::OpPath::torch),
                         [](const ::testing::TestParamInfo<kernels::OpPath>& info) {
                           return std::string(kernels::op_path_name(info.param));
                         });

}  // namespace
