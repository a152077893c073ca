// The fuser against the independent float64 PyTorch implementation in scripts/fuser_reference.py
// (golden tests/fixtures/fuser/fuser_golden.safetensors): forward in training (replayed Gumbel
// noise) and inference, backward into inputs and every parameter, batched and per layer. Plus the
// temperature schedule, hard/stochastic gates, dropout, the published state names and sizes.
#include <gtest/gtest.h>

#include <cmath>

#include <torch/cuda.h>

#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "modules/fuser.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"

namespace c2c {
namespace {

// The golden is float64 math rounded to fp32; our fp32 forward/backward over at most ~100-term
// sums of O(1) values stays within a few 1e-6. 1e-5 absolute (plus 1e-5 relative for the few
// gradients above 1) is the brief's bound.
constexpr double kAtol = 1e-5, kRtol = 1e-5;

double max_excess(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.detach().to(torch::kCPU, torch::kFloat64), w = want.to(torch::kFloat64);
  return ((g - w).abs() - kRtol * w.abs()).max().item<double>();
}

#define EXPECT_CLOSE(got, want, what)                                                    \
  do {                                                                                   \
    ASSERT_EQ((got).sizes(), (want).sizes()) << what;                                    \
    EXPECT_LE(max_excess(got, want), kAtol) << what << ": max |diff| "                   \
        << ((got).detach().to(torch::kCPU, torch::kFloat64) - (want).to(torch::kFloat64)).abs().max().item<double>(); \
  } while (0)

struct Golden {
  FuserConfig config;
  int64_t num_fusers = 0;
  std::map<std::string, torch::Tensor> t;
};

// One golden per variant (scripts/fuser_reference.py --variant ...).
const char* kGoldenFiles[] = {"fuser_golden.safetensors",
                              "fuser_golden_projection_fusion.safetensors",
                              "fuser_golden_projection.safetensors"};

Golden load_golden(const std::string& name = kGoldenFiles[0]) {
  const std::string path = test::source_path("tests/fixtures/fuser/" + name);
  auto file = SafetensorsFile::open(path);
  auto meta = file->metadata();
  EXPECT_EQ(meta["format_version"], "1")
      << "HINT: regenerate with python3 scripts/fuser_reference.py";
  auto j = nlohmann::json::parse(meta.at("config"));
  Golden g;
  g.config.source_num_heads = j["source_num_heads"];
  g.config.source_head_dim = j["source_head_dim"];
  g.config.target_num_heads = j["target_num_heads"];
  g.config.target_head_dim = j["target_head_dim"];
  g.config.hidden_dim = j["hidden_dim"];
  g.config.intermediate_dim = j["intermediate_dim"];
  g.config.num_layers = j["num_layers"];
  g.config.initial_temperature = j["initial_temperature"];
  g.config.final_temperature = j["final_temperature"];
  g.config.anneal_steps = j["anneal_steps"];
  g.config.dropout = 0.0;  // the golden has no dropout (its mask cannot be replayed)
  if (j.contains("variant")) g.config.variant = parse_fuser_variant(j["variant"]);
  g.num_fusers = j["num_fusers"];
  for (const auto& name : file->names()) g.t[name] = file->load(name);
  return g;
}

StackedFuser fuser_from_golden(const Golden& g) {
  StackedFuser f(g.config, g.num_fusers);
  for (int64_t i = 0; i < g.num_fusers; ++i) {
    std::map<std::string, torch::Tensor> state;
    const std::string prefix = "layer" + std::to_string(i) + ".";
    for (const auto& [name, t] : g.t)
      if (name.rfind(prefix, 0) == 0) state[name.substr(prefix.size())] = t;
    f->load_layer_state(i, state, "golden");
  }
  return f;
}

const char* kInputs[] = {"sharer_key", "sharer_value", "receiver_key", "receiver_value"};

// The inputs' gradients against the golden; an input the golden has no gradient for (the
// projection ablation's receiver cache) must get none (or zeros) here.
void expect_input_grads(std::map<std::string, torch::Tensor>& in, const Golden& g) {
  for (const char* k : kInputs) {
    const std::string key = std::string("grad.") + k;
    if (g.t.count(key)) {
      EXPECT_CLOSE(in[k].grad(), g.t.at(key), k);
    } else {
      EXPECT_TRUE(!in[k].grad().defined() || in[k].grad().abs().max().item<double>() == 0.0) << k;
    }
  }
}

// Every fuser gradient against the golden, and the same set of them on both sides.
void expect_layer_grads(const StackedFuser& f, const Golden& g) {
  int compared = 0, expected = 0;
  for (const auto& [name, t] : g.t) expected += name.rfind("grad.layer", 0) == 0;
  for (int64_t i = 0; i < g.num_fusers; ++i) {
    for (const auto& [name, grad] : f->layer_state(i, /*gradients=*/true)) {
      const std::string key = "grad.layer" + std::to_string(i) + "." + name;
      ASSERT_TRUE(g.t.count(key)) << key << " has a gradient here but none in the golden";
      EXPECT_CLOSE(grad, g.t.at(key), key);
      ++compared;
    }
  }
  EXPECT_EQ(compared, expected);
}

// The golden tests run on every op path (kernels/fused_ops.h): the default, the kernel path
// (the CPU references here, the CUDA kernels on a GPU) and plain LibTorch ops; and on CUDA where
// a GPU exists (the same bodies, inputs moved there, results compared on the CPU).
struct GoldenRun {
  kernels::OpPath path;
  bool cuda;
};

class FuserGolden : public ::testing::TestWithParam<GoldenRun> {
 protected:
  void SetUp() override {
    if (GetParam().cuda && !torch::cuda::is_available())
      GTEST_SKIP() << "no CUDA device visible to LibTorch";
    path_ = std::make_unique<kernels::ScopedOpPath>(GetParam().path);
  }
  torch::Device device() const { return GetParam().cuda ? torch::kCUDA : torch::kCPU; }
  // A golden tensor on the test's device.
  torch::Tensor at(const Golden& g, const std::string& name) const {
    return g.t.at(name).to(device());
  }
  // The golden's fuser on the test's device, in training mode.
  StackedFuser training_fuser(const Golden& g) const {
    StackedFuser f = fuser_from_golden(g);
    f->to(device());
    f->train();
    return f;
  }
  // The golden's inputs as leaves on the test's device.
  std::map<std::string, torch::Tensor> leaf_inputs(const Golden& g) const {
    std::map<std::string, torch::Tensor> in;
    for (const char* k : kInputs) in[k] = at(g, k).clone().requires_grad_(true);
    return in;
  }
  std::unique_ptr<kernels::ScopedOpPath> path_;
};

INSTANTIATE_TEST_SUITE_P(
    OpPaths, FuserGolden,
    ::testing::Values(GoldenRun{kernels::OpPath::automatic, false},
                      GoldenRun{kernels::OpPath::reference, false},
                      GoldenRun{kernels::OpPath::torch, false},
                      GoldenRun{kernels::OpPath::automatic, true},
                      GoldenRun{kernels::OpPath::torch, true}),
    [](const ::testing::TestParamInfo<GoldenRun>& info) {
      return std::string(info.param.cuda ? "cuda_" : "cpu_") +
             kernels::op_path_name(info.param.path);
    });

TEST_P(FuserGolden, BatchedForwardBackwardMatchReference) {
  for (const char* file : kGoldenFiles) {
    SCOPED_TRACE(file);
    Golden g = load_golden(file);
    StackedFuser f = training_fuser(g);
    auto in = leaf_inputs(g);
    GateNoise noise{at(g, "noise.key_u"), at(g, "noise.value_u")};
    FusedKV out = f->forward(in["sharer_key"], in["sharer_value"], in["receiver_key"],
                             in["receiver_value"], &noise);
    EXPECT_CLOSE(out.key, g.t.at("train.key"), "train key");
    EXPECT_CLOSE(out.value, g.t.at("train.value"), "train value");

    auto loss = (out.key * at(g, "cot.key")).sum() + (out.value * at(g, "cot.value")).sum();
    loss.backward();
    expect_input_grads(in, g);
    expect_layer_grads(f, g);
    if (g.config.variant == FuserVariant::full) {
      // 2 branches x (in 2 + mlp1 3 + scalar 3 + head 2 + 2 proj blocks x 3 + out 2) + 2 gates.
      int64_t n = 0;
      for (int64_t i = 0; i < g.num_fusers; ++i) n += static_cast<int64_t>(f->layer_state(i, true).size());
      EXPECT_EQ(n, g.num_fusers * (2 * 18 + 2));
    }

    f->eval();
    torch::NoGradGuard no_grad;
    FusedKV ev = f->forward(at(g, "sharer_key"), at(g, "sharer_value"), at(g, "receiver_key"),
                            at(g, "receiver_value"));
    EXPECT_CLOSE(ev.key, g.t.at("eval.key"), "eval key");
    EXPECT_CLOSE(ev.value, g.t.at("eval.value"), "eval value");
    if (g.config.variant != FuserVariant::full) continue;
    // Layer 1's key gate and layer 2's value gate are closed (logit < 0): receiver kept exactly.
    EXPECT_TRUE(torch::equal(ev.key[1].cpu(), g.t.at("receiver_key")[1]));
    EXPECT_TRUE(torch::equal(ev.value[2].cpu(), g.t.at("receiver_value")[2]));
    EXPECT_FALSE(torch::equal(ev.key[0].cpu(), g.t.at("receiver_key")[0]));
  }
}

TEST_P(FuserGolden, PerLayerForwardBackwardMatchReference) {
  for (const char* file : kGoldenFiles) {
    SCOPED_TRACE(file);
    Golden g = load_golden(file);
    StackedFuser f = training_fuser(g);
    auto in = leaf_inputs(g);
    torch::Tensor loss = torch::zeros({}, torch::TensorOptions().device(device()));
    for (int64_t i = 0; i < g.num_fusers; ++i) {
      GateNoise noise{at(g, "noise.key_u")[i], at(g, "noise.value_u")[i]};
      FusedKV out = f->forward_layer(i, in["sharer_key"][i], in["sharer_value"][i],
                                     in["receiver_key"][i], in["receiver_value"][i], &noise);
      EXPECT_CLOSE(out.key, g.t.at("train.key")[i], "layer " << i << " train key");
      EXPECT_CLOSE(out.value, g.t.at("train.value")[i], "layer " << i << " train value");
      loss = loss + (out.key * at(g, "cot.key")[i]).sum() + (out.value * at(g, "cot.value")[i]).sum();
    }
    loss.backward();
    expect_input_grads(in, g);
    expect_layer_grads(f, g);

    f->eval();
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < g.num_fusers; ++i) {
      FusedKV out = f->forward_layer(i, at(g, "sharer_key")[i], at(g, "sharer_value")[i],
                                     at(g, "receiver_key")[i], at(g, "receiver_value")[i]);
      EXPECT_CLOSE(out.key, g.t.at("eval.key")[i], "layer " << i << " eval key");
      EXPECT_CLOSE(out.value, g.t.at("eval.value")[i], "layer " << i << " eval value");
    }
  }
}

TEST(Fuser, TemperatureSchedule) {
  // Geometric: tau0 * (tau1/tau0)^(step/anneal), clamped after anneal_steps.
  EXPECT_DOUBLE_EQ(gate_temperature(0, 1.0, 0.001, 1000), 1.0);
  EXPECT_NEAR(gate_temperature(500, 1.0, 0.001, 1000), std::sqrt(0.001), 1e-12);
  EXPECT_NEAR(gate_temperature(250, 1.0, 0.001, 1000), std::pow(0.001, 0.25), 1e-12);
  EXPECT_NEAR(gate_temperature(1000, 1.0, 0.001, 1000), 0.001, 1e-15);
  EXPECT_NEAR(gate_temperature(5000, 1.0, 0.001, 1000), 0.001, 1e-15);
  EXPECT_NEAR(gate_temperature(300, 1.0, 0.001, 1929), 0.3415363, 1e-6);  // the golden's step
  // Linear: tau0 + (tau1 - tau0) * r.
  EXPECT_NEAR(gate_temperature(500, 1.0, 0.001, 1000, AnnealKind::linear), 0.5005, 1e-12);
  EXPECT_NEAR(gate_temperature(250, 2.0, 0.5, 1000, AnnealKind::linear), 1.625, 1e-12);
  EXPECT_NEAR(gate_temperature(2000, 1.0, 0.001, 1000, AnnealKind::linear), 0.001, 1e-15);
  EXPECT_EQ(parse_anneal_kind("linear"), AnnealKind::linear);
  EXPECT_THROW(parse_anneal_kind("cosine"), Error);

  FuserConfig c;
  c.hidden_dim = c.intermediate_dim = 8;
  c.source_num_heads = c.target_num_heads = 1;
  c.source_head_dim = c.target_head_dim = 4;
  c.anneal_steps = 1929;
  StackedFuser f(c, 2);
  auto temperature = [&] { return f->named_buffers()["gate_temperature"]; };
  EXPECT_TRUE(torch::allclose(temperature(), torch::full({2}, 1.0f)));
  f->set_step(300);
  EXPECT_NEAR(temperature()[1].item<double>(), 0.3415363, 1e-6);
  f->set_step(1929);
  EXPECT_NEAR(temperature()[0].item<double>(), 0.001, 1e-9);
}

FuserConfig small_config() {
  FuserConfig c;
  c.source_num_heads = 2;
  c.source_head_dim = 4;
  c.target_num_heads = 3;
  c.target_head_dim = 4;
  c.hidden_dim = 16;
  c.intermediate_dim = 16;
  c.num_layers = 3;
  c.dropout = 0.0;
  return c;
}

struct Inputs {
  torch::Tensor sk, sv, rk, rv;
};
Inputs random_inputs(const FuserConfig& c, int64_t Lf, int64_t B, int64_t N, int seed) {
  torch::manual_seed(seed);
  return {torch::randn({Lf, B, c.source_num_heads, N, c.source_head_dim}),
          torch::randn({Lf, B, c.source_num_heads, N, c.source_head_dim}),
          torch::randn({Lf, B, c.target_num_heads, N, c.target_head_dim}),
          torch::randn({Lf, B, c.target_num_heads, N, c.target_head_dim})};
}

TEST(Fuser, GatesHardAtInferenceStochasticInTraining) {
  FuserConfig c = small_config();
  StackedFuser f(c, 2, /*seed=*/7);
  {
    torch::NoGradGuard no_grad;
    f->named_parameters()["gate_logit"].copy_(torch::tensor({{0.5f, -0.5f}, {0.5f, 0.5f}}));
  }
  Inputs x = random_inputs(c, 2, 2, 64, 1);
  torch::NoGradGuard no_grad;
  f->eval();
  FusedKV e1 = f->forward_delta(x.sk, x.sv, x.rk, x.rv);
  FusedKV e2 = f->forward_delta(x.sk, x.sv, x.rk, x.rv);
  EXPECT_TRUE(torch::equal(e1.key, e2.key));            // deterministic
  EXPECT_EQ(e1.key[1].abs().max().item<float>(), 0.0f);  // closed key gate of layer 1

  f->train();
  f->reseed(11);
  FusedKV t1 = f->forward_delta(x.sk, x.sv, x.rk, x.rv);
  FusedKV t2 = f->forward_delta(x.sk, x.sv, x.rk, x.rv);
  EXPECT_FALSE(torch::equal(t1.key, t2.key));  // fresh noise per call
  f->reseed(11);
  FusedKV t3 = f->forward_delta(x.sk, x.sv, x.rk, x.rv);
  EXPECT_TRUE(torch::equal(t1.key, t3.key));  // reproducible from the seed
  EXPECT_GT(t1.key[1].abs().max().item<float>(), 0.0f);  // closed gates still open sometimes

  // Annealed to tau = 0.001, the Gumbel-sigmoid gate is almost binary: every (B, H, N) slot of
  // the delta is ~0 or ~ the open-gate delta alpha*p.
  f->set_step(c.anneal_steps);
  FusedKV t4 = f->forward_delta(x.sk, x.sv, x.rk, x.rv);
  auto open = e1.key[0];  // layer 0 key gate open at inference: alpha * p
  auto near_zero = (t4.key[0].abs().amax(-1) < 1e-3);
  auto near_open = ((t4.key[0] - open).abs().amax(-1) < 1e-3);
  const double binary = (near_zero | near_open).to(torch::kFloat64).mean().item<double>();
  const double opened = near_open.to(torch::kFloat64).mean().item<double>();
  EXPECT_GT(binary, 0.99);
  // P(open) = P(logit + G > 0) = 1 - exp(-exp(0.5)) = 0.808 for logit 0.5 (G standard Gumbel).
  EXPECT_NEAR(opened, 1.0 - std::exp(-std::exp(0.5)), 0.06);
}

// The ablation ladder: projection only (replaces the receiver's K/V, blind to them),
// projection + fusion (no gate), full.
TEST(Fuser, AblationVariants) {
  FuserConfig c = small_config();
  Inputs x = random_inputs(c, 2, 2, 8, 4);
  auto make = [&](FuserVariant v, float logit) {
    FuserConfig cv = c;
    cv.variant = v;
    StackedFuser f(cv, 2, /*seed=*/9);  // same seed: same weights in every variant
    torch::NoGradGuard no_grad;
    f->named_parameters()["gate_logit"].fill_(logit);
    f->eval();
    return f;
  };
  torch::NoGradGuard no_grad;
  // No gate: projection_fusion with closed gate logits equals full with open gates.
  auto open = make(FuserVariant::full, 5.0f)->forward(x.sk, x.sv, x.rk, x.rv);
  auto closed = make(FuserVariant::full, -5.0f)->forward(x.sk, x.sv, x.rk, x.rv);
  auto no_gate = make(FuserVariant::projection_fusion, -5.0f)->forward(x.sk, x.sv, x.rk, x.rv);
  EXPECT_TRUE(torch::equal(closed.key, x.rk));
  EXPECT_TRUE(torch::allclose(no_gate.key, open.key, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(no_gate.value, open.value, 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(no_gate.key, x.rk));

  // Projection only: the fused cache does not depend on the receiver's own K/V.
  auto proj = make(FuserVariant::projection, -5.0f);
  auto a = proj->forward(x.sk, x.sv, x.rk, x.rv);
  auto b = proj->forward(x.sk, x.sv, x.rk * 3 + 1, x.rv - 2);
  EXPECT_TRUE(torch::allclose(a.key, b.key, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(a.value, b.value, 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(a.key, x.rk));
  // ... but on the sharer's.
  auto s2 = proj->forward(x.sk + 1, x.sv, x.rk, x.rv);
  EXPECT_FALSE(torch::allclose(a.key, s2.key));

  // JSON: only an ablation carries the key; it round-trips; a bad name is named.
  EXPECT_FALSE(c.to_json().contains("variant"));
  FuserConfig cp = c;
  cp.variant = FuserVariant::projection_fusion;
  EXPECT_EQ(cp.to_json()["variant"], "projection_fusion");
  EXPECT_EQ(FuserConfig::from_json(cp.to_json(), "t").variant, FuserVariant::projection_fusion);
  auto bad = c.to_json();
  bad["variant"] = "gates_only";
  EXPECT_NE(test::error_of([&] { FuserConfig::from_json(bad, "fuser.json"); }).find("gates_only"),
            std::string::npos);
}

TEST(Fuser, DropoutOnlyInTraining) {
  FuserConfig c = small_config();
  c.dropout = 0.5;
  StackedFuser f(c, 2, 3);
  Inputs x = random_inputs(c, 2, 1, 8, 2);
  torch::NoGradGuard no_grad;
  const torch::Tensor u = torch::full({2, 1, c.target_num_heads, 8, 1}, 0.5f);
  GateNoise noise{u, u};
  f->train();
  auto a = f->forward(x.sk, x.sv, x.rk, x.rv, &noise).key;
  auto b = f->forward(x.sk, x.sv, x.rk, x.rv, &noise).key;
  EXPECT_FALSE(torch::equal(a, b));  // different dropout masks
  f->eval();
  auto e1 = f->forward(x.sk, x.sv, x.rk, x.rv).key;
  auto e2 = f->forward(x.sk, x.sv, x.rk, x.rv).key;
  EXPECT_TRUE(torch::equal(e1, e2));
}

// The CPU runs a pass's groups in cache-sized chunks (fusion_chunk_groups): every chunking gives
// the same outputs and gradients, dropout masks and Gumbel noise included, as one whole pass.
TEST(Fuser, ChunkedGroupsEqualTheWholePass) {
  FuserConfig c = small_config();
  c.dropout = 0.3;
  c.num_layers = 4;
  for (FuserVariant v : {FuserVariant::full, FuserVariant::projection_fusion, FuserVariant::projection}) {
    c.variant = v;
    Inputs x = random_inputs(c, 3, 2, 5, 8);
    auto run = [&](int64_t chunk) {
      set_fusion_chunk_groups(chunk);
      StackedFuser f(c, 3, /*seed=*/4);
      f->train();
      f->set_step(5);
      f->reseed(9);
      auto out = f->forward(x.sk, x.sv, x.rk, x.rv);
      (out.key.pow(2).sum() + out.value.sum()).backward();
      std::vector<torch::Tensor> r{out.key.detach(), out.value.detach()};
      for (const auto& t : f->parameters())
        if (t.grad().defined()) r.push_back(t.grad());
      set_fusion_chunk_groups(0);
      return r;
    };
    const auto whole = run(6);  // G = 6: one chunk
    for (int64_t chunk : {1, 4}) {
      const auto parts = run(chunk);
      ASSERT_EQ(parts.size(), whole.size());
      // The same masks and noise: equal up to the matrix products' rounding (a chunk of one
      // group splits its products over the threads, a wider chunk deals groups to threads).
      for (size_t i = 0; i < 2; ++i)
        EXPECT_TRUE(torch::allclose(parts[i], whole[i], 1e-5, 1e-6))
            << fuser_variant_name(v) << " chunk " << chunk << " output " << i << " max diff "
            << (parts[i] - whole[i]).abs().max().item<double>();
      for (size_t i = 2; i < parts.size(); ++i)
        EXPECT_TRUE(torch::allclose(parts[i], whole[i], 1e-5, 1e-6))
            << fuser_variant_name(v) << " chunk " << chunk << " gradient " << i;
    }
  }
  const FuserConfig published;
  EXPECT_EQ(fusion_chunk_groups(published, 56, 170, torch::kCUDA), 56);
  EXPECT_GE(fusion_chunk_groups(published, 56, 170, torch::kCPU), at::get_num_threads());
  EXPECT_THROW(set_fusion_chunk_groups(-1), Error);
}

TEST(Fuser, BatchedEqualsPerLayerAndBf16Inputs) {
  FuserConfig c = small_config();
  StackedFuser f(c, 3, 5);
  {
    torch::NoGradGuard no_grad;
    f->named_parameters()["gate_logit"].fill_(1.0);
  }
  f->eval();
  Inputs x = random_inputs(c, 3, 2, 7, 4);
  torch::NoGradGuard no_grad;
  FusedKV all = f->forward(x.sk, x.sv, x.rk, x.rv);
  for (int64_t i = 0; i < 3; ++i) {
    FusedKV one = f->forward_layer(i, x.sk[i], x.sv[i], x.rk[i], x.rv[i]);
    EXPECT_TRUE(torch::allclose(one.key, all.key[i], 1e-6, 1e-6));
    EXPECT_TRUE(torch::allclose(one.value, all.value[i], 1e-6, 1e-6));
  }
  // A bf16 receiver cache comes back bf16, fused in fp32 and rounded once.
  auto rk16 = x.rk.to(torch::kBFloat16);
  FusedKV h = f->forward(x.sk.to(torch::kBFloat16), x.sv.to(torch::kBFloat16), rk16,
                         x.rv.to(torch::kBFloat16));
  EXPECT_EQ(h.key.scalar_type(), torch::kBFloat16);
  FusedKV d = f->forward_delta(x.sk.to(torch::kBFloat16), x.sv.to(torch::kBFloat16), rk16,
                               x.rv.to(torch::kBFloat16));
  EXPECT_TRUE(torch::equal(h.key, (rk16.to(torch::kFloat32) + d.key).to(torch::kBFloat16)));

  // A bf16 fuser: its delta comes back fp32 and unrounded (the parallel multi-sharer sum), and
  // with an fp32 receiver cache the fused value is that cache plus the delta in fp32.
  f->to(torch::kBFloat16);
  FusedKV d16 = f->forward_delta(x.sk, x.sv, x.rk, x.rv);
  EXPECT_EQ(d16.key.scalar_type(), torch::kFloat32);
  EXPECT_FALSE(torch::equal(d16.key, d16.key.to(torch::kBFloat16).to(torch::kFloat32)));
  FusedKV h16 = f->forward(x.sk, x.sv, x.rk, x.rv);
  EXPECT_EQ(h16.key.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(h16.key, x.rk + d16.key));
  EXPECT_TRUE(torch::equal(h16.value, x.rv + d16.value));
  // The stacked entry is the same computation on (2, Lf, ...) inputs.
  auto kv = f->forward_kv(stack_kv_layers({x.sk[0], x.sk[1], x.sk[2]}, {x.sv[0], x.sv[1], x.sv[2]},
                                          {0, 1, 2}),
                          torch::stack({x.rk, x.rv}));
  EXPECT_TRUE(torch::equal(kv[0], h16.key));
  EXPECT_TRUE(torch::equal(kv[1], h16.value));
}

TEST(Fuser, PublishedStateNamesShapesAndSize) {
  FuserConfig c = small_config();
  c.num_layers = 4;
  StackedFuser f(c, 2);
  auto shapes = StackedFuserImpl::layer_state_shapes(c);
  auto state = f->layer_state(1);
  ASSERT_EQ(shapes.size(), state.size());
  for (size_t k = 0; k < shapes.size(); ++k) {
    EXPECT_EQ(shapes[k].first, state[k].first);
    EXPECT_EQ(torch::IntArrayRef(shapes[k].second), state[k].second.sizes()) << shapes[k].first;
  }
  std::map<std::string, torch::Tensor> named(state.begin(), state.end());
  EXPECT_EQ(named.at("key_in.weight").sizes(), torch::IntArrayRef({16, 8 + 12}));
  EXPECT_EQ(named.at("value_scalar_mlp2.blocks.0.w1.weight").sizes(), torch::IntArrayRef({16, 16}));
  EXPECT_EQ(named.at("key_proj_mlp2.blocks.1.w2.weight").sizes(), torch::IntArrayRef({16, 16}));
  EXPECT_EQ(named.at("value_scalar_head.weight").sizes(), torch::IntArrayRef({3, 16}));
  EXPECT_EQ(named.at("key_gate_logit").dim(), 0);
  EXPECT_EQ(named.at("gate_temperature").dim(), 0);
  // Views, not copies: writing through the state changes the stacked parameter.
  {
    torch::NoGradGuard no_grad;
    named.at("value_proj_out.bias").fill_(3.0);
  }
  EXPECT_EQ(f->named_parameters()["proj_out_bias"][1][1][0].item<float>(), 3.0f);

  // Strict loading names what is wrong.
  auto copy = named;
  copy.erase("key_in.bias");
  copy["key_in.extra"] = torch::zeros({1});
  copy["value_in.weight"] = torch::zeros({3, 3});
  try {
    f->load_layer_state(0, copy, "test.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("missing tensor 'key_in.bias'"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected tensor 'key_in.extra'"), std::string::npos) << m;
    EXPECT_NE(m.find("'value_in.weight' has shape (3, 3), expected (16, 20)"), std::string::npos) << m;
    EXPECT_NE(m.find("test.safetensors"), std::string::npos) << m;
  }

  // Published widths: ~17.07M parameters per receiver layer (DESIGN.md section 2).
  FuserConfig published;
  EXPECT_EQ(published.parameters_per_layer(), 17066002);
  int64_t counted = 0;
  for (const auto& [name, shape] : StackedFuserImpl::layer_state_shapes(published)) {
    if (name == "gate_temperature") continue;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    counted += n;
  }
  EXPECT_EQ(counted, published.parameters_per_layer());
}

TEST(Fuser, InputShapeErrorsNameTheInput) {
  FuserConfig c = small_config();
  StackedFuser f(c, 2);
  Inputs x = random_inputs(c, 2, 1, 4, 0);
  try {
    f->forward(x.sk, x.sv, x.rk.transpose(2, 4), x.rv);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("receiver_key"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f->forward(x.sk[0], x.sv[0], x.rk[0], x.rv[0]), Error);  // 4-d to batched
  EXPECT_THROW(f->forward_layer(2, x.sk[0], x.sv[0], x.rk[0], x.rv[0]), Error);
}

}  // namespace
}  // namespace c2c
