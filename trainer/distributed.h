// Data parallelism over PyTorch's c10d (STYLE.md item 9): the rank layout from the launcher's
// environment, a TCPStore rendezvous, a Gloo process group on CPU (NCCL on CUDA when LibTorch
// was built with it), and the few collectives the training loop needs. World size 1 takes the
// same calls with no process group: every collective is then a no-op returning its input.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace c2c {

// Where this process stands. From RANK / WORLD_SIZE / LOCAL_RANK (torchrun and
// scripts/launch_local.sh), else SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID; MASTER_ADDR
// (default 127.0.0.1) and MASTER_PORT (default 29500) from the environment. Nothing set: a
// single rank.
struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  static DistEnv from_environment();  // throws naming the variable when one is malformed
};

class Distributed {
 public:
  // Rendezvous and process group for world_size > 1: rank 0 serves the TCPStore, every rank
  // connects; `device` picks Gloo (CPU) or NCCL (CUDA). A collective that waits longer than
  // `timeout` (e.g. on a dead or stuck rank) throws naming this rank and the operation.
  Distributed(const DistEnv& env, torch::Device device,
              std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~Distributed();

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  const std::string& backend() const { return backend_; }  // "none" | "gloo" | "nccl"

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
  void all_reduce(const std::vector<torch::Tensor>& tensors, bool mean, const std::string& what);
  struct Impl;
  DistEnv env_;
  std::string backend_ = "none";
  std::unique_ptr<Impl> impl_;
};

}  // namespace c2c
