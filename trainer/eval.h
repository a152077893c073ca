// `c2c eval --config FILE.yaml`: accuracy and per-query latency of a model set on
// multiple-choice benchmarks (data/benchmark.h), DESIGN.md section 4.
//
// Methods: receiver (alone), sharer (alone), t2t (the sharer writes background for the question
// without its options, the receiver answers a three-turn chat), c2c (the receiver reads the
// sharer's cache through the fuser). Modes:
//   letters  the question with lettered options, the assistant turn starting "The correct answer
//            is", greedy generation, the letter extracted from the text (published benchmarks);
//   logits   the same prompt, the option letters' next-token log-probabilities compared;
//   choices  the question alone, each choice scored as the whole assistant reply by its summed
//            log-probability (the toy world: answers are attribute values among a closed list).
// A sample that fails (a template or alignment error, a prompt over the limit) is counted as
// an error and as wrong, never dropped from the denominator. Progress is appended to
// OUT/progress.jsonl, so an interrupted evaluation resumes without counting a sample twice.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace c2c {

struct EvalBenchmark {
  std::string name;  // report key (default: the file stem)
  std::string file;  // JSON Lines, data/benchmark.h
};

struct EvalConfig {
  std::string receiver;
  std::vector<std::string> sharers;  // the first one is "the sharer" of sharer-alone and T2T
  std::string fuser;                 // fuser checkpoint folder (c2c)
  std::string alignment = "span";    // token alignment of c2c: identity | reference_* | span
  std::vector<std::string> methods = {"receiver", "sharer", "t2t", "c2c"};
  std::string mode = "letters";      // letters | logits | choices
  std::vector<EvalBenchmark> benchmarks;
  int64_t limit = 0;                 // items per benchmark; 0: all
  int64_t batch_size = 8;
  int64_t max_new_tokens = 64;       // answer length (letters mode)
  int64_t t2t_max_new_tokens = 64;   // the sharer's background text
  int64_t max_length = 4096;         // longer prompts are errors
  int64_t latency_queries = 10;      // warm batch-1 queries per method (0: no latency)
  int64_t latency_answer_tokens = 64;  // tokens decoded per latency query (no early stop)
  int64_t threads = 0;
  std::string device = "cpu";        // cpu | cuda | auto
  std::string output = "runs/eval";

  // Read through the recipe's configuration table (trainer/config_table.h): strict keys and
  // types, --set overrides, then validate().
  static EvalConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
  void validate() const;
  std::string to_yaml() const;  // the resolved config
};

// Runs every (method, benchmark) pair, resuming from OUT/progress.jsonl; writes OUT/report.json
// and OUT/report.md; returns the Markdown table.
std::string run_eval(const EvalConfig& config, std::ostream& log);

}  // namespace c2c
