// Runs that cannot destroy each other's work (trainer/run_dir.h, trainer/checkpoint.h) and recipe
// values checked at load time: the run-folder lock (in one process and between two `c2c train`
// processes), a fresh start on a folder holding an earlier run (refused; moved aside intact with
// checkpoint.overwrite), every out-of-range value refused naming its key, data.max_samples, a kill
// before final/, a damaged newest checkpoint, half-deleted step folders, CLI mistakes.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "data/tokenizer.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/fuser_checkpoint.h"
#include "modules/official_checkpoint.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"
#include "tests/trainer/synthetic_pairs.h"
#include "trainer/cli.h"
#include "trainer/recipe.h"
#include "trainer/run_dir.h"
#include "trainer/trainer.h"

using namespace c2c;
namespace fs = std::filesystem;

namespace {


std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(RunDirLock, ASecondHolderIsRefusedNamingTheFirst) {
  const std::string dir = test::temp_dir("lock");
  {
    RunDirLock first(dir);
    EXPECT_TRUE(first.takeover().empty());
    const std::string what = test::error_of([&] { RunDirLock second(dir); });
    EXPECT_NE(what.find("in use by another training run"), std::string::npos) << what;
    EXPECT_NE(what.find("pid " + std::to_string(getpid())), std::string::npos) << what;
    EXPECT_NE(what.find(dir), std::string::npos) << what;
  }
  RunDirLock again(dir);  // released when the first went away
  EXPECT_TRUE(again.takeover().empty());
}

TEST(RunDirLock, ALockFileOfADeadProcessIsTakenOverSayingSo) {
  const std::string dir = test::temp_dir("lock_stale");
  write_file_atomic(dir + "/.c2c.lock", "pid 999999 on host elsewhere\n");
  RunDirLock lock(dir);
  EXPECT_EQ(lock.takeover(), "pid 999999 on host elsewhere");
  EXPECT_NE(read_text(dir + "/.c2c.lock").find("pid " + std::to_string(getpid())), std::string::npos);
}

// Two `c2c train` on one checkpoint.dir: the second refuses at once, the first finishes intact.
TEST(RunDirLock, TwoTrainersOnOneFolder) {
  const char* build = std::getenv("C2C_BUILD_DIR");
  const std::string c2c = build ? std::string(build) + "/c2c" : "";
  if (c2c.empty() || access(c2c.c_str(), X_OK) != 0) GTEST_SKIP() << "needs the c2c binary (C2C_BUILD_DIR)";
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 3);
  const std::string dir = test::temp_dir("two_trainers"), run = dir + "/run";
  const std::string recipe = dir + "/recipe.yaml";
  write_file_atomic(recipe, test::tiny_recipe_text(data, run, 400));
  std::string a0 = c2c, a1 = "train", a2 = recipe;
  char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, (dir + "/first.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t first = 0;
  ASSERT_EQ(posix_spawn(&first, c2c.c_str(), &fa, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  // Wait until the first run holds the lock and has started its steps.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (read_text(run + "/metrics.jsonl").empty()) {
    ASSERT_EQ(waitpid(first, nullptr, WNOHANG), 0) << "the first run ended early: " << read_text(dir + "/first.log");
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::string what = test::error_of([&] { run_training(Recipe::load(recipe)); });
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int status = 0;
  ASSERT_EQ(waitpid(first, &status, 0), first);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(dir + "/first.log");
  EXPECT_NE(what.find("in use by another training run"), std::string::npos) << what;
  EXPECT_NE(what.find("pid " + std::to_string(first)), std::string::npos) << what;
  EXPECT_LT(waited, 10.0) << "the second run did not refuse at once";
  // The first run's result is whole: 400 steps of metrics and a final fuser.
  std::ifstream in(run + "/metrics.jsonl");
  int64_t last = 0;
  for (std::string line; std::getline(in, line);) last = nlohmann::json::parse(line).at("step").get<int64_t>();
  EXPECT_EQ(last, 400);
  EXPECT_TRUE(fs::exists(run + "/final/fuser.safetensors"));
}

TEST(RunDir, AFreshStartOnAnEarlierRunIsRefusedOrMovesItAsideIntact) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 4);
  const std::string run = test::temp_dir("fresh") + "/run";
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 6), "test"));
  const std::string metrics = read_text(run + "/metrics.jsonl");
  const std::string fuser = read_text(run + "/final/fuser.safetensors");
  ASSERT_FALSE(metrics.empty());

  const std::string what = test::error_of([&] {
    run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 3), "test", {"checkpoint.resume=false"}));
  });
  EXPECT_NE(what.find("holds an earlier run"), std::string::npos) << what;
  EXPECT_NE(what.find("checkpoint.overwrite"), std::string::npos) << what;
  EXPECT_EQ(read_text(run + "/metrics.jsonl"), metrics) << "the refused run touched the earlier one";

  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 3), "test",
                                      {"checkpoint.resume=false", "checkpoint.overwrite=true"}));
  std::vector<std::string> aside;
  for (const auto& e : fs::directory_iterator(fs::path(run).parent_path()))
    if (e.path().filename().string().rfind("run.replaced-", 0) == 0) aside.push_back(e.path().string());
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(read_text(aside[0] + "/metrics.jsonl"), metrics);
  EXPECT_EQ(read_text(aside[0] + "/final/fuser.safetensors"), fuser);
  // The new run is a run of its own: 3 steps, nothing of the old one's 6.
  std::ifstream in(run + "/metrics.jsonl");
  int64_t last = 0;
  for (std::string line; std::getline(in, line);) last = nlohmann::json::parse(line).at("step").get<int64_t>();
  EXPECT_EQ(last, 3);
}

// Each value that was accepted silently before is refused at load time, naming the key.
TEST(RecipeRanges, OutOfRangeValuesAreRefusedNamingTheKey) {
  const std::string base = test::tiny_recipe_text("some/data", "runs/x", 4);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"train.log_every=0", "train.log_every"},
      {"train.adam_beta1=2", "train.adam_beta1"},
      {"train.adam_beta2=-1", "train.adam_beta2"},
      {"train.adam_eps=0", "train.adam_eps"},
      {"train.weight_decay=-1", "train.weight_decay"},
      {"data.shuffle_buffer=-5", "data.shuffle_buffer"},
      {"train.max_grad_norm=-1", "train.max_grad_norm"},
      {"checkpoint.every=-1", "checkpoint.every"},
      {"fuser.final_temperature=2", "fuser.final_temperature"},
      {"train.eval_batches=0", "train.eval_batches"},
      {"train.lr=.inf", "train.lr"},
      {"train.lr=.nan", "train.lr"},
      {"data.max_samples=-3", "data.max_samples"},
      {"train.eval_every=5", "data.eval"},
  };
  for (const auto& [set, key] : bad) {
    const std::string what = test::error_of([&] { Recipe::from_yaml_text(base, "test", {set}); });
    EXPECT_NE(what.find(key), std::string::npos) << set << " gave: '" << what << "'";
  }
  // The defaults and sane edges pass.
  EXPECT_NO_THROW(Recipe::from_yaml_text(base, "test", {"train.max_grad_norm=0", "data.shuffle_buffer=0",
                                                        "train.adam_beta1=0", "data.max_samples=8"}));
}

// data.max_samples is a key that works: one epoch of 8 of the 40 samples is 2 steps of 2 x 2.
TEST(RunDir, MaxSamplesLimitsWhatARunReads) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 40, 5);
  const std::string run = test::temp_dir("max_samples") + "/run";
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 0), "test", {"data.max_samples=8"}));
  std::ifstream in(run + "/metrics.jsonl");
  int64_t last = 0;
  for (std::string line; std::getline(in, line);) last = nlohmann::json::parse(line).at("step").get<int64_t>();
  EXPECT_EQ(last, 2);
}

// Killed after the last checkpoint and before final/ (stop_after = the last step saves the
// checkpoint and returns): the resumed run writes a final/ byte-identical to an uninterrupted
// run's, gate temperature included, and leaves no temporary file behind.
TEST(RunDir, AKillBeforeFinalResumesToTheUninterruptedFinal) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 6);
  // Both runs use one folder: the recipe, checkpoint.dir included, is recorded in fuser.json.
  const std::string root = test::temp_dir("final"), run = root + "/run";
  const Recipe recipe =
      Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 12), "t", {"checkpoint.every=4"});
  run_training(recipe);
  fs::rename(run + "/final", root + "/whole");
  fs::remove_all(run);
  run_training(recipe, /*stop_after=*/12);
  ASSERT_FALSE(fs::exists(run + "/final"));
  fs::create_directories(run + "/final");
  write_file_atomic(run + "/final/fuser.json.tmp.12345", "{");  // a kill mid-write
  fs::create_directories(run + "/.final.tmp");
  write_file_atomic(run + "/.final.tmp/fuser.json", "{");
  run_training(recipe);
  for (const char* f : {"fuser.safetensors", "fuser.json"}) {
    const std::string a = read_text(root + "/whole/" + f), b = read_text(run + "/final/" + f);
    EXPECT_FALSE(a.empty()) << f;
    EXPECT_TRUE(a == b) << f << " differs from the uninterrupted run's";
  }
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(run + "/final")) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"fuser.json", "fuser.safetensors"}));
  EXPECT_FALSE(fs::exists(run + "/.final.tmp"));
}

// A damaged newest checkpoint: the run names it and resumes from the one before (or, with
// checkpoint.strict_resume, stops naming it).
TEST(RunDir, ACorruptNewestCheckpointFallsBackToTheOneBefore) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 7);
  const std::string run = test::temp_dir("corrupt") + "/run";
  const std::vector<std::string> sets = {"checkpoint.every=4"};
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 9), "t", sets), /*stop_after=*/8);
  const std::string newest = run + "/checkpoints/step_00000008";
  ASSERT_TRUE(fs::exists(newest + "/optimizer.safetensors"));
  write_file_atomic(newest + "/optimizer.safetensors", "garbage, not safetensors");
  // With checkpoint.strict_resume the run stops instead, naming the checkpoint and the switch.
  std::vector<std::string> strict = sets;
  strict.push_back("checkpoint.strict_resume=true");
  const std::string refused = test::error_of([&] {
    run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 9), "t", strict));
  });
  EXPECT_NE(refused.find(newest + " cannot be loaded"), std::string::npos) << refused;
  EXPECT_NE(refused.find("checkpoint.strict_resume"), std::string::npos) << refused;
  EXPECT_FALSE(fs::exists(run + "/final"));
  testing::internal::CaptureStderr();
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 9), "t", sets));
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find(newest + " cannot be loaded, falling back"), std::string::npos) << log;
  EXPECT_NE(log.find("resumed from " + run + "/checkpoints/step_00000004 at step 4"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(run + "/final/fuser.safetensors"));
}

// export.official: the run writes the official layout beside final/, which imports back to the
// same weights (rounded to bf16); an ablation cannot be exported and is refused at load time.
TEST(RunDir, ExportOfficialWritesTheOfficialLayoutBesideFinal) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 9);
  const std::string run = test::temp_dir("export") + "/run";
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 2), "t", {"export.official=true"}));
  FuserCheckpoint ours = load_fuser_checkpoint(run + "/final");
  FuserCheckpoint official = import_official_checkpoint(run + "/official");
  ASSERT_EQ(official.sharers.size(), ours.sharers.size());
  auto a = ours.sharers[0].fuser->layer_state(0), b = official.sharers[0].fuser->layer_state(0);
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k)
    EXPECT_TRUE(torch::equal(b[k].second, a[k].second.to(torch::kBFloat16))) << a[k].first;
  EXPECT_NE(read_file(run + "/official/README.md").find("export-official"), std::string::npos);
  const std::string m = test::error_of([&] {
    Recipe::from_yaml_text(test::tiny_recipe_text(data, run + "2", 2), "t",
                           {"export.official=true", "fuser.variant=projection"});
  });
  EXPECT_NE(m.find("export.official"), std::string::npos) << m;
}

// What an interrupted save or pruning leaves is removed when the next run starts.
TEST(RunDir, HalfDeletedStepFoldersAreCleanedOnStart) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 8);
  const std::string run = test::temp_dir("clean") + "/run";
  fs::create_directories(run + "/checkpoints/step_00000002/fuser");  // state.json already deleted
  fs::create_directories(run + "/checkpoints/.step_00000001.deleting");
  fs::create_directories(run + "/checkpoints/.step_00000003.tmp");
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 3), "t"));
  EXPECT_FALSE(fs::exists(run + "/checkpoints/step_00000002"));
  EXPECT_FALSE(fs::exists(run + "/checkpoints/.step_00000001.deleting"));
  EXPECT_FALSE(fs::exists(run + "/checkpoints/.step_00000003.tmp"));
  EXPECT_TRUE(fs::exists(run + "/checkpoints/step_00000003/state.json"));
}

TEST(RunDir, TheCommandLineNamesAStrayArgumentAndAFolderGivenAsRecipe) {
  const std::string dir = test::temp_dir("cli");
  const std::string recipe = dir + "/r.yaml";
  write_file_atomic(recipe, test::tiny_recipe_text("some/data", dir + "/run", 3));
  std::string what = test::error_of([&] { cli::cmd_train({recipe, "--set", "train.lr", "3e-4"}); });
  EXPECT_NE(what.find("extra argument(s) '3e-4'"), std::string::npos) << what;
  EXPECT_NE(what.find("--set key=value"), std::string::npos) << what;
  what = test::error_of([&] { Recipe::load(dir); });
  EXPECT_NE(what.find("'" + dir + "' is a folder, not a YAML file"), std::string::npos) << what;
}

// Data prepared with other tokenizers than the recipe's models is refused, naming both.
TEST(RunDir, DataPreparedWithOtherTokenizersIsRefused) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 9);
  const std::string run = test::temp_dir("tok") + "/run";
  const Recipe recipe = Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 1), "t");
  const nlohmann::json manifest = read_json(data + "/manifest.json");
  auto with_prints = [&](const std::string& receiver, const std::string& sharer) {
    nlohmann::json m = manifest;
    m["receiver_tokenizer_fingerprint"] = tokenizer_fingerprint(receiver);
    m["sharer_tokenizer_fingerprints"] = {tokenizer_fingerprint(sharer)};
    write_file_atomic(data + "/manifest.json", m.dump(2));
  };
  with_prints(recipe.sharers[0], recipe.receiver);  // both swapped
  std::string what = test::error_of([&] { run_training(recipe); });
  EXPECT_NE(what.find("prepared with another receiver tokenizer"), std::string::npos) << what;
  EXPECT_NE(what.find(recipe.receiver), std::string::npos) << what;
  EXPECT_NE(what.find(tokenizer_fingerprint(recipe.sharers[0])), std::string::npos) << what;
  with_prints(recipe.receiver, recipe.receiver);  // the sharer's prepared as the receiver's
  what = test::error_of([&] { run_training(recipe); });
  EXPECT_NE(what.find("prepared with another sharer 0 tokenizer"), std::string::npos) << what;
  with_prints(recipe.receiver, recipe.sharers[0]);  // the right ones train
  EXPECT_NO_THROW(run_training(recipe));
}

// Resuming with changed schedule keys goes on, naming each change with its old and new value.
TEST(RunDir, AResumeWithAChangedScheduleNamesEachChange) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 10);
  const std::string run = test::temp_dir("sched") + "/run";
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 4), "t"), /*stop_after=*/2);
  testing::internal::CaptureStderr();
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 6), "t",
                                      {"train.lr=1.0e-3", "train.threads=2"}));
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("resumed with a changed train.max_steps: 4 -> 6"), std::string::npos) << log;
  EXPECT_NE(log.find("resumed with a changed train.lr: "), std::string::npos) << log;
  EXPECT_EQ(log.find("changed train.threads"), std::string::npos) << log;  // harmless: not named
  EXPECT_EQ(log.find("changed train.warmup_ratio"), std::string::npos) << log;  // unchanged
}

// A diverging run (lr 1e6 after 12 sane steps): it stops at max_bad_steps naming the start of
// the bad streak and the newest checkpoint at least 10 steps older, which pruning kept (keep_last
// is 2); no checkpoint holds non-finite weights or was written within 10 steps of a bad one.
TEST(RunDir, ADivergingRunNamesACheckpointFromBeforeIt) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 11);
  const std::string run = test::temp_dir("diverge") + "/run";
  const std::vector<std::string> sets = {"checkpoint.every=1", "checkpoint.keep_last=2", "train.max_bad_steps=3"};
  run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 12), "t", sets));
  auto diverge = sets;
  diverge.push_back("train.lr=1.0e6");
  testing::internal::CaptureStderr();
  const std::string what = test::error_of([&] {
    run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, run, 60), "t", diverge));
  });
  const std::string log = testing::internal::GetCapturedStderr();
  ASSERT_NE(what.find("training stopped: 4 steps with a non-finite loss"), std::string::npos) << what;
  const auto at = what.find("the streak began at step ");
  ASSERT_NE(at, std::string::npos) << what;
  const int64_t streak = std::stoll(what.substr(at + 25));
  const std::string named = "the newest checkpoint at least 10 steps older than it is " + run + "/checkpoints/step_";
  const auto n = what.find(named);
  ASSERT_NE(n, std::string::npos) << what;
  const int64_t safe = std::stoll(what.substr(n + named.size(), 8));
  EXPECT_LE(safe, streak - 10) << what;
  EXPECT_TRUE(fs::exists(run + "/checkpoints/" + what.substr(n + named.size() - 5, 13) + "/state.json")) << what;
  EXPECT_NE(log.find("withheld"), std::string::npos) << log;
  for (const auto& e : fs::directory_iterator(run + "/checkpoints")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step_", 0) != 0) continue;
    EXPECT_LT(std::stoll(name.substr(5)), streak) << name << " was written in the bad streak";
    for (const auto& [key, t] : load_safetensors(e.path().string() + "/fuser/fuser.safetensors"))
      EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name << " " << key;
  }
  // From scratch at lr 1e6 nothing is old enough to go back to, and the message says so.
  const std::string fresh = test::temp_dir("diverge_fresh") + "/run";
  const std::string what2 = test::error_of([&] {
    run_training(Recipe::from_yaml_text(test::tiny_recipe_text(data, fresh, 60), "t", diverge));
  });
  EXPECT_NE(what2.find("no checkpoint of this run is 10 or more steps older than it"), std::string::npos) << what2;
}
