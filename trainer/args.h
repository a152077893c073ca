// A small command-line parser: `--key value`, `--key=value`, bare `--flag`, repeated keys, and
// positionals. Every flag a command does not read is reported as unknown (no silent typos).
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

namespace c2c::cli {

class Args {
 public:
  // `flags` names the options that take no value (e.g. {"json", "chat"}).
  Args(const std::string& command, const std::vector<std::string>& argv,
       const std::set<std::string>& flags);

  bool has(const std::string& key) const;
  std::string str(const std::string& key) const;  // required
  std::string str(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> all(const std::string& key) const;  // every occurrence
  long long integer(const std::string& key, long long fallback) const;
  double number(const std::string& key, double fallback) const;
  bool flag(const std::string& key) const;
  const std::vector<std::string>& positional() const { return positional_; }

  // Throws naming the first flag that no accessor asked for.
  void finish() const;

 private:
  std::string command_;
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positional_;
  mutable std::set<std::string> used_;
};

}  // namespace c2c::cli
