// The stacked C2C fuser: every layer's K and V branch as one batch G = 2*Lf of matrix products.
// Numerics: RMSNorm statistics in fp32 (as HF RMSNorm), exact-erf GELU, alpha/gate/sum in fp32.
// Shape legend as in fuser.h.
#include "modules/fuser.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "kernels/fused_ops.h"
#include "kernels/kernel_types.h"
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
  int64_t n = 0;
  for (const FuserTensor& e : fuser_tensor_table(*this)) {
    if (!e.branched) continue;  // the temperature is a buffer
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    n += 2 * numel;
  }
  return n;
}

void FuserConfig::validate(const std::string& where, const std::string& key_prefix) const {
  auto positive = [&](int64_t v, const char* name) {
    C2C_CHECK(v > 0, where, ": ", key_prefix, name, " must be > 0, got ", v);
  };
  positive(source_num_heads, "source_num_heads");
  positive(source_head_dim, "source_head_dim");
  positive(target_num_heads, "target_num_heads");
  positive(target_head_dim, "target_head_dim");
  positive(hidden_dim, "hidden_dim");
  positive(intermediate_dim, "intermediate_dim");
  C2C_CHECK(num_layers >= 3, where, ": ", key_prefix, "num_layers must be >= 3 (1 + (L-2) "
            "projection blocks), got ", num_layers);
  C2C_CHECK(dropout >= 0 && dropout < 1, where, ": ", key_prefix, "dropout must be in [0, 1), got ",
            dropout);
  C2C_CHECK(initial_temperature > 0 && final_temperature > 0 && std::isfinite(initial_temperature) &&
                std::isfinite(final_temperature),
            where, ": gate temperatures must be finite and > 0, got ", key_prefix,
            "initial_temperature = ", initial_temperature, ", ", key_prefix, "final_temperature = ",
            final_temperature);
  C2C_CHECK(anneal_steps >= 0, where, ": ", key_prefix, "anneal_steps = ", anneal_steps,
            " is out of range: must be >= 0 (0: the run's length)");
}

const std::vector<FuserVariantSpec>& fuser_variants() {
  using C = FuserVariantSpec::Combine;
  static const std::vector<FuserVariantSpec> variants{
      {FuserVariant::full, "full", true, C::gated},
      {FuserVariant::projection_fusion, "projection_fusion", true, C::no_gate},
      {FuserVariant::projection, "projection", false, C::replace},
  };
  return variants;
}

const FuserVariantSpec& fuser_variant_spec(FuserVariant v) {
  for (const auto& s : fuser_variants())
    if (s.variant == v) return s;
  fail("fuser variant ", static_cast<int>(v), " is not in the registry");
}

const char* fuser_variant_name(FuserVariant v) { return fuser_variant_spec(v).name; }

FuserVariant parse_fuser_variant(const std::string& name) {
  std::string names;
  for (const auto& s : fuser_variants()) {
    if (name == s.name) return s.variant;
    names += std::string(names.empty() ? "" : ", ") + s.name;
  }
  fail("unknown fuser variant '", name, "'\nHINT: use one of ", names);
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

// ---- the parameter table ------------------------------------------------------------------

std::vector<FuserTensor> fuser_tensor_table(const FuserConfig& c) {
  const int64_t h = c.hidden_dim, m = c.intermediate_dim, in = c.in_dim(), out = c.out_dim();
  const int64_t Hr = c.target_num_heads;
  using I = FuserTensor::Init;
  std::vector<FuserTensor> t{
      {"gate_logit", "gate_logit", {}, I::zeros, 0, true},
      {"gate_temperature", "gate_temperature", {}, I::temperature, 0, false},
      {"in.weight", "in_weight", {h, in + out}, I::linear, in + out, true},
      {"in.bias", "in_bias", {h}, I::linear, in + out, true}};
  auto block = [&](const std::string& name, const std::string& member, int64_t inner) {
    t.push_back({name + ".norm.weight", member + "norm", {h}, I::ones, 0, true});
    t.push_back({name + ".w1.weight", member + "w1", {inner, h}, I::linear, h, true});
    t.push_back({name + ".w2.weight", member + "w2", {h, inner}, I::linear, inner, true});
  };
  block("mlp1.blocks.0", "mlp1_", m);
  block("scalar_mlp2.blocks.0", "scalar_mlp2_", h);
  t.push_back({"scalar_head.weight", "scalar_head_weight", {Hr, h}, I::linear, h, true});
  t.push_back({"scalar_head.bias", "scalar_head_bias", {Hr}, I::linear, h, true});
  for (int64_t j = 0; j < c.num_layers - 2; ++j)
    block("proj_mlp2.blocks." + std::to_string(j), "proj_mlp2_" + std::to_string(j) + "_", m);
  t.push_back({"proj_out.weight", "proj_out_weight", {out, h}, I::linear, h, true});
  t.push_back({"proj_out.bias", "proj_out_bias", {out}, I::linear, h, true});
  return t;
}

namespace {
// Positions in the table (fuser_tensor_table's order); an FFN block at base b holds its norm
// at b, W1 at b + 1 and W2 at b + 2.
enum : size_t { kGate = 0, kTemperature, kInW, kInB, kMlp1, kScalar = kMlp1 + 3, kHeadW = kScalar + 3,
                kHeadB, kProj };
size_t proj_block(int64_t j) { return kProj + 3 * static_cast<size_t>(j); }
size_t proj_out(const FuserConfig& c) { return proj_block(c.num_layers - 2); }
}  // namespace

StackedFuserImpl::StackedFuserImpl(const FuserConfig& config, int64_t num_fusers, uint64_t seed)
    : config_(config), num_fusers_(num_fusers), table_(fuser_tensor_table(config_)) {
  config_.validate();
  C2C_CHECK(num_fusers > 0, "a fuser set needs at least one layer, got ", num_fusers);
  reseed(seed);
  torch::NoGradGuard no_grad;
  tensors_.resize(table_.size());
  // Every tensor stacked (2 branches, Lf, shape...), the temperature (Lf). Created in the table's
  // order with the gate and the temperature last, so the initialisation draws (torch.nn.Linear's
  // uniform +-1/sqrt(fan_in) for weights and biases) and the registered order are the same for
  // every fuser ever made.
  auto create = [&](size_t i) {
    const FuserTensor& e = table_[i];
    std::vector<int64_t> shape{2, num_fusers};
    shape.insert(shape.end(), e.shape.begin(), e.shape.end());
    using I = FuserTensor::Init;
    switch (e.init) {
      case I::linear: {
        const double bound = 1.0 / std::sqrt(static_cast<double>(e.fan_in));
        tensors_[i] = register_parameter(e.member, torch::empty(shape).uniform_(-bound, bound, *generator_));
        break;
      }
      case I::ones: tensors_[i] = register_parameter(e.member, torch::ones(shape)); break;
      case I::zeros: tensors_[i] = register_parameter(e.member, torch::zeros(shape)); break;
      case I::temperature:
        tensors_[i] = register_buffer(
            e.member, torch::full({num_fusers}, config_.initial_temperature, torch::kFloat32));
        break;
    }
  };
  for (size_t i = kInW; i < table_.size(); ++i) create(i);
  create(kGate);
  create(kTemperature);
}

torch::Dtype StackedFuserImpl::dtype() const { return tensors_[kInW].scalar_type(); }

torch::Tensor StackedFuserImpl::gate_logits() const {
  const bool gated = fuser_variant_spec(config_.variant).combine == FuserVariantSpec::Combine::gated;
  return gated ? tensors_[kGate] : torch::Tensor();
}

const torch::Tensor& StackedFuserImpl::temperatures() const { return tensors_[kTemperature]; }

void StackedFuserImpl::reseed(uint64_t seed) {
  const torch::Device device = tensors_.empty() ? torch::Device(torch::kCPU) : tensors_[kInW].device();
  at::Generator gen = at::globalContext().defaultGenerator(device).clone();
  gen.set_current_seed(seed);
  generator_ = gen;
  dropout_seed_ = seed;
  dropout_calls_ = 0;
}

double StackedFuserImpl::temperature_at(int64_t step) const {
  return gate_temperature(step, config_.initial_temperature, config_.final_temperature,
                          config_.anneal_steps, config_.anneal);
}

void StackedFuserImpl::set_step(int64_t step) {
  torch::NoGradGuard no_grad;
  tensors_[kTemperature].fill_(temperature_at(step));
}

StackedFuserImpl::Weights StackedFuserImpl::all_weights() const { return tensors_; }

StackedFuserImpl::Weights StackedFuserImpl::layer_weights(int64_t layer) const {
  C2C_CHECK(layer >= 0 && layer < num_fusers_, "fuser layer index ", layer,
            " out of range [0, ", num_fusers_, ")");
  Weights w;
  for (size_t i = 0; i < table_.size(); ++i)  // (2, 1, ...), the temperature (1)
    w.push_back(tensors_[i].narrow(table_[i].branched ? 1 : 0, layer, 1));
  return w;
}

namespace {

// (2, n, a, b...) -> (2n, a, b...): a view for the stack and for a one-layer slice.
torch::Tensor merge_branches(const torch::Tensor& t) {
  std::vector<int64_t> shape{t.size(0) * t.size(1)};
  for (int64_t d = 2; d < t.dim(); ++d) shape.push_back(t.size(d));
  return t.reshape(shape);
}

void check_shape(const torch::Tensor& t, const std::vector<int64_t>& want, const char* what) {
  C2C_CHECK(t.defined(), "fuser input '", what, "' is undefined");
  C2C_CHECK(t.sizes().vec() == want, "fuser input '", what, "' has shape ",
            shape_string(t.sizes()), ", expected ", shape_string(want),
            "\nHINT: inputs are KV caches (B, H, N, D), stacked (Lf, B, H, N, D) for forward()");
}

}  // namespace

uint64_t StackedFuserImpl::next_dropout_seed() {
  return kernels::mix64(dropout_seed_ ^ kernels::mix64(++dropout_calls_));
}

// y = x + Dropout(W2 GELU_erf(W1 RMSNorm(x))); x (G, T, h), norm (G, h), w1 (G, m, h), w2 (G, h, m).
// The elementwise steps are the kernels of fused_ops.h (CUDA kernels for CUDA tensors); the
// dropout mask of seed `seed` starts at element `first` of the block's whole (all-group) output.
torch::Tensor StackedFuserImpl::ffn(const torch::Tensor& x, const torch::Tensor& norm,
                                    const torch::Tensor& w1, const torch::Tensor& w2, double p,
                                    uint64_t seed, int64_t first) {
  auto normed = kernels::rms_norm(x, norm, 1e-6);
  auto hidden = kernels::gelu(kernels::grouped_linear(normed, w1));  // (G, T, m)
  return kernels::dropout_residual(x, kernels::grouped_linear(hidden, w2), p, seed, first);
}

namespace {
std::atomic<int64_t> g_chunk_override{0};
}  // namespace

void set_fusion_chunk_groups(int64_t groups) {
  C2C_CHECK(groups >= 0, "fusion chunk must be >= 0 groups (0: automatic), got ", groups);
  g_chunk_override = groups;
}

int64_t fusion_chunk_groups(const FuserConfig& c, int64_t G, int64_t T, torch::Device device) {
  if (const int64_t forced = g_chunk_override.load(); forced > 0) return std::min(forced, G);
  if (!device.is_cpu()) return G;  // a GPU wants the widest launches
  // The CPU: groups whose widest activation fits in each thread's share of the L2 caches
  // (2 MiB a core on current x86 servers), and at least one group per intra-op thread.
  const int64_t threads = at::get_num_threads();
  const int64_t width = std::max({c.in_dim() + c.out_dim(), c.hidden_dim, c.intermediate_dim});
  const int64_t per_group = std::max<int64_t>(1, T * width * 4);
  const int64_t fit = threads * (int64_t{2} << 20) / per_group;
  return std::clamp<int64_t>(std::max(fit, threads), 1, G);
}

torch::Tensor StackedFuserImpl::combine(const Weights& w, const torch::Tensor& s,
                                        const torch::Tensor& r, bool with_target,
                                        const GateNoise* noise, bool batched_noise,
                                        std::optional<torch::ScalarType> out_type) {
  const FuserConfig& c = config_;
  C2C_CHECK(s.defined() && s.dim() == 6 && s.size(0) == 2,
            "fuser input 'sharer K/V' must be (2, Lf, B, H_s, N, D_s)",
            s.defined() ? ", got shape " + shape_string(s.sizes()) : std::string());
  const int64_t n = s.size(1), B = s.size(2), N = s.size(4);
  const int64_t Hs = c.source_num_heads, Ds = c.source_head_dim;
  const int64_t Hr = c.target_num_heads, Dr = c.target_head_dim;
  C2C_CHECK(n == w[kInW].size(1), "fuser got ", n, " stacked layers, has ", w[kInW].size(1));
  check_shape(s, {2, n, B, Hs, N, Ds}, "sharer K/V (2, Lf, B, H_s, N, D_s)");
  check_shape(r, {2, n, B, Hr, N, Dr}, "receiver K/V (2, Lf, B, H_r, N, D_r)");
  const int64_t T = B * N, G = 2 * n, in = c.in_dim(), out = c.out_dim(), h = c.hidden_dim;

  // The input rows, head-major per token: concat(sharer, receiver) (G, T, in+out), written in
  // place from the (2, n, B, H, N, D) caches (one pass each, no intermediate stacks).
  const FuserVariantSpec& variant = fuser_variant_spec(c.variant);
  auto x = torch::empty({G, T, in + out}, r.options().dtype(dtype()));
  {
    auto rows = x.view({2, n, B, N, in + out});
    rows.narrow(4, 0, in).view({2, n, B, N, Hs, Ds}).copy_(s.permute({0, 1, 2, 4, 3, 5}));
    auto receiver_half = rows.narrow(4, in, out).view({2, n, B, N, Hr, Dr});
    // The projection-only ablation does not see the receiver: its half of the input is zero.
    if (variant.sees_receiver)
      receiver_half.copy_(r.permute({0, 1, 2, 4, 3, 5}));
    else
      receiver_half.zero_();
  }
  using Combine = FuserVariantSpec::Combine;
  const bool replace = variant.combine == Combine::replace;
  const auto target = with_target ? r.reshape({G, B, Hr, N, Dr}) : torch::Tensor();  // a view

  // What the pass draws, made for all groups up front so that any chunking gives the same
  // values: one dropout seed per FFN block (mlp1, the L-2 projection blocks, the scalar block),
  // the gate logits, temperatures and Gumbel noise (G, B, H_r, N).
  const double p_drop = is_training() ? c.dropout : 0.0;
  std::vector<uint64_t> seeds(static_cast<size_t>(c.num_layers - 1 + (replace ? 0 : 1)), 0);
  if (p_drop > 0)
    for (auto& seed : seeds) seed = next_dropout_seed();
  const bool gated = variant.combine == Combine::gated;
  const bool hard = gated && !is_training();
  torch::Tensor gate_logit, tau, u;
  if (gated) {
    gate_logit = w[kGate].reshape({G});
    if (!hard) tau = w[kTemperature].to(torch::kFloat32).repeat({2});  // (G): both branches
  }
  if (gated && !hard) {
    if (noise) {
      const std::vector<int64_t> want =
          batched_noise ? std::vector<int64_t>{n, B, Hr, N, 1} : std::vector<int64_t>{B, Hr, N, 1};
      check_shape(noise->key_u, want, "noise.key_u");
      check_shape(noise->value_u, want, "noise.value_u");
      u = torch::stack({noise->key_u, noise->value_u})
              .to(gate_logit.device(), torch::kFloat32)
              .view({G, B, Hr, N});
    } else if (gate_noise_) {
      C2C_CHECK(generator_->device().type() == gate_logit.device().type(),
                "the fuser's generator is on ", generator_->device().str(),
                " but its weights on ", gate_logit.device().str(),
                "\nHINT: call reseed(seed) after moving the fuser");
      u = torch::rand({G, B, Hr, N}, generator_, gate_logit.options().dtype(torch::kFloat32));
    }
  }
  auto part = [](const torch::Tensor& t, int64_t g0, int64_t ng) {
    return t.defined() ? t.narrow(0, g0, ng) : t;
  };

  // The groups in chunks (fusion_chunk_groups: all of them on a GPU, cache-sized on the CPU).
  const int64_t chunk = fusion_chunk_groups(c, G, T, x.device());
  std::vector<torch::Tensor> results;
  for (int64_t g0 = 0; g0 < G; g0 += chunk) {
    const int64_t ng = std::min(chunk, G - g0);
    auto W = [&](size_t i) { return merge_branches(w[i]).narrow(0, g0, ng); };
    // The FFN block at table position b, and a linear layer (weight at b, bias at b + 1).
    auto block = [&](const torch::Tensor& in_, size_t b, size_t k) {
      return ffn(in_, W(b), W(b + 1), W(b + 2), p_drop, seeds[k], g0 * T * h);
    };
    auto linear = [&](const torch::Tensor& in_, size_t b) {
      return kernels::grouped_linear(in_, W(b), W(b + 1));
    };
    auto z = block(linear(x.narrow(0, g0, ng), kInW), kMlp1, 0);  // (ng, T, h)
    auto p = z;
    for (int64_t j = 0; j < c.num_layers - 2; ++j) p = block(p, proj_block(j), 1 + j);
    p = linear(p, proj_out(c));
    auto p_heads = p.view({ng, B, N, Hr, Dr}).permute({0, 1, 3, 2, 4});  // (ng, B, H_r, N, D_r)
    if (replace) {  // the fused cache is p itself
      const auto result_type =
          out_type.value_or(with_target ? r.scalar_type() : p_heads.scalar_type());
      const auto own = r.reshape({G, B, Hr, N, Dr}).narrow(0, g0, ng);
      results.push_back(with_target ? p_heads.to(result_type)
                                    : (p_heads.to(torch::kFloat32) - own.to(torch::kFloat32)).to(result_type));
      continue;
    }
    auto sc = linear(block(z, kScalar, seeds.size() - 1), kHeadW);  // (ng, T, H_r)
    auto w_logit = sc.view({ng, B, N, Hr}).permute({0, 1, 3, 2});  // (ng, B, H_r, N) view
    results.push_back(kernels::gated_combine(part(target, g0, ng), w_logit, p_heads,
                                             part(gate_logit, g0, ng), part(u, g0, ng),
                                             part(tau, g0, ng), hard, out_type));
  }
  return results.size() == 1 ? results[0] : torch::cat(results, 0);
}

namespace {
// The four (Lf, B, H, N, D) inputs of forward/forward_delta, checked by name, as the stacked
// (2, Lf, ...) pairs forward_kv takes.
std::pair<torch::Tensor, torch::Tensor> stack_inputs(const FuserConfig& c,
                                                     const torch::Tensor& sk,
                                                     const torch::Tensor& sv,
                                                     const torch::Tensor& rk,
                                                     const torch::Tensor& rv) {
  C2C_CHECK(sk.defined() && sk.dim() == 5, "fuser input 'sharer_key' must be (Lf, B, H_s, N, D_s)",
            sk.defined() ? ", got shape " + shape_string(sk.sizes()) : std::string());
  const auto n = sk.size(0), B = sk.size(1), N = sk.size(3);
  check_shape(sk, {n, B, c.source_num_heads, N, c.source_head_dim}, "sharer_key");
  check_shape(sv, sk.sizes().vec(), "sharer_value");
  check_shape(rk, {n, B, c.target_num_heads, N, c.target_head_dim}, "receiver_key");
  check_shape(rv, rk.sizes().vec(), "receiver_value");
  return {torch::stack({sk, sv}), torch::stack({rk, rv})};
}
}  // namespace

FusedKV StackedFuserImpl::forward(const torch::Tensor& sharer_key,
                                  const torch::Tensor& sharer_value,
                                  const torch::Tensor& receiver_key,
                                  const torch::Tensor& receiver_value, const GateNoise* noise) {
  auto [s, r] = stack_inputs(config_, sharer_key, sharer_value, receiver_key, receiver_value);
  auto out = forward_kv(s, r, noise);
  return {out[0], out[1]};
}

FusedKV StackedFuserImpl::forward_delta(const torch::Tensor& sharer_key,
                                        const torch::Tensor& sharer_value,
                                        const torch::Tensor& receiver_key,
                                        const torch::Tensor& receiver_value,
                                        const GateNoise* noise) {
  auto [s, r] = stack_inputs(config_, sharer_key, sharer_value, receiver_key, receiver_value);
  auto d = forward_kv(s, r, noise, /*delta=*/true);
  return {d[0], d[1]};
}

torch::Tensor StackedFuserImpl::forward_kv(const torch::Tensor& sharer_kv,
                                           const torch::Tensor& receiver_kv,
                                           const GateNoise* noise, bool delta) {
  const auto delta_type = dtype() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto out = combine(all_weights(), sharer_kv, receiver_kv, /*with_target=*/!delta, noise,
                     /*batched_noise=*/true,
                     delta ? std::optional<torch::ScalarType>(delta_type) : std::nullopt);
  return out.view(receiver_kv.sizes());
}

FusedKV StackedFuserImpl::forward_layer(int64_t layer, const torch::Tensor& sharer_key,
                                        const torch::Tensor& sharer_value,
                                        const torch::Tensor& receiver_key,
                                        const torch::Tensor& receiver_value,
                                        const GateNoise* noise) {
  for (const auto* t : {&sharer_key, &sharer_value, &receiver_key, &receiver_value})
    C2C_CHECK(t->defined() && t->dim() == 4, "forward_layer takes (B, H, N, D) inputs, got ",
              t->defined() ? shape_string(t->sizes()) : std::string("undefined"));
  auto [s, r] = stack_inputs(config_, sharer_key.unsqueeze(0), sharer_value.unsqueeze(0),
                             receiver_key.unsqueeze(0), receiver_value.unsqueeze(0));
  auto out = combine(layer_weights(layer), s, r, /*with_target=*/true, noise,
                     /*batched_noise=*/false, std::nullopt);
  return {out[0], out[1]};
}

// ---- published per-layer state -------------------------------------------------------------

namespace {
// The published name of table entry e for branch 0 (key), 1 (value); un-branched: its name.
std::string published_name(const FuserTensor& e, int branch) {
  return e.branched ? (branch == 0 ? "key_" : "value_") + e.name : e.name;
}
}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> StackedFuserImpl::layer_state_shapes(
    const FuserConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> r;
  for (const FuserTensor& e : fuser_tensor_table(c))
    for (int branch = 0; branch < (e.branched ? 2 : 1); ++branch)
      r.emplace_back(published_name(e, branch), e.shape);
  return r;
}

std::vector<std::pair<std::string, torch::Tensor>> StackedFuserImpl::layer_state(
    int64_t layer, bool gradients) const {
  C2C_CHECK(layer >= 0 && layer < num_fusers_, "fuser layer index ", layer,
            " out of range [0, ", num_fusers_, ")");
  std::vector<std::pair<std::string, torch::Tensor>> r;
  for (size_t i = 0; i < table_.size(); ++i) {
    const FuserTensor& e = table_[i];
    const torch::Tensor t = gradients ? tensors_[i].grad() : tensors_[i];
    if (!t.defined()) continue;
    for (int branch = 0; branch < (e.branched ? 2 : 1); ++branch)
      r.emplace_back(published_name(e, branch),
                     e.branched ? t.select(0, branch).select(0, layer) : t.select(0, layer));
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

torch::Tensor stack_kv_layers(const std::vector<torch::Tensor>& keys,
                              const std::vector<torch::Tensor>& values,
                              const std::vector<int64_t>& indices) {
  C2C_CHECK(keys.size() == values.size(), "a cache of ", keys.size(), " key layers and ",
            values.size(), " value layers");
  std::vector<torch::Tensor> picked;
  picked.reserve(2 * indices.size());
  for (const auto* side : {&keys, &values})
    for (int64_t i : indices) {
      C2C_CHECK(i >= 0 && i < static_cast<int64_t>(side->size()), "layer index ", i,
                " out of range for a cache of ", side->size(), " layers");
      picked.push_back((*side)[i]);
    }
  C2C_CHECK(!picked.empty(), "stack_kv_layers: no layers picked");
  auto stacked = torch::stack(picked);  // (2n, ...): one copy
  std::vector<int64_t> shape{2, static_cast<int64_t>(indices.size())};
  for (int64_t d = 1; d < stacked.dim(); ++d) shape.push_back(stacked.size(d));
  return stacked.view(shape);
}

}  // namespace c2c
