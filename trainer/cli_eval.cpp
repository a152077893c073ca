// `c2c eval --config FILE.yaml [--set key=value ...]`: trainer/eval.h does the work.
#include <iostream>

#include "modules/common/error.h"
#include "trainer/args.h"
#include "trainer/cli.h"
#include "trainer/eval.h"

namespace c2c::cli {
namespace {

const char* kUsage =
    "usage: c2c eval --config FILE.yaml [--set key=value ...]\n\n"
    "Accuracy and per-query latency of receiver / sharer / t2t / c2c on multiple-choice benchmark\n"
    "files (JSON Lines: question, choices, answer, optional id and subject). Config keys:\n"
    "  receiver, sharers, fuser, alignment (span), methods ([receiver, sharer, t2t, c2c]),\n"
    "  mode (letters | logits | choices), benchmarks ([{name, file}] or [file]), limit (0: all),\n"
    "  batch_size (8), max_new_tokens (64), t2t_max_new_tokens (64), max_length (4096),\n"
    "  latency_queries (10), latency_answer_tokens (64), threads (0: all), device (cpu),\n"
    "  output (runs/eval).\n"
    "Writes OUTPUT/report.json, OUTPUT/report.md and OUTPUT/progress.jsonl (an interrupted run\n"
    "resumes from it); python3 scripts/plot_eval.py OUTPUT draws OUTPUT/eval.png.\n";

}  // namespace

int cmd_eval(const std::vector<std::string>& argv) {
  Args args("eval", argv, {"help"});
  if (args.flag("help")) {
    std::cout << kUsage;
    return 0;
  }
  const std::string path = args.str("config");
  const auto overrides = args.all("set");
  args.finish();
  const EvalConfig config = EvalConfig::load(path, overrides);
  const std::string table = run_eval(config, std::cerr);
  std::cout << table << "report: " << config.output << "/report.json, " << config.output << "/report.md\n";
  return 0;
}

}  // namespace c2c::cli
