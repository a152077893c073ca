// run_training: the loop around FuserTrainer — data stream, accumulation, AdamW, schedules,
// progress line, metrics, held-out loss, checkpoints and exact resume.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <set>
#include <sstream>

#include "data/stream.h"
#include "data/tokenizer.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/common/torch_compat.h"
#include "modules/fuser_checkpoint.h"
#include "modules/official_checkpoint.h"
#include "trainer/checkpoint.h"
#include "trainer/distributed.h"
#include "trainer/run_dir.h"
#include "trainer/trainer.h"

namespace c2c {
namespace {

// Seeds of gate noise and dropout for micro-batch m of optimizer step s on rank r: a pure
// function, so a resumed run (same world size) draws exactly what an uninterrupted one would.
// Keyed by rank, not by sample: each rank draws its own noise for its own rows, so the noise of
// a sample depends on the world size (rank 0 draws what a single-rank run draws).
uint64_t noise_seed(int64_t seed, int64_t step, int64_t micro, int rank) {
  uint64_t x = static_cast<uint64_t>(seed) * 0x9E3779B97F4A7C15ull ^
               (static_cast<uint64_t>(step) << 20) ^ static_cast<uint64_t>(micro) ^
               (static_cast<uint64_t>(rank) << 44);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s);
  std::ostringstream o;
  if (t >= 3600) o << t / 3600 << "h";
  o << std::setw(t >= 3600 ? 2 : 1) << std::setfill('0') << (t % 3600) / 60 << "m" << std::setw(2)
    << std::setfill('0') << t % 60 << "s";
  return o.str();
}

int64_t supervised_tokens(const std::vector<PairedSample>& samples) {
  int64_t n = 0;
  for (const auto& s : samples) n += s.loss_end - s.loss_start;
  return n;
}

struct HeldOut {
  double loss = 0;      // mean per supervised token
  double accuracy = 0;  // share of samples whose every supervised token is the argmax
};

// The held-out evaluation, hard gates, no dropout. Ranks split the first `batches` global
// batches (rank r takes rows r, r+W, ...) and sum.
HeldOut held_out_eval(FuserTrainer& trainer, Distributed& dist, const std::string& dir,
                      int64_t batches, int64_t step) {
  StreamOptions so;
  so.batch_size = trainer.recipe().train.micro_batch_size;
  so.shuffle_buffer = 1;
  so.pack_window = 1;
  so.drop_last = false;
  so.rank = dist.rank();
  so.world_size = dist.world_size();
  PairedStream stream(dir, so);
  const int64_t n = std::min((batches + dist.world_size() - 1) / dist.world_size(),
                             stream.batches_per_epoch());
  trainer.set_mode(false, step);
  torch::NoGradGuard no_grad;
  // Summed on the device, read once: no host sync per batch.
  torch::Tensor sums = torch::zeros({2}, torch::dtype(torch::kFloat64));  // loss, exact rows
  double rows = 0;
  int64_t tokens = 0;
  for (int64_t i = 0; i < n; ++i) {
    auto batch = stream.next_batch();
    auto ml = trainer.forward(batch.samples, 0, /*exact_match=*/true);
    const auto here = torch::stack({ml.loss_sum.to(torch::kFloat64), ml.row_exact.sum().to(torch::kFloat64)});
    sums = i == 0 ? here : sums + here;
    rows += static_cast<double>(batch.samples.size());
    tokens += ml.tokens;
  }
  sums = sums.to(torch::kCPU);
  double sum = sums[0].item<double>(), exact = sums[1].item<double>();
  sum = dist.all_reduce_sum_scalar(sum, "held-out loss");
  exact = dist.all_reduce_sum_scalar(exact, "held-out exact matches");
  rows = dist.all_reduce_sum_scalar(rows, "held-out samples");
  tokens = std::llround(dist.all_reduce_sum_scalar(static_cast<double>(tokens), "held-out tokens"));
  HeldOut out;
  out.loss = tokens > 0 ? sum / tokens : 0.0;
  out.accuracy = rows > 0 ? exact / rows : 0.0;
  return out;
}

}  // namespace

// The run itself; `at_rendezvous` is set once this rank reaches the rendezvous, from where
// failures are every rank's to report (Distributed names lost and stuck ranks).
static std::string train(const Recipe& input_recipe, int64_t stop_after, bool& at_rendezvous) {
  Recipe recipe = input_recipe;
  compat::set_threads(recipe.train.threads);
  // Ranks from the launcher's environment; one rank unless one set them. Only rank 0 writes
  // checkpoints, metrics and the progress line; the others print only errors.
  const DistEnv dist_env = DistEnv::from_environment();
  const bool main_rank = dist_env.rank == 0;
  std::ostream null_stream(nullptr);
  std::ostream& log = main_rank ? std::cerr : null_stream;
  // Fail early, before any work, when the output folder cannot be written, is in use by another
  // run, or holds an earlier run that this one would overwrite (trainer/run_dir.h).
  std::unique_ptr<RunDirLock> run_lock;
  if (main_rank) run_lock = claim_run_dir(recipe.checkpoint.dir, recipe.checkpoint.resume,
                                          recipe.checkpoint.overwrite, log);
  const bool tty = main_rank && isatty(STDERR_FILENO);

  StreamOptions so;
  so.batch_size = recipe.train.micro_batch_size;
  so.shuffle_buffer = recipe.data.shuffle_buffer;
  so.pack_window = recipe.data.pack_window;
  so.seed = static_cast<uint64_t>(recipe.train.seed);
  so.rank = dist_env.rank;
  so.world_size = dist_env.world_size;
  so.max_samples = recipe.data.max_samples;
  PairedStream stream(recipe.data.train, so);
  {
    // The data must have been prepared for this pair: same number of sharers, same alignment.
    const auto& m = stream.manifest();
    C2C_CHECK(m.num_sharers == static_cast<int>(recipe.sharers.size()), "data '", recipe.data.train,
              "' was prepared for ", m.num_sharers, " sharer(s) but the recipe names ",
              recipe.sharers.size(), "\nHINT: re-run `c2c prepare` with one --sharer-tokenizer per sharer");
    // ... and with the recipe's tokenizers (the fingerprints `c2c prepare` recorded).
    auto same_tokenizer = [&](const nlohmann::json& recorded, const std::string& model, const std::string& role,
                              const std::string& flag) {
      if (!recorded.is_string()) return;  // data prepared before fingerprints were recorded
      const std::string now = tokenizer_fingerprint(model);
      C2C_CHECK(recorded.get<std::string>() == now, "data '", recipe.data.train, "' was prepared with another ",
                role, " tokenizer than the recipe's ", role, " ", model, " (fingerprint ",
                recorded.get<std::string>(), " in its manifest.json, ", now, " now)\nHINT: re-run `c2c prepare ",
                flag, " ", model, "`, or point the recipe at the models the data was prepared for");
    };
    same_tokenizer(m.json.value("receiver_tokenizer_fingerprint", nlohmann::json()), recipe.receiver,
                   "receiver", "--receiver-tokenizer");
    const auto sharer_prints = m.json.value("sharer_tokenizer_fingerprints", nlohmann::json::array());
    for (size_t j = 0; j < recipe.sharers.size() && j < sharer_prints.size(); ++j)
      same_tokenizer(sharer_prints[j], recipe.sharers[j], "sharer " + std::to_string(j), "--sharer-tokenizer");
    const std::string prepared = m.json.value("alignment", "");
    C2C_CHECK(prepared.empty() || prepared == recipe.alignment, "data '", recipe.data.train,
              "' was prepared with alignment '", prepared, "' but the recipe says '",
              recipe.alignment, "'\nHINT: set alignment: ", prepared, " in the recipe, or re-run "
              "`c2c prepare --alignment ", recipe.alignment, "`");
  }
  const int64_t per_epoch = stream.batches_per_epoch() / recipe.train.grad_accum;
  C2C_CHECK(per_epoch > 0 || recipe.train.max_steps > 0, "data '", recipe.data.train, "' has ",
            stream.num_samples(), " samples: not one optimizer step of ",
            recipe.train.micro_batch_size * recipe.train.grad_accum, " sequences on each of ",
            dist_env.world_size, " rank(s)");
  const int64_t total = recipe.train.max_steps > 0 ? recipe.train.max_steps : per_epoch;
  if (recipe.fuser.config.anneal_steps == 0) recipe.fuser.config.anneal_steps = total;
  const int64_t warmup = static_cast<int64_t>(std::ceil(recipe.train.warmup_ratio * total));

  log << "c2c train: resolved recipe\n" << recipe.to_yaml();
  log << "c2c train: " << stream.num_samples() << " samples"
      << (stream.num_samples() < stream.data_set_samples()
              ? " (data.max_samples; the data set has " + std::to_string(stream.data_set_samples()) + ")"
              : std::string())
      << ", " << total << " optimizer steps of "
      << recipe.train.micro_batch_size << " x " << recipe.train.grad_accum << " sequences"
      << (dist_env.world_size > 1 ? " x " + std::to_string(dist_env.world_size) + " ranks" : "")
      << "\n";

  // One GPU per rank: cuda:LOCAL_RANK becomes the current device before anything is placed.
  const torch::Device bound = Distributed::bind_device(dist_env, recipe.train.device);
  FuserTrainer trainer(recipe);
  // Gate temperature after optimizer step s, for the logs: the fusers' own schedule.
  const auto tau_at = [&trainer](int64_t s) {
    return trainer.fusers().sharers.at(0).fuser->temperature_at(s);
  };
  // The progress line shows the temperature only where some fuser has gates to anneal.
  bool gated = false;
  for (const auto& set : trainer.fusers().sharers) gated = gated || set.fuser->gate_logits().defined();
  {
    StreamVocabularies vocab;
    vocab.receiver = trainer.pipeline().receiver()->config().vocab_size;
    for (const auto& s : trainer.pipeline().sharers()) vocab.sharers.push_back(s->config().vocab_size);
    stream.check_vocabularies(vocab);
  }
  at_rendezvous = true;
  Distributed dist(dist_env, trainer.device(),
                   std::chrono::milliseconds(std::llround(recipe.train.dist_timeout_s * 1000)));
  if (dist.backend() != "none")
    log << "c2c train: " << dist.world_size() << " rank(s) over " << dist.backend() << ", rendezvous "
        << dist_env.master_addr << ":" << dist_env.master_port << "\n";
  auto params = trainer.named_parameters();
  {
    std::vector<torch::Tensor> tensors;
    for (const auto& p : params) tensors.push_back(p.second.detach());
    dist.broadcast(tensors, "fuser parameters");  // every rank starts from rank 0's weights
  }
  int64_t n_params = 0;
  for (const auto& p : params) n_params += p.second.numel();
  log << "c2c train: " << n_params << " trainable fuser parameters on "
      << (bound.is_cuda() ? bound : trainer.device()) << " (both LLMs frozen)\n";
  AdamWOptions ao;
  ao.beta1 = recipe.train.adam_beta1;
  ao.beta2 = recipe.train.adam_beta2;
  ao.eps = recipe.train.adam_eps;
  ao.weight_decay = recipe.train.weight_decay;
  AdamW optimizer(params, ao);

  const std::string run_dir = recipe.checkpoint.dir;
  if (main_rank) {
    std::filesystem::create_directories(run_dir);
    write_file_atomic(join_path(run_dir, "recipe.yaml"), recipe.to_yaml());
  }

  int64_t step = 0;
  double elapsed_before = 0, tokens_before = 0;
  // Model selection on the held-out evaluation (train.select_on, train.early_stop_evals,
  // checkpoint.keep_best): the best one so far, its step, and the evaluations since; saved in
  // every checkpoint.
  HeldOut best{std::numeric_limits<double>::infinity(), -1.0};
  int64_t best_step = 0, evals_since_best = 0;
  const bool by_accuracy = recipe.train.select_on == "accuracy";
  auto better = [&](const HeldOut& h) {
    if (by_accuracy && h.accuracy != best.accuracy) return h.accuracy > best.accuracy;
    return h.loss < best.loss;
  };
  auto best_text = [&] {
    std::ostringstream o;
    o << "held-out " << (by_accuracy ? "accuracy " : "loss ") << std::setprecision(6)
      << (by_accuracy ? best.accuracy : best.loss) << " at step " << best_step;
    return o.str();
  };
  if (main_rank)
    for (const auto& d : clean_incomplete_checkpoints(run_dir))
      log << "c2c train: removed " << d << ", left by an interrupted save or pruning\n";
  if (recipe.checkpoint.resume) {
    // The newest checkpoint that loads; a damaged newer one is named and passed over.
    std::optional<std::string> last;
    nlohmann::json state;
    std::string damaged;
    for (const auto& dir : checkpoints_newest_first(run_dir)) {
      try {
        state = load_training_checkpoint(dir, trainer.fusers(), optimizer);
        last = dir;
        break;
      } catch (const std::exception& e) {
        C2C_CHECK(!recipe.checkpoint.strict_resume, "the newest checkpoint ", dir,
                  " cannot be loaded (checkpoint.strict_resume is on, so the run stops rather than "
                  "resume from an older one): ", e.what(),
                  "\nHINT: repair or move aside ", dir, ", or set checkpoint.strict_resume=false to "
                  "fall back to the checkpoint before it");
        log << "c2c train: checkpoint " << dir << " cannot be loaded, falling back to the one before it:\n  "
            << e.what() << "\n";
        if (damaged.empty()) damaged = dir + ": " + e.what();
      }
    }
    C2C_CHECK(last || damaged.empty(), "no checkpoint of ", run_dir, " can be loaded; the newest: ",
              damaged, "\nHINT: move the damaged checkpoints aside to start afresh");
    if (last) {
      step = state.at("step").get<int64_t>();
      // The cursor is a global stream position: any world size resumes from it (data/stream.h).
      stream.restore(StreamCursor::from_json(state.at("data_cursor")));
      elapsed_before = state.value("elapsed_s", 0.0);
      tokens_before = state.value("tokens_seen", 0.0);
      if (state.contains("best_eval")) {
        best.loss = state["best_eval"].at("loss").get<double>();
        best.accuracy = state["best_eval"].at("accuracy").get<double>();
        best_step = state["best_eval"].at("step").get<int64_t>();
        evals_since_best = state["best_eval"].at("evals_since").get<int64_t>();
      }
      const int64_t saved_world = state.value("world_size", int64_t(1));
      // The gate temperature an uninterrupted run holds after `step` steps (the loop sets the
      // one of each step it runs; a run resumed at its end runs none).
      if (step > 0) trainer.set_mode(true, step - 1);
      log << "c2c train: resumed from " << *last << " at step " << step;
      if (saved_world != dist.world_size())
        log << " (saved by " << saved_world << " rank(s), continuing on " << dist.world_size() << ")";
      log << "\n";
      // What changed since the checkpoint was written: the schedule, data and fuser keys shape
      // the rest of the run, so each change is named (the run goes on with the new values).
      if (state.contains("recipe") && state["recipe"].is_string()) {
        const Recipe saved = Recipe::from_yaml_text(state["recipe"].get<std::string>(), *last + "/state.json");
        static const std::set<std::string> harmless = {"checkpoint.resume", "checkpoint.overwrite",
                                                       "train.threads", "train.log_every",
                                                       "train.dist_timeout_s"};
        for (const auto& change : recipe.changes_from(saved))
          if (!harmless.count(change.substr(0, change.find(':'))))
            log << "c2c train: warning: resumed with a changed " << change << "\n";
      }
    }
  }
  // Metrics of steps after the resume point are rewritten by this run.
  const std::string metrics_path = join_path(run_dir, "metrics.jsonl");
  if (main_rank) {
    std::vector<std::string> keep;
    std::ifstream in(metrics_path);
    for (std::string line; std::getline(in, line);) {
      try {
        if (nlohmann::json::parse(line).value("step", int64_t(0)) <= step) keep.push_back(line);
      } catch (...) {
      }
    }
    std::string text;
    for (const auto& l : keep) text += l + "\n";
    write_file_atomic(metrics_path, text);
  }
  std::ofstream metrics;
  if (main_rank) metrics.open(metrics_path, std::ios::app);

  // Divergence: never a checkpoint of poisoned weights. A step is bad when its loss or gradient
  // norm is not finite (its update is skipped). No checkpoint is written while one of the last
  // kCleanSteps steps was bad, nor from weights that are not finite. The updates just before a
  // bad step may be the ones that blew up, so the checkpoint to go back to is the newest one at
  // least kCleanSteps steps older than the first bad step of the streak; pruning keeps it
  // (save_training_checkpoint's window) and the stop message names it.
  constexpr int64_t kCleanSteps = 10;
  int64_t streak_start = 0, last_bad_step = 0;  // step numbers (1-based), 0: none yet
  auto weights_finite = [&] {
    for (const auto& p : params)
      if (!torch::isfinite(p.second.detach()).all().item<bool>()) return false;
    return true;
  };
  auto safe_checkpoint = [&]() -> std::string {
    std::string best;  // the run's checkpoints on disk, which pruning chose to keep
    for (const auto& path : checkpoints_newest_first(run_dir))
      if (checkpoint_step(path) <= streak_start - kCleanSteps) {
        best = path;
        break;
      }
    return best.empty() ? "no checkpoint of this run is " + std::to_string(kCleanSteps) +
                              " or more steps older than it (start afresh with a lower train.lr)"
                        : "the newest checkpoint at least " + std::to_string(kCleanSteps) +
                              " steps older than it is " + best;
  };
  auto save = [&](int64_t at_step, double elapsed, double tokens_seen) {
    nlohmann::json state;
    state["data_cursor"] = stream.cursor().to_json();
    state["elapsed_s"] = elapsed;
    state["tokens_seen"] = tokens_seen;
    state["world_size"] = dist.world_size();
    state["recipe"] = recipe.to_yaml();
    if (best_step > 0)
      state["best_eval"] = {{"loss", best.loss}, {"accuracy", best.accuracy}, {"step", best_step},
                            {"evals_since", evals_since_best}};
    return save_training_checkpoint(run_dir, at_step, trainer.fusers(), optimizer, state,
                                    recipe.checkpoint.keep_last, kCleanSteps);
  };

  // Writes the fuser (our checkpoint format, fp32 master weights) as run_dir/NAME: whole into a
  // temporary folder, then renamed over the old one, so a kill never leaves a half-written one
  // (at worst none: final/ is written again by a resumed run, best/ at its next best loss).
  auto write_fuser_dir = [&](const std::string& name, const nlohmann::json& source) {
    FuserCheckpoint out = trainer.fusers();
    out.source = source;
    out.source["recipe"] = recipe.to_yaml();
    const std::string dst = join_path(run_dir, name), tmp = join_path(run_dir, "." + name + ".tmp");
    std::filesystem::remove_all(tmp);
    save_fuser_checkpoint(tmp, out);
    std::filesystem::remove_all(dst);
    std::filesystem::rename(tmp, dst);
    return out;
  };

  // Gradients are summed over ranks while backward runs (hooks, distributed.h);
  // C2C_DIST_OVERLAP=0 sums them after backward instead.
  const char* overlap_env = std::getenv("C2C_DIST_OVERLAP");
  GradSync grad_sync(dist, params, !(overlap_env && std::string(overlap_env) == "0"));

  const auto t_start = std::chrono::steady_clock::now();
  double tokens_seen = tokens_before;
  int64_t bad_steps = 0;
  const int64_t start_step = step;
  while (step < total) {
    if (recipe.train.early_stop_evals > 0 && evals_since_best >= recipe.train.early_stop_evals) {
      if (tty && step > start_step) log << "\n";
      log << "c2c train: early stop at step " << step << " of " << total << ": " << evals_since_best
          << " held-out evaluations no better than the best, " << best_text()
          << " (train.select_on = " << recipe.train.select_on << ", train.early_stop_evals = "
          << recipe.train.early_stop_evals << ")\n";
      break;
    }
    // Fetch every micro-batch of the step first: the loss is the mean over all their supervised
    // tokens, so each micro-batch's sum is scaled by the step's total before backward.
    // With several ranks the total is over all of them, so the summed gradients are the mean.
    std::vector<PairedBatch> micro;
    int64_t step_tokens = 0;
    for (int64_t m = 0; m < recipe.train.grad_accum; ++m) {
      micro.push_back(stream.next_batch());
      step_tokens += supervised_tokens(micro.back().samples);
    }
    step_tokens = std::llround(
        dist.all_reduce_sum_scalar(static_cast<double>(step_tokens), "supervised token count"));
    trainer.set_mode(true, step);
    optimizer.zero_grad();
    double loss_sum = 0;
    int64_t seen = 0;
    for (int64_t m = 0; m < recipe.train.grad_accum; ++m) {
      C2CLoss ml = trainer.forward(micro[m].samples, noise_seed(recipe.train.seed, step, m, dist.rank()));
      // Only the last micro-step's backward all-reduces (accumulation steps stay local).
      if (m + 1 == recipe.train.grad_accum) grad_sync.arm();
      (ml.loss_sum / static_cast<double>(std::max<int64_t>(step_tokens, 1))).backward();
      loss_sum += ml.loss_sum.item<double>();
      seen += ml.receiver_tokens;
    }
    if (dist.world_size() > 1) {
      grad_sync.finish("gradients");  // waits for every bucket before clipping and stepping
      loss_sum = dist.all_reduce_sum_scalar(loss_sum, "loss");
      seen = std::llround(dist.all_reduce_sum_scalar(static_cast<double>(seen), "receiver tokens"));
    }
    const double grad_norm = optimizer.clip_grad_norm(recipe.train.max_grad_norm);
    const double lr = scheduled_lr(recipe.train.lr, step, total, warmup, recipe.train.schedule);
    const bool finite = std::isfinite(loss_sum) && std::isfinite(grad_norm);
    if (finite) {
      optimizer.step(lr);
    } else {
      // A non-finite loss would poison the weights and the Adam moments: skip the update, say so,
      // and stop once it keeps happening.
      optimizer.zero_grad();
      ++bad_steps;
      if (last_bad_step == 0 || step + 1 - last_bad_step >= kCleanSteps) streak_start = step + 1;
      last_bad_step = step + 1;
      log << (tty ? "\n" : "") << "c2c train: step " << step + 1 << ": non-finite loss ("
                << loss_sum << ") or gradient norm (" << grad_norm << "); update skipped ("
                << bad_steps << " of at most " << recipe.train.max_bad_steps << ")\n";
      C2C_CHECK(bad_steps <= recipe.train.max_bad_steps, "training stopped: ", bad_steps,
                " steps with a non-finite loss (train.max_bad_steps = ", recipe.train.max_bad_steps,
                "); the streak began at step ", streak_start, " and ", safe_checkpoint(),
                "\nHINT: lower train.lr, check the data, or start from another fuser; no checkpoint "
                "was written within ", kCleanSteps, " steps after a bad one or from non-finite weights");
    }
    ++step;
    tokens_seen += seen;

    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double loss = loss_sum / std::max<int64_t>(step_tokens, 1);
    const double tau = tau_at(step);
    const double tps = (tokens_seen - tokens_before) / std::max(elapsed, 1e-9);
    const double eta = elapsed / (step - start_step) * (total - step);
    nlohmann::json row = {{"step", step}, {"loss", finite ? loss : -1.0}, {"skipped", !finite},
                          {"lr", lr}, {"gate_temperature", tau},
                          {"grad_norm", grad_norm}, {"tokens_per_s", tps},
                          {"elapsed_s", elapsed_before + elapsed}, {"supervised_tokens", step_tokens}};
    // Gate state by layer: the key and value gate logits of every fuser (open when > 0).
    nlohmann::json gates = nlohmann::json::array();
    for (const auto& set : trainer.fusers().sharers) {
      if (!main_rank) break;
      nlohmann::json g;
      g["receiver_layers"] = set.layer_map.receiver_layers();
      if (auto t = set.fuser->gate_logits(); t.defined()) {
        auto v = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
        g["gate_logit"] = std::vector<float>(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
      }
      gates.push_back(g);
    }
    row["gates"] = gates;
    if (recipe.train.eval_every > 0 && !recipe.data.eval.empty() &&
        (step % recipe.train.eval_every == 0 || step == total)) {
      const HeldOut h = held_out_eval(trainer, dist, recipe.data.eval, recipe.train.eval_batches, step);
      row["eval_loss"] = h.loss;
      row["eval_accuracy"] = h.accuracy;
      // Every rank sees the same summed figures, so every rank takes the same decision below.
      if (better(h)) {
        best = h;
        best_step = step;
        evals_since_best = 0;
        if (recipe.checkpoint.keep_best && main_rank)
          write_fuser_dir("best", {{"steps", step}, {"eval_loss", h.loss}, {"eval_accuracy", h.accuracy},
                                   {"selected_on", recipe.train.select_on}, {"eval_data", recipe.data.eval}});
      } else {
        ++evals_since_best;
      }
      row["best_eval_step"] = best_step;
    }
    if (main_rank) {
      metrics << row.dump() << "\n";
      metrics.flush();
    }
    if (step % recipe.train.log_every == 0 || step == total || row.contains("eval_loss")) {
      std::ostringstream line;
      line << "step " << step << "/" << total << "  loss " << std::fixed << std::setprecision(4)
           << loss;
      if (row.contains("eval_loss"))
        line << "  eval " << row["eval_loss"].get<double>() << " (" << std::setprecision(1)
             << 100 * row["eval_accuracy"].get<double>() << "% exact)" << std::setprecision(4);
      line << "  lr " << std::scientific << std::setprecision(2) << lr;
      if (gated) line << "  tau " << tau;
      line << std::fixed << std::setprecision(0) << "  " << tps << " tok/s  mem "
           << compat::peak_host_memory_bytes() / (1 << 20) << " MiB  left "
           << format_duration(eta);
      if (tty)
        log << "\r\033[K" << line.str() << std::flush;
      else
        log << line.str() << "\n";
    }
    const bool scheduled =
        (recipe.checkpoint.every > 0 && step % recipe.checkpoint.every == 0 && step < total) || step == stop_after;
    const bool recent_bad = last_bad_step > 0 && step - last_bad_step < kCleanSteps;
    if (scheduled && (recent_bad || !weights_finite())) {
      if (tty) log << "\n";
      log << "c2c train: checkpoint at step " << step << " withheld: "
          << (recent_bad ? "step " + std::to_string(last_bad_step) + " had a non-finite loss"
                         : std::string("the fuser's weights are not finite"))
          << " (no checkpoint within " << kCleanSteps << " steps of a bad one)\n";
      if (step == stop_after) return latest_checkpoint(run_dir).value_or("");
    } else if (scheduled) {
      std::string where;
      if (main_rank) where = save(step, elapsed_before + elapsed, tokens_seen);
      dist.barrier("checkpoint");
      if (!main_rank) where = latest_checkpoint(run_dir).value_or("");
      if (tty) log << "\n";
      log << "c2c train: checkpoint " << where << "\n";
      if (step == stop_after) return where;
    }
  }
  if (tty) log << "\n";
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  const std::string final_dir = join_path(run_dir, "final");
  if (main_rank) {
    C2C_CHECK(weights_finite(), "training ended with non-finite fuser weights; nothing written to ",
              final_dir, "\nHINT: lower train.lr and start again");
    if (step > start_step || !latest_checkpoint(run_dir)) save(step, elapsed_before + elapsed, tokens_seen);
    // The exported fuser (write_fuser_dir); a kill leaves the checkpoint just saved, from which
    // a resumed run writes final/ again.
    const FuserCheckpoint out = write_fuser_dir("final", {{"steps", step}});
    if (best_step > 0) {
      log << "c2c train: best " << best_text() << " (train.select_on = " << recipe.train.select_on << ")";
      if (recipe.checkpoint.keep_best)
        log << (std::filesystem::exists(join_path(run_dir, "best"))
                    ? " (" + join_path(run_dir, "best") + ")"
                    : " (warning: its best/ is missing, lost to a kill while it was written; final/ "
                      "holds step " + std::to_string(step) + ")");
      log << "\n";
    }
    if (recipe.exports.official) {  // the official layout beside final/ (this run's own folder)
      const std::string official = join_path(run_dir, "official");
      std::filesystem::remove_all(official);
      OfficialExportOptions eo;
      eo.dtype = parse_dtype_name(recipe.exports.official_dtype);
      eo.recipe_yaml = recipe.to_yaml();
      for (const auto& w : export_official_checkpoint(out, official, eo))
        log << "c2c train: warning: " << w << "\n";
      log << "c2c train: official layout written to " << official << "\n";
    }
    // Where training left a gate part-open, the exported (hard-gated) fuser differs from it.
    for (size_t i = 0; i < out.sharers.size(); ++i) {
      const auto& set = out.sharers[i];
      const auto logits = set.fuser->gate_logits();
      if (!logits.defined()) continue;  // a variant without gates
      log << "c2c train: sharer " << i << " "
          << describe_final_gates(final_gate_states(logits, set.layer_map.receiver_layers(),
                                                    tau_at(step), recipe.fuser.gate_noise),
                                  tau_at(step));
    }
  }
  dist.barrier("final checkpoint");
  log << "c2c train: done after " << step << " steps; fuser written to " << final_dir << "\n";
  return final_dir;
}

std::string run_training(const Recipe& recipe, int64_t stop_after) {
  bool at_rendezvous = false;
  try {
    return train(recipe, stop_after, at_rendezvous);
  } catch (const std::exception& e) {
    // Rank 0 refused before the rendezvous (another run holds the folder, an earlier run would be
    // overwritten, the data does not fit the models, ...): the other ranks learn why at their
    // rendezvous instead of waiting out train.dist_timeout_s.
    if (!at_rendezvous)
      Distributed::refuse_start(DistEnv::from_environment(), e.what(),
                                std::chrono::milliseconds(std::llround(recipe.train.dist_timeout_s * 1000)));
    throw;
  }
}

}  // namespace c2c
