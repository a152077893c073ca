// The stacked C2C fuser: every layer's K and V branch as one batch G = 2*Lf of matrix products.
// Numerics: RMSNorm statistics in fp32 (as HF RMSNorm), exact-erf GELU, alpha/gate/sum in fp32.
// Shape legend as in fuser.h.
#include "modules/fuser.h"

#include <cmath>

#include "modules/common/error.h"

namespace c2c {

// ---- temperature schedule ------------------------------------------------------------------

AnnealKind parse_anneal_kind(const std::string& name) {
  if (name == "geometric") return AnnealKind::geometric;
  if (name == "linear") return AnnealKind::linear;
  fail("unknown gate temperature anneal kind '", name, "'\nHINT: use 'geometric' or 'linear'");
}

const char* anneal_kind_name(AnnealKind kind) {
  return kind == AnnealKind::linear ? "linear" : "geometric";
}

double gate_temperature(int64_t step, double tau0, double tau1, int64_t anneal_steps,
                        AnnealKind kind) {
  C2C_CHECK(tau0 > 0 && tau1 > 0, "gate temperatures must be > 0, got initial ", tau0,
            " final ", tau1);
  double r = 1.0;
  if (anneal_steps > 0) r = std::min(static_cast<double>(std::max<int64_t>(step, 0)) /
                                         static_cast<double>(anneal_steps), 1.0);
  if (kind == AnnealKind::linear) return tau0 + (tau1 - tau0) * r;
  return tau0 * std::pow(tau1 / tau0, r);
}

// ---- config --------------------------------------------------------------------------------

int64_t FuserConfig::parameters_per_layer() const {
  const int64_t h = hidden_dim, m = intermediate_dim, in = in_dim(), out = out_dim();
  const int64_t ffn_m = h + 2 * h * m, ffn_h = h + 2 * h * h;
  const int64_t branch = (in + out) * h + h + ffn_m + ffn_h + target_num_heads * h +
                         target_num_heads + (num_layers - 2) * ffn_m + out * h + out;
  return 2 * branch + 2;
}

void FuserConfig::validate() const {
  auto positive = [](int64_t v, const char* name) {
    C2C_CHECK(v > 0, "fuser config: ", name, " must be > 0, got ", v);
  };
  positive(source_num_heads, "source_num_heads");
  positive(source_head_dim, "source_head_dim");
  positive(target_num_heads, "target_num_heads");
  positive(target_head_dim, "target_head_dim");
  positive(hidden_dim, "hidden_dim");
  positive(intermediate_dim, "intermediate_dim");
  C2C_CHECK(num_layers >= 3, "fuser config: num_layers must be >= 3 (1 + (L-2) projection "
            "blocks), got ", num_layers);
  C2C_CHECK(dropout >= 0 && dropout < 1, "fuser config: dropout must be in [0, 1), got ",
            dropout);
  C2C_CHECK(initial_temperature > 0 && final_temperature > 0,
            "fuser config: temperatures must be > 0, got ", initial_temperature, " and ",
            final_temperature);
  C2C_CHECK(anneal_steps >= 0, "fuser config: anneal_steps must be >= 0, got ", anneal_steps);
}

const char* fuser_variant_name(FuserVariant v) {
  switch (v) {
    case FuserVariant::full: return "full";
    case FuserVariant::projection_fusion: return "projection_fusion";
    case FuserVariant::projection: return "projection";
  }
  return "?";
}

FuserVariant parse_fuser_variant(const std::string& name) {
  for (auto v : {FuserVariant::full, FuserVariant::projection_fusion, FuserVariant::projection})
    if (name == fuser_variant_name(v)) return v;
  fail("unknown fuser variant '", name, "'\nHINT: use full, projection_fusion or projection");
}

nlohmann::json FuserConfig::to_json() const {
  nlohmann::json j = {{"source_num_heads", source_num_heads},
          {"source_head_dim", source_head_dim},
          {"target_num_heads", target_num_heads},
          {"target_head_dim", target_head_dim},
          {"hidden_dim", hidden_dim},
          {"intermediate_dim", intermediate_dim},
          {"num_layers", num_layers},
          {"dropout", dropout},
          {"initial_temperature", initial_temperature},
          {"final_temperature", final_temperature},
          {"anneal_steps", anneal_steps},
          {"anneal", anneal_kind_name(anneal)}};
  // Only ablations carry the key, so a full fuser's config is what it always was.
  if (variant != FuserVariant::full) j["variant"] = fuser_variant_name(variant);
  return j;
}

FuserConfig FuserConfig::from_json(const nlohmann::json& j, const std::string& where) {
  C2C_CHECK(j.is_object(), where, ": fuser config must be a JSON object, got ", j.dump());
  FuserConfig c;
  auto integer = [&](const char* key, int64_t& out) {
    if (!j.contains(key)) return;
    C2C_CHECK(j[key].is_number_integer(), where, ": '", key, "' must be an integer, got ",
              j[key].dump());
    out = j[key].get<int64_t>();
  };
  auto number = [&](const char* key, double& out) {
    if (!j.contains(key)) return;
    C2C_CHECK(j[key].is_number(), where, ": '", key, "' must be a number, got ", j[key].dump());
    out = j[key].get<double>();
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const char* known[] = {"source_num_heads", "source_head_dim", "target_num_heads",
                                  "target_head_dim",  "hidden_dim",      "intermediate_dim",
                                  "num_layers",       "dropout",         "initial_temperature",
                                  "final_temperature", "anneal_steps",   "anneal",
                                  "variant"};
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    C2C_CHECK(ok, where, ": unknown fuser config key '", it.key(), "'");
  }
  integer("source_num_heads", c.source_num_heads);
  integer("source_head_dim", c.source_head_dim);
  integer("target_num_heads", c.target_num_heads);
  integer("target_head_dim", c.target_head_dim);
  integer("hidden_dim", c.hidden_dim);
  integer("intermediate_dim", c.intermediate_dim);
  integer("num_layers", c.num_layers);
  number("dropout", c.dropout);
  number("initial_temperature", c.initial_temperature);
  number("final_temperature", c.final_temperature);
  integer("anneal_steps", c.anneal_steps);
  if (j.contains("anneal")) {
    C2C_CHECK(j["anneal"].is_string(), where, ": 'anneal' must be a string");
    c.anneal = parse_anneal_kind(j["anneal"].get<std::string>());
  }
  if (j.contains("variant")) {
    C2C_CHECK(j["variant"].is_string(), where, ": 'variant' must be a string");
    c.variant = parse_fuser_variant(j["variant"].get<std::string>());
  }
  c.validate();
  return c;
}

// ---- the module ----------------------------------------------------------------------------

// Tensors with leading dims (2, n): the whole stack (n = Lf) or one layer's slice (n = 1).
struct StackedFuserImpl::Weights {
  torch::Tensor in_weight, in_bias, mlp1_norm, mlp1_w1, mlp1_w2, scalar_norm, scalar_w1,
      scalar_w2, scalar_head_weight, scalar_head_bias, proj_out_weight, proj_out_bias,
      gate_logit;
  std::vector<torch::Tensor> proj_norm, proj_w1, proj_w2;
  torch::Tensor temperature;  // (n)
};

StackedFuserImpl::StackedFuserImpl(const FuserConfig& config, int64_t num_fusers, uint64_t seed)
    : config_(config), num_fusers_(num_fusers) {
  config_.validate();
  C2C_CHECK(num_fusers > 0, "a fuser set needs at least one layer, got ", num_fusers);
  const int64_t Lf = num_fusers, h = config_.hidden_dim, m = config_.intermediate_dim;
  const int64_t in = config_.in_dim(), out = config_.out_dim(), Hr = config_.target_num_heads;
  reseed(seed);
  torch::NoGradGuard no_grad;
  // torch.nn.Linear's default: weight and bias uniform in +-1/sqrt(fan_in).
  auto linear = [&](const std::string& name, std::vector<int64_t> shape, int64_t fan_in) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    auto t = torch::empty(shape).uniform_(-bound, bound, *generator_);
    return register_parameter(name, t);
  };
  auto ones = [&](const std::string& name, std::vector<int64_t> shape) {
    return register_parameter(name, torch::ones(shape));
  };
  in_weight_ = linear("in_weight", {2, Lf, h, in + out}, in + out);
  in_bias_ = linear("in_bias", {2, Lf, h}, in + out);
  mlp1_norm_ = ones("mlp1_norm", {2, Lf, h});
  mlp1_w1_ = linear("mlp1_w1", {2, Lf, m, h}, h);
  mlp1_w2_ = linear("mlp1_w2", {2, Lf, h, m}, m);
  scalar_norm_ = ones("scalar_mlp2_norm", {2, Lf, h});
  scalar_w1_ = linear("scalar_mlp2_w1", {2, Lf, h, h}, h);
  scalar_w2_ = linear("scalar_mlp2_w2", {2, Lf, h, h}, h);
  scalar_head_weight_ = linear("scalar_head_weight", {2, Lf, Hr, h}, h);
  scalar_head_bias_ = linear("scalar_head_bias", {2, Lf, Hr}, h);
  for (int64_t j = 0; j < config_.num_layers - 2; ++j) {
    const std::string p = "proj_mlp2_" + std::to_string(j) + "_";
    proj_norm_.push_back(ones(p + "norm", {2, Lf, h}));
    proj_w1_.push_back(linear(p + "w1", {2, Lf, m, h}, h));
    proj_w2_.push_back(linear(p + "w2", {2, Lf, h, m}, m));
  }
  proj_out_weight_ = linear("proj_out_weight", {2, Lf, out, h}, h);
  proj_out_bias_ = linear("proj_out_bias", {2, Lf, out}, h);
  gate_logit_ = register_parameter("gate_logit", torch::zeros({2, Lf}));
  gate_temperature_ = register_buffer(
      "gate_temperature", torch::full({Lf}, config_.initial_temperature, torch::kFloat32));
}

torch::Dtype StackedFuserImpl::dtype() const { return in_weight_.scalar_type(); }

void StackedFuserImpl::reseed(uint64_t seed) {
  const torch::Device device = in_weight_.defined() ? in_weight_.device() : torch::kCPU;
  at::Generator gen = at::globalContext().defaultGenerator(device).clone();
  gen.set_current_seed(seed);
  generator_ = gen;
}

void StackedFuserImpl::set_step(int64_t step) {
  torch::NoGradGuard no_grad;
  gate_temperature_.fill_(gate_temperature(step, config_.initial_temperature,
                                           config_.final_temperature, config_.anneal_steps,
                                           config_.anneal));
}

StackedFuserImpl::Weights StackedFuserImpl::all_weights() const {
  return Weights{in_weight_,          in_bias_,         mlp1_norm_,      mlp1_w1_,
                 mlp1_w2_,            scalar_norm_,     scalar_w1_,      scalar_w2_,
                 scalar_head_weight_, scalar_head_bias_, proj_out_weight_, proj_out_bias_,
                 gate_logit_,         proj_norm_,       proj_w1_,        proj_w2_,
                 gate_temperature_};
}

StackedFuserImpl::Weights StackedFuserImpl::layer_weights(int64_t layer) const {
  C2C_CHECK(layer >= 0 && layer < num_fusers_, "fuser layer index ", layer,
            " out of range [0, ", num_fusers_, ")");
  auto s = [&](const torch::Tensor& t) { return t.narrow(1, layer, 1); };  // (2, 1, ...)
  auto sv = [&](const std::vector<torch::Tensor>& v) {
    std::vector<torch::Tensor> r;
    for (const auto& t : v) r.push_back(s(t));
    return r;
  };
  return Weights{s(in_weight_),          s(in_bias_),         s(mlp1_norm_),
                 s(mlp1_w1_),            s(mlp1_w2_),         s(scalar_norm_),
                 s(scalar_w1_),          s(scalar_w2_),       s(scalar_head_weight_),
                 s(scalar_head_bias_),   s(proj_out_weight_), s(proj_out_bias_),
                 s(gate_logit_),         sv(proj_norm_),      sv(proj_w1_),
                 sv(proj_w2_),           gate_temperature_.narrow(0, layer, 1)};
}

namespace {

// (2, n, a, b...) -> (2n, a, b...): a view for the stack and for a one-layer slice.
torch::Tensor merge_branches(const torch::Tensor& t) {
  std::vector<int64_t> shape{t.size(0) * t.size(1)};
  for (int64_t d = 2; d < t.dim(); ++d) shape.push_back(t.size(d));
  return t.reshape(shape);
}

// x (G, T, k) times W (G, o, k) transposed, plus bias (G, o): (G, T, o).
torch::Tensor batched_linear(const torch::Tensor& x, const torch::Tensor& w,
                             const torch::Tensor& b) {
  return torch::baddbmm(b.unsqueeze(1), x, w.transpose(1, 2));
}

void check_shape(const torch::Tensor& t, const std::vector<int64_t>& want, const char* what) {
  C2C_CHECK(t.defined(), "fuser input '", what, "' is undefined");
  C2C_CHECK(t.sizes().vec() == want, "fuser input '", what, "' has shape ",
            shape_string(t.sizes()), ", expected ", shape_string(want),
            "\nHINT: inputs are KV caches (B, H, N, D), stacked (Lf, B, H, N, D) for forward()");
}

}  // namespace

torch::Tensor StackedFuserImpl::maybe_dropout(const torch::Tensor& x) {
  const double p = config_.dropout;
  if (!is_training() || p <= 0) return x;
  // Drawn from our generator (not torch::dropout's global one) so a seed reproduces a run.
  auto keep = torch::empty_like(x).bernoulli_(1.0 - p, generator_);
  return x * keep * (1.0 / (1.0 - p));
}

// y = x + Dropout(W2 GELU_erf(W1 RMSNorm(x))); x (G, T, h), norm (G, h), w1 (G, m, h), w2 (G, h, m).
torch::Tensor StackedFuserImpl::ffn(const torch::Tensor& x, const torch::Tensor& norm,
                                    const torch::Tensor& w1, const torch::Tensor& w2) {
  auto xf = x.to(torch::kFloat32);
  auto normed = (xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + 1e-6))
                    .to(x.scalar_type()) * norm.unsqueeze(1);
  auto hidden = torch::gelu(torch::bmm(normed, w1.transpose(1, 2)));  // (G, T, m)
  return x + maybe_dropout(torch::bmm(hidden, w2.transpose(1, 2)));   // (G, T, h)
}

torch::Tensor StackedFuserImpl::delta(const Weights& w, const torch::Tensor& sk,
                                      const torch::Tensor& sv, const torch::Tensor& rk,
                                      const torch::Tensor& rv, const GateNoise* noise,
                                      bool batched_noise) {
  const FuserConfig& c = config_;
  C2C_CHECK(sk.defined() && sk.dim() == 5, "fuser input 'sharer_key' must be (Lf, B, H_s, N, D_s)",
            sk.defined() ? ", got shape " + shape_string(sk.sizes()) : std::string());
  const int64_t n = sk.size(0), B = sk.size(1), N = sk.size(3);
  const int64_t Hr = c.target_num_heads, Dr = c.target_head_dim;
  C2C_CHECK(n == w.in_weight.size(1), "fuser got ", n, " stacked layers, has ",
            w.in_weight.size(1));
  check_shape(sk, {n, B, c.source_num_heads, N, c.source_head_dim}, "sharer_key");
  check_shape(sv, {n, B, c.source_num_heads, N, c.source_head_dim}, "sharer_value");
  check_shape(rk, {n, B, Hr, N, Dr}, "receiver_key");
  check_shape(rv, {n, B, Hr, N, Dr}, "receiver_value");
  const int64_t T = B * N, G = 2 * n;
  const auto dt = dtype();

  // Head-major per token: (n, B, H, N, D) -> (n, B*N, H*D); concat(sharer, receiver).
  auto tokens = [&](const torch::Tensor& x) {
    return x.permute({0, 1, 3, 2, 4}).reshape({n, T, x.size(2) * x.size(4)});
  };
  // The projection-only ablation does not see the receiver: its half of the input is zero.
  const bool sees_receiver = c.variant != FuserVariant::projection;
  auto receiver_part = [&](const torch::Tensor& x) {
    return sees_receiver ? tokens(x) : torch::zeros_like(tokens(x));
  };
  auto x = torch::stack({torch::cat({tokens(sk), receiver_part(rk)}, -1),
                         torch::cat({tokens(sv), receiver_part(rv)}, -1)})
               .to(dt)
               .view({G, T, c.in_dim() + c.out_dim()});  // (G, T, in+out)

  auto z = batched_linear(x, merge_branches(w.in_weight), merge_branches(w.in_bias));  // (G,T,h)
  z = ffn(z, merge_branches(w.mlp1_norm), merge_branches(w.mlp1_w1), merge_branches(w.mlp1_w2));

  auto p = z;
  for (size_t j = 0; j < w.proj_norm.size(); ++j)
    p = ffn(p, merge_branches(w.proj_norm[j]), merge_branches(w.proj_w1[j]),
            merge_branches(w.proj_w2[j]));
  p = batched_linear(p, merge_branches(w.proj_out_weight), merge_branches(w.proj_out_bias));
  auto p_heads = p.to(torch::kFloat32).view({2, n, B, N, Hr, Dr}).permute({0, 1, 2, 4, 3, 5});
  if (c.variant == FuserVariant::projection)  // the fused cache is p itself: delta = p - X_r
    return p_heads - torch::stack({rk, rv}).to(torch::kFloat32);

  auto s = ffn(z, merge_branches(w.scalar_norm), merge_branches(w.scalar_w1),
               merge_branches(w.scalar_w2));
  s = batched_linear(s, merge_branches(w.scalar_head_weight),
                     merge_branches(w.scalar_head_bias));  // (G, T, H_r)
  auto alpha = torch::sigmoid(s.to(torch::kFloat32))
                   .view({2, n, B, N, Hr})
                   .permute({0, 1, 2, 4, 3})
                   .unsqueeze(-1);  // (2, n, B, H_r, N, 1)
  if (c.variant == FuserVariant::projection_fusion) return alpha * p_heads;  // no gate

  auto logit = w.gate_logit.to(torch::kFloat32).view({2, n, 1, 1, 1, 1});
  torch::Tensor gate;
  if (is_training()) {
    torch::Tensor u;  // (2, n, B, H_r, N, 1)
    if (noise) {
      const std::vector<int64_t> want =
          batched_noise ? std::vector<int64_t>{n, B, Hr, N, 1} : std::vector<int64_t>{B, Hr, N, 1};
      check_shape(noise->key_u, want, "noise.key_u");
      check_shape(noise->value_u, want, "noise.value_u");
      u = torch::stack({noise->key_u, noise->value_u})
              .to(logit.device(), torch::kFloat32)
              .view({2, n, B, Hr, N, 1});
    } else if (!gate_noise_) {
      u = torch::full({2, n, B, Hr, N, 1}, std::exp(-1.0), logit.options());  // G = 0
    } else {
      C2C_CHECK(generator_->device().type() == logit.device().type(),
                "the fuser's generator is on ", generator_->device().str(),
                " but its weights on ", logit.device().str(), "\nHINT: call reseed(seed) after moving the fuser");
      u = torch::rand({2, n, B, Hr, N, 1}, generator_, logit.options());
    }
    auto gumbel = -torch::log(-torch::log(u + 1e-20) + 1e-20);
    auto tau = w.temperature.to(torch::kFloat32).view({1, n, 1, 1, 1, 1});
    gate = torch::sigmoid((logit + gumbel) / tau);  // (2, n, B, H_r, N, 1)
  } else {
    gate = (logit > 0).to(torch::kFloat32);  // hard gate, no host sync
  }
  return gate * alpha * p_heads;  // (2, n, B, H_r, N, D_r) fp32
}

FusedKV StackedFuserImpl::forward(const torch::Tensor& sharer_key,
                                  const torch::Tensor& sharer_value,
                                  const torch::Tensor& receiver_key,
                                  const torch::Tensor& receiver_value, const GateNoise* noise) {
  auto d = delta(all_weights(), sharer_key, sharer_value, receiver_key, receiver_value, noise,
                 /*batched_noise=*/true);
  return {(receiver_key.to(torch::kFloat32) + d[0]).to(receiver_key.scalar_type()),
          (receiver_value.to(torch::kFloat32) + d[1]).to(receiver_value.scalar_type())};
}

FusedKV StackedFuserImpl::forward_delta(const torch::Tensor& sharer_key,
                                        const torch::Tensor& sharer_value,
                                        const torch::Tensor& receiver_key,
                                        const torch::Tensor& receiver_value,
                                        const GateNoise* noise) {
  auto d = delta(all_weights(), sharer_key, sharer_value, receiver_key, receiver_value, noise,
                 /*batched_noise=*/true);
  return {d[0], d[1]};
}

FusedKV StackedFuserImpl::forward_layer(int64_t layer, const torch::Tensor& sharer_key,
                                        const torch::Tensor& sharer_value,
                                        const torch::Tensor& receiver_key,
                                        const torch::Tensor& receiver_value,
                                        const GateNoise* noise) {
  for (const auto* t : {&sharer_key, &sharer_value, &receiver_key, &receiver_value})
    C2C_CHECK(t->defined() && t->dim() == 4, "forward_layer takes (B, H, N, D) inputs, got ",
              t->defined() ? shape_string(t->sizes()) : std::string("undefined"));
  auto d = delta(layer_weights(layer), sharer_key.unsqueeze(0), sharer_value.unsqueeze(0),
                 receiver_key.unsqueeze(0), receiver_value.unsqueeze(0), noise,
                 /*batched_noise=*/false);
  return {(receiver_key.to(torch::kFloat32) + d[0][0]).to(receiver_key.scalar_type()),
          (receiver_value.to(torch::kFloat32) + d[1][0]).to(receiver_value.scalar_type())};
}

// ---- published per-layer state -------------------------------------------------------------

namespace {

// Names of one layer's state dict in the reference's order, each with a tag saying which stacked
// tensor holds it: (name, member index, branch), branch -1 for the un-branched ones.
struct Slot {
  std::string name;
  int member;  // index into the list built by stacked_members()
  int branch;  // 0 key, 1 value, -1 none
};

enum Member {
  kGateLogit, kTemperature, kInW, kInB, kMlp1Norm, kMlp1W1, kMlp1W2, kScalarNorm, kScalarW1,
  kScalarW2, kHeadW, kHeadB, kOutW, kOutB, kProjBase  // kProjBase + 3*j + {0 norm, 1 w1, 2 w2}
};

std::vector<Slot> slot_table(int64_t num_layers) {
  std::vector<Slot> s{{"key_gate_logit", kGateLogit, 0},
                      {"value_gate_logit", kGateLogit, 1},
                      {"gate_temperature", kTemperature, -1}};
  auto both = [&](const std::string& suffix, int member) {
    s.push_back({"key_" + suffix, member, 0});
    s.push_back({"value_" + suffix, member, 1});
  };
  both("in.weight", kInW);
  both("in.bias", kInB);
  both("mlp1.blocks.0.norm.weight", kMlp1Norm);
  both("mlp1.blocks.0.w1.weight", kMlp1W1);
  both("mlp1.blocks.0.w2.weight", kMlp1W2);
  both("scalar_mlp2.blocks.0.norm.weight", kScalarNorm);
  both("scalar_mlp2.blocks.0.w1.weight", kScalarW1);
  both("scalar_mlp2.blocks.0.w2.weight", kScalarW2);
  both("scalar_head.weight", kHeadW);
  both("scalar_head.bias", kHeadB);
  for (int64_t j = 0; j < num_layers - 2; ++j) {
    const std::string b = "proj_mlp2.blocks." + std::to_string(j) + ".";
    both(b + "norm.weight", kProjBase + 3 * static_cast<int>(j));
    both(b + "w1.weight", kProjBase + 3 * static_cast<int>(j) + 1);
    both(b + "w2.weight", kProjBase + 3 * static_cast<int>(j) + 2);
  }
  both("proj_out.weight", kOutW);
  both("proj_out.bias", kOutB);
  return s;
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> StackedFuserImpl::layer_state_shapes(
    const FuserConfig& c) {
  const int64_t h = c.hidden_dim, m = c.intermediate_dim, in = c.in_dim(), out = c.out_dim();
  const int64_t Hr = c.target_num_heads;
  std::vector<std::pair<std::string, std::vector<int64_t>>> r;
  for (const Slot& s : slot_table(c.num_layers)) {
    std::vector<int64_t> shape;
    switch (s.member) {
      case kGateLogit: case kTemperature: break;
      case kInW: shape = {h, in + out}; break;
      case kInB: case kMlp1Norm: case kScalarNorm: shape = {h}; break;
      case kMlp1W1: shape = {m, h}; break;
      case kMlp1W2: shape = {h, m}; break;
      case kScalarW1: case kScalarW2: shape = {h, h}; break;
      case kHeadW: shape = {Hr, h}; break;
      case kHeadB: shape = {Hr}; break;
      case kOutW: shape = {out, h}; break;
      case kOutB: shape = {out}; break;
      default: {
        const int k = (s.member - kProjBase) % 3;
        shape = k == 0 ? std::vector<int64_t>{h}
                       : k == 1 ? std::vector<int64_t>{m, h} : std::vector<int64_t>{h, m};
      }
    }
    r.emplace_back(s.name, shape);
  }
  return r;
}

std::vector<std::pair<std::string, torch::Tensor>> StackedFuserImpl::layer_state(
    int64_t layer, bool gradients) const {
  C2C_CHECK(layer >= 0 && layer < num_fusers_, "fuser layer index ", layer,
            " out of range [0, ", num_fusers_, ")");
  std::vector<torch::Tensor> members{gate_logit_,   gate_temperature_,  in_weight_,
                                     in_bias_,      mlp1_norm_,         mlp1_w1_,
                                     mlp1_w2_,      scalar_norm_,       scalar_w1_,
                                     scalar_w2_,    scalar_head_weight_, scalar_head_bias_,
                                     proj_out_weight_, proj_out_bias_};
  for (size_t j = 0; j < proj_norm_.size(); ++j) {
    members.push_back(proj_norm_[j]);
    members.push_back(proj_w1_[j]);
    members.push_back(proj_w2_[j]);
  }
  std::vector<std::pair<std::string, torch::Tensor>> r;
  for (const Slot& s : slot_table(config_.num_layers)) {
    const torch::Tensor t = gradients ? members.at(s.member).grad() : members.at(s.member);
    if (!t.defined()) continue;
    r.emplace_back(s.name, s.branch < 0 ? t.select(0, layer) : t.select(0, s.branch).select(0, layer));
  }
  return r;
}

void StackedFuserImpl::load_layer_state(int64_t layer,
                                        const std::map<std::string, torch::Tensor>& state,
                                        const std::string& where) {
  auto mine = layer_state(layer);
  std::string problems;
  std::map<std::string, bool> expected;
  for (const auto& [name, t] : mine) {
    expected[name] = true;
    auto it = state.find(name);
    if (it == state.end()) {
      problems += c2c::str("\n  missing tensor '", name, "' (expected shape ", shape_string(t.sizes()), ")");
    } else if (it->second.sizes() != t.sizes()) {
      problems += c2c::str("\n  tensor '", name, "' has shape ",
                           shape_string(it->second.sizes()), ", expected ", shape_string(t.sizes()));
    }
  }
  for (const auto& [name, t] : state)
    if (!expected.count(name)) problems += c2c::str("\n  unexpected tensor '", name, "'");
  C2C_CHECK(problems.empty(), "fuser state for layer ", layer, " in ", where,
            " does not match the fuser config:", problems,
            "\nHINT: the fuser's JSON config (heads, head dims, hidden/intermediate dim, "
            "num_layers) must describe these tensors");
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : mine) t.copy_(state.at(name));
}

std::string shape_string(torch::IntArrayRef shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

torch::Tensor stack_layers(const std::vector<torch::Tensor>& layers,
                           const std::vector<int64_t>& indices) {
  std::vector<torch::Tensor> picked;
  picked.reserve(indices.size());
  for (int64_t i : indices) {
    C2C_CHECK(i >= 0 && i < static_cast<int64_t>(layers.size()), "layer index ", i,
              " out of range for a cache of ", layers.size(), " layers");
    picked.push_back(layers[i]);
  }
  return torch::stack(picked);
}

}  // namespace c2c
