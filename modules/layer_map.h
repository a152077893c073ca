// Which sharer layer feeds which receiver layer (DESIGN.md section 3), and how several sharers
// combine. A LayerMap is an ordered list of (receiver layer, sharer layer) pairs; fuser i of a
// StackedFuser serves pairs[i]. Receiver layers not in the map are left as they are.
//
// Shape legend: B batch, H KV heads, N fused tokens, D head dim; _s sharer, _r receiver.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "modules/fuser.h"

namespace c2c {

struct LayerPair {
  int64_t receiver = 0;
  int64_t sharer = 0;
  bool operator==(const LayerPair& o) const { return receiver == o.receiver && sharer == o.sharer; }
};

struct LayerMap {
  std::string method = "explicit";  // "last_aligned" | "k_nearest" | "explicit"
  std::vector<LayerPair> pairs;     // sorted by receiver layer, each receiver layer at most once

  int64_t size() const { return static_cast<int64_t>(pairs.size()); }
  std::vector<int64_t> receiver_layers() const;
  std::vector<int64_t> sharer_layers() const;
  // Throws when a layer is out of range or a receiver layer appears twice.
  void validate(int64_t receiver_layers, int64_t sharer_layers) const;
  // {"method": "...", "pairs": [[t, s], ...]}
  nlohmann::json to_json() const;
  static LayerMap from_json(const nlohmann::json& j, const std::string& where);
};

// s(t) = clamp(t + S - T, 0, S-1) for every receiver layer t of T.
LayerMap last_aligned_layer_map(int64_t receiver_layers, int64_t sharer_layers);
// Layers placed uniformly on [0, 1] (layer i of K at i/(K-1)); receiver layer t takes the nearest
// sharer layer, ties to the lower one. A single-layer model sits at 1 (its only layer is its last).
LayerMap k_nearest_layer_map(int64_t receiver_layers, int64_t sharer_layers);
// An explicit list of pairs (sorted by receiver layer, validated).
LayerMap explicit_layer_map(std::vector<LayerPair> pairs, int64_t receiver_layers,
                            int64_t sharer_layers);
// Parses "last_aligned", "k_nearest", "t:s,t:s,...", a JSON list of pairs "[[t,s],...]", a JSON
// object {"t": s, ...} or our to_json() form.
LayerMap parse_layer_map(const std::string& spec, int64_t receiver_layers, int64_t sharer_layers);

// ---- several sharers -----------------------------------------------------------------------

enum class MultiSharerMode {
  sequential,  // each sharer's fuser reads the cache the previous one wrote
  parallel,    // every fuser reads the clean receiver cache; their deltas are summed
};
MultiSharerMode parse_multi_sharer_mode(const std::string& name);
const char* multi_sharer_mode_name(MultiSharerMode mode);

// One sharer's contribution: its fuser set, its layer map (fuser i serves map.pairs[i]) and its
// cache, one (B, H_s, N, D_s) tensor per sharer layer, already restricted to the fused positions.
struct SharerCache {
  StackedFuser fuser{nullptr};
  LayerMap map;
  std::vector<torch::Tensor> key;
  std::vector<torch::Tensor> value;
};

struct FusedCache {
  std::vector<torch::Tensor> key;    // one (B, H_r, N, D_r) per receiver layer
  std::vector<torch::Tensor> value;
};

// Fuses the receiver cache (one (B, H_r, N, D_r) tensor per receiver layer) with every sharer,
// running each sharer's mapped layers as one batched fuser call. Returns new per-layer tensors
// (unmapped layers are the input tensors themselves); the inputs are not modified.
FusedCache fuse_multi_sharer(const std::vector<torch::Tensor>& receiver_key,
                             const std::vector<torch::Tensor>& receiver_value,
                             const std::vector<SharerCache>& sharers, MultiSharerMode mode);

}  // namespace c2c
