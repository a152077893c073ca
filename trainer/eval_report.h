// The evaluation's files (eval.h): the resumable per-sample progress OUT/progress.jsonl and the
// reports OUT/report.json and OUT/report.md.
#pragma once
#include <fstream>
#include <iosfwd>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/eval.h"

namespace c2c {

// OUT/progress.jsonl: one JSON record per evaluated sample ({method, benchmark, id, ...}).
// Opening checks that OUT/eval_config.txt (the settings that decide the results) is this
// config's, or fails naming both files (resuming would mix results of different models); loads
// the records of an earlier interrupted run (a torn last line, from a kill mid-write, is
// reported and redone) and rewrites the file clean before appending.
class EvalProgress {
 public:
  EvalProgress(const EvalConfig& config, std::ostream& log);

  // The record of a sample, or nullptr when it is still to be done.
  const nlohmann::json* find(const std::string& method, const std::string& benchmark,
                             const std::string& id) const;
  // Records a sample (written at the next flush()).
  void append(const nlohmann::json& record);
  void flush() { out_.flush(); }

 private:
  static std::string key(const std::string& method, const std::string& benchmark,
                         const std::string& id) {
    return method + "\t" + benchmark + "\t" + id;
  }
  std::map<std::string, nlohmann::json> done_;
  std::ofstream out_;
};

// The p-quantile (0..1) of `v` by linear interpolation; 0 for an empty list.
double percentile(std::vector<double> v, double p);

// Writes OUT/report.json (`report`, holding "results", "latency" and "gates") and
// OUT/report.md (methods by benchmarks with accuracy, errors and latency; the gates); returns
// the Markdown.
std::string write_eval_report(const EvalConfig& config, const nlohmann::json& report);

}  // namespace c2c
