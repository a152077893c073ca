// Layer maps (last_aligned, k_nearest, explicit; parsed from strings or JSON) and the multi-sharer
// combination of fuser sets. Shape legend as in layer_map.h.
#include "modules/layer_map.h"

#include <algorithm>
#include <set>

#include "modules/common/error.h"

namespace c2c {

std::vector<int64_t> LayerMap::receiver_layers() const {
  std::vector<int64_t> r;
  for (const auto& p : pairs) r.push_back(p.receiver);
  return r;
}

std::vector<int64_t> LayerMap::sharer_layers() const {
  std::vector<int64_t> r;
  for (const auto& p : pairs) r.push_back(p.sharer);
  return r;
}

void LayerMap::validate(int64_t receiver_layers, int64_t sharer_layers) const {
  C2C_CHECK(!pairs.empty(), "layer map '", method, "' maps no layer");
  std::set<int64_t> seen;
  for (const auto& p : pairs) {
    C2C_CHECK(p.receiver >= 0 && p.receiver < receiver_layers, "layer map '", method,
              "': receiver layer ", p.receiver, " out of range [0, ", receiver_layers, ")");
    C2C_CHECK(p.sharer >= 0 && p.sharer < sharer_layers, "layer map '", method,
              "': sharer layer ", p.sharer, " (for receiver layer ", p.receiver,
              ") out of range [0, ", sharer_layers, ")");
    C2C_CHECK(seen.insert(p.receiver).second, "layer map '", method, "': receiver layer ",
              p.receiver, " is mapped twice\nHINT: one sharer layer per receiver layer");
  }
}

nlohmann::json LayerMap::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& p : pairs) list.push_back({p.receiver, p.sharer});
  return {{"method", method}, {"pairs", list}};
}

namespace {

LayerPair pair_from_json(const nlohmann::json& e, const std::string& where) {
  C2C_CHECK(e.is_array() && e.size() == 2 && e[0].is_number_integer() && e[1].is_number_integer(),
            where, ": a layer pair must be [receiver_layer, sharer_layer], got ", e.dump());
  return {e[0].get<int64_t>(), e[1].get<int64_t>()};
}

void sort_pairs(std::vector<LayerPair>& pairs) {
  std::stable_sort(pairs.begin(), pairs.end(),
                   [](const LayerPair& a, const LayerPair& b) { return a.receiver < b.receiver; });
}

int64_t parse_int(const std::string& s, const std::string& spec) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  C2C_CHECK(used > 0 && used == s.size(), "layer map '", spec, "': '", s,
            "' is not an integer\nHINT: write last_aligned, k_nearest, \"t:s,t:s\" or JSON");
  return v;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n\r") - b + 1);
}

}  // namespace

LayerMap LayerMap::from_json(const nlohmann::json& j, const std::string& where) {
  LayerMap m;
  if (j.is_array()) {  // [[t, s], ...]
    for (const auto& e : j) m.pairs.push_back(pair_from_json(e, where));
  } else if (j.is_object() && j.contains("pairs")) {  // our form
    for (auto it = j.begin(); it != j.end(); ++it)
      C2C_CHECK(it.key() == "method" || it.key() == "pairs", where,
                ": unknown layer map key '", it.key(), "'");
    if (j.contains("method")) {
      C2C_CHECK(j["method"].is_string(), where, ": layer map 'method' must be a string");
      m.method = j["method"].get<std::string>();
    }
    C2C_CHECK(j["pairs"].is_array(), where, ": layer map 'pairs' must be a list");
    for (const auto& e : j["pairs"]) m.pairs.push_back(pair_from_json(e, where));
  } else if (j.is_object()) {  // {"t": s, ...}
    for (auto it = j.begin(); it != j.end(); ++it) {
      C2C_CHECK(it.value().is_number_integer(), where, ": layer map entry '", it.key(),
                "' must map to an integer sharer layer, got ", it.value().dump());
      m.pairs.push_back({parse_int(it.key(), where), it.value().get<int64_t>()});
    }
  } else {
    fail(where, ": a layer map must be a list of [t, s] pairs or an object, got ", j.dump());
  }
  sort_pairs(m.pairs);
  return m;
}

LayerMap last_aligned_layer_map(int64_t T, int64_t S) {
  C2C_CHECK(T > 0 && S > 0, "layer map needs positive layer counts, got receiver ", T,
            " sharer ", S);
  LayerMap m;
  m.method = "last_aligned";
  for (int64_t t = 0; t < T; ++t) m.pairs.push_back({t, std::clamp<int64_t>(t + S - T, 0, S - 1)});
  return m;
}

LayerMap k_nearest_layer_map(int64_t T, int64_t S) {
  C2C_CHECK(T > 0 && S > 0, "layer map needs positive layer counts, got receiver ", T,
            " sharer ", S);
  LayerMap m;
  m.method = "k_nearest";
  for (int64_t t = 0; t < T; ++t) {
    int64_t s = S - 1;
    if (T > 1) {
      // Exact in integers: position t/(T-1) times (S-1), rounded half down.
      const int64_t num = t * (S - 1), den = T - 1;
      s = num / den + ((2 * (num % den) > den) ? 1 : 0);
    }
    m.pairs.push_back({t, s});
  }
  return m;
}

LayerMap explicit_layer_map(std::vector<LayerPair> pairs, int64_t T, int64_t S) {
  LayerMap m;
  m.method = "explicit";
  m.pairs = std::move(pairs);
  sort_pairs(m.pairs);
  m.validate(T, S);
  return m;
}

LayerMap parse_layer_map(const std::string& spec_in, int64_t T, int64_t S) {
  const std::string spec = trim(spec_in);
  if (spec == "last_aligned") return last_aligned_layer_map(T, S);
  if (spec == "k_nearest") return k_nearest_layer_map(T, S);
  LayerMap m;
  if (!spec.empty() && (spec[0] == '[' || spec[0] == '{')) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(spec);
    } catch (const nlohmann::json::exception& e) {
      fail("layer map '", spec, "' is not valid JSON: ", e.what());
    }
    m = LayerMap::from_json(j, "layer map");
  } else {
    C2C_CHECK(spec.find(':') != std::string::npos, "unknown layer map '", spec,
              "'\nHINT: use last_aligned, k_nearest, \"t:s,t:s,...\" or a JSON list of pairs");
    size_t start = 0;
    while (start <= spec.size()) {
      size_t comma = spec.find(',', start);
      if (comma == std::string::npos) comma = spec.size();
      const std::string item = trim(spec.substr(start, comma - start));
      const size_t colon = item.find(':');
      C2C_CHECK(colon != std::string::npos, "layer map '", spec, "': entry '", item,
                "' is not receiver:sharer");
      m.pairs.push_back({parse_int(trim(item.substr(0, colon)), spec),
                         parse_int(trim(item.substr(colon + 1)), spec)});
      start = comma + 1;
    }
    m.method = "explicit";
    sort_pairs(m.pairs);
  }
  m.validate(T, S);
  return m;
}

// ---- several sharers -----------------------------------------------------------------------

MultiSharerMode parse_multi_sharer_mode(const std::string& name) {
  if (name == "sequential") return MultiSharerMode::sequential;
  if (name == "parallel") return MultiSharerMode::parallel;
  fail("unknown multi-sharer mode '", name, "'\nHINT: use 'sequential' or 'parallel'");
}

const char* multi_sharer_mode_name(MultiSharerMode mode) {
  return mode == MultiSharerMode::parallel ? "parallel" : "sequential";
}

FusedCache fuse_multi_sharer(const std::vector<torch::Tensor>& receiver_key,
                             const std::vector<torch::Tensor>& receiver_value,
                             const std::vector<SharerCache>& sharers, MultiSharerMode mode) {
  C2C_CHECK(receiver_key.size() == receiver_value.size(), "receiver cache has ",
            receiver_key.size(), " key layers but ", receiver_value.size(), " value layers");
  const auto T = static_cast<int64_t>(receiver_key.size());
  FusedCache out{receiver_key, receiver_value};
  // Parallel: fp32 sums of every sharer's delta, per receiver layer, added once at the end.
  std::vector<torch::Tensor> sum_k(T), sum_v(T);
  for (size_t j = 0; j < sharers.size(); ++j) {
    const SharerCache& sc = sharers[j];
    StackedFuser fuser = sc.fuser;  // a handle; forward is not const
    C2C_CHECK(!sc.fuser.is_empty(), "sharer ", j, " has no fuser");
    C2C_CHECK(sc.key.size() == sc.value.size(), "sharer ", j, " cache has ", sc.key.size(),
              " key layers but ", sc.value.size(), " value layers");
    sc.map.validate(T, static_cast<int64_t>(sc.key.size()));
    C2C_CHECK(sc.map.size() == sc.fuser->num_fusers(), "sharer ", j, ": layer map has ",
              sc.map.size(), " pairs but the fuser set has ", sc.fuser->num_fusers(), " layers");
    const auto r_layers = sc.map.receiver_layers(), s_layers = sc.map.sharer_layers();
    const auto& base_k = mode == MultiSharerMode::sequential ? out.key : receiver_key;
    const auto& base_v = mode == MultiSharerMode::sequential ? out.value : receiver_value;
    // (2, Lf, B, H, N, D) each, keys then values, one copy each.
    auto s = stack_kv_layers(sc.key, sc.value, s_layers);
    auto r = stack_kv_layers(base_k, base_v, r_layers);
    // The 2 Lf layers of the result as one unbind (keys 0..Lf-1, values Lf..2Lf-1): its backward
    // is one stack, where per-layer indexing would add a zero-filled full-size gradient per layer.
    const auto n = static_cast<int64_t>(r_layers.size());
    auto layers_of = [n](const torch::Tensor& kv) {
      std::vector<int64_t> shape{2 * n};
      for (int64_t d = 2; d < kv.dim(); ++d) shape.push_back(kv.size(d));
      return kv.reshape(shape).unbind(0);
    };
    if (mode == MultiSharerMode::sequential) {
      auto fused = layers_of(fuser->forward_kv(s, r));
      for (int64_t i = 0; i < n; ++i) {
        out.key[r_layers[i]] = fused[i];
        out.value[r_layers[i]] = fused[n + i];
      }
    } else {
      auto d = layers_of(fuser->forward_kv(s, r, nullptr, /*delta=*/true));  // fp32 (fp64 fusers)
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = r_layers[i];
        sum_k[t] = sum_k[t].defined() ? sum_k[t] + d[i] : d[i];
        sum_v[t] = sum_v[t].defined() ? sum_v[t] + d[n + i] : d[n + i];
      }
    }
  }
  if (mode == MultiSharerMode::parallel) {
    for (int64_t t = 0; t < T; ++t) {
      if (!sum_k[t].defined()) continue;
      out.key[t] = (receiver_key[t].to(torch::kFloat32) + sum_k[t]).to(receiver_key[t].scalar_type());
      out.value[t] =
          (receiver_value[t].to(torch::kFloat32) + sum_v[t]).to(receiver_value[t].scalar_type());
    }
  }
  return out;
}

}  // namespace c2c
