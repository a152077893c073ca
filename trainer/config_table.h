// The one configuration system of the CLI's YAML files (recipes, evaluation configs): a table
// of fields, each a dotted key with how to read it from YAML (type-checked, naming the file and
// the key) and how to write it back. Parsing walks a YAML mapping into the table (unknown keys
// are errors listing the known ones), then applies `--set key=value` overrides through the same
// readers; printing walks the table, so parser and printer cannot drift apart. Each config keeps
// its own validate() for ranges and cross-field rules.
#pragma once
#include <yaml-cpp/yaml.h>

#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "modules/common/error.h"

namespace c2c::config {

struct Field {
  std::string key;  // dotted: "train.lr"
  std::function<void(const YAML::Node&, const std::string& where)> read;
  std::function<void(YAML::Emitter&)> write;
};

template <typename T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean (true/false)";
  if constexpr (std::is_integral_v<T>) return "an integer";
  if constexpr (std::is_floating_point_v<T>) return "a number";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  return "a list of strings";
}

// A field bound to `ref`: bool, integers (integral floats such as 1e3 accepted), floating point,
// strings, or lists of strings (a single scalar is a one-element list).
template <typename T>
Field field(const std::string& key, T& ref) {
  Field f;
  f.key = key;
  f.read = [key, &ref](const YAML::Node& node, const std::string& where) {
    try {
      if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        if (node.IsScalar()) {
          ref = {node.as<std::string>()};
          return;
        }
        if (!node.IsSequence()) throw YAML::Exception(YAML::Mark(), "not a list");
        ref.clear();
        for (const auto& x : node) ref.push_back(x.as<std::string>());
      } else {
        if (!node.IsScalar()) throw YAML::Exception(YAML::Mark(), "not a scalar");
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          const double d = node.as<double>();
          if (d != static_cast<double>(static_cast<T>(d))) throw YAML::Exception(YAML::Mark(), "");
          ref = static_cast<T>(d);
        } else {
          ref = node.as<T>();
        }
      }
    } catch (const YAML::Exception&) {
      std::ostringstream v;
      v << node;
      fail(where, ": key '", key, "' must be ", type_name<T>(), ", got '", v.str(), "'");
    }
  };
  f.write = [&ref](YAML::Emitter& out) {
    if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      out << YAML::Flow << ref;
    } else {
      out << ref;
    }
  };
  return f;
}

// A field holding one of a closed list of names (an enum): `parse` turns the YAML string into the
// value (throwing, naming the accepted names, on another), `name` back.
template <typename E>
Field choice_field(const std::string& key, E& ref, E (*parse)(const std::string&),
                   const char* (*name)(E)) {
  Field f;
  f.key = key;
  f.read = [key, &ref, parse](const YAML::Node& node, const std::string& where) {
    std::string v;
    try {
      if (!node.IsScalar()) throw YAML::Exception(YAML::Mark(), "not a scalar");
      v = node.as<std::string>();
    } catch (const YAML::Exception&) {
      std::ostringstream s;
      s << node;
      fail(where, ": key '", key, "' must be a string, got '", s.str(), "'");
    }
    try {
      ref = parse(v);
    } catch (const Error& e) {
      fail(where, ": key '", key, "': ", e.what());
    }
  };
  f.write = [&ref, name](YAML::Emitter& out) { out << name(ref); };
  return f;
}

// Reads `text` (YAML, from `source`) into `table`, then the overrides ("key=value", values in
// YAML). `sections` are the keys that are mappings of further keys ("train" for "train.lr").
// `what` names the file kind in messages ("recipe", "eval config").
void parse(const std::string& text, const std::string& source, std::vector<Field>& table,
           const std::set<std::string>& sections, const std::vector<std::string>& overrides,
           const std::string& what);

// The table as YAML, one mapping per section, in table order.
std::string emit(std::vector<Field>& table);

}  // namespace c2c::config
