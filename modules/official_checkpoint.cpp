// The import of the official C2C fuser layout (official_checkpoint.h).
#include "modules/official_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <sstream>
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

// ---- official export -----------------------------------------------------------------------

namespace {

// One fuser's projector_{i}.json, keys in the reference's order.
nlohmann::ordered_json projector_json(const FuserConfig& c, torch::Dtype dtype) {
  nlohmann::ordered_json a;
  a["source_dim"] = c.source_head_dim;
  a["target_dim"] = c.target_head_dim;
  a["source_num_heads"] = c.source_num_heads;
  a["target_num_heads"] = c.target_num_heads;
  a["hidden_dim"] = c.hidden_dim;
  a["intermediate_dim"] = c.intermediate_dim;
  a["num_layers"] = c.num_layers;
  a["dropout"] = c.dropout;
  a["initial_temperature"] = c.initial_temperature;
  a["final_temperature"] = c.final_temperature;
  a["anneal_steps"] = c.anneal_steps;
  a["dtype"] = {{"__type__", "torch.dtype"}, {"value", dtype_name(dtype)}};
  nlohmann::ordered_json j;
  j["class"] = "C2CProjector";
  j["init_args"] = a;
  return j;
}

// The accuracies of a `c2c eval` report.json as Markdown lines ("" when none).
std::string accuracy_lines(const std::string& report_path) {
  if (report_path.empty()) return "";
  const nlohmann::json r = read_json(report_path);
  C2C_CHECK(r.is_object() && r.contains("results") && r["results"].is_object(), report_path,
            ": not a `c2c eval` report.json (no \"results\")");
  std::ostringstream md;
  for (const auto& [method, benches] : r["results"].items())
    for (const auto& [bench, res] : benches.items())
      md << "| " << method << " | " << bench << " | " << std::fixed << std::setprecision(1)
         << 100.0 * res.value("accuracy", 0.0) << "% (" << res.value("correct", 0) << "/"
         << res.value("n", 0) << ") |\n";
  return md.str();
}

}  // namespace

std::vector<std::string> export_official_checkpoint(const FuserCheckpoint& ckpt,
                                                    const std::string& out_dir,
                                                    const OfficialExportOptions& options) {
  C2C_CHECK(!ckpt.sharers.empty(), "export-official: the fuser checkpoint has no sharer");
  C2C_CHECK(options.dtype == torch::kFloat32 || options.dtype == torch::kBFloat16,
            "export-official: dtype ", dtype_name(options.dtype),
            " is not one the official checkpoints use\nHINT: use bfloat16 (as published) or float32");
  namespace fs = std::filesystem;
  C2C_CHECK(!fs::exists(out_dir) || (fs::is_directory(out_dir) && fs::is_empty(out_dir)),
            "export-official: ", out_dir, " exists and is not an empty folder\nHINT: give a new "
            "folder; an export never writes over another one");
  std::vector<std::string> warnings;
  for (size_t j = 0; j < ckpt.sharers.size(); ++j) {
    const FuserSet& set = ckpt.sharers[j];
    const auto& spec = fuser_variant_spec(set.config.variant);
    C2C_CHECK(spec.combine == FuserVariantSpec::Combine::gated, "export-official: sharer ", j,
              "'s fuser is the '", spec.name, "' ablation; the reference's C2CProjector always ",
              "gates (X_r + g * alpha * p), so it would run other math on these weights\nHINT: "
              "only fusers of the method (fuser.variant: full) export to the official layout");
    if (set.alignment.rfind("reference_", 0) != 0)
      warnings.push_back(c2c::str("sharer ", j, " was trained with the '", set.alignment,
                                  "' token alignment, which the reference code does not implement; "
                                  "the weights stay meaningful, but run them with that alignment"));
  }
  if (ckpt.multi_sharer == MultiSharerMode::parallel && ckpt.sharers.size() > 1)
    warnings.push_back("the fuser sets were trained in the parallel multi-sharer mode; the layout "
                       "records each sharer's map, not the mode");

  const std::string tmp = out_dir + ".tmp-export";
  const std::string final_dir = join_path(tmp, "final");
  try {
    fs::remove_all(tmp);
    fs::create_directories(final_dir);
  } catch (const std::exception& e) {
    fail("export-official: cannot write ", out_dir, " (", e.what(), ")\nHINT: give a folder "
         "in a writable place");
  }
  nlohmann::ordered_json per_sharer;
  int64_t index = 0;
  for (size_t j = 0; j < ckpt.sharers.size(); ++j) {
    const FuserSet& set = ckpt.sharers[j];
    nlohmann::ordered_json layers;
    for (int64_t i = 0; i < set.fuser->num_fusers(); ++i, ++index) {
      const std::string base = join_path(final_dir, "projector_" + std::to_string(index));
      std::vector<std::pair<std::string, torch::Tensor>> state;
      // Every tensor in options.dtype, the gate_temperature buffer included, as
      // torch.save(projector.to(dtype).state_dict()) writes it.
      for (const auto& [name, t] : set.fuser->layer_state(i))
        state.emplace_back(name, t.detach().to(torch::kCPU, options.dtype).contiguous());
      write_torch_state_dict(base + ".pt", state);
      write_file_atomic(base + ".json", projector_json(set.config, options.dtype).dump(2));
      const LayerPair& pair = set.layer_map.pairs.at(static_cast<size_t>(i));
      layers[std::to_string(pair.receiver)] = nlohmann::ordered_json::array({{pair.sharer, index}});
    }
    per_sharer[std::to_string(j + 1)] = layers;  // model 0 is the receiver
  }
  nlohmann::ordered_json mapping;
  mapping["0"] = per_sharer;
  write_file_atomic(join_path(final_dir, "projector_config.json"), mapping.dump(2));

  nlohmann::ordered_json config;
  config["model"] = {{"base_model", ckpt.receiver_model},
                     {"teacher_model", ckpt.sharers[0].sharer_model}};
  nlohmann::ordered_json c2c_section = {{"exported_by", "c2c export-official"},
                                        {"multi_sharer", multi_sharer_mode_name(ckpt.multi_sharer)}};
  nlohmann::ordered_json sharers = nlohmann::ordered_json::array();
  for (const auto& set : ckpt.sharers)
    sharers.push_back({{"model", set.sharer_model},
                       {"alignment", set.alignment},
                       {"variant", fuser_variant_name(set.config.variant)},
                       {"layer_map", nlohmann::ordered_json::parse(set.layer_map.to_json().dump())}});
  c2c_section["sharers"] = sharers;
  if (!options.recipe_yaml.empty()) c2c_section["recipe_yaml"] = options.recipe_yaml;
  config["c2c"] = c2c_section;
  write_file_atomic(join_path(tmp, "config.json"), config.dump(2) + "\n");

  std::ostringstream card;
  card << "# C2C fuser: " << (ckpt.receiver_model.empty() ? "?" : ckpt.receiver_model) << " <- "
       << (ckpt.sharers[0].sharer_model.empty() ? "?" : ckpt.sharers[0].sharer_model) << "\n\n"
       << "Cache-to-Cache fuser (Fu et al., arXiv 2510.03215) in the official layout: "
       << "`final/projector_{i}.pt` (state dicts), `final/projector_{i}.json` (init_args), "
       << "`final/projector_config.json` (layer map); exported by `c2c export-official` in "
       << dtype_name(options.dtype) << ".\n\n"
       << "| sharer | model | alignment | variant | fused receiver layers |\n|---|---|---|---|---|\n";
  for (size_t j = 0; j < ckpt.sharers.size(); ++j) {
    const auto& set = ckpt.sharers[j];
    std::string layers;
    for (const auto& pr : set.layer_map.pairs)
      layers += (layers.empty() ? "" : ", ") + std::to_string(pr.receiver) + "<-" + std::to_string(pr.sharer);
    card << "| " << j << " | " << set.sharer_model << " | " << set.alignment << " | "
         << fuser_variant_name(set.config.variant) << " | " << layers << " |\n";
  }
  const FuserConfig& c = ckpt.sharers[0].config;
  card << "\nFuser: hidden " << c.hidden_dim << ", intermediate " << c.intermediate_dim << ", "
       << c.num_layers << " layers, dropout " << c.dropout << ", gate temperature "
       << c.initial_temperature << " -> " << c.final_temperature << " over " << c.anneal_steps
       << " steps; " << c.parameters_per_layer() << " parameters per fused layer.\n";
  if (!options.recipe_yaml.empty())
    card << "\nThe training recipe (data, steps, optimizer):\n\n```yaml\n" << options.recipe_yaml << "```\n";
  if (const std::string acc = accuracy_lines(options.eval_report); !acc.empty())
    card << "\nMeasured with `c2c eval` (" << options.eval_report << "):\n\n| method | benchmark | accuracy |\n"
         << "|---|---|---|\n" << acc;
  for (const auto& w : warnings) card << "\nNote: " << w << ".\n";
  write_file_atomic(join_path(tmp, "README.md"), card.str());

  if (fs::exists(out_dir)) fs::remove(out_dir);  // empty, checked above
  fs::rename(tmp, out_dir);
  return warnings;
}

}  // namespace c2c
