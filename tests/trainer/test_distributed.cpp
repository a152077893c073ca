// Data parallelism (trainer/distributed.h) on the tiny fixture pair: two ranks, each a process
// running this binary's worker test with half of every batch, reach the same fuser weights as one
// rank with whole batches. Gate noise and dropout are switched off (fuser.gate_noise: false,
// fuser.dropout: 0) because their draws are keyed by rank, not by sample. A rank whose peer
// never comes fails with an error naming itself and the rendezvous instead of hanging.
#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "data/paired_dataset.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"
#include "tests/trainer/synthetic_pairs.h"
#include "trainer/distributed.h"
#include "trainer/recipe.h"
#include "trainer/trainer.h"

extern char** environ;
using namespace c2c;

namespace {

// pack_window 1: each step's global rows are the same set whatever the world size (stream.h).
std::string recipe_text(const std::string& data, const std::string& run_dir, int steps,
                        int micro_batch, double timeout_s = 60) {
  return "receiver: " + test::source_path("tests/fixtures/models/qwen3-tiny") + "\n" +
         "sharers: [" + test::source_path("tests/fixtures/models/llama3-tiny-sharded") + "]\n" +
         "alignment: identity\n"
         "fuser: {hidden_dim: 32, intermediate_dim: 32, num_layers: 3, dropout: 0.0, gate_noise: false}\n"
         "data: {train: " + data + ", shuffle_buffer: 8, pack_window: 1}\n"
         "train: {max_steps: " + std::to_string(steps) + ", micro_batch_size: " +
         std::to_string(micro_batch) + ", grad_accum: 2, lr: 3.0e-3, warmup_ratio: 0.1, seed: 7, "
         "threads: 1, dist_timeout_s: " + std::to_string(timeout_s) + "}\n"
         "checkpoint: {dir: " + run_dir + ", every: 0, keep_last: 2}\n";
}

std::string self_exe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

pid_t spawn_worker(const std::string& recipe_path, int rank, int world, int port) {
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string v(*e);
    if (v.rfind("RANK=", 0) == 0 || v.rfind("WORLD_SIZE=", 0) == 0 || v.rfind("SLURM_", 0) == 0)
      continue;
    env_s.push_back(v);
  }
  env_s.push_back("C2C_DIST_TEST_RECIPE=" + recipe_path);
  env_s.push_back("RANK=" + std::to_string(rank));
  env_s.push_back("LOCAL_RANK=" + std::to_string(rank));
  env_s.push_back("WORLD_SIZE=" + std::to_string(world));
  env_s.push_back("MASTER_ADDR=127.0.0.1");
  env_s.push_back("MASTER_PORT=" + std::to_string(port));
  std::vector<char*> envp;
  for (auto& v : env_s) envp.push_back(v.data());
  envp.push_back(nullptr);
  std::string exe = self_exe(), filter = "--gtest_filter=DistributedWorker.Run";
  char* argv[] = {exe.data(), filter.data(), nullptr};
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, envp.data()), 0);
  return pid;
}

int free_port_guess() { return 20000 + static_cast<int>(getpid() % 20000); }

}  // namespace

// The worker role: only does something when spawned by the test below.
TEST(DistributedWorker, Run) {
  const char* recipe_path = std::getenv("C2C_DIST_TEST_RECIPE");
  if (!recipe_path) GTEST_SKIP() << "worker role of DataParallel tests";
  run_training(Recipe::load(recipe_path));
}

TEST(Distributed, SingleRankCollectivesAreNoOps) {
  DistEnv env;
  Distributed d(env, torch::kCPU);
  EXPECT_TRUE(d.is_main());
  EXPECT_EQ(d.backend(), "none");
  auto t = torch::arange(5, torch::kFloat32);
  auto before = t.clone();
  d.all_reduce_sum({t});
  d.all_reduce_mean({t});
  d.broadcast({t});
  d.barrier();
  EXPECT_TRUE(torch::equal(t, before));
  EXPECT_EQ(d.all_reduce_sum_scalar(2.5), 2.5);
}

TEST(DataParallel, TwoRanksWithHalfBatchesMatchOneRank) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 11);
  const int steps = 3;
  // Two ranks x micro-batch 1 x accumulation 2 ...
  const std::string run2 = test::temp_dir("ddp2") + "/r";
  const std::string recipe2 = test::temp_dir("ddp2recipe") + "/recipe.yaml";
  write_file_atomic(recipe2, recipe_text(data, run2, steps, /*micro_batch=*/1));
  const int port = free_port_guess();
  pid_t p0 = spawn_worker(recipe2, 0, 2, port), p1 = spawn_worker(recipe2, 1, 2, port);
  // ... against one rank x micro-batch 2 x accumulation 2, in this process meanwhile.
  const std::string run1 = test::temp_dir("ddp1") + "/r";
  const std::string final1 =
      run_training(Recipe::from_yaml_text(recipe_text(data, run1, steps, /*micro_batch=*/2), "one"));
  for (pid_t p : {p0, p1}) {
    int status = 0;
    ASSERT_EQ(waitpid(p, &status, 0), p);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker failed, status " << status;
  }
  auto a = load_safetensors(final1 + "/fuser.safetensors");
  auto b = load_safetensors(run2 + "/final/fuser.safetensors");
  ASSERT_EQ(a.size(), b.size());
  double worst = 0, sum_diff = 0;
  int64_t count = 0;
  for (const auto& kv : a) {
    ASSERT_TRUE(b.count(kv.first)) << kv.first;
    const auto& x = kv.second;
    const auto& y = b[kv.first];
    worst = std::max(worst, (x - y).abs().max().item<double>());
    // Adam's first updates are ~lr * sign(grad): a gradient element near 0 may flip with the
    // reduction order, so single elements get atol 1e-3 (lr 3e-3); the mean must stay tiny.
    sum_diff += (x - y).abs().sum().item<double>();
    count += x.numel();
    EXPECT_TRUE(torch::allclose(x, y, /*rtol=*/1e-3, /*atol=*/1e-3))
        << kv.first << ": max |diff| " << (x - y).abs().max().item<double>();
  }
  // Only rank 0 wrote metrics; its losses are global and match the single rank's.
  std::vector<double> l1, l2;
  for (auto* pair : {&l1, &l2}) {
    std::ifstream in((pair == &l1 ? run1 : run2) + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);)
      pair->push_back(nlohmann::json::parse(line)["loss"].get<double>());
  }
  ASSERT_EQ(l1.size(), static_cast<size_t>(steps));
  ASSERT_EQ(l2.size(), static_cast<size_t>(steps));
  for (int i = 0; i < steps; ++i) EXPECT_NEAR(l1[i], l2[i], 1e-5 * std::abs(l1[i])) << "step " << i + 1;
  std::cerr << "max |weight diff| one rank vs two ranks after " << steps << " steps: " << worst
            << ", mean " << sum_diff / count << "; losses " << l1.back() << " vs " << l2.back() << "\n";
  EXPECT_LT(sum_diff / count, 1e-5) << "mean |weight diff|";
}

TEST(DataParallel, MissingPeerFailsNamingTheRankInsteadOfHanging) {
  DistEnv env;
  env.rank = 0;
  env.world_size = 2;
  env.master_port = free_port_guess() + 1;
  const auto t0 = std::chrono::steady_clock::now();
  std::string what;
  try {
    Distributed d(env, torch::kCPU, std::chrono::seconds(2));
  } catch (const Error& e) {
    what = e.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(what.find("rank 0/2"), std::string::npos) << what;
  EXPECT_NE(what.find("rank(s) did not join"), std::string::npos) << what;
  EXPECT_LT(s, 30.0);
}
