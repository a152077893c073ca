// The configuration table's parser and printer (config_table.h).
#include "trainer/config_table.h"

#include <map>

namespace c2c::config {
namespace {

// Walks a YAML mapping, applying every leaf to its field; unknown keys are errors.
void apply(const YAML::Node& node, const std::string& prefix, std::map<std::string, Field*>& by_key,
           const std::set<std::string>& sections, const std::string& where,
           const std::string& what) {
  C2C_CHECK(node.IsMap(), where, ": ", prefix.empty() ? "the " + what : "section '" + prefix + "'",
            " must be a mapping of keys");
  for (const auto& kv : node) {
    const std::string name = kv.first.as<std::string>();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    if (sections.count(key)) {
      apply(kv.second, key, by_key, sections, where, what);
      continue;
    }
    auto it = by_key.find(key);
    if (it == by_key.end()) {
      std::string known;
      for (const auto& k : by_key)
        if (k.first.rfind(prefix, 0) == 0) known += (known.empty() ? "" : ", ") + k.first;
      fail(where, ": unknown key '", key, "'\nHINT: known keys", prefix.empty() ? "" : " here",
           ": ", known);
    }
    it->second->read(kv.second, where);
  }
}

}  // namespace

void parse(const std::string& text, const std::string& source, std::vector<Field>& table,
           const std::set<std::string>& sections, const std::vector<std::string>& overrides,
           const std::string& what) {
  std::map<std::string, Field*> by_key;
  for (auto& f : table) by_key[f.key] = &f;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(source, ": not valid YAML: ", e.what());
  }
  if (root.IsDefined() && !root.IsNull()) apply(root, "", by_key, sections, source, what);
  for (const auto& o : overrides) {
    const size_t eq = o.find('=');
    C2C_CHECK(eq != std::string::npos && eq > 0, "--set '", o, "': expected key=value");
    const std::string key = o.substr(0, eq);
    auto it = by_key.find(key);
    if (it == by_key.end()) {
      std::string known;
      for (const auto& k : by_key) known += (known.empty() ? "" : ", ") + k.first;
      fail("--set: unknown ", what, " key '", key, "'\nHINT: the keys are ", known);
    }
    YAML::Node value;
    try {
      value = YAML::Load(o.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      fail("--set ", key, ": value is not valid YAML: ", e.what());
    }
    if (!value.IsDefined() || value.IsNull()) value = YAML::Node(std::string());
    it->second->read(value, "--set");
  }
}

std::string emit(std::vector<Field>& table) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string section;
  for (auto& f : table) {
    const size_t dot = f.key.find('.');
    const std::string sec = dot == std::string::npos ? "" : f.key.substr(0, dot);
    if (sec != section) {
      if (!section.empty()) out << YAML::EndMap;
      if (!sec.empty()) out << YAML::Key << sec << YAML::Value << YAML::BeginMap;
      section = sec;
    }
    out << YAML::Key << (dot == std::string::npos ? f.key : f.key.substr(dot + 1)) << YAML::Value;
    f.write(out);
  }
  if (!section.empty()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace c2c::config
