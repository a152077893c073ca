// Data parallelism over PyTorch's c10d (STYLE.md item 9): the rank layout from the launcher's
// environment, a TCPStore rendezvous, a Gloo process group on CPU (NCCL on CUDA when LibTorch
// was built with it), and the few collectives the training loop needs. World size 1 takes the
// same calls with no process group: every collective is then a no-op returning its input.
// GradSync sums the gradients of the last accumulation micro-step while backward still runs
// (bucketed, launched from gradient hooks), as PyTorch's DistributedDataParallel does.
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace c2c {

// Where this process stands. From RANK / WORLD_SIZE / LOCAL_RANK (torchrun and
// scripts/launch_local.sh), else SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID; MASTER_ADDR
// (default 127.0.0.1) and MASTER_PORT (default 29500) from the environment. Nothing set: a
// single rank, without a process group. C2C_PROCESS_GROUP=1 makes one even for a single rank,
// so that one GPU runs every collective through NCCL (scripts/gpu_check.sh checks that path).
struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool always_group = false;

  static DistEnv from_environment();  // throws naming the variable when one is malformed
};

class GradSync;

class Distributed {
 public:
  // Rendezvous and process group for world_size > 1 (or always_group): rank 0 serves the TCPStore, every rank
  // connects; `device` picks Gloo (CPU) or NCCL (CUDA). A collective that fails or waits longer
  // than `timeout` throws naming this rank, the operation and the lost rank(s): every rank
  // publishes a heartbeat (and how far it got) in the store once a second, so a failing rank can
  // tell a dead peer ("rank 1 is lost") from one that is alive but stuck before the collective.
  Distributed(const DistEnv& env, torch::Device device,
              std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~Distributed();

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  const std::string& backend() const { return backend_; }  // "none" | "gloo" | "nccl"
  std::chrono::milliseconds timeout() const;

  // The device this rank computes on: cuda:LOCAL_RANK when CUDA is present and `requested`
  // ("auto" | "cuda" | "cpu", train.device) allows it, made the current CUDA device so tensors
  // placed on plain `cuda` land there; else the CPU. Throws when LOCAL_RANK has no GPU.
  // (The CUDA branch is not exercised on this project's CPU-only machines.)
  static torch::Device bind_device(const DistEnv& env, const std::string& requested);
  // Rank 0 of a multi-rank run that fails before the rendezvous (run_training's refusals: a
  // folder in use, an earlier run, data of other tokenizers): serves the rendezvous store only to
  // tell every other rank `reason`, waits until each has read it (at most `timeout`), and
  // returns; they fail at once naming it. A no-op on other ranks and in single-rank runs.
  static void refuse_start(const DistEnv& env, const std::string& reason,
                           std::chrono::milliseconds timeout);

  // Overwrites every tensor with rank 0's values, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors, const std::string& what = "parameters");
  // Sum (or mean) over ranks, in place; tensors are flattened into buckets of about
  // `bucket_bytes` per dtype so each bucket is one collective.
  void all_reduce_sum(const std::vector<torch::Tensor>& tensors, const std::string& what = "tensors");
  void all_reduce_mean(const std::vector<torch::Tensor>& tensors, const std::string& what = "tensors");
  double all_reduce_sum_scalar(double value, const std::string& what = "scalar");
  void barrier(const std::string& what = "barrier");

  int64_t bucket_bytes = 25 << 20;

 private:
  friend class GradSync;
  void all_reduce(const std::vector<torch::Tensor>& tensors, bool mean, const std::string& what);
  // Throws the error of a failed collective `op` of `what`, naming the lost or stuck rank(s).
  [[noreturn]] void collective_failed(const std::string& op, const std::string& what,
                                      const std::exception& e);
  // "rank 1 is lost (...)" / "rank 2 is alive but ..." from the heartbeats, or "" when every
  // other rank looks healthy. Takes about three heartbeat periods.
  std::string diagnose_peers();
  struct Impl;
  DistEnv env_;
  std::string backend_ = "none";
  std::unique_ptr<Impl> impl_;
};

// Gradient all-reduce overlapped with backward. Parameters are grouped, in reverse order (the
// order backward produces their gradients), into buckets of about `bucket_bytes` of one dtype and
// device. A hook on each parameter's gradient (Tensor::register_hook, which LibTorch 1.13 calls
// with the incoming gradient just before it is accumulated into .grad()) copies
// `.grad() + incoming` into its bucket's flat buffer; when a bucket is complete, it and every
// complete bucket before it are launched as asynchronous all-reduces (always in bucket order, so
// all ranks issue the same collectives in the same order whatever order their hooks fire in).
// Hooks act only after arm(), i.e. on the last micro-step of an update: accumulation micro-steps
// just accumulate locally. finish() launches what backward did not (parameters without a
// gradient count as zero), waits for every Work and writes the sums into .grad(), before clipping
// and the optimizer step. overlap = false does the same all-reduces after backward instead.
// World size 1: nothing is registered and every call returns at once.
class GradSync {
 public:
  struct Stats {
    int64_t buckets = 0, bytes = 0;      // of one update
    int64_t launched_in_backward = 0;    // buckets launched from hooks, before backward returned
    double wait_s = 0;                   // finish() blocked waiting for the Works
    double backward_end_s = 0;           // when finish() was called, seconds after arm()
    std::vector<double> launch_s, done_s;  // per bucket, in launch order, seconds after arm()
                                           // (done_s: -1 when the backend gives no completion time)
  };

  GradSync(Distributed& dist, std::vector<std::pair<std::string, torch::Tensor>> params,
           bool overlap = true);
  ~GradSync();  // removes the hooks
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  void arm();  // the next backward is the last micro-step of the update
  void finish(const std::string& what = "gradients");
  const Stats& stats() const { return stats_; }  // of the last finish()
  bool overlap() const { return overlap_; }
  int64_t launches() const { return launches_.load(); }  // all-reduces launched so far, in total

 private:
  struct Bucket;
  void on_grad(size_t param, const torch::Tensor& grad);
  void launch_ready_locked();
  double since_arm() const;

  Distributed& dist_;
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  bool overlap_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<size_t> bucket_of_;
  std::vector<int64_t> offset_of_;
  std::vector<char> got_;  // parameter's gradient copied into its bucket this update
  std::vector<unsigned> hooks_;
  std::mutex mutex_;
  bool armed_ = false;
  size_t next_launch_ = 0;
  std::chrono::steady_clock::time_point t_arm_;
  std::string error_;  // a launch that failed inside a hook, rethrown by finish()
  Stats stats_;
  std::atomic<int64_t> launches_{0};
};

}  // namespace c2c
