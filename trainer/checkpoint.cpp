#include "trainer/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/safetensors.h"

namespace c2c {
namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::vector<fs::path> complete_checkpoints(const std::string& run_dir) {
  std::vector<fs::path> out;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    // Temporary folders of an interrupted save start with '.' and are never picked up.
    if (e.is_directory() && name.rfind("step_", 0) == 0 && fs::exists(e.path() / "state.json"))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string save_training_checkpoint(const std::string& run_dir, int64_t step,
                                     const FuserCheckpoint& fusers, const AdamW& optimizer,
                                     nlohmann::json state, int64_t keep_last, int64_t window) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  fs::create_directories(root);
  const fs::path final_dir = root / step_name(step);
  const fs::path tmp = root / ("." + step_name(step) + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_fuser_checkpoint((tmp / "fuser").string(), fusers);
  save_safetensors((tmp / "optimizer.safetensors").string(), optimizer.state());
  state["format"] = "c2c-train-state";
  state["format_version"] = kTrainStateVersion;
  state["step"] = step;
  write_file_atomic((tmp / "state.json").string(), state.dump(2) + "\n");
  fs::remove_all(final_dir);  // a checkpoint of the same step from an earlier attempt
  fs::rename(tmp, final_dir);
  auto all = complete_checkpoints(run_dir);  // oldest first
  // Kept: the keep_last newest, every one of the last `window` steps, and the newest one older
  // than that window (the last that no recent step can have poisoned).
  int64_t anchor = -1;
  for (const auto& p : all)
    if (window > 0 && checkpoint_step(p.string()) <= step - window) anchor = checkpoint_step(p.string());
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) {
    const int64_t at = checkpoint_step(all[i].string());
    if (window > 0 && (at > step - window || at == anchor)) continue;
    // Renamed out of the step_* names first: a kill during the removal leaves a hidden folder
    // that clean_incomplete_checkpoints removes, never a half-deleted step_* that looks complete.
    const fs::path doomed = root / ("." + all[i].filename().string() + ".deleting");
    fs::remove_all(doomed);
    fs::rename(all[i], doomed);
    fs::remove_all(doomed);
  }
  return final_dir.string();
}

int64_t checkpoint_step(const std::string& dir) {
  const std::string name = fs::path(dir).filename().string();
  C2C_ASSERT(name.rfind("step_", 0) == 0);
  return std::stoll(name.substr(5));
}

std::vector<std::string> clean_incomplete_checkpoints(const std::string& run_dir) {
  std::vector<std::string> removed;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(root)) return removed;
  std::vector<fs::path> doomed;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    const bool hidden = name.rfind(".step_", 0) == 0;  // an interrupted save or pruning
    const bool incomplete = name.rfind("step_", 0) == 0 && !fs::exists(e.path() / "state.json");
    if (e.is_directory() && (hidden || incomplete)) doomed.push_back(e.path());
  }
  for (const auto& d : doomed) {
    fs::remove_all(d);
    removed.push_back(d.string());
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

std::vector<std::string> checkpoints_newest_first(const std::string& run_dir) {
  std::vector<std::string> out;
  auto all = complete_checkpoints(run_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) out.push_back(it->string());
  return out;
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  auto all = complete_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back().string();
}

nlohmann::json load_training_checkpoint(const std::string& dir, const FuserCheckpoint& fusers,
                                        AdamW& optimizer) {
  const std::string state_path = join_path(dir, "state.json");
  nlohmann::json state = read_json(state_path);
  C2C_CHECK(state.value("format", "") == "c2c-train-state", state_path,
            ": not a training state file");
  C2C_CHECK(state.value("format_version", -1) == kTrainStateVersion, state_path,
            ": format_version ", state.value("format_version", -1), " but this build reads ",
            kTrainStateVersion, "\nHINT: resume with the version that wrote it, or start afresh");
  FuserCheckpoint saved = load_fuser_checkpoint(join_path(dir, "fuser"), torch::kFloat32);
  C2C_CHECK(saved.sharers.size() == fusers.sharers.size(), dir, ": checkpoint has ",
            saved.sharers.size(), " fuser sets, the run has ", fusers.sharers.size());
  torch::NoGradGuard no_grad;
  for (size_t j = 0; j < fusers.sharers.size(); ++j) {
    auto dst = fusers.sharers[j].fuser->named_parameters();
    auto src = saved.sharers[j].fuser->named_parameters();
    C2C_CHECK(dst.size() == src.size(), dir, ": fuser set ", j, " has a different structure");
    for (const auto& p : dst) {
      const torch::Tensor* s = src.find(p.key());
      C2C_CHECK(s && s->sizes() == p.value().sizes(), dir, ": fuser set ", j, " parameter '",
                p.key(), "' is missing or mis-shaped\nHINT: the recipe's fuser widths or layer "
                "map differ from the checkpoint's");
      p.value().copy_(*s);
    }
  }
  optimizer.load_state(load_safetensors(join_path(dir, "optimizer.safetensors")),
                       join_path(dir, "optimizer.safetensors"));
  return state;
}

}  // namespace c2c
