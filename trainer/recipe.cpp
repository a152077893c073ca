#include "trainer/recipe.h"

#include <cmath>

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "trainer/config_table.h"

namespace c2c {
namespace {

using config::Field;
using config::field;

// One table of every recipe key (config_table.h): the parser, the printer and --set walk it.
std::vector<Field> fields(Recipe& r) {
  return {
      field("receiver", r.receiver),
      field("sharers", r.sharers),
      field("alignment", r.alignment),
      field("fuser.hidden_dim", r.fuser.config.hidden_dim),
      field("fuser.intermediate_dim", r.fuser.config.intermediate_dim),
      field("fuser.num_layers", r.fuser.config.num_layers),
      field("fuser.dropout", r.fuser.config.dropout),
      field("fuser.initial_temperature", r.fuser.config.initial_temperature),
      field("fuser.final_temperature", r.fuser.config.final_temperature),
      field("fuser.anneal_steps", r.fuser.config.anneal_steps),
      config::choice_field<AnnealKind>("fuser.anneal", r.fuser.config.anneal, parse_anneal_kind,
                                       anneal_kind_name),
      field("fuser.layer_map", r.fuser.layer_map),
      field("fuser.multi_sharer", r.fuser.multi_sharer),
      field("fuser.init_from", r.fuser.init_from),
      field("fuser.gate_noise", r.fuser.gate_noise),
      config::choice_field<FuserVariant>("fuser.variant", r.fuser.config.variant,
                                         parse_fuser_variant, fuser_variant_name),
      field("data.train", r.data.train),
      field("data.eval", r.data.eval),
      field("data.shuffle_buffer", r.data.shuffle_buffer),
      field("data.pack_window", r.data.pack_window),
      field("data.max_samples", r.data.max_samples),
      field("train.max_steps", r.train.max_steps),
      field("train.micro_batch_size", r.train.micro_batch_size),
      field("train.grad_accum", r.train.grad_accum),
      field("train.lr", r.train.lr),
      field("train.weight_decay", r.train.weight_decay),
      field("train.warmup_ratio", r.train.warmup_ratio),
      field("train.schedule", r.train.schedule),
      field("train.max_grad_norm", r.train.max_grad_norm),
      field("train.adam_beta1", r.train.adam_beta1),
      field("train.adam_beta2", r.train.adam_beta2),
      field("train.adam_eps", r.train.adam_eps),
      field("train.seed", r.train.seed),
      field("train.device", r.train.device),
      field("train.dtype", r.train.dtype),
      field("train.log_every", r.train.log_every),
      field("train.eval_every", r.train.eval_every),
      field("train.eval_batches", r.train.eval_batches),
      field("train.select_on", r.train.select_on),
      field("train.early_stop_evals", r.train.early_stop_evals),
      field("train.threads", r.train.threads),
      field("train.max_bad_steps", r.train.max_bad_steps),
      field("train.activation_checkpointing", r.train.activation_checkpointing),
      field("train.dist_timeout_s", r.train.dist_timeout_s),
      field("checkpoint.dir", r.checkpoint.dir),
      field("checkpoint.every", r.checkpoint.every),
      field("checkpoint.keep_last", r.checkpoint.keep_last),
      field("checkpoint.keep_best", r.checkpoint.keep_best),
      field("checkpoint.resume", r.checkpoint.resume),
      field("checkpoint.strict_resume", r.checkpoint.strict_resume),
      field("checkpoint.overwrite", r.checkpoint.overwrite),
      field("export.official", r.exports.official),
      field("export.official_dtype", r.exports.official_dtype),
  };
}

}  // namespace

Recipe Recipe::from_yaml_text(const std::string& text, const std::string& source,
                              const std::vector<std::string>& overrides) {
  Recipe r;
  auto table = fields(r);
  config::parse(text, source, table, {"fuser", "data", "train", "checkpoint", "export"}, overrides,
                "recipe");
  r.validate();
  return r;
}

Recipe Recipe::load(const std::string& path, const std::vector<std::string>& overrides) {
  C2C_CHECK(!std::filesystem::is_directory(path), "recipe '", path, "' is a folder, not a YAML file",
            "\nHINT: give the recipe file (e.g. recipes/demo.yaml); a run folder holds the recipe it "
            "used as ", path, "/recipe.yaml");
  return from_yaml_text(read_file(path), path, overrides);
}

std::string Recipe::to_yaml() const {
  Recipe copy = *this;
  auto table = fields(copy);
  return config::emit(table);
}

std::vector<std::string> Recipe::changes_from(const Recipe& earlier) const {
  // Flattened "section.key" -> value text of both resolved recipes.
  auto flat = [](const Recipe& r) {
    std::map<std::string, std::string> out;
    const YAML::Node root = YAML::Load(r.to_yaml());
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      if (kv.second.IsMap()) {
        for (const auto& sub : kv.second) out[key + "." + sub.first.as<std::string>()] = YAML::Dump(sub.second);
      } else {
        out[key] = YAML::Dump(kv.second);
      }
    }
    return out;
  };
  const auto now = flat(*this), before = flat(earlier);
  std::vector<std::string> changed;
  for (const auto& [key, value] : now) {
    auto it = before.find(key);
    const std::string old = it == before.end() ? "(absent)" : it->second;
    if (old != value) changed.push_back(key + ": " + old + " -> " + value);
  }
  return changed;
}

void Recipe::validate() const {
  auto one_of = [](const std::string& key, const std::string& v, std::initializer_list<const char*> ok) {
    std::string list;
    for (const char* o : ok) {
      if (v == o) return;
      list += std::string(list.empty() ? "" : ", ") + o;
    }
    fail("recipe: ", key, " must be one of ", list, "; got '", v, "'");
  };
  C2C_CHECK(!receiver.empty(), "recipe: 'receiver' (a model folder) is required");
  C2C_CHECK(!sharers.empty(), "recipe: 'sharers' needs at least one model folder");
  one_of("alignment", alignment, {"identity", "reference_first", "reference_longest", "span", "span_tail"});
  fuser.config.validate("recipe", "fuser.");  // the fuser's own rules (modules/fuser.h)
  one_of("fuser.multi_sharer", fuser.multi_sharer, {"sequential", "parallel"});
  one_of("export.official_dtype", exports.official_dtype, {"bfloat16", "float32"});
  C2C_CHECK(!exports.official ||
                fuser_variant_spec(fuser.config.variant).combine == FuserVariantSpec::Combine::gated,
            "recipe: export.official is true but fuser.variant is '", fuser_variant_name(fuser.config.variant),
            "': the official layout's projector always gates, so it cannot run this ablation\nHINT: "
            "set export.official: false (the run's final/ holds the fuser in our format)");
  const bool replaces = fuser_variant_spec(fuser.config.variant).combine == FuserVariantSpec::Combine::replace;
  C2C_CHECK(!(replaces && fuser.multi_sharer == "parallel" && sharers.size() > 1), "recipe: fuser.variant '",
            fuser_variant_name(fuser.config.variant), "' replaces the receiver's cache, so several "
            "sharers cannot be summed in parallel\nHINT: use fuser.multi_sharer: sequential");
  C2C_CHECK(!data.train.empty(), "recipe: data.train (a folder written by `c2c prepare`) is required");
  C2C_CHECK(train.micro_batch_size > 0 && train.grad_accum > 0,
            "recipe: train.micro_batch_size and train.grad_accum must be > 0");
  // Ranges, named with the key, the value and what is accepted (a NaN fails every check below).
  auto in_range = [](const std::string& key, double v, bool ok, const char* accepted) {
    if (!(ok && std::isfinite(v))) fail("recipe: ", key, " = ", v, " is out of range: ", accepted);
  };
  auto at_least = [](const std::string& key, int64_t v, int64_t lo, const char* meaning) {
    if (v < lo) fail("recipe: ", key, " = ", v, " is out of range: must be >= ", lo, meaning);
  };
  in_range("train.lr", train.lr, train.lr > 0, "a finite number > 0");
  in_range("train.weight_decay", train.weight_decay, train.weight_decay >= 0, ">= 0");
  in_range("train.max_grad_norm", train.max_grad_norm, train.max_grad_norm >= 0, ">= 0 (0: no clipping)");
  in_range("train.adam_beta1", train.adam_beta1, train.adam_beta1 >= 0 && train.adam_beta1 < 1, "[0, 1)");
  in_range("train.adam_beta2", train.adam_beta2, train.adam_beta2 >= 0 && train.adam_beta2 < 1, "[0, 1)");
  in_range("train.adam_eps", train.adam_eps, train.adam_eps > 0, "> 0 (1e-8 is usual)");
  in_range("train.dist_timeout_s", train.dist_timeout_s, train.dist_timeout_s > 0, "> 0 seconds");
  at_least("train.log_every", train.log_every, 1, " (steps between progress lines)");
  at_least("train.eval_every", train.eval_every, 0, " (0: no held-out loss)");
  at_least("train.eval_batches", train.eval_batches, 1, " (batches of the held-out loss)");
  at_least("train.early_stop_evals", train.early_stop_evals, 0, " (0: no early stop)");
  at_least("train.threads", train.threads, 0, " (0: every core)");
  at_least("train.max_bad_steps", train.max_bad_steps, 0, "");
  at_least("data.shuffle_buffer", data.shuffle_buffer, 0, " (0 or 1: file order)");
  at_least("data.pack_window", data.pack_window, 1, " (1: no packing)");
  at_least("data.max_samples", data.max_samples, 0, " (0: every sample)");
  at_least("checkpoint.every", checkpoint.every, 0, " (0: only at the end)");
  C2C_CHECK(fuser.config.final_temperature <= fuser.config.initial_temperature,
            "recipe: fuser.final_temperature = ", fuser.config.final_temperature,
            " is above fuser.initial_temperature = ", fuser.config.initial_temperature,
            ": the gate temperature anneals downwards\nHINT: swap them (the method uses 1.0 -> 0.001)");
  C2C_CHECK(train.eval_every == 0 || !data.eval.empty(), "recipe: train.eval_every = ", train.eval_every,
            " but data.eval is empty: there is no held-out data to evaluate\nHINT: set data.eval to a "
            "folder written by `c2c prepare`, or train.eval_every: 0");
  C2C_CHECK(train.eval_every > 0 || (train.early_stop_evals == 0 && !checkpoint.keep_best),
            "recipe: ", train.early_stop_evals > 0 ? "train.early_stop_evals" : "checkpoint.keep_best",
            " selects on the held-out loss, but train.eval_every is 0 (none is computed)\nHINT: set "
            "train.eval_every and data.eval (a validation set prepared by `c2c prepare`)");
  C2C_CHECK(train.warmup_ratio >= 0 && train.warmup_ratio < 1, "recipe: train.warmup_ratio must be in [0, 1)");
  one_of("train.schedule", train.schedule, {"linear", "cosine", "constant"});
  one_of("train.select_on", train.select_on, {"loss", "accuracy"});
  one_of("train.device", train.device, {"auto", "cpu", "cuda"});
  one_of("train.dtype", train.dtype, {"auto", "float32", "bfloat16"});
  C2C_CHECK(train.max_steps >= 0, "recipe: train.max_steps must be >= 0");
  C2C_CHECK(checkpoint.keep_last >= 1, "recipe: checkpoint.keep_last must be >= 1");
  C2C_CHECK(!checkpoint.dir.empty(), "recipe: checkpoint.dir is required");
}

}  // namespace c2c
