// The evaluation's progress file and reports (eval_report.h).
#include "trainer/eval_report.h"

#include <algorithm>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {

EvalProgress::EvalProgress(const EvalConfig& c, std::ostream& log) {
  std::ostringstream cfg;
  cfg << "receiver: " << c.receiver << "\nsharers: [";
  for (size_t i = 0; i < c.sharers.size(); ++i) cfg << (i ? ", " : "") << c.sharers[i];
  cfg << "]\nfuser: " << c.fuser << "\nalignment: " << c.alignment << "\nmode: " << c.mode
      << "\nlimit: " << c.limit << "\nmax_new_tokens: " << c.max_new_tokens
      << "\nt2t_max_new_tokens: " << c.t2t_max_new_tokens << "\n";
  const std::string cfg_path = join_path(c.output, "eval_config.txt");
  const std::string path = join_path(c.output, "progress.jsonl");
  if (file_exists(path) && file_exists(cfg_path)) {
    C2C_CHECK(read_file(cfg_path) == cfg.str(), "eval: '", c.output, "' holds progress of another "
              "configuration (", cfg_path, ")\nHINT: use another output folder, or delete ", path);
  }
  write_file_atomic(cfg_path, cfg.str());

  if (file_exists(path)) {
    std::ifstream in(path);
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      try {
        auto j = nlohmann::json::parse(line);
        done_.emplace(key(j.at("method"), j.at("benchmark"), j.at("id")), j);
      } catch (const std::exception&) {
        log << "eval: " << path << ":" << n << ": unreadable (an interrupted write); that sample is redone\n";
      }
    }
    if (!done_.empty()) log << "eval: resuming, " << done_.size() << " samples already done\n";
  }
  std::string clean;
  for (const auto& kv : done_) clean += kv.second.dump() + "\n";
  write_file_atomic(path, clean);
  out_.open(path, std::ios::app);
  C2C_CHECK(out_.good(), "eval: cannot append to ", path);
}

const nlohmann::json* EvalProgress::find(const std::string& method, const std::string& benchmark,
                                         const std::string& id) const {
  auto it = done_.find(key(method, benchmark, id));
  return it == done_.end() ? nullptr : &it->second;
}

void EvalProgress::append(const nlohmann::json& record) {
  out_ << record.dump() << "\n";
  done_[key(record.at("method"), record.at("benchmark"), record.at("id"))] = record;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

std::string write_eval_report(const EvalConfig& c, const nlohmann::json& report) {
  write_file_atomic(join_path(c.output, "report.json"), report.dump(2) + "\n");
  const nlohmann::json& results = report.at("results");
  const nlohmann::json& latency = report.at("latency");
  const nlohmann::json& gates = report.at("gates");
  // Markdown table: methods by benchmarks, then latency.
  std::ostringstream md;
  md << "| method |";
  for (const auto& b : c.benchmarks) md << " " << b.name << " |";
  if (!latency.empty()) md << " latency median (s) | p90 (s) |";
  md << "\n|---|";
  for (size_t i = 0; i < c.benchmarks.size(); ++i) md << "---|";
  if (!latency.empty()) md << "---|---|";
  md << "\n";
  for (const auto& method : c.methods) {
    md << "| " << method << " |";
    for (const auto& b : c.benchmarks) {
      const auto& r = results[method][b.name];
      md << " " << std::fixed << std::setprecision(1) << 100.0 * r["accuracy"].get<double>() << "% ("
         << r["correct"].get<int64_t>() << "/" << r["n"].get<int64_t>();
      if (r["errors"].get<int64_t>()) md << ", " << r["errors"].get<int64_t>() << " errors";
      md << ") |";
    }
    if (latency.contains(method))
      md << " " << std::setprecision(4) << latency[method]["median_s"].get<double>() << " | "
         << latency[method]["p90_s"].get<double>() << " |";
    md << "\n";
  }
  if (!gates.empty()) {
    md << "\nFuser gates by receiver layer (K/V open):";
    for (const auto& g : gates)
      md << " " << g["receiver_layer"].get<int64_t>() << ":" << (g["key_open"].get<bool>() ? "K" : "-")
         << (g["value_open"].get<bool>() ? "V" : "-");
    md << "\n";
  }
  write_file_atomic(join_path(c.output, "report.md"), md.str());
  return md.str();
}

}  // namespace c2c
