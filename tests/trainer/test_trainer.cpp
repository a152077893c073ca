// The training loop on the tiny fixture pair (receiver qwen3-tiny, sharer llama3-tiny-sharded;
// equal vocabularies, identity alignment) over a synthetic paired data set: the loss falls, only
// fuser parameters change, and resume after a stop is bit-exact.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "data/paired_dataset.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/fuser_checkpoint.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"
#include "tests/trainer/synthetic_pairs.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer.h"
#include "trainer/recipe.h"
#include "trainer/trainer.h"

using namespace c2c;

namespace {


std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

TEST(Trainer, LossFallsOverAShortRun) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 1);
  const std::string run = test::temp_dir("run") + "/r";
  Recipe r = Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 40), "test",
                                    {"data.eval=" + data, "train.eval_every=20", "train.eval_batches=2"});
  const std::string final_dir = run_training(r);
  auto rows = read_metrics(run);
  ASSERT_EQ(rows.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += rows[i]["loss"].get<double>() / 5;
  for (int i = 35; i < 40; ++i) last += rows[i]["loss"].get<double>() / 5;
  EXPECT_LT(last, first * 0.9) << "loss did not fall: first steps " << first << ", last " << last;
  // The periodic held-out loss (hard gates, no dropout) is logged at steps 20 and 40 only.
  EXPECT_FALSE(rows[18].contains("eval_loss"));
  ASSERT_TRUE(rows[19].contains("eval_loss"));
  ASSERT_TRUE(rows[39].contains("eval_loss"));
  EXPECT_TRUE(std::isfinite(rows[39]["eval_loss"].get<double>()));
  EXPECT_GT(rows[39]["eval_loss"].get<double>(), 0.0);
  // The exported fuser loads strictly and the gate temperature was annealed.
  auto ckpt = load_fuser_checkpoint(final_dir);
  ASSERT_EQ(ckpt.sharers.size(), 1u);
  EXPECT_LT(rows.back()["gate_temperature"].get<double>(), 0.01);
  EXPECT_TRUE(file_exists(run + "/recipe.yaml"));
}

// Model selection on the held-out loss: best/ holds the fuser of the lowest one (its step and loss
// in its source), the run stops after train.early_stop_evals evaluations without a lower one, and
// a run stopped and resumed on the way makes the same choice, bit for bit.
TEST(Trainer, KeepsTheFuserOfTheLowestHeldOutLossAndStopsEarly) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 1);
  // Random responses: as the fuser learns to copy the prompt, their loss rises.
  const std::string eval = test::write_synthetic_pairs(test::temp_dir("pairs_eval"), 8, 2, /*copy=*/false);
  const std::vector<std::string> sets = {"data.eval=" + eval, "train.eval_every=2", "train.eval_batches=4",
                                         "checkpoint.keep_best=true", "train.early_stop_evals=3", "train.lr=1e-2"};
  const std::string run = test::temp_dir("run_best") + "/r";
  const std::string final_dir = run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 80), "t", sets));
  auto rows = read_metrics(run);
  ASSERT_LT(rows.size(), 80u) << "no early stop: the held-out loss kept falling";
  double best = 1e300;
  int64_t best_step = 0;
  for (const auto& row : rows)
    if (row.contains("eval_loss") && row["eval_loss"].get<double>() < best) {
      best = row["eval_loss"].get<double>();
      best_step = row["step"].get<int64_t>();
    }
  ASSERT_GT(best_step, 0);
  // Three evaluations (6 steps) after the best, and none of them lower.
  EXPECT_EQ(rows.back()["step"].get<int64_t>(), best_step + 3 * 2);
  EXPECT_EQ(rows.back()["best_eval_step"].get<int64_t>(), best_step);
  const auto chosen = load_fuser_checkpoint(run + "/best");
  EXPECT_EQ(chosen.source.at("steps").get<int64_t>(), best_step);
  EXPECT_EQ(chosen.source.at("eval_loss").get<double>(), best);
  EXPECT_EQ(chosen.source.at("selected_on").get<std::string>(), "loss");
  EXPECT_EQ(load_fuser_checkpoint(final_dir).source.at("steps").get<int64_t>(), best_step + 6);
  EXPECT_NE(read_file(run + "/best/fuser.safetensors"), read_file(final_dir + "/fuser.safetensors"));

  // Stopped after the first evaluation and resumed: the same best/ and the same stop.
  const std::string run_b = test::temp_dir("run_best_b") + "/r";
  Recipe rb = Recipe::from_yaml_text(test::tiny_recipe_text(data, run_b, 80), "t", sets);
  run_training(rb, /*stop_after=*/3);
  run_training(rb);
  EXPECT_EQ(read_metrics(run_b).size(), rows.size());
  EXPECT_EQ(read_file(run_b + "/best/fuser.safetensors"), read_file(run + "/best/fuser.safetensors"));

  // Selection on the held-out exact-match accuracy: the best step is the most accurate one (ties
  // go to the lower loss); every evaluation logs both figures. (What counts as exact:
  // NextTokenLoss.ExactRowsAreThoseWhoseEveryTokenIsTheArgmax.)
  const std::string run_c = test::temp_dir("run_best_acc") + "/r";
  std::vector<std::string> by_acc = sets;
  by_acc.push_back("train.select_on=accuracy");
  by_acc.push_back("data.eval=" + data);  // the training pairs: accuracy rises as the fuser learns to copy
  by_acc.push_back("train.early_stop_evals=0");
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run_c, 24), "t", by_acc));
  double best_acc = -1, best_acc_loss = 0;
  int64_t acc_step = 0;
  for (const auto& row : read_metrics(run_c)) {
    if (!row.contains("eval_accuracy")) continue;
    const double a = row["eval_accuracy"].get<double>(), l = row["eval_loss"].get<double>();
    EXPECT_GE(a, 0.0);
    EXPECT_LE(a, 1.0);
    if (a > best_acc || (a == best_acc && l < best_acc_loss)) {
      best_acc = a;
      best_acc_loss = l;
      acc_step = row["step"].get<int64_t>();
    }
  }
  const auto by_acc_best = load_fuser_checkpoint(run_c + "/best");
  EXPECT_EQ(by_acc_best.source.at("steps").get<int64_t>(), acc_step);
  EXPECT_EQ(by_acc_best.source.at("eval_accuracy").get<double>(), best_acc);
  EXPECT_EQ(by_acc_best.source.at("selected_on").get<std::string>(), "accuracy");

  // Selection without a held-out loss to select on is refused, naming the key.
  EXPECT_NE(test::error_of([&] {
              Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 8), "t", {"checkpoint.keep_best=true"});
            }).find("checkpoint.keep_best"),
            std::string::npos);
}

TEST(Trainer, OnlyFuserParametersChange) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 8, 2);
  Recipe r = Recipe::from_yaml_text(test::tiny_recipe_text(data, test::temp_dir("run2"), 3), "test");
  FuserTrainer trainer(r);
  std::map<std::string, torch::Tensor> frozen_before;
  for (const auto& kv : trainer.pipeline().receiver()->weights()) frozen_before["r." + kv.first] = kv.second.clone();
  for (const auto& kv : trainer.pipeline().sharers()[0]->weights()) frozen_before["s." + kv.first] = kv.second.clone();
  auto params = trainer.named_parameters();
  std::map<std::string, torch::Tensor> fuser_before;
  for (const auto& [n, p] : params) fuser_before[n] = p.detach().clone();
  AdamW opt(params, AdamWOptions{});
  PairedShardReader reader(data + "/shard-00000.h5");
  std::vector<PairedSample> batch = {reader.read(0), reader.read(1), reader.read(2)};
  for (int step = 0; step < 3; ++step) {
    trainer.set_mode(true, step);
    opt.zero_grad();
    auto ml = trainer.forward(batch, 100 + step);
    (ml.loss_sum / ml.tokens).backward();
    opt.step(1e-3);
  }
  for (const auto& kv : trainer.pipeline().receiver()->weights())
    EXPECT_TRUE(torch::equal(kv.second, frozen_before["r." + kv.first])) << "receiver " << kv.first;
  for (const auto& kv : trainer.pipeline().sharers()[0]->weights())
    EXPECT_TRUE(torch::equal(kv.second, frozen_before["s." + kv.first])) << "sharer " << kv.first;
  int changed = 0;
  for (const auto& [n, p] : params) {
    if (n.find("gate_temperature") != std::string::npos) continue;
    changed += !torch::equal(p.detach(), fuser_before[n]);
  }
  EXPECT_GE(changed, static_cast<int>(params.size()) - 2) << "fuser parameters should all move";
}

TEST(Trainer, ResumeIsBitExact) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 3);
  // 2N steps in one run.
  const std::string run_a = test::temp_dir("runa") + "/a";
  const std::string final_a = run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run_a, 8), "a"));
  // N steps, a stop right after the checkpoint of step N, then a resumed run to 2N.
  const std::string run_b = test::temp_dir("runb") + "/b";
  Recipe rb = Recipe::from_yaml_text(test::tiny_recipe_text(data, run_b, 8), "b");
  run_training(rb, /*stop_after=*/4);
  EXPECT_FALSE(file_exists(run_b + "/final/fuser.safetensors"));
  const std::string final_b = run_training(rb);
  auto a = load_safetensors(final_a + "/fuser.safetensors");
  auto b = load_safetensors(final_b + "/fuser.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& kv : a) {
    ASSERT_TRUE(b.count(kv.first)) << kv.first;
    EXPECT_TRUE(torch::equal(kv.second, b[kv.first])) << "differs after resume: " << kv.first;
  }
  // The metrics of the resumed run continue the same curve.
  auto ma = read_metrics(run_a), mb = read_metrics(run_b);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) EXPECT_EQ(ma[i]["loss"], mb[i]["loss"]) << "step " << i + 1;
}

using test::error_of;

TEST(TrainerErrors, NonFiniteLossIsSkippedThenStops) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 8, 4);
  // A fuser whose projection output is NaN: every step's loss is NaN.
  const std::string run0 = test::temp_dir("nan0");
  Recipe r0 = Recipe::from_yaml_text(test::tiny_recipe_text(data, run0, 1), "r0");
  FuserTrainer t0(r0);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : t0.pipeline().mutable_fusers().sharers[0].fuser->named_parameters())
      if (p.key().find("proj_out_bias") != std::string::npos) p.value().fill_(NAN);
    for (auto& p : t0.pipeline().mutable_fusers().sharers[0].fuser->named_parameters())
      if (p.key().find("gate_logit") != std::string::npos) p.value().fill_(5.0);
  }
  save_fuser_checkpoint(run0 + "/nan_fuser", t0.fusers());
  const std::string run = test::temp_dir("nan");
  Recipe r = Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 10), "r",
                                    {"fuser.init_from=" + run0 + "/nan_fuser", "train.max_bad_steps=2"});
  const std::string msg = error_of([&] { run_training(r); });
  EXPECT_NE(msg.find("3 steps with a non-finite loss"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.max_bad_steps = 2"), std::string::npos) << msg;
  auto rows = read_metrics(run);
  ASSERT_EQ(rows.size(), 2u);  // the two skipped steps were logged, the third stopped the run
  EXPECT_TRUE(rows[0]["skipped"].get<bool>());
}

TEST(TrainerErrors, UnwritableOutputFolderFailsBeforeTraining) {
  // A folder under a regular file cannot be created by anyone, root included.
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 8, 5);
  const std::string blocker = test::temp_dir("blk") + "/file";
  std::ofstream(blocker) << "x";
  Recipe r = Recipe::from_yaml_text(test::tiny_recipe_text(data, blocker + "/run", 2), "r");
  const std::string msg = [&] {
    try {
      run_training(r);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_NE(msg.find(blocker), std::string::npos) << "error should name the folder: " << msg;
}

TEST(TrainerErrors, AlignmentOrSharerCountNotMatchingTheDataIsNamed) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 8, 6);
  // The synthetic data has one sharer; a recipe with two must be refused before training.
  Recipe r = Recipe::from_yaml_text(test::tiny_recipe_text(data, test::temp_dir("run"), 2), "r");
  r.sharers.push_back(r.sharers[0]);
  const std::string msg = error_of([&] { run_training(r); });
  EXPECT_NE(msg.find("prepared for 1 sharer(s) but the recipe names 2"), std::string::npos) << msg;
}

TEST(TrainerErrors, ReceiverNotMatchingAnInitFuserIsNamed) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 8, 7);
  const std::string run0 = test::temp_dir("init0");
  Recipe r0 = Recipe::from_yaml_text(test::tiny_recipe_text(data, run0, 1), "r0");
  save_fuser_checkpoint(run0 + "/f", FuserTrainer(r0).fusers());
  // The same fuser with another receiver architecture (qwen2-tiny: other KV head dim).
  Recipe r = Recipe::from_yaml_text(test::tiny_recipe_text(data, test::temp_dir("run"), 1), "r",
                                    {"fuser.init_from=" + run0 + "/f",
                                     "receiver=" + test::source_path("tests/fixtures/models/qwen2-tiny-bf16")});
  const std::string msg = error_of([&] { FuserTrainer t(r); });
  EXPECT_NE(msg.find("receiver"), std::string::npos) << msg;
  EXPECT_NE(msg.find("KV heads of dim"), std::string::npos) << msg;
}

TEST(TrainerKill, SigkillDuringCheckpointsLeavesALoadableOneAndResumeWorks) {
  const char* build = std::getenv("C2C_BUILD_DIR");
  const std::string c2c = build ? std::string(build) + "/c2c" : "";
  if (c2c.empty() || access(c2c.c_str(), X_OK) != 0) GTEST_SKIP() << "needs the c2c binary (C2C_BUILD_DIR)";
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 8);
  const std::string run = test::temp_dir("kill") + "/run";
  // Wider fuser so each save takes long enough to be interrupted; a checkpoint every step.
  const std::string text = test::tiny_recipe_text(data, run, 400);
  const std::string recipe_path = test::temp_dir("kr") + "/r.yaml";
  std::ofstream(recipe_path) << text;
  std::vector<std::string> args = {c2c, "train", recipe_path, "--set", "checkpoint.every=1",
                                   "--set", "fuser.hidden_dim=256", "--set", "fuser.intermediate_dim=256"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, c2c.c_str(), &fa, nullptr, argv.data(), environ), 0);
  // Wait for a few checkpoints, then kill at a moment unrelated to the save cycle.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    auto last = latest_checkpoint(run);
    if (last && last->find("step_00000003") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(37));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before the kill";
  auto last = latest_checkpoint(run);
  ASSERT_TRUE(last.has_value());
  // The newest complete checkpoint loads, and a resume continues from its step.
  Recipe r = Recipe::from_yaml_text(text, "r", {"checkpoint.every=1", "fuser.hidden_dim=256",
                                                "fuser.intermediate_dim=256"});
  const int64_t at = read_json(*last + "/state.json")["step"].get<int64_t>();
  EXPECT_GE(at, 3);
  r.train.max_steps = 400;
  const std::string where = run_training(r, /*stop_after=*/at + 1);
  EXPECT_NE(where.find("step_"), std::string::npos);
  EXPECT_EQ(read_json(where + "/state.json")["step"].get<int64_t>(), at + 1);
}

TEST(Recipe, UnknownKeyAndWrongTypeAreErrorsNamingThem) {
  try {
    Recipe::from_yaml_text("receiver: a\nsharers: [b]\ndata: {train: x}\ntrain: {lr: 1e-4, lrr: 3}\n", "r.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'train.lrr'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("r.yaml"), std::string::npos) << e.what();
  }
  try {
    Recipe::from_yaml_text("receiver: a\nsharers: [b]\ndata: {train: x}\ntrain: {micro_batch_size: four}\n", "r.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.micro_batch_size"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("integer"), std::string::npos) << e.what();
  }
  Recipe r = Recipe::from_yaml_text("receiver: a\nsharers: [b]\ndata: {train: x}\n", "r.yaml",
                                    {"train.lr=3e-4", "checkpoint.dir=runs/x"});
  EXPECT_DOUBLE_EQ(r.train.lr, 3e-4);
  EXPECT_EQ(r.checkpoint.dir, "runs/x");
  EXPECT_THROW(Recipe::from_yaml_text("receiver: a\nsharers: [b]\ndata: {train: x}\n", "r", {"train.nope=1"}), Error);
  // A value outside a closed list names the key and the accepted values.
  try {
    Recipe::from_yaml_text("receiver: a\nsharers: [b]\ndata: {train: x}\nfuser: {variant: gates_only}\n", "r.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fuser.variant"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("projection_fusion"), std::string::npos) << e.what();
  }
  // The printed recipe reads back to the same recipe.
  Recipe back = Recipe::from_yaml_text(r.to_yaml(), "printed");
  EXPECT_EQ(back.to_yaml(), r.to_yaml());
}

TEST(Optimizer, ScheduleWarmsUpThenDecays) {
  EXPECT_DOUBLE_EQ(scheduled_lr(1.0, 0, 100, 10, "linear"), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(1.0, 9, 100, 10, "linear"), 1.0);
  EXPECT_DOUBLE_EQ(scheduled_lr(1.0, 10, 100, 10, "linear"), 1.0);
  EXPECT_NEAR(scheduled_lr(1.0, 55, 100, 10, "linear"), 0.5, 1e-12);
  EXPECT_NEAR(scheduled_lr(1.0, 55, 100, 10, "cosine"), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(scheduled_lr(1.0, 50, 100, 10, "constant"), 1.0);
}

TEST(Optimizer, MatchesTorchAdamWFormula) {
  // One parameter, two steps, checked against the closed form of torch.optim.AdamW.
  auto p = torch::tensor({1.0f, -2.0f});
  AdamW opt({{"p", p}}, AdamWOptions{0.9, 0.999, 1e-8, 0.01});
  p.mutable_grad() = torch::tensor({0.5f, 0.25f});
  opt.step(0.1);
  // Step 1: p *= 1 - lr*wd; m = 0.1 g; v = 0.001 g^2; p -= lr * (m/0.1) / (sqrt(v/0.001) + eps).
  const double expect0 = 1.0 * (1 - 0.001) - 0.1 * 0.5 / (0.5 + 1e-8);
  EXPECT_NEAR(p[0].item<double>(), expect0, 1e-6);
}

TEST(Gates, FinalStateSaysWhatTrainingSawAndWhatInferenceUses) {
  // Row 0 keys, row 1 values, of receiver layers 4 and 7; logits as the toy world's gated fuser
  // ended them (they hover a few tau from 0 as tau shrinks).
  auto logits = torch::tensor({{-0.0046, -0.0016}, {0.0024, 0.5}}, torch::kFloat32);
  const double tau = 0.001;
  auto plain = final_gate_states(logits, {4, 7}, tau, /*gate_noise=*/false);
  ASSERT_EQ(plain.size(), 4u);
  EXPECT_EQ(plain[0].receiver_layer, 4);
  EXPECT_TRUE(plain[0].key);
  EXPECT_EQ(plain[3].receiver_layer, 7);
  EXPECT_FALSE(plain[3].key);
  // sigmoid(logit / tau), to the float precision of the stored logits.
  EXPECT_NEAR(plain[0].training, 0.00995, 2e-4);  // closed and settled
  EXPECT_FALSE(plain[0].open);
  EXPECT_FALSE(plain[0].part_open);
  EXPECT_NEAR(plain[1].training, 0.1680, 2e-3);  // 17% open in training, closed at inference
  EXPECT_FALSE(plain[1].open);
  EXPECT_TRUE(plain[1].part_open);
  EXPECT_NEAR(plain[2].training, 0.9168, 2e-3);  // 92% open in training, open at inference
  EXPECT_TRUE(plain[2].open);
  EXPECT_TRUE(plain[2].part_open);
  EXPECT_NEAR(plain[3].training, 1.0, 1e-12);
  EXPECT_FALSE(plain[3].part_open);

  // With Gumbel noise and a small tau, the training mean is the chance 1 - exp(-e^logit) that
  // the gate opened: 63% at logit 0, where inference closes it.
  auto noisy = final_gate_states(torch::tensor({{0.0, -5.0}, {2.0, -0.3}}), {0, 1}, tau, true);
  EXPECT_NEAR(noisy[0].training, 1 - std::exp(-1.0), 1e-3);
  EXPECT_FALSE(noisy[0].open);
  EXPECT_TRUE(noisy[0].part_open);
  EXPECT_NEAR(noisy[1].training, 1 - std::exp(-std::exp(-5.0)), 1e-3);
  EXPECT_FALSE(noisy[1].part_open);
  EXPECT_NEAR(noisy[2].training, 1 - std::exp(-std::exp(2.0)), 1e-3);
  EXPECT_TRUE(noisy[2].open);
  EXPECT_NEAR(noisy[3].training, 1 - std::exp(-std::exp(-0.3)), 1e-3);
  // At tau 1 the mean of sigmoid(logit + G) at logit 0 (numerically, 2^16 points: 0.59635).
  auto warm = final_gate_states(torch::zeros({2, 1}), {0}, 1.0, true);
  EXPECT_NEAR(warm[0].training, 0.59635, 1e-3);

  const std::string text = describe_final_gates(plain, tau);
  EXPECT_NE(text.find("receiver layer 7:"), std::string::npos) << text;
  EXPECT_NE(text.find("key 0.17 -> closed (part-open)"), std::string::npos) << text;
  EXPECT_NE(text.find("warning: 2 of 4 gates"), std::string::npos) << text;
  auto settled = final_gate_states(torch::tensor({{-1.0}, {1.0}}), {3}, tau, false);
  EXPECT_EQ(describe_final_gates(settled, tau).find("warning"), std::string::npos);

  EXPECT_THROW(final_gate_states(torch::zeros({2, 3}), {0, 1}, tau, false), Error);
}

}  // namespace
