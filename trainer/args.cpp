#include "trainer/args.h"

#include <cstdlib>

#include "modules/common/error.h"

namespace c2c::cli {

Args::Args(const std::string& command, const std::vector<std::string>& argv,
           const std::set<std::string>& flags)
    : command_(command) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      std::string key = a.substr(2), value;
      const size_t eq = key.find('=');
      if (eq != std::string::npos) {
        value = key.substr(eq + 1);
        key = key.substr(0, eq);
      } else if (flags.count(key)) {
        value = "1";
      } else {
        C2C_CHECK(i + 1 < argv.size(), command_, ": option --", key, " needs a value");
        value = argv[++i];
      }
      values_.emplace(key, value);
    } else {
      positional_.push_back(a);
    }
  }
}

bool Args::has(const std::string& key) const {
  used_.insert(key);
  return values_.count(key) != 0;
}

std::string Args::str(const std::string& key) const {
  used_.insert(key);
  auto it = values_.find(key);
  C2C_CHECK(it != values_.end(), command_, ": missing required option --", key,
            "\nHINT: run `c2c ", command_, " --help` for the options");
  return it->second;
}

std::string Args::str(const std::string& key, const std::string& fallback) const {
  used_.insert(key);
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second;
}

std::vector<std::string> Args::all(const std::string& key) const {
  used_.insert(key);
  std::vector<std::string> out;
  auto range = values_.equal_range(key);
  for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
  return out;
}

long long Args::integer(const std::string& key, long long fallback) const {
  if (!has(key)) return fallback;
  const std::string v = str(key);
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  C2C_CHECK(end && *end == '\0' && !v.empty(), command_, ": --", key,
            " expects an integer, got '", v, "'");
  return x;
}

double Args::number(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  const std::string v = str(key);
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  C2C_CHECK(end && *end == '\0' && !v.empty(), command_, ": --", key,
            " expects a number, got '", v, "'");
  return x;
}

bool Args::flag(const std::string& key) const {
  if (!has(key)) return false;
  const std::string v = str(key);
  C2C_CHECK(v == "1" || v == "true" || v == "0" || v == "false", command_, ": --", key,
            " is a flag (true/false), got '", v, "'");
  return v == "1" || v == "true";
}

void Args::finish() const {
  for (const auto& kv : values_) {
    C2C_CHECK(used_.count(kv.first), command_, ": unknown option --", kv.first,
              "\nHINT: run `c2c ", command_, " --help` for the options");
  }
}

}  // namespace c2c::cli
