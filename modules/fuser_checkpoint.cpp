// Fuser checkpoints: our safetensors + JSON format, strict loading, and the official import with
// a minimal reader for torch.save'd state dicts. Formats are described in fuser_checkpoint.h.
#include "modules/fuser_checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "modules/common/error.h"
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

// ---- a minimal unpickler for torch.save'd state dicts --------------------------------------

namespace {

struct PyObj;
using Obj = std::shared_ptr<PyObj>;

struct PyObj {
  enum Kind { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kTensor } kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s;  // string, or "module.name" for a global
  std::vector<Obj> items;                        // tuple / list
  std::vector<std::pair<Obj, Obj>> dict;         // dict, insertion order
  torch::Tensor tensor;
};

Obj make(PyObj::Kind kind) {
  auto o = std::make_shared<PyObj>();
  o->kind = kind;
  return o;
}

torch::Dtype storage_dtype(const std::string& global, const std::string& path) {
  static const std::map<std::string, torch::Dtype> kinds = {
      {"torch.FloatStorage", torch::kFloat32}, {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.HalfStorage", torch::kFloat16},  {"torch.DoubleStorage", torch::kFloat64},
      {"torch.LongStorage", torch::kInt64},    {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},   {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},    {"torch.BoolStorage", torch::kBool}};
  auto it = kinds.find(global);
  C2C_CHECK(it != kinds.end(), path, ": unsupported storage type '", global, "'");
  return it->second;
}

class StateDictUnpickler {
 public:
  StateDictUnpickler(const std::string& path, caffe2::serialize::PyTorchStreamReader& reader,
                     const uint8_t* data, size_t size)
      : path_(path), reader_(reader), begin_(data), p_(data), end_(data + size) {}

  Obj run() {
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;           // PROTO
        case 0x95: bytes(8); break;         // FRAME
        case '(': marks_.push_back(stack_.size()); break;
        case '.': C2C_CHECK(stack_.size() == 1, path_, ": pickle ended with ", stack_.size(),
                            " objects on the stack"); return stack_.back();
        case 'N': stack_.push_back(make(PyObj::kNone)); break;
        case 0x88: case 0x89: { auto o = make(PyObj::kBool); o->i = op == 0x88; push(o); break; }
        case 'K': push_int(byte()); break;
        case 'M': { uint16_t v; std::memcpy(&v, bytes(2), 2); push_int(v); break; }
        case 'J': { int32_t v; std::memcpy(&v, bytes(4), 4); push_int(v); break; }
        case 0x8a: {  // LONG1: little-endian two's complement
          const size_t n = byte();
          C2C_CHECK(n <= 8, path_, ": integer of ", n, " bytes in the pickle");
          const uint8_t* b = bytes(n);
          int64_t v = 0;
          for (size_t k = 0; k < n; ++k) v |= static_cast<int64_t>(b[k]) << (8 * k);
          if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v -= int64_t(1) << (8 * n);
          push_int(v);
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          const uint8_t* b = bytes(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | b[k];
          auto o = make(PyObj::kFloat);
          std::memcpy(&o->f, &bits, 8);
          push(o);
          break;
        }
        case 'X': { uint32_t n; std::memcpy(&n, bytes(4), 4); push_str(n); break; }
        case 0x8c: push_str(byte()); break;
        case 0x8d: { uint64_t n; std::memcpy(&n, bytes(8), 8); push_str(n); break; }
        case 'c': {
          std::string module = line(), name = line();
          auto o = make(PyObj::kGlobal);
          o->s = module + "." + name;
          push(o);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Obj name = pop(), module = pop();
          auto o = make(PyObj::kGlobal);
          o->s = module->s + "." + name->s;
          push(o);
          break;
        }
        case ')': push(make(PyObj::kTuple)); break;
        case 't': { auto o = make(PyObj::kTuple); o->items = pop_mark(); push(o); break; }
        case 0x85: case 0x86: case 0x87: {
          auto o = make(PyObj::kTuple);
          o->items.resize(op - 0x84);
          for (size_t k = o->items.size(); k-- > 0;) o->items[k] = pop();
          push(o);
          break;
        }
        case ']': push(make(PyObj::kList)); break;
        case 'a': { Obj v = pop(); top()->items.push_back(v); break; }
        case 'e': { auto v = pop_mark(); for (auto& x : v) top()->items.push_back(x); break; }
        case '}': push(make(PyObj::kDict)); break;
        case 's': { Obj v = pop(), k = pop(); top()->dict.emplace_back(k, v); break; }
        case 'u': {
          auto v = pop_mark();
          C2C_CHECK(v.size() % 2 == 0, path_, ": odd SETITEMS in the pickle");
          for (size_t k = 0; k < v.size(); k += 2) top()->dict.emplace_back(v[k], v[k + 1]);
          break;
        }
        case 'q': memo_[byte()] = top(); break;
        case 'r': { uint32_t n; std::memcpy(&n, bytes(4), 4); memo_[n] = top(); break; }
        case 0x94: memo_[memo_.size()] = top(); break;
        case 'h': push(memo(byte())); break;
        case 'j': { uint32_t n; std::memcpy(&n, bytes(4), 4); push(memo(n)); break; }
        case 'Q': push(persistent(pop())); break;
        case 'R': { Obj args = pop(), fn = pop(); push(reduce(fn, args)); break; }
        case 'b': pop(); break;  // BUILD: a state dict's _metadata; not needed
        default:
          fail(path_, ": unsupported pickle opcode ", int(op), " at byte ",
               p_ - 1 - begin_,
               "\nHINT: only torch.save'd state dicts of tensors can be read");
      }
    }
  }

 private:
  uint8_t byte() { return *bytes(1); }
  const uint8_t* bytes(size_t n) {
    C2C_CHECK(static_cast<size_t>(end_ - p_) >= n, path_, ": pickle data is truncated");
    const uint8_t* b = p_;
    p_ += n;
    return b;
  }
  std::string line() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', end_ - p_));
    C2C_CHECK(nl != nullptr, path_, ": pickle data is truncated");
    std::string s(reinterpret_cast<const char*>(p_), nl - p_);
    p_ = nl + 1;
    return s;
  }
  void push(Obj o) { stack_.push_back(std::move(o)); }
  void push_int(int64_t v) { auto o = make(PyObj::kInt); o->i = v; push(o); }
  void push_str(size_t n) {
    auto o = make(PyObj::kStr);
    o->s.assign(reinterpret_cast<const char*>(bytes(n)), n);
    push(o);
  }
  Obj pop() {
    C2C_CHECK(!stack_.empty(), path_, ": malformed pickle (stack underflow)");
    Obj o = stack_.back();
    stack_.pop_back();
    return o;
  }
  Obj top() {
    C2C_CHECK(!stack_.empty(), path_, ": malformed pickle (stack underflow)");
    return stack_.back();
  }
  std::vector<Obj> pop_mark() {
    C2C_CHECK(!marks_.empty() && marks_.back() <= stack_.size(), path_, ": malformed pickle");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Obj> v(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return v;
  }
  Obj memo(size_t k) {
    auto it = memo_.find(k);
    C2C_CHECK(it != memo_.end(), path_, ": malformed pickle (memo ", k, " unset)");
    return it->second;
  }
  static std::vector<int64_t> ints(const Obj& tuple, const std::string& path) {
    C2C_CHECK(tuple->kind == PyObj::kTuple, path, ": expected a tuple of sizes/strides");
    std::vector<int64_t> v;
    for (const auto& x : tuple->items) v.push_back(x->i);
    return v;
  }

  // ('storage', <torch.XStorage>, key, location, numel) -> a flat tensor of the record data/key.
  Obj persistent(const Obj& pid) {
    C2C_CHECK(pid->kind == PyObj::kTuple && pid->items.size() >= 5 &&
                  pid->items[0]->s == "storage",
              path_, ": unsupported persistent id in the pickle");
    const std::string key = pid->items[2]->s;
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      const torch::Dtype dtype = storage_dtype(pid->items[1]->s, path_);
      const int64_t numel = pid->items[4]->i;
      at::DataPtr ptr;
      size_t size = 0;
      std::tie(ptr, size) = reader_.getRecord("data/" + key);
      const size_t want = static_cast<size_t>(numel) * c10::elementSize(dtype);
      C2C_CHECK(size == want, path_, ": storage data/", key, " holds ", size, " bytes, expected ",
                want);
      torch::Tensor t = torch::empty({numel}, torch::dtype(dtype));
      if (size) std::memcpy(t.data_ptr(), ptr.get(), size);
      it = storages_.emplace(key, t).first;
    }
    auto o = make(PyObj::kTensor);
    o->tensor = it->second;
    return o;
  }

  Obj reduce(const Obj& fn, const Obj& args) {
    C2C_CHECK(fn->kind == PyObj::kGlobal && args->kind == PyObj::kTuple, path_,
              ": unsupported call in the pickle");
    if (fn->s == "collections.OrderedDict") return make(PyObj::kDict);
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      C2C_CHECK(args->items.size() >= 4 && args->items[0]->kind == PyObj::kTensor, path_,
                ": malformed _rebuild_tensor_v2 call");
      auto o = make(PyObj::kTensor);
      o->tensor = args->items[0]
                      ->tensor.as_strided(ints(args->items[2], path_), ints(args->items[3], path_),
                                          args->items[1]->i)
                      .clone();
      return o;
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      C2C_CHECK(!args->items.empty(), path_, ": malformed _rebuild_parameter call");
      return args->items[0];
    }
    fail(path_, ": unsupported object '", fn->s,
         "' in the pickle\nHINT: only state dicts of plain tensors can be read");
  }

  std::string path_;
  caffe2::serialize::PyTorchStreamReader& reader_;
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  std::vector<Obj> stack_;
  std::vector<size_t> marks_;
  std::map<size_t, Obj> memo_;
  std::map<std::string, torch::Tensor> storages_;
};

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> read_torch_state_dict(const std::string& path) {
  C2C_CHECK(file_exists(path), "state dict file not found: ", path);
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    at::DataPtr data;
    size_t size = 0;
    std::tie(data, size) = reader.getRecord("data.pkl");
    StateDictUnpickler unpickler(path, reader, static_cast<const uint8_t*>(data.get()), size);
    Obj root = unpickler.run();
    C2C_CHECK(root->kind == PyObj::kDict, path, ": the pickle does not hold a dict");
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (const auto& [k, v] : root->dict) {
      C2C_CHECK(k->kind == PyObj::kStr && v->kind == PyObj::kTensor, path,
                ": state dict entries must map names to tensors");
      out.emplace_back(k->s, v->tensor);
    }
    return out;
  } catch (const c10::Error& e) {
    fail(path, ": not a readable torch.save zip archive: ", e.what_without_backtrace(),
         "\nHINT: re-save it with torch.save(state_dict, path) (PyTorch >= 1.6, zip format)");
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
    sharers.push_back({{"sharer_model", set.sharer_model},
                       {"alignment", set.alignment},
                       {"layer_map", set.layer_map.to_json()},
                       {"fuser", set.fuser->config().to_json()}});
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
  write_file_atomic(join_path(dir, "fuser.json"), j.dump(2) + "\n");
}

FuserCheckpoint load_fuser_checkpoint(const std::string& dir, c10::optional<torch::Dtype> dtype) {
  const std::string json_path = join_path(dir, "fuser.json");
  C2C_CHECK(file_exists(json_path), "no fuser checkpoint in ", dir, ": ", json_path,
            " is missing\nHINT: official checkpoints (projector_*.pt) are converted with "
            "`c2c import-official SRC_DIR DST_DIR`");
  const nlohmann::json j = read_json(json_path);
  C2C_CHECK(j.is_object(), json_path, ": must be a JSON object");
  check_keys(j, {"format", "format_version", "receiver_model", "multi_sharer", "dtype", "sharers",
                 "source"},
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
    check_keys(e, {"sharer_model", "alignment", "layer_map", "fuser"}, where);
    C2C_CHECK(e.contains("layer_map") && e.contains("fuser"), where,
              ": needs 'layer_map' and 'fuser'");
    FuserSet set;
    set.sharer_model = json_string(e, "sharer_model", where);
    if (e.contains("alignment")) set.alignment = json_string(e, "alignment", where);
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
