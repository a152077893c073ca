// The import of the official C2C fuser layout (official_checkpoint.h).
#include "modules/official_checkpoint.h"

#include <algorithm>
#include <map>
#include <set>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/torch_pickle.h"

namespace c2c {

// ---- official import -----------------------------------------------------------------------

namespace {

// One projector_{i}.json -> our config; unknown init_args are errors.
FuserConfig official_config(const std::string& path, torch::Dtype* dtype) {
  const nlohmann::json j = read_json(path);
  C2C_CHECK(j.is_object() && j.value("class", "") == "C2CProjector", path,
            ": expected {\"class\": \"C2CProjector\", \"init_args\": {...}}, got class ",
            j.is_object() ? j.value("class", nlohmann::json()).dump() : j.dump());
  C2C_CHECK(j.contains("init_args") && j["init_args"].is_object(), path, ": no init_args");
  nlohmann::json a = j["init_args"];
  nlohmann::json ours = nlohmann::json::object();
  static const std::map<std::string, std::string> rename = {
      {"source_dim", "source_head_dim"}, {"target_dim", "target_head_dim"},
      {"source_num_heads", "source_num_heads"}, {"target_num_heads", "target_num_heads"},
      {"hidden_dim", "hidden_dim"}, {"intermediate_dim", "intermediate_dim"},
      {"num_layers", "num_layers"}, {"dropout", "dropout"},
      {"initial_temperature", "initial_temperature"},
      {"final_temperature", "final_temperature"}, {"anneal_steps", "anneal_steps"}};
  *dtype = torch::kFloat32;  // the reference's default
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (it.key() == "dtype") {
      const auto& d = it.value();
      C2C_CHECK(d.is_object() && d.value("__type__", "") == "torch.dtype" &&
                    d.contains("value") && d["value"].is_string(),
                path, ": init_args.dtype must be {\"__type__\": \"torch.dtype\", \"value\": ...}");
      *dtype = parse_dtype_name(d["value"].get<std::string>());
      continue;
    }
    auto r = rename.find(it.key());
    C2C_CHECK(r != rename.end(), path, ": unknown init_args key '", it.key(), "'");
    ours[r->second] = it.value();
  }
  return FuserConfig::from_json(ours, path);
}

int64_t layer_number(const std::string& key, const std::string& where) {
  size_t used = 0;
  long long v = -1;
  try {
    v = std::stoll(key, &used);
  } catch (const std::exception&) {
  }
  C2C_CHECK(used == key.size() && v >= 0, where, ": '", key, "' is not a layer index");
  return v;
}

}  // namespace

FuserCheckpoint import_official_checkpoint(const std::string& src) {
  std::string final_dir = src;
  if (!file_exists(join_path(final_dir, "projector_config.json")) &&
      file_exists(join_path(join_path(src, "final"), "projector_config.json")))
    final_dir = join_path(src, "final");
  const std::string map_path = join_path(final_dir, "projector_config.json");
  C2C_CHECK(file_exists(map_path), "no official fuser checkpoint in ", src, ": ", map_path,
            " is missing\nHINT: pass the <pair>_Fuser folder or its final/ subfolder");
  const nlohmann::json mapping = read_json(map_path);
  C2C_CHECK(mapping.is_object() && mapping.size() == 1 && mapping.begin()->is_object(), map_path,
            ": expected {\"<receiver>\": {\"<sharer>\": {\"<layer>\": [[s, i]]}}}");

  FuserCheckpoint ckpt;
  ckpt.multi_sharer = MultiSharerMode::sequential;
  ckpt.source = {{"imported_from", src}, {"layout", "official C2C (projector_{i}.pt)"}};
  // The recipe beside final/ may name the models.
  const std::string recipe = join_path(join_path(final_dir, ".."), "config.json");
  std::string sharer_name;
  if (file_exists(recipe)) {
    try {
      const nlohmann::json r = read_json(recipe);
      if (r.contains("model") && r["model"].is_object()) {
        ckpt.receiver_model = r["model"].value("base_model", "");
        sharer_name = r["model"].value("teacher_model", "");
      }
    } catch (const std::exception&) {
      // Provenance only: a recipe we cannot read does not stop the import.
    }
  }

  // Sharers in numeric order of their index.
  const nlohmann::json& per_sharer = mapping.begin().value();
  std::vector<std::pair<int64_t, std::string>> sharer_keys;
  for (auto it = per_sharer.begin(); it != per_sharer.end(); ++it)
    sharer_keys.emplace_back(layer_number(it.key(), map_path), it.key());
  std::sort(sharer_keys.begin(), sharer_keys.end());
  torch::Dtype set_dtype = torch::kFloat32;
  for (const auto& [index, key] : sharer_keys) {
    const nlohmann::json& layers = per_sharer[key];
    C2C_CHECK(layers.is_object() && !layers.empty(), map_path, ": sharer '", key,
              "' must map receiver layers to [[sharer_layer, fuser_index], ...]");
    std::vector<std::pair<LayerPair, int64_t>> entries;  // (pair, projector index)
    for (auto it = layers.begin(); it != layers.end(); ++it) {
      const auto& list = it.value();
      C2C_CHECK(list.is_array() && !list.empty() && list[0].is_array() && list[0].size() == 2 &&
                    list[0][0].is_number_integer() && list[0][1].is_number_integer(),
                map_path, ": receiver layer '", it.key(),
                "' must map to [[sharer_layer, fuser_index], ...], got ", list.dump());
      // The first pair per receiver layer is used (the reference's behaviour).
      entries.push_back({{layer_number(it.key(), map_path), list[0][0].get<int64_t>()},
                         list[0][1].get<int64_t>()});
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.first.receiver < b.first.receiver; });

    FuserSet set;
    set.sharer_model = sharer_keys.size() == 1 ? sharer_name : "";
    set.alignment = "reference_longest";
    set.layer_map.method = "explicit";
    std::string first_json;
    for (size_t i = 0; i < entries.size(); ++i) {
      set.layer_map.pairs.push_back(entries[i].first);
      const std::string base = join_path(final_dir, "projector_" + std::to_string(entries[i].second));
      torch::Dtype dtype;
      const FuserConfig config = official_config(base + ".json", &dtype);
      if (i == 0) {
        set.config = config;
        set_dtype = dtype;
        first_json = base + ".json";
        set.fuser = StackedFuser(config, static_cast<int64_t>(entries.size()));
        set.fuser->to(dtype);
      } else {
        C2C_CHECK(config.to_json() == set.config.to_json() && dtype == set_dtype, base,
                  ".json: its config ", config.to_json().dump(), " (", dtype_name(dtype),
                  ") differs from ", first_json, "'s ", set.config.to_json().dump(),
                  "\nHINT: one sharer's fusers must share their shapes to be stacked");
      }
      std::map<std::string, torch::Tensor> state;
      for (auto& [name, t] : read_torch_state_dict(base + ".pt")) state[name] = t;
      set.fuser->load_layer_state(static_cast<int64_t>(i), state, base + ".pt");
    }
    set.layer_map.validate(int64_t(1) << 20, int64_t(1) << 20);
    ckpt.sharers.push_back(std::move(set));
  }
  return ckpt;
}

}  // namespace c2c
