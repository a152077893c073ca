// The grouped linear (the fuser's stacked products) on every CPU schedule against LibTorch's
// bmm/baddbmm, forward and backward; the CPU references give the same bits at 1 and 2 intra-op
// threads (their reductions sum in one order); the thread-count settings' one meaning.
#include <ATen/Parallel.h>

#include <thread>

#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "tests/kernels/kernel_test_util.h"

namespace {
namespace k = c2c::kernels;
using c2c::test::expect_close;

class ScopedThreads {
 public:
  explicit ScopedThreads(int n) : previous_(at::get_num_threads()) { at::set_num_threads(n); }
  ~ScopedThreads() { at::set_num_threads(previous_); }

 private:
  int previous_;
};

class ScopedGroupedGemm {
 public:
  explicit ScopedGroupedGemm(k::GroupedGemm how) : previous_(k::grouped_gemm()) {
    k::set_grouped_gemm(how);
  }
  ~ScopedGroupedGemm() { k::set_grouped_gemm(previous_); }

 private:
  k::GroupedGemm previous_;
};

TEST(KernelsGroupedLinear, EverySchedule_MatchesBmmForwardAndBackward) {
  const ScopedThreads two(2);  // group_parallel splits the groups over two threads
  struct Shape {
    int64_t G, T, k, o;
  };
  for (const Shape& s : {Shape{1, 5, 3, 4}, Shape{2, 7, 19, 11}, Shape{6, 33, 17, 9}}) {
    for (bool bias : {false, true}) {
      torch::manual_seed(3);
      auto x = torch::randn({s.G, s.T, s.k}, torch::kFloat64).requires_grad_(true);
      auto w = torch::randn({s.G, s.o, s.k}, torch::kFloat64).requires_grad_(true);
      auto b = bias ? torch::randn({s.G, s.o}, torch::kFloat64).requires_grad_(true) : torch::Tensor();
      // A non-contiguous upstream gradient, as the fuser's permuted head views give back.
      auto up = torch::randn({s.G, s.o, s.T}, torch::kFloat64).transpose(1, 2);
      auto want = k::grouped_linear_unfused(x, w, b);
      auto gw = torch::autograd::grad({want}, bias ? std::vector<torch::Tensor>{x, w, b}
                                                   : std::vector<torch::Tensor>{x, w},
                                      {up});
      for (auto how : {k::GroupedGemm::per_group, k::GroupedGemm::group_parallel,
                       k::GroupedGemm::batched, k::GroupedGemm::automatic}) {
        const ScopedGroupedGemm schedule(how);
        const std::string what = std::string(k::grouped_gemm_name(how)) + " G " +
                                 std::to_string(s.G) + (bias ? " bias" : "");
        auto y = k::grouped_linear(x, w, b);
        EXPECT_TRUE(y.is_contiguous()) << what;
        expect_close(y, want, 1e-12, 1e-12, what + " forward");
        auto g = torch::autograd::grad({y}, bias ? std::vector<torch::Tensor>{x, w, b}
                                                 : std::vector<torch::Tensor>{x, w},
                                       {up});
        for (size_t i = 0; i < g.size(); ++i)
          expect_close(g[i], gw[i], 1e-12, 1e-12, what + " grad " + std::to_string(i));
      }
    }
  }
  // Only the inputs that need a gradient get one (the frozen receiver's cache does not).
  auto x = torch::randn({2, 4, 3}), w = torch::randn({2, 5, 3}).requires_grad_(true);
  k::grouped_linear(x, w).sum().backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
}

TEST(KernelsGroupedLinear, ChoiceAndErrors) {
  {
    const ScopedThreads one(1);
    EXPECT_EQ(k::grouped_gemm_choice(56, 170, 1024, 1024), k::GroupedGemm::per_group);
  }
  {
    const ScopedThreads two(2);
    EXPECT_EQ(k::grouped_gemm_choice(16, 380, 256, 256), k::GroupedGemm::group_parallel);
    EXPECT_EQ(k::grouped_gemm_choice(1, 380, 256, 256), k::GroupedGemm::per_group);
  }
  EXPECT_EQ(k::parse_grouped_gemm("group_parallel"), k::GroupedGemm::group_parallel);
  EXPECT_THROW(k::parse_grouped_gemm("fast"), c2c::Error);
  auto x = torch::randn({2, 4, 3});
  EXPECT_THROW(k::grouped_linear(x, torch::randn({3, 5, 3})), c2c::Error);  // groups differ
  EXPECT_THROW(k::grouped_linear(x, torch::randn({2, 5, 4})), c2c::Error);  // widths differ
  EXPECT_THROW(k::grouped_linear(x, torch::randn({2, 5, 3}), torch::randn({2, 4})), c2c::Error);
}

// Runs f (which returns tensors) at 1 and at 2 intra-op threads and expects the same bits.
void expect_same_at_1_and_2_threads(const std::function<std::vector<torch::Tensor>()>& f,
                                    const std::string& what) {
  std::vector<torch::Tensor> one, two;
  {
    const ScopedThreads t(1);
    one = f();
  }
  {
    const ScopedThreads t(2);
    two = f();
  }
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i)
    EXPECT_TRUE(torch::equal(one[i], two[i])) << what << " output " << i;
}

TEST(KernelsThreads, CpuReferencesGiveTheSameBitsAtEveryThreadCount) {
  const k::ScopedOpPath reference(k::OpPath::reference);
  torch::manual_seed(11);
  const int64_t G = 6, T = 41, h = 37;
  auto x = torch::randn({G, T, h}), nw = 1 + 0.2 * torch::randn({G, h}), up = torch::randn({G, T, h});
  expect_same_at_1_and_2_threads([&] {
    auto xi = x.clone().requires_grad_(true), wi = nw.clone().requires_grad_(true);
    auto y = k::rms_norm(xi, wi, 1e-6);
    y.backward(up);
    return std::vector<torch::Tensor>{y, xi.grad(), wi.grad()};
  }, "rms_norm");
  expect_same_at_1_and_2_threads([&] {
    auto xi = x.clone().requires_grad_(true), ai = up.clone().requires_grad_(true);
    auto y = k::dropout_residual(xi, ai, 0.25, 99);
    y.backward(nw.unsqueeze(1).expand({G, T, h}).contiguous());
    return std::vector<torch::Tensor>{y, xi.grad(), ai.grad()};
  }, "dropout_residual");
  expect_same_at_1_and_2_threads([&] {
    auto ai = x.clone().requires_grad_(true);
    auto y = k::gelu(ai);
    y.backward(up);
    return std::vector<torch::Tensor>{y, ai.grad()};
  }, "gelu");
  const int64_t S = 6, B = 2, H = 3, N = 7, D = 5;
  auto p = torch::randn({S, B, N, H, D}), wl = torch::randn({S, B, N, H});
  auto target = torch::randn({S, B, H, N, D}), gl = 0.5 * torch::randn({S});
  auto u = torch::rand({S, B, H, N}), tau = 0.3 + torch::rand({S}), d_out = torch::randn({S, B, H, N, D});
  expect_same_at_1_and_2_threads([&] {
    auto pi = p.clone().requires_grad_(true), wi = wl.clone().requires_grad_(true);
    auto gi = gl.clone().requires_grad_(true);
    auto y = k::gated_combine(target, wi.permute({0, 1, 3, 2}), pi.permute({0, 1, 3, 2, 4}), gi, u,
                              tau, false);
    y.backward(d_out);
    return std::vector<torch::Tensor>{y, pi.grad(), wi.grad(), gi.grad()};
  }, "gated_combine");
}

TEST(KernelsThreads, OneMeaningOfAThreadCount) {
  namespace compat = c2c::compat;
  EXPECT_EQ(compat::threads_for(3), 3);
  if (!std::getenv("OMP_NUM_THREADS"))
    EXPECT_EQ(compat::threads_for(0), static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_THROW(compat::threads_for(-1), c2c::Error);
  if (!std::getenv("OMP_NUM_THREADS") && !std::getenv("LOCAL_WORLD_SIZE") && !std::getenv("SLURM_NTASKS_PER_NODE")) {
    // Ranks on one host share its cores; a malformed count is named.
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    setenv("LOCAL_WORLD_SIZE", "2", 1);
    EXPECT_EQ(compat::threads_for(0), std::max(1, cores / 2));
    EXPECT_EQ(compat::threads_for(5), 5);
    setenv("LOCAL_WORLD_SIZE", std::to_string(4 * cores).c_str(), 1);
    EXPECT_EQ(compat::threads_for(0), 1);
    setenv("LOCAL_WORLD_SIZE", "two", 1);
    try {
      compat::threads_for(0);
      ADD_FAILURE() << "accepted LOCAL_WORLD_SIZE=two";
    } catch (const c2c::Error& e) {
      EXPECT_NE(std::string(e.what()).find("LOCAL_WORLD_SIZE='two'"), std::string::npos) << e.what();
    }
    unsetenv("LOCAL_WORLD_SIZE");
    setenv("SLURM_NTASKS_PER_NODE", "2(x3)", 1);  // Slurm's per-node list form: not a count, ignored
    EXPECT_EQ(compat::threads_for(0), cores);
    unsetenv("SLURM_NTASKS_PER_NODE");
  }
  EXPECT_EQ(compat::parse_thread_list("1,2", "--threads"), (std::vector<int>{1, 2}));
  EXPECT_EQ(compat::parse_thread_list("4", "--threads"), (std::vector<int>{4}));
  for (const char* bad : {"", "1,", "a", "1;2", "-1"}) {
    try {
      compat::parse_thread_list(bad, "bench: --threads");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const c2c::Error& e) {
      EXPECT_NE(std::string(e.what()).find("bench: --threads"), std::string::npos) << e.what();
    }
  }
  const int before = at::get_num_threads();
  EXPECT_EQ(compat::set_threads(1), 1);
  EXPECT_EQ(at::get_num_threads(), 1);
  at::set_num_threads(before);
}

}  // namespace
