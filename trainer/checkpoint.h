// Training checkpoints for exact resume. A run folder holds:
//   recipe.yaml            the resolved recipe of the run
//   metrics.jsonl          one JSON object per logged step
//   checkpoints/step_NNNNNNNN/
//       fuser/             the fuser in our checkpoint format (modules/fuser_checkpoint.h)
//       optimizer.safetensors  AdamW moments by parameter name and the step count
//       state.json         {"format": "c2c-train-state", "format_version": 1, "step", data cursor, ...}
//   final/                 the exported fuser after the last step
// A checkpoint is written under a temporary name and renamed into place, so a kill during a save
// leaves the previous one intact; only the newest `keep_last` are kept.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "modules/fuser_checkpoint.h"
#include "trainer/optimizer.h"

namespace c2c {

constexpr int kTrainStateVersion = 1;

// Writes checkpoints/step_<step> atomically and prunes older ones beyond keep_last, except, with
// window > 0, those of the last `window` steps and the newest one before them (divergence:
// run.cpp names it). Returns the folder written.
std::string save_training_checkpoint(const std::string& run_dir, int64_t step,
                                     const FuserCheckpoint& fusers, const AdamW& optimizer,
                                     nlohmann::json state, int64_t keep_last, int64_t window = 0);

// The newest complete checkpoint folder of a run, if any.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);
// The step of a checkpoint folder (".../step_00000012" -> 12).
int64_t checkpoint_step(const std::string& dir);
// Every complete checkpoint folder of a run, newest first (resume falls back along it).
std::vector<std::string> checkpoints_newest_first(const std::string& run_dir);
// Removes what interrupted saves and prunings left (hidden .step_* folders, step_* folders
// without state.json) and returns the folders removed.
std::vector<std::string> clean_incomplete_checkpoints(const std::string& run_dir);

// Restores fuser weights (copied into the existing modules, strictly), optimizer moments and
// returns state.json. Throws naming the file on a version or shape mismatch.
nlohmann::json load_training_checkpoint(const std::string& dir, const FuserCheckpoint& fusers,
                                        AdamW& optimizer);

}  // namespace c2c
