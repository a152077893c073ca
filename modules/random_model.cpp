#include "modules/random_model.h"

#include <sys/stat.h>

#include <filesystem>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/model_config.h"
#include "modules/safetensors.h"

namespace c2c {
namespace {

struct Preset {
  const char* name;
  const char* model_type;
  int64_t vocab, hidden, intermediate, layers, heads, kv_heads, head_dim;
  double theta;
  bool tied;
};

// Published shapes (from the models' config.json files) and small ones for benchmarks.
const Preset kPresets[] = {
    {"qwen3-0.6b", "qwen3", 151936, 1024, 3072, 28, 16, 8, 128, 1000000.0, true},
    {"qwen2.5-0.5b", "qwen2", 151936, 896, 4864, 24, 14, 2, 64, 1000000.0, true},
    {"llama3.2-1b", "llama", 128256, 2048, 8192, 16, 32, 8, 64, 500000.0, true},
    {"bench-25m", "qwen3", 32000, 384, 1024, 8, 6, 2, 64, 1000000.0, true},
    {"bench-20m-llama", "llama", 32000, 320, 896, 6, 5, 1, 64, 500000.0, true},
};

}  // namespace

std::vector<std::string> random_model_presets() {
  std::vector<std::string> out;
  for (const auto& p : kPresets) out.push_back(p.name);
  return out;
}

nlohmann::json random_model_preset(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name != p.name) continue;
    nlohmann::json j = {{"model_type", p.model_type},
                        {"vocab_size", p.vocab},
                        {"hidden_size", p.hidden},
                        {"intermediate_size", p.intermediate},
                        {"num_hidden_layers", p.layers},
                        {"num_attention_heads", p.heads},
                        {"num_key_value_heads", p.kv_heads},
                        {"head_dim", p.head_dim},
                        {"rope_theta", p.theta},
                        {"rms_norm_eps", 1e-6},
                        {"max_position_embeddings", 4096},
                        {"tie_word_embeddings", p.tied},
                        {"bos_token_id", 1},
                        {"eos_token_id", 2}};
    if (std::string(p.model_type) == "llama")
      j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
    return j;
  }
  std::string known;
  for (const auto& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
  fail("unknown model preset '", name, "'\nHINT: presets are: ", known);
}

int64_t write_random_model(const std::string& dir, const nlohmann::json& config, uint64_t seed,
                           const std::string& dtype, double std) {
  const ModelConfig c = ModelConfig::from_json(config, "random model config");
  C2C_CHECK(dtype == "float32" || dtype == "bfloat16", "random model dtype must be float32 or ",
            "bfloat16, got '", dtype, "'");
  std::filesystem::create_directories(dir);
  torch::manual_seed(seed);
  const auto store = dtype == "float32" ? torch::kFloat32 : torch::kBFloat16;
  const int64_t E = c.hidden_size, D = c.head_dim, Hq = c.num_heads, H = c.num_kv_heads,
                I = c.intermediate_size, V = c.vocab_size;
  NamedTensors t;
  int64_t count = 0;
  auto randn = [&](const std::string& name, std::vector<int64_t> shape) {
    t.emplace_back(name, (torch::randn(shape) * std).to(store));
    count += t.back().second.numel();
  };
  auto ones = [&](const std::string& name, int64_t n) {
    t.emplace_back(name, torch::ones({n}).to(store));
    count += n;
  };
  randn("model.embed_tokens.weight", {V, E});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    randn(p + "self_attn.q_proj.weight", {Hq * D, E});
    randn(p + "self_attn.k_proj.weight", {H * D, E});
    randn(p + "self_attn.v_proj.weight", {H * D, E});
    randn(p + "self_attn.o_proj.weight", {E, Hq * D});
    if (c.attention_bias) {
      randn(p + "self_attn.q_proj.bias", {Hq * D});
      randn(p + "self_attn.k_proj.bias", {H * D});
      randn(p + "self_attn.v_proj.bias", {H * D});
    }
    if (c.arch.qk_norm) {
      ones(p + "self_attn.q_norm.weight", D);
      ones(p + "self_attn.k_norm.weight", D);
    }
    randn(p + "mlp.gate_proj.weight", {I, E});
    randn(p + "mlp.up_proj.weight", {I, E});
    randn(p + "mlp.down_proj.weight", {E, I});
    ones(p + "input_layernorm.weight", E);
    ones(p + "post_attention_layernorm.weight", E);
  }
  ones("model.norm.weight", E);
  if (!c.tie_word_embeddings) randn("lm_head.weight", {V, E});
  nlohmann::json cfg = config;
  cfg["torch_dtype"] = dtype;
  save_safetensors(join_path(dir, "model.safetensors"), t, {{"format", "pt"}});
  write_file_atomic(join_path(dir, "config.json"), cfg.dump(2) + "\n");
  return count;
}

}  // namespace c2c
