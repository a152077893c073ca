#include "modules/model_config.h"

#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {

const std::vector<ArchSpec>& architectures() {
  static const std::vector<ArchSpec> kArchitectures = {
      // model_type  transformers class     qkv_bias qk_norm bias_from_config
      {"qwen2", "Qwen2ForCausalLM", true, false, false},
      {"qwen3", "Qwen3ForCausalLM", false, true, false},
      {"llama", "LlamaForCausalLM", false, false, true},
  };
  return kArchitectures;
}

namespace {

template <typename T>
T get_required(const nlohmann::json& j, const char* key, const std::string& source) {
  C2C_CHECK(j.contains(key) && !j[key].is_null(), source, ": missing key '", key, "'");
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(source, ": key '", key, "' has the wrong type (", j[key].dump(), ")");
  }
}

template <typename T>
T get_optional(const nlohmann::json& j, const char* key, T fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(source, ": key '", key, "' has the wrong type (", j[key].dump(), ")");
  }
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  C2C_CHECK(j.is_object(), source, ": expected a JSON object");
  ModelConfig c;
  c.model_type = get_required<std::string>(j, "model_type", source);
  bool found = false;
  std::string known;
  for (const auto& a : architectures()) {
    known += std::string(known.empty() ? "" : ", ") + a.model_type;
    if (c.model_type == a.model_type) {
      c.arch = a;
      found = true;
    }
  }
  C2C_CHECK(found, source, ": unknown architecture model_type '", c.model_type,
            "'\nHINT: supported model types are: ", known);
  c.vocab_size = get_required<int64_t>(j, "vocab_size", source);
  c.hidden_size = get_required<int64_t>(j, "hidden_size", source);
  c.intermediate_size = get_required<int64_t>(j, "intermediate_size", source);
  c.num_layers = get_required<int64_t>(j, "num_hidden_layers", source);
  c.num_heads = get_required<int64_t>(j, "num_attention_heads", source);
  c.num_kv_heads = get_optional<int64_t>(j, "num_key_value_heads", c.num_heads, source);
  C2C_CHECK(c.num_heads > 0 && c.hidden_size > 0 && c.num_layers > 0 && c.vocab_size > 0 &&
                c.intermediate_size > 0,
            source, ": sizes must be positive");
  c.head_dim = get_optional<int64_t>(j, "head_dim", c.hidden_size / c.num_heads, source);
  C2C_CHECK(c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0, source,
            ": num_attention_heads (", c.num_heads, ") must be a multiple of num_key_value_heads (",
            c.num_kv_heads, ")");
  C2C_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, source, ": head_dim must be even, got ",
            c.head_dim);
  c.rms_norm_eps = get_optional<double>(j, "rms_norm_eps", 1e-6, source);
  c.rope_theta = get_optional<double>(j, "rope_theta", 10000.0, source);
  // transformers 5 moved rope_theta/rope_scaling under "rope_parameters".
  nlohmann::json rope = nlohmann::json::object();
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) rope = j["rope_scaling"];
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    rope = j["rope_parameters"];
    c.rope_theta = get_optional<double>(rope, "rope_theta", c.rope_theta, source);
  }
  std::string rope_type = get_optional<std::string>(rope, "rope_type", "", source);
  if (rope_type.empty()) rope_type = get_optional<std::string>(rope, "type", "default", source);
  if (rope_type == "llama3") {
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = get_required<double>(rope, "factor", source + " rope_scaling");
    c.rope_scaling.low_freq_factor = get_optional<double>(rope, "low_freq_factor", 1.0, source);
    c.rope_scaling.high_freq_factor = get_optional<double>(rope, "high_freq_factor", 4.0, source);
    c.rope_scaling.original_max_position =
        get_optional<int64_t>(rope, "original_max_position_embeddings", 8192, source);
  } else {
    C2C_CHECK(rope_type == "default", source, ": rope scaling type '", rope_type,
              "' is not supported\nHINT: supported: default (none), llama3");
  }
  c.max_position_embeddings = get_optional<int64_t>(j, "max_position_embeddings", 2048, source);
  c.tie_word_embeddings = get_optional<bool>(j, "tie_word_embeddings", false, source);
  c.attention_bias = c.arch.qkv_bias ||
                     (c.arch.bias_from_config && get_optional<bool>(j, "attention_bias", false, source));
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string())
    c.torch_dtype = j["torch_dtype"].get<std::string>();
  if (j.contains("dtype") && j["dtype"].is_string()) c.torch_dtype = j["dtype"].get<std::string>();
  if (j.contains("eos_token_id")) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int64_t>());
    if (e.is_array())
      for (const auto& x : e)
        if (x.is_number_integer()) c.eos_token_ids.push_back(x.get<int64_t>());
  }
  c.bos_token_id = get_optional<int64_t>(j, "bos_token_id", -1, source);
  return c;
}

ModelConfig ModelConfig::from_folder(const std::string& dir) {
  C2C_CHECK(is_directory(dir), "model folder '", dir, "' does not exist or is not a folder");
  const std::string path = join_path(dir, "config.json");
  C2C_CHECK(file_exists(path), "model folder '", dir,
            "' has no config.json\nHINT: pass a Hugging Face model folder (config.json + *.safetensors)");
  return from_json(read_json(path), path);
}

int64_t ModelConfig::num_parameters() const {
  const int64_t q = num_heads * head_dim, kv = num_kv_heads * head_dim;
  int64_t attn = hidden_size * q + 2 * hidden_size * kv + q * hidden_size;
  if (attention_bias) attn += q + 2 * kv;
  if (arch.qk_norm) attn += 2 * head_dim;
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t layer = attn + mlp + 2 * hidden_size;
  int64_t total = num_layers * layer + vocab_size * hidden_size + hidden_size;
  if (!tie_word_embeddings) total += vocab_size * hidden_size;
  return total;
}

}  // namespace c2c
