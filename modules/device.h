// The one place a device and a compute dtype are chosen from their names, for recipes
// (train.device / train.dtype), eval configs and the CLI's --device / --dtype flags.
#pragma once
#include <torch/torch.h>

#include <string>

namespace c2c {

// "auto" (the first CUDA device when one is visible, else the CPU), "cpu", "cuda" or "cuda:N".
// `where` names the key or flag in errors ("train.device", "generate: --device").
torch::Device resolve_device(const std::string& name, const std::string& where);

// "auto" (bfloat16 on CUDA, float32 on the CPU), "float32" / "fp32", "bfloat16" / "bf16".
torch::Dtype resolve_dtype(const std::string& name, torch::Device device, const std::string& where);

}  // namespace c2c
