// Training recipes: plain structs with defaults, overridden by a YAML file, overridden by
// `--set key=value` (STYLE.md item 7). Every key is known: an unknown key or a wrong type is an
// error naming the key and the file. validate() derives and checks the rest. The resolved recipe
// is printed at start and saved beside each checkpoint.
#pragma once
#include <string>
#include <vector>

#include "modules/fuser.h"

namespace c2c {

// The fuser section: the fuser's own hyper-parameters are its FuserConfig (modules/fuser.h; the
// shapes source_*/target_* are not recipe keys: they come from the models), validated by it;
// the rest says how the fusers are built and trained.
struct FuserRecipe {
  FuserConfig config = defaults();  // hidden_dim ... variant; anneal_steps 0: the run's length
  std::string layer_map = "last_aligned";  // last_aligned | k_nearest | "t:s,t:s,..."
  std::string multi_sharer = "sequential";  // sequential | parallel
  std::string init_from;               // a fuser checkpoint folder to start from (optional)
  bool gate_noise = true;              // Gumbel gate noise in training; false: G = 0 (tests)

  static FuserConfig defaults() {
    FuserConfig c;
    c.anneal_steps = 0;
    return c;
  }
};

// What a run writes beside final/ at its end.
struct ExportRecipe {
  bool official = false;              // <checkpoint.dir>/official: the official C2C layout
  std::string official_dtype = "bfloat16";  // bfloat16 | float32
};

struct DataRecipe {
  std::string train;                   // folder written by `c2c prepare`
  std::string eval;                    // optional held-out folder
  int64_t shuffle_buffer = 1024;
  int64_t pack_window = 16;            // batches sorted by length together
  int64_t max_samples = 0;             // 0: all
};

struct TrainRecipe {
  int64_t max_steps = 0;               // optimizer steps; 0: one pass over the data
  int64_t micro_batch_size = 4;
  int64_t grad_accum = 1;
  double lr = 1e-4;
  double weight_decay = 0.01;
  double warmup_ratio = 0.1;
  std::string schedule = "linear";     // linear | cosine | constant (after warm-up)
  double max_grad_norm = 1.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  int64_t seed = 42;
  std::string device = "auto";         // auto | cpu | cuda
  std::string dtype = "auto";          // auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16
  int64_t log_every = 1;
  int64_t eval_every = 0;              // 0: no periodic held-out loss
  int64_t eval_batches = 8;
  // What model selection (checkpoint.keep_best, early_stop_evals) ranks held-out evaluations by:
  // "loss" (lower is better) or "accuracy" (the share of held-out samples whose every answer
  // token is the argmax, teacher-forced; higher is better, ties broken by the lower loss).
  std::string select_on = "loss";
  // Early stop: end the run when this many held-out evaluations in a row were not better than
  // the best one (0: never; needs eval_every). final/ is then the fuser of the step it stopped at.
  int64_t early_stop_evals = 0;
  int64_t threads = 0;                 // CPU threads; 0: every core
  int64_t max_bad_steps = 10;          // non-finite losses skipped before the run stops
  bool activation_checkpointing = false;  // recompute the receiver's response pass in backward
  double dist_timeout_s = 300;         // multi-rank: a collective waiting longer fails
};

struct CheckpointRecipe {
  std::string dir = "runs/c2c";        // output folder (checkpoints, metrics, final fuser)
  int64_t every = 0;                   // 0: only at the end
  int64_t keep_last = 2;
  bool keep_best = false;              // also write best/: the fuser of the best held-out
                                       // evaluation (train.select_on; needs train.eval_every)
  bool resume = true;                  // continue from the newest checkpoint in dir if any
  bool strict_resume = false;          // a damaged newest checkpoint stops the run instead of
                                       // resuming from the one before it
  bool overwrite = false;              // a fresh start on a folder holding an earlier run moves
                                       // that run aside to <dir>.replaced-<date> (else: refused)
};

struct Recipe {
  std::string receiver;                // Hugging Face model folder
  std::vector<std::string> sharers;
  std::string alignment = "identity";  // must match how the data was prepared
  ExportRecipe exports;  // the YAML section "export"
  FuserRecipe fuser;
  DataRecipe data;
  TrainRecipe train;
  CheckpointRecipe checkpoint;

  // Reads `path` (YAML), applies `overrides` ("train.lr=3e-4"), validates.
  static Recipe load(const std::string& path, const std::vector<std::string>& overrides = {});
  // Defaults + overrides only (tests).
  static Recipe from_yaml_text(const std::string& text, const std::string& source,
                               const std::vector<std::string>& overrides = {});
  std::string to_yaml() const;
  void validate() const;
  // "key: old -> new" for every key whose resolved value differs from `earlier`'s.
  std::vector<std::string> changes_from(const Recipe& earlier) const;
};

}  // namespace c2c
