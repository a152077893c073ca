// Fuser checkpoints in our format (a folder with fuser.safetensors + fuser.json, loaded strictly).
// The official C2C layout (projector_{i}.json / .pt + projector_config.json) is read by
// official_checkpoint.h.
//
// Our format, version 1:
//   fuser.safetensors  tensors named "sharer{j}.layer{t}.<published name>", j the sharer's index,
//                      t the RECEIVER layer the fuser writes, <published name> one layer's
//                      state-dict key of the reference (key_in.weight, ..., gate_temperature);
//                      metadata {"format": "c2c-fuser", "format_version": "1"}.
//   fuser.json         {"format": "c2c-fuser", "format_version": 1, "receiver_model": ...,
//                       "multi_sharer": "sequential"|"parallel", "dtype": "float32"|"bfloat16"|...,
//                       "sharers": [{"sharer_model": ..., "alignment": ..., "layer_map":
//                       {"method": ..., "pairs": [[t, s], ...]}, "fuser": {FuserConfig},
//                       "sharer_fingerprint": ...}], "receiver_fingerprint": ...,
//                       "source": {...provenance, free-form}}
// What it leaves out: optimizer state and training progress (trainer/ checkpoints).
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "modules/fuser.h"
#include "modules/layer_map.h"

namespace c2c {

constexpr int kFuserCheckpointVersion = 1;

// One sharer's fuser set.
struct FuserSet {
  std::string sharer_model;                    // name or path of the sharer LLM
  std::string alignment = "reference_longest";  // token alignment method used in training
  LayerMap layer_map;                          // fuser i writes receiver layer pairs[i].receiver
  std::string sharer_fingerprint;              // model_fingerprint of the sharer trained with ("": unknown)
  FuserConfig config;
  StackedFuser fuser{nullptr};
};

struct FuserCheckpoint {
  std::string receiver_model;
  std::string receiver_fingerprint;  // model_fingerprint of the receiver trained with ("": unknown)
  MultiSharerMode multi_sharer = MultiSharerMode::sequential;
  std::vector<FuserSet> sharers;
  nlohmann::json source = nlohmann::json::object();  // provenance (e.g. the imported folder)
};

// Writes dir/fuser.safetensors and dir/fuser.json (each atomically), creating dir. Tensors are
// written in each fuser's dtype.
void save_fuser_checkpoint(const std::string& dir, const FuserCheckpoint& checkpoint);

// Reads a folder written by save_fuser_checkpoint. Strict: a missing, extra or mis-shaped tensor,
// an unknown JSON key or another format version is an error naming it. `dtype` overrides the
// stored one (e.g. kFloat32 master weights for training a bf16 checkpoint).
FuserCheckpoint load_fuser_checkpoint(const std::string& dir,
                                      c10::optional<torch::Dtype> dtype = c10::nullopt);

// What a fuser was trained with: a fingerprint of a model folder's config.json and of its weights
// (each safetensors file's name, size and 1 MiB from its middle), cheap for any model size.
// Another model of the same shapes (a fine-tune, another seed) gets another fingerprint.
std::string model_fingerprint(const std::string& model_dir);

// "float32" <-> kFloat32 etc. (float32, bfloat16, float16).
torch::Dtype parse_dtype_name(const std::string& name);
std::string dtype_name(torch::Dtype dtype);

}  // namespace c2c
