// Data parallelism over c10d: rendezvous, process group, bucketed collectives (distributed.h).
#include "trainer/distributed.h"

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <map>

#include "modules/common/error.h"

namespace c2c {
namespace {

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, const char* value) {
  try {
    size_t used = 0;
    const int v = std::stoi(value, &used);
    if (used == std::string(value).size()) return v;
  } catch (...) {
  }
  fail("environment variable ", name, "='", value, "' is not an integer");
}

std::string error_text(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

}  // namespace

DistEnv DistEnv::from_environment() {
  DistEnv env;
  auto pick = [](const char* a, const char* b) { return env_or_null(a) ? a : env_or_null(b) ? b : nullptr; };
  if (const char* n = pick("WORLD_SIZE", "SLURM_NTASKS")) env.world_size = env_int(n, std::getenv(n));
  if (const char* n = pick("RANK", "SLURM_PROCID")) env.rank = env_int(n, std::getenv(n));
  if (const char* n = pick("LOCAL_RANK", "SLURM_LOCALID")) env.local_rank = env_int(n, std::getenv(n));
  if (const char* v = env_or_null("MASTER_ADDR")) env.master_addr = v;
  if (const char* v = env_or_null("MASTER_PORT")) env.master_port = env_int("MASTER_PORT", v);
  if (env.world_size < 1) fail("WORLD_SIZE (or SLURM_NTASKS) = ", env.world_size, " must be >= 1");
  if (env.rank < 0 || env.rank >= env.world_size)
    fail("RANK (or SLURM_PROCID) = ", env.rank, " must be in [0, ", env.world_size, ")");
  if (env.master_port <= 0 || env.master_port > 65535)
    fail("MASTER_PORT = ", env.master_port, " must be in [1, 65535]");
  if (env.world_size > 1 && !env_or_null("MASTER_ADDR") && pick("RANK", "SLURM_PROCID") &&
      env_or_null("SLURM_PROCID") && !env_or_null("RANK"))
    fail("SLURM_NTASKS = ", env.world_size, " but MASTER_ADDR is not set\nHINT: export MASTER_ADDR="
         "$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1) in the batch script");
  return env;
}

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::chrono::milliseconds timeout;
};

Distributed::Distributed(const DistEnv& env, torch::Device device, std::chrono::milliseconds timeout)
    : env_(env), impl_(std::make_unique<Impl>()) {
  C2C_CHECK(timeout.count() > 0, "distributed timeout must be > 0 ms, got ", timeout.count());
  impl_->timeout = timeout;
  if (env_.world_size == 1) return;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env_.master_port);
    so.isServer = env_.rank == 0;
    so.numWorkers = static_cast<size_t>(env_.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
  } catch (const std::exception& e) {
    fail("rank ", env_.rank, "/", env_.world_size, ": rendezvous at ", env_.master_addr, ":",
         env_.master_port, " failed within ", timeout.count() / 1000.0, " s: ", error_text(e),
         "\nHINT: every rank must start with the same MASTER_ADDR/MASTER_PORT and WORLD_SIZE; rank 0 "
         "serves the store, so the port must be free on its host");
  }
  try {
    if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      impl_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env_.rank,
                                                              env_.world_size, opts);
      backend_ = "nccl";
#else
      fail("this LibTorch was built without NCCL: multi-rank training on CUDA is not available"
           "\nHINT: use a CUDA LibTorch with NCCL, or train on the CPU (train.device: cpu)");
#endif
    } else {
#ifdef USE_C10D_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* ifname = env_or_null("GLOO_SOCKET_IFNAME");
      opts->devices.push_back(ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                              : env_.master_addr == "127.0.0.1" || env_.master_addr == "localhost"
                                  ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                  : c10d::ProcessGroupGloo::createDefaultDevice());
      impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env_.rank,
                                                              env_.world_size, opts);
      backend_ = "gloo";
#else
      fail("this LibTorch was built without Gloo: multi-rank training on the CPU is not available");
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("rank ", env_.rank, "/", env_.world_size, ": creating the process group failed (other "
         "rank(s) did not join within ", timeout.count() / 1000.0, " s?): ", error_text(e),
         "\nHINT: start every rank with the same WORLD_SIZE/MASTER_ADDR/MASTER_PORT; across hosts "
         "set GLOO_SOCKET_IFNAME to the network interface the ranks share");
  }
}

Distributed::~Distributed() = default;

namespace {
[[noreturn]] void collective_failed(const DistEnv& env, const std::string& op, const std::string& what,
                                    std::chrono::milliseconds timeout, const std::exception& e) {
  fail("rank ", env.rank, "/", env.world_size, ": ", op, " of ", what, " failed: ", error_text(e),
       "\nHINT: another rank has died, stopped or is stuck (timeout ", timeout.count() / 1000.0,
       " s, train.dist_timeout_s); see the first error in the other ranks' output");
}
}  // namespace

void Distributed::broadcast(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  if (!impl_->pg) return;
  try {
    for (const auto& t : tensors) {
      std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
      c10d::BroadcastOptions o;
      o.rootRank = 0;
      o.timeout = impl_->timeout;
      impl_->pg->broadcast(one, o)->wait(impl_->timeout);
      if (!one[0].is_same(t)) t.copy_(one[0]);
    }
  } catch (const std::exception& e) {
    collective_failed(env_, "broadcast", what, impl_->timeout, e);
  }
}

void Distributed::all_reduce(const std::vector<torch::Tensor>& tensors, bool mean, const std::string& what) {
  if (!impl_->pg) return;
  torch::NoGradGuard no_grad;
  // Buckets of tensors with one dtype and device, in the given order (the same on every rank).
  std::vector<std::vector<torch::Tensor>> buckets;
  std::map<std::pair<int, std::string>, std::pair<size_t, int64_t>> open;  // -> (bucket, bytes)
  for (const auto& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    const auto key = std::make_pair(static_cast<int>(t.scalar_type()), t.device().str());
    auto it = open.find(key);
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    if (it == open.end() || it->second.second + bytes > bucket_bytes) {
      buckets.emplace_back();
      it = open.insert_or_assign(key, std::make_pair(buckets.size() - 1, int64_t(0))).first;
    }
    buckets[it->second.first].push_back(t);
    it->second.second += bytes;
  }
  try {
    for (auto& b : buckets) {
      std::vector<torch::Tensor> flat_parts;
      for (const auto& t : b) flat_parts.push_back(t.reshape({-1}));
      std::vector<at::Tensor> flat{b.size() == 1 && b[0].is_contiguous() ? b[0].view({-1})
                                                                         : torch::cat(flat_parts)};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      o.timeout = impl_->timeout;
      impl_->pg->allreduce(flat, o)->wait(impl_->timeout);
      if (mean) flat[0].div_(env_.world_size);
      int64_t at = 0;
      for (auto& t : b) {
        auto part = flat[0].narrow(0, at, t.numel()).view(t.sizes());
        if (!part.is_same(t)) t.copy_(part);
        at += t.numel();
      }
    }
  } catch (const std::exception& e) {
    collective_failed(env_, "all-reduce", what, impl_->timeout, e);
  }
}

void Distributed::all_reduce_sum(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  all_reduce(tensors, false, what);
}

void Distributed::all_reduce_mean(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  all_reduce(tensors, true, what);
}

double Distributed::all_reduce_sum_scalar(double value, const std::string& what) {
  if (!impl_->pg) return value;
  auto t = torch::full({1}, value, torch::TensorOptions().dtype(torch::kFloat64));
  if (backend_ == "nccl") t = t.to(torch::Device(torch::kCUDA, env_.local_rank));
  all_reduce({t}, false, what);
  return t.cpu().item<double>();
}

void Distributed::barrier(const std::string& what) {
  if (!impl_->pg) return;
  try {
    c10d::BarrierOptions o;
    o.timeout = impl_->timeout;
    impl_->pg->barrier(o)->wait(impl_->timeout);
  } catch (const std::exception& e) {
    collective_failed(env_, "barrier", what, impl_->timeout, e);
  }
}

}  // namespace c2c
