// Data parallelism over c10d: rendezvous, process group, bucketed collectives (distributed.h).
#include "trainer/distributed.h"

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <condition_variable>
#include <cstdlib>
#include <map>
#include <thread>

#include "modules/common/error.h"

namespace c2c {
namespace {

// The rendezvous key through which rank 0 says whether the run starts: "ok" or why not.
constexpr const char* kStartKey = "c2c/start";


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
  if (const char* v = env_or_null("C2C_PROCESS_GROUP")) {
    const std::string s = v;
    if (s != "0" && s != "1") fail("environment variable C2C_PROCESS_GROUP='", s, "' must be 0 or 1");
    env.always_group = s == "1";
  }
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
  // Since LibTorch 2.0 Gloo and NCCL are c10d::Backends (a ProcessGroup dispatches to them); the
  // collectives here go to the one backend directly.
  c10::intrusive_ptr<c10d::Backend> pg;
  std::chrono::milliseconds timeout;
  // Collectives this rank has entered (published with the heartbeat: how far a rank got).
  std::atomic<int64_t> op_seq{0};
  // Heartbeat: "c2c/hb/<rank>" = "<beat> <op_seq>" in the store every `hb_period`.
  std::chrono::milliseconds hb_period{500};
  std::thread hb_thread;
  std::mutex hb_mutex;
  std::condition_variable hb_cv;
  bool hb_stop = false;

  void heartbeat(int rank) {
    const std::string key = "c2c/hb/" + std::to_string(rank);
    int64_t beat = 0;
    std::unique_lock<std::mutex> lock(hb_mutex);
    while (!hb_stop) {
      lock.unlock();
      try {
        const std::string v = std::to_string(++beat) + " " + std::to_string(op_seq.load());
        store->set(key, std::vector<uint8_t>(v.begin(), v.end()));
      } catch (...) {
        return;  // the store is gone (rank 0 ended or died): nobody left to tell
      }
      lock.lock();
      hb_cv.wait_for(lock, hb_period, [&] { return hb_stop; });
    }
  }
  void stop_heartbeat() {
    {
      std::lock_guard<std::mutex> lock(hb_mutex);
      hb_stop = true;
    }
    hb_cv.notify_all();
    if (hb_thread.joinable()) hb_thread.join();
  }
};

void Distributed::refuse_start(const DistEnv& env, const std::string& reason,
                               std::chrono::milliseconds timeout) {
  if (env.rank != 0 || env.world_size <= 1) return;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = true;
    so.numWorkers = static_cast<size_t>(env.world_size);
    so.waitWorkers = false;
    so.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    store->set(kStartKey, std::vector<uint8_t>(reason.begin(), reason.end()));
    std::vector<std::string> read;
    for (int q = 1; q < env.world_size; ++q) read.push_back(kStartKey + std::string("/read/") + std::to_string(q));
    store->wait(read, timeout);
  } catch (const std::exception&) {
    // The port is taken or a rank never came: nobody more to tell; the caller throws the reason.
  }
}

Distributed::Distributed(const DistEnv& env, torch::Device device, std::chrono::milliseconds timeout)
    : env_(env), impl_(std::make_unique<Impl>()) {
  C2C_CHECK(timeout.count() > 0, "distributed timeout must be > 0 ms, got ", timeout.count());
  impl_->timeout = timeout;
  if (env_.world_size == 1 && !env_.always_group) return;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env_.master_port);
    so.isServer = env_.rank == 0;
    so.numWorkers = static_cast<size_t>(env_.world_size);
    // Every rank checks in (waitForWorkers); rank 0 does it below rather than in the
    // constructor, where LibTorch 2.x's server times out with a message of its own (and a
    // timeout one second longer than ours). The others check in and go on at once.
    so.waitWorkers = env_.rank != 0;
    so.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
  } catch (const std::exception& e) {
    fail("rank ", env_.rank, "/", env_.world_size, ": rendezvous at ", env_.master_addr, ":",
         env_.master_port, " failed within ", timeout.count() / 1000.0, " s: ", error_text(e),
         "\nHINT: every rank must start with the same MASTER_ADDR/MASTER_PORT and WORLD_SIZE; rank 0 "
         "serves the store, so the port must be free on its host");
  }
  // Rank 0 says whether the run starts ("ok", or refuse_start's reason); the others read it
  // before building the process group.
  if (env_.rank == 0) {
    impl_->store->set(kStartKey, std::vector<uint8_t>{'o', 'k'});
  } else {
    std::string start;
    try {
      const auto v = impl_->store->get(kStartKey);
      start.assign(v.begin(), v.end());
      impl_->store->set(kStartKey + std::string("/read/") + std::to_string(env_.rank),
                        std::vector<uint8_t>{'1'});
    } catch (const std::exception& e) {
      fail("rank ", env_.rank, "/", env_.world_size, ": rank 0 did not say whether the run starts within ",
           timeout.count() / 1000.0, " s: ", error_text(e));
    }
    C2C_CHECK(start == "ok", "rank ", env_.rank, "/", env_.world_size, ": rank 0 refused to start the run: ",
              start, "\nHINT: the fix is rank 0's; its log has the same message");
  }
  if (env_.rank == 0) {
    try {
      static_cast<c10d::TCPStore&>(*impl_->store).waitForWorkers();
    } catch (const std::exception&) {
      fail("rank 0/", env_.world_size, ": rendezvous at ", env_.master_addr, ":", env_.master_port,
           ": other rank(s) did not join within ", timeout.count() / 1000.0, " s",
           "\nHINT: start every rank with the same WORLD_SIZE/MASTER_ADDR/MASTER_PORT (ranks 1..",
           env_.world_size - 1, " are missing or were started against another address)");
    }
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
  impl_->hb_thread = std::thread([m = impl_.get(), r = env_.rank] { m->heartbeat(r); });
}

Distributed::~Distributed() {
  if (impl_) impl_->stop_heartbeat();
}

std::chrono::milliseconds Distributed::timeout() const { return impl_->timeout; }

torch::Device Distributed::bind_device(const DistEnv& env, const std::string& requested) {
  if (requested == "cpu" || !torch::cuda::is_available()) return torch::kCPU;
  // Not exercised here (no GPU on this project's machines): one rank per GPU of its host.
  const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
  C2C_CHECK(env.local_rank < n, "rank ", env.rank, ": LOCAL_RANK (or SLURM_LOCALID) = ",
            env.local_rank, " but this host has ", n, " CUDA device(s)\nHINT: start at most one "
            "rank per GPU on each host (e.g. --ntasks-per-node <= --gpus-per-node)");
  const torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->setDevice(device);
  return device;
}

std::string Distributed::diagnose_peers() {
  if (!impl_->store || env_.world_size <= 1) return "";
  const int W = env_.world_size, me = env_.rank;
  // (beat, op_seq) of every other rank; beat -1 when it never published one.
  auto read = [&] {
    std::vector<std::pair<int64_t, int64_t>> out(W, {-1, -1});
    for (int q = 0; q < W; ++q) {
      if (q == me) continue;
      const std::string key = "c2c/hb/" + std::to_string(q);
      if (!impl_->store->check({key})) continue;
      const auto v = impl_->store->get(key);
      std::istringstream in(std::string(v.begin(), v.end()));
      in >> out[q].first >> out[q].second;
    }
    return out;
  };
  const auto wait = 4 * impl_->hb_period;
  std::vector<std::pair<int64_t, int64_t>> a, b;
  try {
    a = read();
    std::this_thread::sleep_for(wait);
    b = read();
  } catch (const std::exception& e) {
    if (me == 0) return "";
    return str("rank 0 is lost (it serves the rendezvous store at ", env_.master_addr, ":",
               env_.master_port, ", which no longer answers: ", error_text(e), ")");
  }
  const int64_t mine = impl_->op_seq.load();
  std::vector<int> lost;
  std::ostringstream behind;
  for (int q = 0; q < W; ++q) {
    if (q == me) continue;
    if (b[q].first < 0 || b[q].first == a[q].first)
      lost.push_back(q);
    else if (b[q].second < mine)
      behind << (behind.tellp() > 0 ? "; " : "") << "rank " << q << " is alive but has not "
             << "reached this collective (it has entered " << b[q].second << " collectives, this "
             << "rank " << mine << "): it is stuck or slower than the timeout";
  }
  std::ostringstream out;
  if (!lost.empty()) {
    out << (lost.size() == 1 ? "rank " : "ranks ");
    for (size_t i = 0; i < lost.size(); ++i) out << (i ? ", " : "") << lost[i];
    out << (lost.size() == 1 ? " is" : " are") << " lost (no heartbeat in the last "
        << std::chrono::duration<double>(wait).count()
        << " s: the process died, is frozen or its host is unreachable)";
  }
  if (behind.tellp() > 0) out << (lost.empty() ? "" : "; ") << behind.str();
  return out.str();
}

void Distributed::collective_failed(const std::string& op, const std::string& what,
                                    const std::exception& e) {
  std::string peers;
  try {
    peers = diagnose_peers();
  } catch (...) {
  }
  fail("rank ", env_.rank, "/", env_.world_size, ": ", op, " of ", what, " failed",
       peers.empty() ? std::string() : ": " + peers, "; the backend said: ", error_text(e),
       "\nHINT: another rank has died, stopped or is stuck (timeout ", impl_->timeout.count() / 1000.0,
       " s, train.dist_timeout_s); see the first error in the other ranks' output");
}

void Distributed::broadcast(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  if (!impl_->pg) return;
  try {
    for (const auto& t : tensors) {
      std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
      c10d::BroadcastOptions o;
      o.rootRank = 0;
      o.timeout = impl_->timeout;
      ++impl_->op_seq;
      impl_->pg->broadcast(one, o)->wait(impl_->timeout);
      if (!one[0].is_same(t)) t.copy_(one[0]);
    }
  } catch (const std::exception& e) {
    collective_failed("broadcast", what, e);
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
      ++impl_->op_seq;
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
    collective_failed("all-reduce", what, e);
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
    ++impl_->op_seq;
    impl_->pg->barrier(o)->wait(impl_->timeout);
  } catch (const std::exception& e) {
    collective_failed("barrier", what, e);
  }
}

// ---- GradSync: all-reduce overlapped with backward ---------------------------------------------

struct GradSync::Bucket {
  std::vector<size_t> params;
  torch::Tensor flat;  // the bucket's gradients, one after the other
  int64_t pending = 0;  // parameters not copied in yet this update
  bool launched = false;
  c10::intrusive_ptr<c10d::Work> work;
  // Completion time (seconds after arm()), set from the backend's thread; shared with the
  // callback so it may outlive this object.
  std::shared_ptr<std::atomic<double>> done_s = std::make_shared<std::atomic<double>>(-1.0);
};

GradSync::GradSync(Distributed& dist, std::vector<std::pair<std::string, torch::Tensor>> params,
                   bool overlap)
    : dist_(dist), params_(std::move(params)), overlap_(overlap) {
  if (!dist_.impl_->pg) return;
  const size_t n = params_.size();
  bucket_of_.assign(n, SIZE_MAX);
  offset_of_.assign(n, 0);
  got_.assign(n, 0);
  // Reverse order: backward produces the last parameters' gradients first.
  std::map<std::pair<int, std::string>, std::pair<size_t, int64_t>> open;  // -> (bucket, bytes)
  std::vector<int64_t> numel;
  for (size_t k = n; k-- > 0;) {
    const auto& [name, p] = params_[k];
    C2C_CHECK(p.is_leaf() && p.requires_grad(), "gradient sync: parameter '", name,
              "' is not a leaf tensor that requires grad");
    if (p.numel() == 0) continue;
    const auto key = std::make_pair(static_cast<int>(p.scalar_type()), p.device().str());
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    auto it = open.find(key);
    if (it == open.end() || (it->second.second > 0 && it->second.second + bytes > dist_.bucket_bytes)) {
      buckets_.push_back(std::make_unique<Bucket>());
      numel.push_back(0);
      it = open.insert_or_assign(key, std::make_pair(buckets_.size() - 1, int64_t(0))).first;
    }
    const size_t b = it->second.first;
    buckets_[b]->params.push_back(k);
    bucket_of_[k] = b;
    offset_of_[k] = numel[b];
    numel[b] += p.numel();
    it->second.second += bytes;
  }
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& p = params_[buckets_[b]->params[0]].second;
    buckets_[b]->flat = torch::zeros({numel[b]}, p.options().requires_grad(false));
  }
  if (!overlap_) return;
  for (size_t k = 0; k < n; ++k) {
    if (bucket_of_[k] == SIZE_MAX) continue;
    hooks_.push_back(params_[k].second.register_hook([this, k](torch::Tensor grad) { on_grad(k, grad); }));
  }
}

GradSync::~GradSync() {
  size_t h = 0;
  for (size_t k = 0; k < params_.size() && h < hooks_.size(); ++k)
    if (bucket_of_[k] != SIZE_MAX) params_[k].second.remove_hook(hooks_[h++]);
}

double GradSync::since_arm() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_arm_).count();
}

void GradSync::arm() {
  if (!dist_.impl_->pg) return;
  std::lock_guard<std::mutex> lock(mutex_);
  t_arm_ = std::chrono::steady_clock::now();
  for (auto& b : buckets_) {
    b->pending = static_cast<int64_t>(b->params.size());
    b->launched = false;
    b->work.reset();
    b->done_s = std::make_shared<std::atomic<double>>(-1.0);
  }
  std::fill(got_.begin(), got_.end(), 0);
  next_launch_ = 0;
  error_.clear();
  stats_ = Stats();
  armed_ = true;
}

void GradSync::on_grad(size_t k, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_ || !error_.empty()) return;
  try {
    const auto& p = params_[k].second;
    Bucket& b = *buckets_[bucket_of_[k]];
    C2C_CHECK(!got_[k] && !b.launched, "gradient sync: a second gradient for '", params_[k].first,
              "' arrived in one update after its bucket was filled (backward called twice after "
              "arm()?)");
    torch::NoGradGuard no_grad;
    auto slice = b.flat.narrow(0, offset_of_[k], p.numel()).view(p.sizes());
    // What AccumulateGrad is about to form: the earlier micro-steps' sum plus this one.
    const auto& acc = p.grad();
    if (acc.defined())
      torch::add_out(slice, acc, grad);
    else
      slice.copy_(grad);
    got_[k] = 1;
    if (--b.pending == 0) launch_ready_locked();
  } catch (const std::exception& e) {
    error_ = error_text(e);
  }
}

void GradSync::launch_ready_locked() {
  // Strictly in bucket order, so every rank issues the same collectives in the same order.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->pending == 0) {
    Bucket& b = *buckets_[next_launch_++];
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = dist_.impl_->timeout;
    ++dist_.impl_->op_seq;
    std::vector<at::Tensor> tensors{b.flat};
    b.work = dist_.impl_->pg->allreduce(tensors, o);
    b.launched = true;
    ++launches_;
    stats_.launch_s.push_back(since_arm());
    if (armed_ && stats_.backward_end_s == 0) ++stats_.launched_in_backward;
    try {
      auto done = b.done_s;
      const auto t0 = t_arm_;
      b.work->getFuture()->addCallback([done, t0](c10::ivalue::Future&) {
        done->store(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      });
    } catch (...) {
      // No future on this backend: no completion time, nothing else lost.
    }
  }
}

void GradSync::finish(const std::string& what) {
  if (!dist_.impl_->pg) return;
  std::unique_lock<std::mutex> lock(mutex_);
  if (!armed_) {  // arm() was not called (or overlap is off and it only took the time)
    lock.unlock();
    arm();
    lock.lock();
  }
  stats_.backward_end_s = std::max(since_arm(), 1e-12);
  if (!error_.empty()) {
    const std::string e = error_;
    armed_ = false;
    lock.unlock();
    dist_.collective_failed("all-reduce", what, std::runtime_error(e));
  }
  // Gradients no hook delivered: all of them without overlap, else parameters that took no
  // part in this backward (their .grad() from earlier micro-steps, or zero).
  {
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < params_.size(); ++k) {
      if (bucket_of_[k] == SIZE_MAX || got_[k]) continue;
      const auto& p = params_[k].second;
      Bucket& b = *buckets_[bucket_of_[k]];
      auto slice = b.flat.narrow(0, offset_of_[k], p.numel()).view(p.sizes());
      if (p.grad().defined())
        slice.copy_(p.grad());
      else
        slice.zero_();
      got_[k] = 1;
      --b.pending;
    }
  }
  launch_ready_locked();
  C2C_ASSERT(next_launch_ == buckets_.size());
  armed_ = false;
  lock.unlock();

  const auto t0 = std::chrono::steady_clock::now();
  try {
    for (auto& b : buckets_) b->work->wait(dist_.impl_->timeout);
  } catch (const std::exception& e) {
    dist_.collective_failed("all-reduce", what, e);
  }
  stats_.wait_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < params_.size(); ++k) {
    if (bucket_of_[k] == SIZE_MAX) continue;
    auto& p = params_[k].second;
    auto slice = buckets_[bucket_of_[k]]->flat.narrow(0, offset_of_[k], p.numel()).view(p.sizes());
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    p.grad().copy_(slice);
  }
  stats_.buckets = static_cast<int64_t>(buckets_.size());
  for (auto& b : buckets_) {
    stats_.bytes += b->flat.numel() * static_cast<int64_t>(b->flat.element_size());
    stats_.done_s.push_back(b->done_s->load());
  }
}

}  // namespace c2c
