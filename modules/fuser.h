// The C2C fuser (DESIGN.md section 2): for every mapped receiver layer, a learned module maps the
// sharer's KV cache into the receiver's, X_fused = X_receiver + g * alpha * p. All fusers of one
// set have the same shapes, so their weights are stored stacked, (2 branches, Lf layers, ...), and
// run as one batched computation (bmm/baddbmm) for every layer and both K and V; a per-layer
// path shares the code. Saving/loading under the published per-layer names goes through
// layer_state()/load_layer_state(); checkpoint files live in fuser_checkpoint.h.
//
// Shape legend: Lf fused layers, B batch, N fused tokens, H KV heads, D head dim, _s sharer,
// _r receiver; in = H_s*D_s, out = H_r*D_r, h hidden_dim, m intermediate_dim; G = 2*Lf (K and V
// branches of every layer, the batch dimension of the matrix products), T = B*N tokens.
#pragma once
#include <torch/torch.h>

#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace c2c {

// Gate temperature annealing: geometric (the reference code) or linear (the paper's wording).
enum class AnnealKind { geometric, linear };
AnnealKind parse_anneal_kind(const std::string& name);  // "geometric" | "linear"
const char* anneal_kind_name(AnnealKind kind);

// tau(step): geometric tau0 * (tau1/tau0)^r, linear tau0 + (tau1 - tau0) * r, with
// r = min(step / anneal_steps, 1) (r = 1 when anneal_steps <= 0).
double gate_temperature(int64_t step, double tau0, double tau1, int64_t anneal_steps,
                        AnnealKind kind = AnnealKind::geometric);

// What a fuser adds to the receiver's cache (the paper's ablation ladder). `full` is the method;
// the others exist to measure what each part is worth on the same data:
//   projection         X_r <- p(X_s)            the receiver's own K/V replaced by the projected
//                                              sharer K/V (the fuser does not see X_r)
//   projection_fusion  X_r <- X_r + alpha * p(X_s, X_r)   fusion, head weights, no gate
//   full               X_r <- X_r + g * alpha * p(X_s, X_r)
enum class FuserVariant { full, projection_fusion, projection };

// The registry of variants: what each one does is this entry, read by the fuser's forward, its
// gate accessor and the recipe/JSON names; adding a variant is adding an entry (and its golden,
// scripts/fuser_reference.py --variant).
struct FuserVariantSpec {
  FuserVariant variant;
  const char* name;
  bool sees_receiver;  // the fuser's input holds the receiver's K/V (projection: zeros)
  enum class Combine {
    replace,  // the fused cache is p itself
    no_gate,  // X_r + alpha * p
    gated,    // X_r + g * alpha * p, the Gumbel-sigmoid gate (hard at inference)
  } combine;
};
const std::vector<FuserVariantSpec>& fuser_variants();
const FuserVariantSpec& fuser_variant_spec(FuserVariant v);
const char* fuser_variant_name(FuserVariant v);
// Throws naming the value and the accepted names.
FuserVariant parse_fuser_variant(const std::string& name);

// Hyper-parameters of one fuser; every fuser of a set shares them. Names follow the official
// projector JSON (source_dim is the sharer's head dim, not H_s*D_s).
struct FuserConfig {
  int64_t source_num_heads = 2;   // H_s
  int64_t source_head_dim = 64;   // D_s  (official: source_dim)
  int64_t target_num_heads = 8;   // H_r
  int64_t target_head_dim = 128;  // D_r  (official: target_dim)
  int64_t hidden_dim = 1024;      // h
  int64_t intermediate_dim = 1024;  // m
  int64_t num_layers = 3;         // L >= 3: 1 + (L-2) FFN blocks on the projection path
  double dropout = 0.1;
  double initial_temperature = 1.0;
  double final_temperature = 0.001;
  int64_t anneal_steps = 1929;
  AnnealKind anneal = AnnealKind::geometric;
  FuserVariant variant = FuserVariant::full;  // JSON key "variant", written only when not full

  int64_t in_dim() const { return source_num_heads * source_head_dim; }
  int64_t out_dim() const { return target_num_heads * target_head_dim; }
  int64_t parameters_per_layer() const;  // both branches, gates included, buffer excluded
  // Throws naming the field (key_prefix + its name) and `where` when a value is out of range.
  void validate(const std::string& where = "fuser config", const std::string& key_prefix = "") const;
  // Our JSON form (fuser.json); from_json rejects unknown keys and wrong types, naming `where`.
  nlohmann::json to_json() const;
  static FuserConfig from_json(const nlohmann::json& j, const std::string& where);
};

// One tensor of one layer's state in the published order (the table every part of the fuser
// derives from: construction, stacking, the per-layer published names and shapes, the checkpoint
// slots, the gate and temperature accessors).
struct FuserTensor {
  std::string name;    // published name without the key_/value_ prefix ("in.weight", ...)
  std::string member;  // the registered parameter's (or buffer's) name ("in_weight", ...)
  std::vector<int64_t> shape;  // of one branch of one layer
  enum class Init { linear, ones, zeros, temperature } init;
  int64_t fan_in = 0;  // Init::linear: uniform +-1/sqrt(fan_in), as torch.nn.Linear
  bool branched = true;  // a key_ and a value_ tensor (all but gate_temperature)
};
// The table for `config`: gate logit, temperature, in, mlp1, scalar_mlp2, scalar_head, the L-2
// proj_mlp2 blocks, proj_out.
std::vector<FuserTensor> fuser_tensor_table(const FuserConfig& config);

// Fused (or delta) keys and values.
struct FusedKV {
  torch::Tensor key;    // (Lf, B, H_r, N, D_r) from forward, (B, H_r, N, D_r) from forward_layer
  torch::Tensor value;
};

// Externally supplied gate noise u ~ U[0,1), replayed instead of drawing (tests, goldens).
// Shapes (Lf, B, H_r, N, 1) for forward, (B, H_r, N, 1) for forward_layer.
struct GateNoise {
  torch::Tensor key_u;
  torch::Tensor value_u;
};

class StackedFuserImpl : public torch::nn::Module {
 public:
  // `num_fusers` = Lf; parameters initialised like torch.nn.Linear (uniform +-1/sqrt(fan_in)),
  // RMSNorm scales 1, gate logits 0, temperature tau0. `seed` makes the initialisation and the
  // generator for gate noise and dropout reproducible.
  StackedFuserImpl(const FuserConfig& config, int64_t num_fusers, uint64_t seed = 0);

  // All layers at once. Inputs (Lf, B, H, N, D) for sharer key/value and receiver key/value, any
  // float dtype (cast to the fuser's dtype). Returns fused K/V in the receiver's dtype; the sum
  // X_r + g*alpha*p is formed in fp32 and rounded once (as the reference does with bf16 caches).
  // Training mode: Gumbel-sigmoid gates at the current temperature and dropout; eval: hard gates.
  // No host synchronisation.
  FusedKV forward(const torch::Tensor& sharer_key, const torch::Tensor& sharer_value,
                  const torch::Tensor& receiver_key, const torch::Tensor& receiver_value,
                  const GateNoise* noise = nullptr);
  // One layer, inputs (B, H, N, D); same code with the weights of fuser `layer` sliced out.
  FusedKV forward_layer(int64_t layer, const torch::Tensor& sharer_key,
                        const torch::Tensor& sharer_value, const torch::Tensor& receiver_key,
                        const torch::Tensor& receiver_value, const GateNoise* noise = nullptr);
  // g*alpha*p alone (fp32 when the fuser is fp32 or bf16, never rounded to bf16), shapes as
  // forward's outputs; used by the parallel multi-sharer mode.
  FusedKV forward_delta(const torch::Tensor& sharer_key, const torch::Tensor& sharer_value,
                        const torch::Tensor& receiver_key, const torch::Tensor& receiver_value,
                        const GateNoise* noise = nullptr);
  // forward (delta false) and forward_delta (delta true) on stacked caches, keys then values:
  // sharer_kv (2, Lf, B, H_s, N, D_s), receiver_kv (2, Lf, B, H_r, N, D_r) (stack_kv_layers makes
  // both with one copy each). Returns (2, Lf, B, H_r, N, D_r). The fusion path's one entry.
  torch::Tensor forward_kv(const torch::Tensor& sharer_kv, const torch::Tensor& receiver_kv,
                           const GateNoise* noise = nullptr, bool delta = false);

  // The gate temperature after optimizer step `step`: gate_temperature(step, ...) of the config,
  // the one schedule of a run (the loop's logs ask it too).
  double temperature_at(int64_t step) const;
  // Sets every fuser's gate temperature to temperature_at(step).
  void set_step(int64_t step);
  // The generator of the gate noise (must live on the fuser's device).
  void set_generator(at::Generator generator) { generator_ = std::move(generator); }
  // A fresh gate-noise generator on the fuser's current device seeded with `seed`, and the
  // dropout masks' counter sequence restarted from `seed` (fused_ops.h dropout_residual).
  void reseed(uint64_t seed);
  // false: training gates use no Gumbel noise (G = 0), i.e. sigmoid(logit/tau), without
  // drawing; for tests that must not depend on how rows are split into batches. Default true.
  void set_gate_noise(bool on) { gate_noise_ = on; }

  // The gate logits (2, Lf) (row 0 keys, row 1 values) of a variant with gates (full);
  // undefined for the gate-free ablations. The parameter itself (with its .grad()).
  torch::Tensor gate_logits() const;
  // The current gate temperature of every fuser (Lf), a buffer set by set_step().
  const torch::Tensor& temperatures() const;

  const FuserConfig& config() const { return config_; }
  int64_t num_fusers() const { return num_fusers_; }
  torch::Dtype dtype() const;

  // Published names and shapes of one layer's state dict, in the reference's order.
  static std::vector<std::pair<std::string, std::vector<int64_t>>> layer_state_shapes(
      const FuserConfig& config);
  // One fuser's state under the published names: views into the stacked tensors (no copies).
  // With `gradients`, the same views of the parameters' .grad() (entries without one omitted).
  std::vector<std::pair<std::string, torch::Tensor>> layer_state(int64_t layer,
                                                                 bool gradients = false) const;
  // Copies a published-name state dict into fuser `layer`, strictly: a missing, extra or
  // mis-shaped tensor throws naming the key and `where` (file). Values are cast to our dtype.
  void load_layer_state(int64_t layer, const std::map<std::string, torch::Tensor>& state,
                        const std::string& where);

 private:
  // The table's tensors, stacked (2, n, ...) (the temperature (n)): all (n = Lf) or one layer's
  // slice (n = 1).
  using Weights = std::vector<torch::Tensor>;
  Weights all_weights() const;
  Weights layer_weights(int64_t layer) const;
  // Core: s (2, n, B, H_s, N, D_s) and r (2, n, B, H_r, N, D_r), keys then values. Returns
  // (2n, B, H_r, N, D_r): with_target, r + g*alpha*p in r's dtype; otherwise the delta alone in
  // the fuser's dtype; out_type overrides either (gated_combine's out_type).
  torch::Tensor combine(const Weights& w, const torch::Tensor& s, const torch::Tensor& r,
                        bool with_target, const GateNoise* noise, bool batched_noise,
                        std::optional<torch::ScalarType> out_type);
  torch::Tensor ffn(const torch::Tensor& x, const torch::Tensor& norm, const torch::Tensor& w1,
                    const torch::Tensor& w2, double p, uint64_t seed, int64_t first);
  // The dropout seed of the next FFN block: a counter sequence from reseed()'s seed.
  uint64_t next_dropout_seed();

  FuserConfig config_;
  int64_t num_fusers_;
  c10::optional<at::Generator> generator_;
  uint64_t dropout_seed_ = 0, dropout_calls_ = 0;
  bool gate_noise_ = true;

  std::vector<FuserTensor> table_;
  std::vector<torch::Tensor> tensors_;  // table_[i]'s stacked tensor (2, Lf, ...), temperature (Lf)
};
TORCH_MODULE(StackedFuser);

// How many of a pass's G groups a fuser of config `c` runs at once over T tokens: all on a GPU;
// on the CPU as many as keep each thread's activations (T x its widest layer, fp32, a group)
// within its share of the L2 caches,
// and at least one per intra-op thread. The result does not depend on it (the same draws, the
// same dropout masks). set_fusion_chunk_groups(n > 0) forces n for benchmarks and tests (0:
// automatic again).
int64_t fusion_chunk_groups(const FuserConfig& c, int64_t G, int64_t T, torch::Device device);
void set_fusion_chunk_groups(int64_t groups);

// "(2, 3, 4)": shapes in error messages (c10 types are kept out of c2c::fail's arguments).
std::string shape_string(torch::IntArrayRef shape);

// Stacks the given layers of a per-layer cache, keys then values, with one copy:
// (keys[indices[i]], values[indices[i]]) -> (2, Lf, ...), the input forward_kv takes.
torch::Tensor stack_kv_layers(const std::vector<torch::Tensor>& keys,
                              const std::vector<torch::Tensor>& values,
                              const std::vector<int64_t>& indices);

}  // namespace c2c
