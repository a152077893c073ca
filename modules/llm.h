// A frozen decoder LLM (Qwen2/2.5, Qwen3, Llama-3.x) loaded from a Hugging Face model folder.
//
// Legend: B batch, T new tokens, S cache slots, E hidden size, Hq query heads, H KV heads,
// D head dim, V vocabulary.
// The weights are plain tensors that never require grad; autograd still flows through the
// activations, so a loss on the receiver's logits reaches a fuser that rewrote its KV cache.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "modules/kv_cache.h"
#include "modules/model_config.h"

namespace c2c {

struct LoadOptions {
  torch::Dtype dtype = torch::kFloat32;  // compute dtype; stored bf16/fp16/fp32 are converted
  torch::Device device = torch::kCPU;
};

class LLM {
 public:
  // Reads config.json and model.safetensors (or the sharded model.safetensors.index.json).
  static std::shared_ptr<LLM> load(const std::string& dir, const LoadOptions& opts = {});

  const ModelConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  torch::Dtype dtype() const { return opts_.dtype; }
  torch::Device device() const { return opts_.device; }

  // A cache for `batch` rows; capacity > 0 preallocates (inference), 0 grows (training).
  KVCache new_cache(int64_t batch, int64_t capacity) const;

  // Runs ids (B, T) whose real tokens are marked by mask (B, T) bool (right padding), appending
  // to the cache. Returns logits (B, T, V) in fp32, or (B, V) of the last real token of each row
  // when `last_only`. An undefined mask means every token is real.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask, KVCache& cache,
                        bool last_only = false) const;

  // Hidden states after the final norm, (B, T, E); the logits come from `logits(hidden)`.
  torch::Tensor forward_hidden(const torch::Tensor& ids, const torch::Tensor& mask,
                               KVCache& cache) const;
  torch::Tensor logits(const torch::Tensor& hidden) const;

  // Full-parameter training (`c2c pretrain`): makes every weight the forward uses a leaf that
  // requires grad and returns (name, tensor); q/k/v and gate/up are trained as the stacked
  // tensors the forward multiplies by (".self_attn.qkv_proj.weight", ".mlp.gate_up_proj.weight"),
  // tied embeddings appear once. Needs fp32 compute. weights() keeps the loaded copies.
  std::vector<std::pair<std::string, torch::Tensor>> make_trainable();
  // Writes config.json (this model's, with torch_dtype) and model.safetensors in the Hugging
  // Face layout, stacked tensors split back; the file is written atomically.
  void save(const std::string& dir, torch::Dtype dtype) const;

  // Name -> tensor of every weight as loaded (compute dtype), for tests and checks.
  const std::map<std::string, torch::Tensor>& weights() const { return weights_; }

 private:
  struct Layer {
    torch::Tensor qkv_w, qkv_b;       // (Hq*D + 2*H*D, E), q, k, v stacked: one GEMM
    torch::Tensor o_w;                // (E, Hq*D)
    torch::Tensor q_norm, k_norm;     // (D) Qwen3
    torch::Tensor gate_up_w;          // (2*I, E), gate and up stacked: one GEMM
    torch::Tensor down_w;             // (E, I)
    torch::Tensor in_norm, post_norm; // (E)
  };
  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w) const;
  torch::Tensor rope_inv_freq() const;

  ModelConfig config_;
  LoadOptions opts_;
  std::string path_;
  std::map<std::string, torch::Tensor> weights_;
  std::vector<Layer> layers_;
  torch::Tensor embed_, final_norm_, lm_head_, inv_freq_;
};

}  // namespace c2c
