// Random-weight model folders in the Hugging Face layout (config.json + model.safetensors), for
// benchmarks and tests: the shapes of a real model without its weights. Presets name published
// shapes (qwen3-0.6b, qwen2.5-0.5b, llama3.2-1b) and a ~25M-parameter one (bench-25m).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace c2c {

// config.json contents of a preset; throws listing the presets when the name is unknown.
nlohmann::json random_model_preset(const std::string& name);
std::vector<std::string> random_model_presets();

// Writes dir/config.json and dir/model.safetensors (fp32 or bf16) with N(0, std) weights and unit
// norms, seeded. Returns the parameter count.
int64_t write_random_model(const std::string& dir, const nlohmann::json& config, uint64_t seed,
                           const std::string& dtype = "float32", double std = 0.02);

}  // namespace c2c
