// Configuration of a frozen decoder LLM read from a Hugging Face `config.json`, and the one table
// of supported architectures. Adding an architecture is one row in kArchitectures (model.cpp)
// plus whatever quirk its forward needs.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace c2c {

// What distinguishes one decoder family from another in this project.
struct ArchSpec {
  const char* model_type;      // config.json "model_type"
  const char* hf_class;        // the transformers class, for messages and docs
  bool qkv_bias;               // q/k/v projections carry a bias (Qwen2)
  bool qk_norm;                // per-head RMSNorm on q and k before RoPE (Qwen3)
  bool bias_from_config;       // bias taken from config "attention_bias" (Llama)
};

const std::vector<ArchSpec>& architectures();

struct RopeScaling {
  std::string type = "none";   // "none" or "llama3" (others are rejected by name)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  ArchSpec arch{};
  std::string model_type;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // resolved: arch.qkv_bias or config attention_bias
  std::string torch_dtype = "float32";
  std::vector<int64_t> eos_token_ids;
  int64_t bos_token_id = -1;

  // Parses and validates; `source` names the file in every error.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  static ModelConfig from_folder(const std::string& dir);
  // Total parameter count implied by the shapes (embeddings counted once when tied).
  int64_t num_parameters() const;
};

}  // namespace c2c
