// Full-parameter language-model training (`c2c pretrain`): trains every weight of a small decoder
// LLM from scratch (or from a model folder) on JSON Lines of plain text or chats. The toy world's
// sharer and receiver are made with it (scripts/make_toy_world.sh); users can make their own
// small models the same way. Every token of a text record carries the loss; a chat record is
// rendered with the tokenizer's chat template and its final assistant turn carries the loss.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace c2c {

struct PretrainOptions {
  std::string init;                // a model folder to start from, or
  std::string config;              // a config.json for a new model with N(0, init_std) weights
  double init_std = 0.02;
  std::string tokenizer;           // tokenizer folder (tokenizer.json + tokenizer_config.json)
  std::vector<std::string> data;   // JSON Lines: {"text": ...} or {"messages": [...]}
  std::string out;                 // the trained model folder (HF layout, tokenizer copied in)
  int64_t steps = 1000;
  int64_t batch_size = 32;
  int64_t max_length = 256;        // longer records are skipped and counted
  double lr = 3e-3;
  double weight_decay = 0.0;
  double warmup_ratio = 0.05;
  std::string schedule = "cosine"; // linear | cosine | constant
  double max_grad_norm = 1.0;
  int64_t seed = 0;
  int64_t log_every = 50;
  std::string save_dtype = "float32";  // float32 | bfloat16
};

struct PretrainReport {
  int64_t records = 0, used = 0, skipped_too_long = 0;
  double first_loss = 0, last_loss = 0;  // mean over the first / last log_every steps
  double seconds = 0;
};

PretrainReport run_pretraining(const PretrainOptions& options, std::ostream& log);

}  // namespace c2c
