// The evaluation config (eval.h): read through the recipe's configuration table
// (config_table.h), then its ranges and cross-field rules.
#include <filesystem>
#include <set>

#include "data/alignment.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "trainer/config_table.h"
#include "trainer/eval.h"

namespace c2c {
namespace {

const std::set<std::string> kMethods = {"receiver", "sharer", "t2t", "c2c"};

// Every key of the evaluation config (config_table.h: the recipe's own parser and --set).
std::vector<config::Field> fields(EvalConfig& c) {
  using config::field;
  // benchmarks: a list of {name, file} mappings or file paths.
  config::Field benchmarks;
  benchmarks.key = "benchmarks";
  benchmarks.read = [&c](const YAML::Node& v, const std::string& where) {
    c.benchmarks.clear();
    C2C_CHECK(v.IsSequence(), where, ": key 'benchmarks' must be a list of {name, file} or file paths");
    for (const auto& b : v) {
      EvalBenchmark e;
      if (b.IsScalar()) {
        e.file = b.as<std::string>();
      } else {
        C2C_CHECK(b.IsMap() && b["file"], where, ": each benchmark needs a 'file'");
        for (const auto& kv : b) {
          const auto k = kv.first.as<std::string>();
          C2C_CHECK(k == "name" || k == "file", where, ": unknown benchmark key '", k,
                    "'\nHINT: a benchmark is {name: NAME, file: FILE.jsonl}");
        }
        e.file = b["file"].as<std::string>();
        if (b["name"]) e.name = b["name"].as<std::string>();
      }
      if (e.name.empty()) e.name = std::filesystem::path(e.file).stem().string();
      c.benchmarks.push_back(e);
    }
  };
  benchmarks.write = [&c](YAML::Emitter& out) {
    out << YAML::BeginSeq;
    for (const auto& b : c.benchmarks)
      out << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << b.name
          << YAML::Key << "file" << YAML::Value << b.file << YAML::EndMap;
    out << YAML::EndSeq;
  };
  return {field("receiver", c.receiver),
          field("sharers", c.sharers),
          field("fuser", c.fuser),
          field("alignment", c.alignment),
          field("methods", c.methods),
          field("mode", c.mode),
          benchmarks,
          field("limit", c.limit),
          field("batch_size", c.batch_size),
          field("max_new_tokens", c.max_new_tokens),
          field("t2t_max_new_tokens", c.t2t_max_new_tokens),
          field("max_length", c.max_length),
          field("latency_queries", c.latency_queries),
          field("latency_answer_tokens", c.latency_answer_tokens),
          field("threads", c.threads),
          field("device", c.device),
          field("output", c.output)};
}

}  // namespace

EvalConfig EvalConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  C2C_CHECK(file_exists(path), "eval config '", path, "' does not exist");
  EvalConfig c;
  auto table = fields(c);
  config::parse(read_file(path), path, table, {}, overrides, "eval config");
  c.validate();
  return c;
}

std::string EvalConfig::to_yaml() const {
  EvalConfig copy = *this;
  auto table = fields(copy);
  return config::emit(table);
}

void EvalConfig::validate() const {
  C2C_CHECK(!receiver.empty(), "eval config: 'receiver' is required");
  C2C_CHECK(!benchmarks.empty(), "eval config: 'benchmarks' is empty\nHINT: list benchmark files "
            "in the format of data/benchmark.h");
  C2C_CHECK(mode == "letters" || mode == "logits" || mode == "choices", "eval config: mode '", mode,
            "' is not one of letters, logits, choices");
  C2C_CHECK(!methods.empty(), "eval config: 'methods' is empty");
  for (const auto& m : methods) {
    C2C_CHECK(kMethods.count(m), "eval config: unknown method '", m, "'\nHINT: methods are receiver, sharer, t2t, c2c");
    if (m != "receiver") C2C_CHECK(!sharers.empty(), "eval config: method '", m, "' needs 'sharers'");
    if (m == "c2c") C2C_CHECK(!fuser.empty(), "eval config: method 'c2c' needs 'fuser' (a fuser checkpoint folder)");
  }
  // Each value's range, named with the key, the value and what is accepted.
  const std::pair<const char*, std::pair<int64_t, int64_t>> ranges[] = {
      // key, {value, smallest accepted}
      {"batch_size", {batch_size, 1}},
      {"max_new_tokens", {max_new_tokens, 1}},
      {"t2t_max_new_tokens", {t2t_max_new_tokens, 1}},
      {"latency_answer_tokens", {latency_answer_tokens, 1}},
      {"max_length", {max_length, 2}},
      {"limit", {limit, 0}},
      {"latency_queries", {latency_queries, 0}},
      {"threads", {threads, 0}},
  };
  for (const auto& [key, vr] : ranges)
    C2C_CHECK(vr.first >= vr.second, "eval config: ", key, " = ", vr.first, " is out of range: must be >= ",
              vr.second, std::string(key) == "limit" ? " (0: every item)"
              : std::string(key) == "latency_queries" ? " (0: no latency)"
              : std::string(key) == "threads" ? " (0: every core)" : "");
  const bool device_ok = device == "auto" || device == "cpu" || device == "cuda" ||
                         (device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
                          device.find_first_not_of("0123456789", 5) == std::string::npos);
  C2C_CHECK(device_ok, "eval config: device = '", device, "' is not a device\nHINT: use auto, cpu, cuda or cuda:N");
  parse_align_method(alignment);
}

}  // namespace c2c
