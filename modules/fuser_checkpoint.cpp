// Fuser checkpoints in our safetensors + JSON format, with strict loading (fuser_checkpoint.h).
// The official layout's import is official_checkpoint.cpp, its torch.save reader torch_pickle.cpp.
#include "modules/fuser_checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "modules/common/error.h"
#include "modules/common/fingerprint.h"
#include "modules/common/files.h"
#include "modules/safetensors.h"

namespace c2c {

torch::Dtype parse_dtype_name(const std::string& name) {
  if (name == "float32" || name == "float") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16" || name == "half") return torch::kFloat16;
  fail("unsupported fuser dtype '", name, "'\nHINT: use float32, bfloat16 or float16");
}

std::string dtype_name(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: fail("unsupported fuser dtype ", c10::toString(dtype));
  }
}

// ---- our format ----------------------------------------------------------------------------

namespace {

const char* kFormat = "c2c-fuser";

std::string tensor_prefix(size_t sharer, int64_t receiver_layer) {
  return "sharer" + std::to_string(sharer) + ".layer" + std::to_string(receiver_layer) + ".";
}

void make_dirs(const std::string& dir) {
  std::string partial;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!partial.empty() && !is_directory(partial)) {
        C2C_CHECK(::mkdir(partial.c_str(), 0755) == 0 || is_directory(partial),
                  "cannot create folder ", partial);
      }
    }
    if (i < dir.size()) partial += dir[i];
  }
}

std::string json_string(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) return "";
  C2C_CHECK(j[key].is_string(), where, ": '", key, "' must be a string, got ", j[key].dump());
  return j[key].get<std::string>();
}

void check_keys(const nlohmann::json& j, const std::set<std::string>& known,
                const std::string& where) {
  for (auto it = j.begin(); it != j.end(); ++it)
    C2C_CHECK(known.count(it.key()), where, ": unknown key '", it.key(), "'");
}

}  // namespace

std::string model_fingerprint(const std::string& dir) {
  Fingerprint f;
  f.feed(read_file(join_path(dir, "config.json")));
  std::vector<std::filesystem::path> weights;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".safetensors" && e.path().filename() != "golden.safetensors")
      weights.push_back(e.path());
  std::sort(weights.begin(), weights.end());
  constexpr int64_t kSample = 1 << 20;
  for (const auto& w : weights) {
    const auto size = static_cast<int64_t>(std::filesystem::file_size(w));
    f.feed(w.filename().string() + ":" + std::to_string(size));
    std::ifstream in(w, std::ios::binary);
    const int64_t n = std::min(size, kSample);
    std::string chunk(static_cast<size_t>(n), '\0');
    in.seekg((size - n) / 2);
    in.read(chunk.data(), n);
    C2C_CHECK(in.good() || in.eof(), "cannot read ", w.string());
    f.feed(chunk);
  }
  return f.str();
}

void save_fuser_checkpoint(const std::string& dir, const FuserCheckpoint& ckpt) {
  C2C_CHECK(!ckpt.sharers.empty(), "fuser checkpoint for ", dir, " has no sharer");
  make_dirs(dir);
  NamedTensors tensors;
  nlohmann::json sharers = nlohmann::json::array();
  std::string dtype;
  for (size_t j = 0; j < ckpt.sharers.size(); ++j) {
    const FuserSet& set = ckpt.sharers[j];
    C2C_CHECK(!set.fuser.is_empty(), "sharer ", j, " has no fuser");
    C2C_CHECK(set.layer_map.size() == set.fuser->num_fusers(), "sharer ", j, ": layer map has ",
              set.layer_map.size(), " pairs, the fuser set ", set.fuser->num_fusers(), " layers");
    const std::string d = dtype_name(set.fuser->dtype());
    C2C_CHECK(dtype.empty() || dtype == d, "all fuser sets of a checkpoint must share a dtype, ",
              "got ", dtype, " and ", d);
    dtype = d;
    for (int64_t i = 0; i < set.fuser->num_fusers(); ++i) {
      const std::string prefix = tensor_prefix(j, set.layer_map.pairs[i].receiver);
      for (auto& [name, t] : set.fuser->layer_state(i))
        tensors.emplace_back(prefix + name, t.detach());
    }
    nlohmann::json e = {{"sharer_model", set.sharer_model},
                        {"alignment", set.alignment},
                        {"layer_map", set.layer_map.to_json()},
                        {"fuser", set.fuser->config().to_json()}};
    if (!set.sharer_fingerprint.empty()) e["sharer_fingerprint"] = set.sharer_fingerprint;
    sharers.push_back(e);
  }
  save_safetensors(join_path(dir, "fuser.safetensors"), tensors,
                   {{"format", kFormat}, {"format_version", std::to_string(kFuserCheckpointVersion)}});
  nlohmann::json j = {{"format", kFormat},
                      {"format_version", kFuserCheckpointVersion},
                      {"receiver_model", ckpt.receiver_model},
                      {"multi_sharer", multi_sharer_mode_name(ckpt.multi_sharer)},
                      {"dtype", dtype},
                      {"sharers", sharers},
                      {"source", ckpt.source}};
  if (!ckpt.receiver_fingerprint.empty()) j["receiver_fingerprint"] = ckpt.receiver_fingerprint;
  write_file_atomic(join_path(dir, "fuser.json"), j.dump(2) + "\n");
}

FuserCheckpoint load_fuser_checkpoint(const std::string& dir, c10::optional<torch::Dtype> dtype) {
  const std::string json_path = join_path(dir, "fuser.json");
  C2C_CHECK(file_exists(json_path), "no fuser checkpoint in ", dir, ": ", json_path,
            " is missing\nHINT: official checkpoints (projector_*.pt) are converted with "
            "`c2c import-official SRC_DIR DST_DIR`");
  const nlohmann::json j = read_json(json_path);
  C2C_CHECK(j.is_object(), json_path, ": must be a JSON object");
  check_keys(j, {"format", "format_version", "receiver_model", "receiver_fingerprint",
                 "multi_sharer", "dtype", "sharers", "source"},
             json_path);
  C2C_CHECK(json_string(j, "format", json_path) == kFormat, json_path, ": 'format' must be '",
            kFormat, "'");
  C2C_CHECK(j.contains("format_version") && j["format_version"].is_number_integer() &&
                j["format_version"].get<int>() == kFuserCheckpointVersion,
            json_path, ": format_version ", j.value("format_version", nlohmann::json()).dump(),
            " is not the supported version ", kFuserCheckpointVersion,
            "\nHINT: re-save the fuser with this version of c2c");
  FuserCheckpoint ckpt;
  ckpt.receiver_model = json_string(j, "receiver_model", json_path);
  if (j.contains("receiver_fingerprint"))
    ckpt.receiver_fingerprint = json_string(j, "receiver_fingerprint", json_path);
  if (j.contains("multi_sharer"))
    ckpt.multi_sharer = parse_multi_sharer_mode(json_string(j, "multi_sharer", json_path));
  if (j.contains("source")) ckpt.source = j["source"];
  const torch::Dtype stored = parse_dtype_name(json_string(j, "dtype", json_path));
  const torch::Dtype want = dtype ? *dtype : stored;
  C2C_CHECK(j.contains("sharers") && j["sharers"].is_array() && !j["sharers"].empty(), json_path,
            ": 'sharers' must be a non-empty list");

  const std::string st_path = join_path(dir, "fuser.safetensors");
  auto file = SafetensorsFile::open(st_path);
  auto meta = file->metadata();
  C2C_CHECK(meta["format"] == kFormat &&
                meta["format_version"] == std::to_string(kFuserCheckpointVersion),
            st_path, ": metadata format/version is '", meta["format"], "'/'",
            meta["format_version"], "', expected '", kFormat, "'/'", kFuserCheckpointVersion,
            "'\nHINT: write it with save_fuser_checkpoint or `c2c import-official`");
  std::set<std::string> expected;
  for (size_t s = 0; s < j["sharers"].size(); ++s) {
    const auto& e = j["sharers"][s];
    const std::string where = c2c::str(json_path, " sharers[", s, "]");
    C2C_CHECK(e.is_object(), where, ": must be an object");
    check_keys(e, {"sharer_model", "alignment", "layer_map", "fuser", "sharer_fingerprint"}, where);
    C2C_CHECK(e.contains("layer_map") && e.contains("fuser"), where,
              ": needs 'layer_map' and 'fuser'");
    FuserSet set;
    set.sharer_model = json_string(e, "sharer_model", where);
    if (e.contains("alignment")) set.alignment = json_string(e, "alignment", where);
    if (e.contains("sharer_fingerprint"))
      set.sharer_fingerprint = json_string(e, "sharer_fingerprint", where);
    set.layer_map = LayerMap::from_json(e["layer_map"], where + " layer_map");
    set.layer_map.validate(int64_t(1) << 20, int64_t(1) << 20);  // ranges unknown here
    set.config = FuserConfig::from_json(e["fuser"], where + " fuser");
    set.fuser = StackedFuser(set.config, set.layer_map.size());
    set.fuser->to(want);
    for (int64_t i = 0; i < set.layer_map.size(); ++i) {
      const int64_t t = set.layer_map.pairs[i].receiver;
      const std::string prefix = tensor_prefix(s, t);
      std::map<std::string, torch::Tensor> state;
      for (const auto& [name, shape] : StackedFuserImpl::layer_state_shapes(set.config)) {
        expected.insert(prefix + name);
        if (file->contains(prefix + name)) state[name] = file->load_as_stored(prefix + name);
      }
      set.fuser->load_layer_state(i, state, c2c::str(st_path, " (tensors '", prefix, "*')"));
    }
    ckpt.sharers.push_back(std::move(set));
  }
  for (const auto& name : file->names())
    C2C_CHECK(expected.count(name), st_path, ": unexpected tensor '", name,
              "' (no sharer/receiver layer of fuser.json owns it)");
  return ckpt;
}

}  // namespace c2c
