// Data parallelism (trainer/distributed.h) on the tiny fixture pair: two ranks, each a process
// running this binary's worker test with half of every batch, reach the same fuser weights as one
// rank with whole batches. Gate noise and dropout are switched off (fuser.gate_noise: false,
// fuser.dropout: 0) because their draws are keyed by rank, not by sample. A rank whose peer
// never comes fails with an error naming itself and the rendezvous instead of hanging; a rank
// killed mid-run is named by the survivor; a run resumes on another world size from the same step;
// the gradient all-reduce of a bucket starts (and ends) while backward is still running.
#include <gtest/gtest.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "data/paired_dataset.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"
#include "tests/trainer/synthetic_pairs.h"
#include "trainer/checkpoint.h"
#include "trainer/distributed.h"
#include "trainer/recipe.h"
#include "trainer/run_dir.h"
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

// Starts `argv` with this process's environment minus any rank variables, plus `extra`;
// stderr goes to `stderr_path` when given.
pid_t spawn_with(std::vector<std::string> argv_s, const std::vector<std::string>& extra,
                 const std::string& stderr_path = "") {
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string v(*e);
    if (v.rfind("RANK=", 0) == 0 || v.rfind("WORLD_SIZE=", 0) == 0 || v.rfind("SLURM_", 0) == 0 ||
        v.rfind("LOCAL_RANK=", 0) == 0 || v.rfind("MASTER_", 0) == 0 || v.rfind("C2C_DIST_TEST_", 0) == 0)
      continue;
    env_s.push_back(v);
  }
  env_s.insert(env_s.end(), extra.begin(), extra.end());
  std::vector<char*> envp, argv;
  for (auto& v : env_s) envp.push_back(v.data());
  envp.push_back(nullptr);
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!stderr_path.empty())
    posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, argv_s[0].c_str(), &fa, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

std::vector<std::string> rank_env(int rank, int world, int port) {
  return {"RANK=" + std::to_string(rank), "LOCAL_RANK=" + std::to_string(rank),
          "WORLD_SIZE=" + std::to_string(world), "MASTER_ADDR=127.0.0.1",
          "MASTER_PORT=" + std::to_string(port)};
}

// This binary's worker test as rank `rank` of `world`; `stop_after` > 0 stops after that step.
pid_t spawn_worker(const std::string& recipe_path, int rank, int world, int port,
                   int64_t stop_after = 0, const std::string& stderr_path = "") {
  auto env = rank_env(rank, world, port);
  env.push_back("C2C_DIST_TEST_RECIPE=" + recipe_path);
  env.push_back("C2C_DIST_TEST_STOP_AFTER=" + std::to_string(stop_after));
  return spawn_with({self_exe(), "--gtest_filter=DistributedWorker.Run"}, env, stderr_path);
}

void wait_ok(pid_t p) {
  int status = 0;
  ASSERT_EQ(waitpid(p, &status, 0), p);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker failed, status " << status;
}

// Two workers of `recipe_path` (rank 0's stderr to `log0`); both must succeed.
void run_two_ranks(const std::string& recipe_path, int port, int64_t stop_after = 0,
                   const std::string& log0 = "") {
  pid_t p0 = spawn_worker(recipe_path, 0, 2, port, stop_after, log0);
  pid_t p1 = spawn_worker(recipe_path, 1, 2, port, stop_after);
  wait_ok(p0);
  wait_ok(p1);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int free_port_guess() { return 20000 + static_cast<int>(getpid() % 20000); }

}  // namespace

// The worker role: only does something when spawned by the test below.
TEST(DistributedWorker, Run) {
  const char* recipe_path = std::getenv("C2C_DIST_TEST_RECIPE");
  if (!recipe_path) GTEST_SKIP() << "worker role of DataParallel tests";
  const char* stop = std::getenv("C2C_DIST_TEST_STOP_AFTER");
  try {
    run_training(Recipe::load(recipe_path), stop ? std::stoll(stop) : 0);
  } catch (const std::exception& e) {
    std::cerr << "c2c: error: " << e.what() << "\n";  // on stderr, as `c2c train` prints it
    throw;
  }
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
  // One timeout, the one given: LibTorch 2.x's own "Timed out after 3 seconds" stays out of it.
  EXPECT_NE(what.find("within 2 s"), std::string::npos) << what;
  EXPECT_EQ(what.find("Timed out after"), std::string::npos) << what;
  EXPECT_LT(s, 30.0);
}

// Rank 0 refuses before the rendezvous (its folder is held by another run): rank 1 hears why
// at its rendezvous and both stop well within train.dist_timeout_s (60 s here).
TEST(DataParallel, RankZeroRefusalReachesTheOtherRanks) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 13);
  const std::string run = test::temp_dir("refused") + "/r";
  const std::string recipe = test::temp_dir("refusedrecipe") + "/recipe.yaml";
  write_file_atomic(recipe, recipe_text(data, run, 2, /*micro_batch=*/1, /*timeout_s=*/60));
  std::ostringstream quiet;
  auto held = claim_run_dir(run, /*resume=*/true, /*overwrite=*/false, quiet);  // "another run"
  const std::string log0 = test::temp_dir("refusedlog") + "/rank0.txt";
  const std::string log1 = test::temp_dir("refusedlog") + "/rank1.txt";
  const int port = free_port_guess() + 2;
  const auto t0 = std::chrono::steady_clock::now();
  pid_t p0 = spawn_worker(recipe, 0, 2, port, 0, log0);
  pid_t p1 = spawn_worker(recipe, 1, 2, port, 0, log1);
  for (pid_t p : {p0, p1}) {
    int status = 0;
    ASSERT_EQ(waitpid(p, &status, 0), p);
    EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a rank started a refused run";
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 40.0) << "the ranks waited for the rendezvous timeout";
  const std::string r1 = read_text(log1);
  EXPECT_NE(r1.find("rank 0 refused to start the run"), std::string::npos) << r1;
  EXPECT_NE(r1.find(run), std::string::npos) << r1;  // rank 0's reason names the folder
}

TEST(Distributed, BindDeviceIsTheCpuWithoutCuda) {
  DistEnv env;
  env.rank = env.local_rank = 1;
  env.world_size = 2;
  if (torch::cuda::is_available()) {
    // Not reached on this project's machines; on a GPU host a rank binds its LOCAL_RANK's GPU.
    if (torch::cuda::device_count() < 2) GTEST_SKIP() << "needs two GPUs";
    EXPECT_EQ(Distributed::bind_device(env, "auto"), torch::Device(torch::kCUDA, 1));
  } else {
    EXPECT_EQ(Distributed::bind_device(env, "auto"), torch::Device(torch::kCPU));
  }
  EXPECT_EQ(Distributed::bind_device(env, "cpu"), torch::Device(torch::kCPU));
}

namespace {

// Identity forward, slow backward: stands for the expensive early layers whose backward runs
// last, while the buckets of the later layers' gradients are already being summed.
struct SlowBackward : torch::autograd::Function<SlowBackward> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, torch::Tensor x) { return x.clone(); }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list g) {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    return {g[0]};
  }
};

// w0 -> slow -> w1 -> w2 -> w3 -> loss; `used3` false leaves w3 out of the graph.
torch::Tensor chain_loss(const std::vector<torch::Tensor>& w, const torch::Tensor& x, bool slow,
                         bool used3 = true) {
  auto h = x * w[0];
  if (slow) h = SlowBackward::apply(h);
  h = torch::tanh(h * w[1]);
  h = torch::tanh(h * w[2]);
  if (used3) h = h * w[3];
  return h.pow(2).sum();
}

// The two ranks of these tests are threads of one process, so they must not draw from the global
// generator (a manual_seed in one thread would reseed the other's draws): each tensor gets its own.
torch::Tensor seeded_randn(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn({64}, gen, torch::kFloat32);
}

std::vector<torch::Tensor> chain_params() {
  std::vector<torch::Tensor> w;
  for (int i = 0; i < 4; ++i) w.push_back(seeded_randn(3 + i).requires_grad_(true));
  return w;
}

torch::Tensor chain_input(int rank, int micro) { return seeded_randn(100 + 10 * rank + micro); }

struct RankResult {
  std::vector<torch::Tensor> grads;
  GradSync::Stats stats;
  int64_t launches_after_micro0 = -1, launches_before_finish = -1;
  std::string error;
};

// One rank of a two-micro-step update with GradSync (one parameter per bucket).
RankResult grad_sync_rank(int rank, int port, bool slow, bool used3) {
  RankResult out;
  try {
    DistEnv env;
    env.rank = env.local_rank = rank;
    env.world_size = 2;
    env.master_port = port;
    Distributed d(env, torch::kCPU, std::chrono::seconds(30));
    d.bucket_bytes = 1;
    auto w = chain_params();
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (size_t i = 0; i < w.size(); ++i) named.emplace_back("w" + std::to_string(i), w[i]);
    GradSync sync(d, named);
    chain_loss(w, chain_input(rank, 0), false, used3).backward();  // accumulation micro-step
    out.launches_after_micro0 = sync.launches();
    sync.arm();
    chain_loss(w, chain_input(rank, 1), slow, used3).backward();  // last micro-step
    out.launches_before_finish = sync.launches();
    sync.finish();
    out.stats = sync.stats();
    for (auto& t : w) out.grads.push_back(t.grad().defined() ? t.grad().clone() : torch::Tensor());
    d.barrier();
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

// The sum over both ranks and both micro-steps, without any communication.
std::vector<torch::Tensor> expected_grads(bool used3) {
  auto w = chain_params();
  for (int r = 0; r < 2; ++r)
    for (int m = 0; m < 2; ++m) chain_loss(w, chain_input(r, m), false, used3).backward();
  std::vector<torch::Tensor> g;
  for (auto& t : w) g.push_back(t.grad().defined() ? t.grad().clone() : torch::zeros_like(t));
  return g;
}

}  // namespace

TEST(GradSync, AllReduceStartsAndEndsWhileBackwardStillRuns) {
  const int port = free_port_guess() + 2;
  RankResult r1;
  std::thread t([&] { r1 = grad_sync_rank(1, port, /*slow=*/true, true); });
  RankResult r0 = grad_sync_rank(0, port, /*slow=*/true, true);
  t.join();
  ASSERT_EQ(r0.error, "");
  ASSERT_EQ(r1.error, "");
  const auto want = expected_grads(true);
  for (const auto* r : {&r0, &r1}) {
    // Nothing launched on the accumulation micro-step; every bucket launched from the hooks of
    // the last one, before backward returned.
    EXPECT_EQ(r->launches_after_micro0, 0);
    EXPECT_EQ(r->launches_before_finish, 4);
    EXPECT_EQ(r->stats.buckets, 4);
    EXPECT_EQ(r->stats.launched_in_backward, 4);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_TRUE(torch::allclose(r->grads[i], want[i], 1e-5, 1e-6)) << "w" << i;
    // Buckets 0..2 (w3, w2, w1) were summed during the 600 ms backward of the slow op: launched
    // and completed well before backward ended, so finish() waited only for w0's bucket.
    ASSERT_EQ(r->stats.done_s.size(), 4u);
    std::ostringstream times;
    for (size_t b = 0; b < 4; ++b)
      times << " bucket " << b << ": launched " << r->stats.launch_s[b] << " s, done "
            << r->stats.done_s[b] << " s;";
    times << " backward ended " << r->stats.backward_end_s << " s, finish waited " << r->stats.wait_s << " s";
    for (size_t b = 0; b < 3; ++b) {
      EXPECT_GE(r->stats.done_s[b], 0.0) << times.str();
      EXPECT_LT(r->stats.done_s[b], r->stats.backward_end_s - 0.3) << times.str();
    }
    EXPECT_GT(r->stats.launch_s[3], 0.5) << times.str();
    std::cerr << "rank " << (r == &r0 ? 0 : 1) << ":" << times.str() << "\n";
  }
}

TEST(GradSync, ParameterWithoutGradientCountsAsZero) {
  const int port = free_port_guess() + 3;
  RankResult r1;
  std::thread t([&] { r1 = grad_sync_rank(1, port, false, /*used3=*/false); });
  RankResult r0 = grad_sync_rank(0, port, false, false);
  t.join();
  ASSERT_EQ(r0.error, "");
  ASSERT_EQ(r1.error, "");
  const auto want = expected_grads(false);
  for (const auto* r : {&r0, &r1}) {
    // w3 is bucket 0 and never gets a gradient: no bucket can launch before finish(), which
    // launches all four in order.
    EXPECT_EQ(r->launches_before_finish, 0);
    EXPECT_EQ(r->stats.launched_in_backward, 0);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_TRUE(torch::allclose(r->grads[i], want[i], 1e-5, 1e-6)) << "w" << i;
  }
}

// Two `c2c train` processes; rank 1 is SIGKILLed mid-run; rank 0 must fail, naming rank 1,
// well within a minute (its dist timeout is 30 s; the lost connection is noticed at once).
TEST(DataParallel, KilledRankIsNamedBySurvivorWithinAMinute) {
  const char* build = std::getenv("C2C_BUILD_DIR");
  const std::string c2c = build ? std::string(build) + "/c2c" : "";
  if (c2c.empty() || access(c2c.c_str(), X_OK) != 0) GTEST_SKIP() << "needs the c2c binary (C2C_BUILD_DIR)";
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 11);
  const std::string dir = test::temp_dir("kill2");
  const std::string run = dir + "/r", recipe = dir + "/recipe.yaml";
  write_file_atomic(recipe, recipe_text(data, run, 100000, 1, /*timeout_s=*/30));
  const int port = free_port_guess() + 4;
  const std::string log0 = dir + "/rank0.log", log1 = dir + "/rank1.log";
  auto args = [&] { return std::vector<std::string>{c2c, "train", recipe}; };
  pid_t p0 = spawn_with(args(), rank_env(0, 2, port), log0);
  pid_t p1 = spawn_with(args(), rank_env(1, 2, port), log1);
  auto kill_both = [&] {
    kill(p0, SIGKILL);
    kill(p1, SIGKILL);
    waitpid(p0, nullptr, 0);
    waitpid(p1, nullptr, 0);
  };
  // Mid-run: once rank 0 has logged three steps.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    std::ifstream in(run + "/metrics.jsonl");
    int rows = 0;
    for (std::string line; std::getline(in, line);) ++rows;
    if (rows >= 3) break;
    if (std::chrono::steady_clock::now() > deadline || waitpid(p0, nullptr, WNOHANG) != 0) {
      kill_both();
      FAIL() << "the two-rank run did not get going; rank 0 said:\n" << read_text(log0)
             << "\nrank 1 said:\n" << read_text(log1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(kill(p1, SIGKILL), 0);
  const auto t_kill = std::chrono::steady_clock::now();
  waitpid(p1, nullptr, 0);
  int status = 0;
  pid_t got = 0;
  while ((got = waitpid(p0, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - t_kill < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_kill).count();
  if (got == 0) {
    kill_both();
    FAIL() << "rank 0 still running 60 s after rank 1 was killed; it said:\n" << read_text(log0);
  }
  const std::string said = read_text(log0);
  ASSERT_TRUE(WIFEXITED(status)) << "rank 0 ended by signal, status " << status << "\n" << said;
  EXPECT_NE(WEXITSTATUS(status), 0) << said;
  EXPECT_NE(said.find("rank 1 is lost"), std::string::npos) << said;
  EXPECT_NE(said.find("c2c: error: rank 0/2"), std::string::npos) << said;
  EXPECT_LT(s, 60.0);
  const auto at = said.find("c2c: error:");
  std::cerr << "rank 0 exited with " << WEXITSTATUS(status) << " " << s << " s after the kill: "
            << (at == std::string::npos ? said : said.substr(at, said.find('\n', at) - at)) << "\n";
}

namespace {

// Global stream position of a saved cursor at a step boundary with pack_window 1 (the window is
// batch_size * world_size positions, each rank took `window_batches_taken` of its batches).
int64_t cursor_position(const nlohmann::json& c) {
  return c.at("window_start").get<int64_t>() +
         c.at("window_batches_taken").get<int64_t>() * c.at("batch_size").get<int64_t>() *
             c.at("world_size").get<int64_t>();
}

std::vector<nlohmann::json> metrics_rows(const std::string& run) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

void expect_same_tensors(const std::string& a_path, const std::string& b_path, bool exact) {
  auto a = load_safetensors(a_path), b = load_safetensors(b_path);
  ASSERT_EQ(a.size(), b.size());
  double sum_diff = 0;
  int64_t count = 0;
  for (const auto& kv : a) {
    ASSERT_TRUE(b.count(kv.first)) << kv.first;
    const auto& x = kv.second;
    const auto& y = b[kv.first];
    if (exact) {
      // The gate temperature is a buffer set from the schedule at every step, not a weight
      // (checkpoints restore parameters only).
      if (kv.first.find("gate_temperature") != std::string::npos) continue;
      EXPECT_TRUE(torch::equal(x, y)) << kv.first;
    } else {
      EXPECT_TRUE(torch::allclose(x, y, 1e-3, 1e-3)) << kv.first << ": max |diff| "
                                                       << (x - y).abs().max().item<double>();
      sum_diff += (x - y).abs().sum().item<double>();
      count += x.numel();
    }
  }
  if (!exact) EXPECT_LT(sum_diff / count, 1e-5) << "mean |weight diff|";
}

std::string step_dir(const std::string& run, int step) {
  auto last = latest_checkpoint(run);
  EXPECT_TRUE(last.has_value());
  EXPECT_EQ(read_json(*last + "/state.json")["step"].get<int64_t>(), step) << *last;
  return last.value_or("");
}

}  // namespace

// A run checkpointed at step 2 of 4 by two ranks (micro-batch 1) resumes on one rank
// (micro-batch 2: the same global batch), and one by one rank resumes on two: both continue
// at step 3 from the same data position, start from the checkpoint's weights exactly, and end
// where an uninterrupted one-rank run ends.
TEST(DataParallel, ResumeOnAnotherWorldSizeContinuesFromTheSameStep) {
  const std::string data = test::write_synthetic_pairs(test::temp_dir("pairs"), 16, 11);
  const std::string dir = test::temp_dir("resume_ws");
  auto recipe_file = [&](const std::string& name, const std::string& run, int steps, int mb) {
    const std::string path = dir + "/" + name + ".yaml";
    write_file_atomic(path, recipe_text(data, run, steps, mb));
    return path;
  };
  const int port = free_port_guess() + 5;
  // Reference: one rank, four steps, uninterrupted.
  const std::string ref = dir + "/ref";
  const std::string ref_final = run_training(Recipe::load(recipe_file("ref", ref, 4, 2)));
  const auto ref_rows = metrics_rows(ref);
  ASSERT_EQ(ref_rows.size(), 4u);

  // --- two ranks -> one rank
  const std::string a = dir + "/a";
  ASSERT_NO_FATAL_FAILURE(run_two_ranks(recipe_file("a2", a, 4, 1), port, /*stop_after=*/2));
  const std::string a2 = step_dir(a, 2);
  auto state = read_json(a2 + "/state.json");
  EXPECT_EQ(state["world_size"].get<int64_t>(), 2);
  EXPECT_EQ(cursor_position(state["data_cursor"]), 2 * 4) << state["data_cursor"].dump();
  // Loading alone (no step to run): the exported weights are the checkpoint's, bit for bit.
  const std::string a_loaded = run_training(Recipe::load(recipe_file("a1_load", a, 2, 2)));
  expect_same_tensors(a2 + "/fuser/fuser.safetensors", a_loaded + "/fuser.safetensors", true);
  testing::internal::CaptureStderr();
  const std::string a_final = run_training(Recipe::load(recipe_file("a1", a, 4, 2)));
  const std::string a_log = testing::internal::GetCapturedStderr();
  EXPECT_NE(a_log.find("at step 2 (saved by 2 rank(s), continuing on 1)"), std::string::npos) << a_log;
  EXPECT_NE(a_log.find("step 3/4"), std::string::npos) << a_log;
  auto a_rows = metrics_rows(a);
  ASSERT_EQ(a_rows.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(a_rows[i]["step"].get<int64_t>(), i + 1);
    EXPECT_NEAR(a_rows[i]["loss"].get<double>(), ref_rows[i]["loss"].get<double>(),
                1e-5 * std::abs(ref_rows[i]["loss"].get<double>())) << "step " << i + 1;
  }
  EXPECT_EQ(cursor_position(read_json(step_dir(a, 4) + "/state.json")["data_cursor"]), 4 * 4);
  expect_same_tensors(ref_final + "/fuser.safetensors", a_final + "/fuser.safetensors", false);

  // --- one rank -> two ranks
  const std::string b = dir + "/b";
  run_training(Recipe::load(recipe_file("b1", b, 4, 2)), /*stop_after=*/2);
  const std::string b2 = step_dir(b, 2);
  state = read_json(b2 + "/state.json");
  EXPECT_EQ(state["world_size"].get<int64_t>(), 1);
  EXPECT_EQ(cursor_position(state["data_cursor"]), 2 * 4) << state["data_cursor"].dump();
  ASSERT_NO_FATAL_FAILURE(run_two_ranks(recipe_file("b2_load", b, 2, 1), port + 1));
  expect_same_tensors(b2 + "/fuser/fuser.safetensors", b + "/final/fuser.safetensors", true);
  const std::string b_log = dir + "/b_rank0.log";
  ASSERT_NO_FATAL_FAILURE(run_two_ranks(recipe_file("b2", b, 4, 1), port + 2, 0, b_log));
  const std::string b_said = read_text(b_log);
  EXPECT_NE(b_said.find("at step 2 (saved by 1 rank(s), continuing on 2)"), std::string::npos) << b_said;
  EXPECT_NE(b_said.find("step 3/4"), std::string::npos) << b_said;
  auto b_rows = metrics_rows(b);
  ASSERT_EQ(b_rows.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(b_rows[i]["step"].get<int64_t>(), i + 1);
    EXPECT_NEAR(b_rows[i]["loss"].get<double>(), ref_rows[i]["loss"].get<double>(),
                1e-5 * std::abs(ref_rows[i]["loss"].get<double>())) << "step " << i + 1;
  }
  EXPECT_EQ(cursor_position(read_json(step_dir(b, 4) + "/state.json")["data_cursor"]), 4 * 4);
  expect_same_tensors(ref_final + "/fuser.safetensors", b + "/final/fuser.safetensors", false);
}
