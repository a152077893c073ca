// Benchmark (not a test): data-parallel fuser training on this machine. The same global batch
// (one optimizer step of --global-batch sequences) runs on 1 rank and on 2 ranks (this program
// spawns itself as the rank processes: Gloo over 127.0.0.1, a TCP store, exactly the code
// `c2c train` runs: FuserTrainer, Distributed, GradSync, AdamW). The cores are shared out: one
// rank gets every core, two ranks get half each. Two ranks run twice: with the all-reduce
// overlapped with backward (the default) and with it after backward (C2C_DIST_OVERLAP=0).
// Per configuration it prints the time per optimizer step and the share of it spent in
// communication, i.e. blocked on collectives: the wait for the gradient buckets after backward
// plus the small scalar all-reduces (token count, loss) of each step.
// Random models as in bench_train (receiver ~25M Qwen3-style, sharer ~20M Llama-style).
//   build/bench_dist [--global-batch 4] [--prompt 96] [--response 32] [--hidden 256]
//                    [--steps 4] [--bucket-mb 25] [--threads-per-rank N (default: cores / ranks)]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/paired_dataset.h"
#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "modules/random_model.h"
#include "trainer/args.h"
#include "trainer/distributed.h"
#include "trainer/optimizer.h"
#include "trainer/trainer.h"

extern char** environ;
using namespace c2c;

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string model_dir(const std::string& preset) {
  return (std::filesystem::temp_directory_path() / ("c2c_bench_" + preset)).string();
}

std::string ensure_model(const std::string& preset) {
  const std::string dir = model_dir(preset);
  if (!std::filesystem::exists(dir + "/model.safetensors")) write_random_model(dir, random_model_preset(preset), 0);
  return dir;
}

// Global row g of the benchmark batch: the same rows whatever the world size.
PairedSample make_row(int64_t g, int64_t P, int64_t R) {
  torch::manual_seed(1000 + g);
  PairedSample s;
  auto ids = torch::randint(3, 32000, {P + R}, torch::kInt64);
  s.receiver_ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + P + R);
  s.prompt_length = P;
  s.loss_start = P;
  s.loss_end = P + R;
  PairedSharer sh;
  sh.ids.assign(s.receiver_ids.begin(), s.receiver_ids.begin() + P - 1);
  for (int64_t t = 0; t < P + R; ++t) sh.slot_of.push_back(t < P - 1 ? t : -1);
  s.sharers.push_back(sh);
  s.index = g;
  return s;
}

// One rank: warm-up step, then `steps` timed steps; rank 0 writes the means to `out`.
int worker(const cli::Args& args, const std::string& out) {
  const DistEnv env = DistEnv::from_environment();
  const int64_t G = args.integer("global-batch", 4), P = args.integer("prompt", 96),
                R = args.integer("response", 32), hidden = args.integer("hidden", 256),
                steps = args.integer("steps", 4);
  const double bucket_mb = args.number("bucket-mb", 25);
  const int cores = static_cast<int>(std::max<unsigned>(1, std::thread::hardware_concurrency()));
  const int64_t per_rank = args.integer("threads-per-rank", 0);
  torch::set_num_threads(per_rank > 0 ? static_cast<int>(per_rank) : std::max(1, cores / env.world_size));
  Recipe recipe = Recipe::from_yaml_text(
      "receiver: " + model_dir("bench-25m") + "\nsharers: [" + model_dir("bench-20m-llama") +
          "]\ndata: {train: unused}\n",
      "bench", {"fuser.hidden_dim=" + std::to_string(hidden), "fuser.intermediate_dim=" + std::to_string(hidden),
                "train.device=cpu"});
  FuserTrainer trainer(recipe);
  Distributed dist(env, torch::kCPU, std::chrono::seconds(120));
  dist.bucket_bytes = static_cast<int64_t>(bucket_mb * (1 << 20));
  auto params = trainer.named_parameters();
  {
    std::vector<torch::Tensor> t;
    for (auto& p : params) t.push_back(p.second.detach());
    dist.broadcast(t, "fuser parameters");
  }
  AdamW optimizer(params, AdamWOptions{});
  const char* ov = std::getenv("C2C_DIST_OVERLAP");
  GradSync sync(dist, params, !(ov && std::string(ov) == "0"));
  std::vector<PairedSample> batch;
  for (int64_t g = env.rank; g < G; g += env.world_size) batch.push_back(make_row(g, P, R));

  double t_step = 0, t_fwd = 0, t_bwd = 0, t_wait = 0, t_scalar = 0, t_busy = 0;
  double lead = 0;  // first gradient bucket launched this long before backward returned
  int64_t in_bwd = 0, buckets = 0, bytes = 0;
  for (int64_t s = 0; s <= steps; ++s) {
    const auto t0 = Clock::now();
    optimizer.zero_grad();
    int64_t tokens = 0;
    for (auto& r : batch) tokens += r.loss_end - r.loss_start;
    const auto c0 = Clock::now();
    tokens = std::llround(dist.all_reduce_sum_scalar(static_cast<double>(tokens), "token count"));
    const double scalar0 = secs(c0, Clock::now());
    double scalar = scalar0;
    trainer.set_mode(true, s);
    auto ml = trainer.forward(batch, 7 + s);
    const auto t1 = Clock::now();
    sync.arm();
    (ml.loss_sum / static_cast<double>(tokens)).backward();
    const auto t2 = Clock::now();
    sync.finish("gradients");
    const auto c1 = Clock::now();
    dist.all_reduce_sum_scalar(ml.loss_sum.item<double>(), "loss");
    scalar += secs(c1, Clock::now());
    optimizer.clip_grad_norm(1.0);
    optimizer.step(1e-4);
    const auto t3 = Clock::now();
    if (s == 0) continue;  // warm-up
    const auto& st = sync.stats();
    t_step += secs(t0, t3);
    t_fwd += secs(t0, t1) - scalar0;  // the token-count all-reduce is counted as communication
    t_bwd += secs(t1, t2);
    t_wait += st.wait_s;
    t_scalar += scalar;
    // Time some gradient all-reduce was in flight (launch of the first to completion of the last).
    if (!st.launch_s.empty() && !st.done_s.empty()) {
      double last = 0;
      for (double d : st.done_s) last = std::max(last, d);
      t_busy += last - st.launch_s.front();
    }
    if (!st.launch_s.empty()) lead += st.backward_end_s - st.launch_s.front();
    in_bwd = st.launched_in_backward;
    buckets = st.buckets;
    bytes = st.bytes;
  }
  if (env.rank == 0) {
    int64_t n_params = 0;
    for (auto& p : params) n_params += p.second.numel();
    const double n = static_cast<double>(steps);
    nlohmann::json j = {{"world", env.world_size}, {"overlap", sync.overlap()},
                        {"threads", torch::get_num_threads()}, {"rows_per_rank", batch.size()},
                        {"step_s", t_step / n}, {"forward_s", t_fwd / n}, {"backward_s", t_bwd / n},
                        {"grad_wait_s", t_wait / n}, {"scalar_s", t_scalar / n},
                        {"allreduce_busy_s", t_busy / n}, {"buckets", buckets},
                        {"launched_in_backward", in_bwd}, {"first_launch_lead_s", lead / n}, {"grad_bytes", bytes},
                        {"fuser_params", n_params}, {"tokens_per_step", G * (P + R)}};
    std::ofstream(out) << j.dump() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> argv_v(argv + 1, argv + argc);
    cli::Args args("bench_dist", argv_v, {});
    if (const char* out = std::getenv("C2C_BENCH_DIST_OUT")) return worker(args, out);
    const int64_t steps = args.integer("steps", 4);
    for (const char* k : {"global-batch", "prompt", "response", "hidden", "threads-per-rank"})
      (void)args.integer(k, 0);
    (void)args.number("bucket-mb", 0);
    args.finish();
    ensure_model("bench-25m");
    ensure_model("bench-20m-llama");
    const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
    const std::string tmp = (std::filesystem::temp_directory_path() /
                             ("c2c_bench_dist_" + std::to_string(getpid()))).string();
    std::filesystem::create_directories(tmp);
    struct Config { int world; bool overlap; };
    std::vector<nlohmann::json> results;
    int port = 29600 + static_cast<int>(getpid() % 2000);
    for (const Config c : {Config{1, true}, Config{2, true}, Config{2, false}}) {
      const std::string out = tmp + "/r" + std::to_string(results.size()) + ".json";
      std::vector<pid_t> pids;
      ++port;
      for (int r = 0; r < c.world; ++r) {
        std::vector<std::string> env_s;
        for (char** e = environ; *e; ++e) env_s.push_back(*e);
        env_s.push_back("C2C_BENCH_DIST_OUT=" + out);
        env_s.push_back("RANK=" + std::to_string(r));
        env_s.push_back("LOCAL_RANK=" + std::to_string(r));
        env_s.push_back("WORLD_SIZE=" + std::to_string(c.world));
        env_s.push_back("MASTER_ADDR=127.0.0.1");
        env_s.push_back("MASTER_PORT=" + std::to_string(port));
        env_s.push_back(std::string("C2C_DIST_OVERLAP=") + (c.overlap ? "1" : "0"));
        std::vector<char*> envp, av;
        for (auto& v : env_s) envp.push_back(v.data());
        envp.push_back(nullptr);
        std::vector<std::string> args_s = {exe};
        args_s.insert(args_s.end(), argv_v.begin(), argv_v.end());
        for (auto& a : args_s) av.push_back(a.data());
        av.push_back(nullptr);
        pid_t pid = 0;
        C2C_CHECK(posix_spawn(&pid, exe.c_str(), nullptr, nullptr, av.data(), envp.data()) == 0,
                  "bench_dist: cannot start a rank");
        pids.push_back(pid);
      }
      for (pid_t p : pids) {
        int status = 0;
        waitpid(p, &status, 0);
        C2C_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench_dist: a rank of world size ",
                  c.world, " failed (status ", status, ")");
      }
      std::ifstream in(out);
      std::string line;
      std::getline(in, line);
      results.push_back(nlohmann::json::parse(line));
    }
    const auto& r0 = results[0];
    std::cout << "fuser " << r0["fuser_params"].get<int64_t>() / 1e6 << "M parameters ("
              << results[1]["grad_bytes"].get<int64_t>() / double(1 << 20) << " MiB of fp32 gradients in "
              << results[1]["buckets"].get<int64_t>() << " bucket(s)); global batch "
              << r0["tokens_per_step"].get<int64_t>() << " tokens per step; " << steps
              << " timed steps after one warm-up; " << std::thread::hardware_concurrency()
              << " cores shared by the ranks\n";
    std::cout << std::fixed << std::setprecision(3)
              << "ranks  all-reduce      threads/rank  step s  fwd s   bwd s   grad wait s  scalar s  "
                 "comm share  grad all-reduce in flight s  buckets launched in bwd  1st launch before "
                 "bwd end s  speed-up\n";
    for (const auto& r : results) {
      const double step = r["step_s"].get<double>();
      const double comm = r["grad_wait_s"].get<double>() + r["scalar_s"].get<double>();
      std::cout << std::setw(5) << r["world"].get<int>() << "  "
                << std::left << std::setw(14)
                << (r["world"].get<int>() == 1 ? "-" : r["overlap"].get<bool>() ? "overlapped" : "after bwd")
                << std::right << "  " << std::setw(12) << r["threads"].get<int>() << "  " << std::setw(6)
                << step << "  " << std::setw(6) << r["forward_s"].get<double>() << "  " << std::setw(6)
                << r["backward_s"].get<double>() << "  " << std::setw(11) << r["grad_wait_s"].get<double>()
                << "  " << std::setw(8) << r["scalar_s"].get<double>() << "  " << std::setw(9)
                << 100 * comm / step << "%  " << std::setw(27) << r["allreduce_busy_s"].get<double>()
                << "  " << std::setw(23) << r["launched_in_backward"].get<int64_t>() << "/"
                << r["buckets"].get<int64_t>() << "  " << std::setw(26)
                << r["first_launch_lead_s"].get<double>() << "  " << std::setw(7)
                << r0["step_s"].get<double>() / step << "x\n";
    }
    std::filesystem::remove_all(tmp);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_dist: error: " << e.what() << "\n";
    return 1;
  }
}
