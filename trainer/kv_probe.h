// `c2c probe-kv`: does a sharer's KV cache hold what it recalls, at the slots a fuser reads?
//
// For every question of a benchmark file (JSON Lines, data/benchmark.h) the sharer reads its own
// prompt, aligned to the receiver exactly as `c2c prepare` aligns it (make_paired_sample: the
// same chat, options and alignment), so the slots probed are the slots the fuser is given. The
// features of one (layer, position) are that layer's cached K and V at the position, all KV
// heads concatenated (2 * H * D numbers). A linear classifier over those features, standardised
// with the training set's mean and deviation and trained full-batch with Adam, predicts the
// answer as a class (subject, choice); it is trained on one file (the toy world: the fuser's
// training people) and scored on another (the held-out people). The toy world's check asks this
// of the sharer before any fuser is trained (scripts/check_toy_world.py).
//
// Positions: the k-th fused slot from the end (k = 0 is the last fused slot; with `span_tail`
// that is the sharer's last prompt token) for k < positions_from_end, the mean over all fused
// slots, and, when every question of both files names its entity ("entity", as the toy world's
// files do), the name's slot: the last fused slot at or before the sharer token that ends the
// name (the first fused slot after it when none is before). Legend: N questions, F features, C
// classes.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/alignment.h"
#include "data/benchmark.h"
#include "data/tokenizer.h"
#include "modules/llm.h"

namespace c2c {

struct KvProbeOptions {
  std::string sharer;              // model folder (its tokenizer files beside the weights)
  std::string receiver_tokenizer;  // tokenizer folder of the receiver the fuser serves
  std::string alignment = "span_tail";
  std::string train, test;         // benchmark files: the probe learns on train, is scored on test
  int64_t positions_from_end = 4;  // fused slots probed from the end, besides the mean
  int64_t iterations = 300;        // full-batch Adam steps of each probe
  double lr = 1e-2;
  double weight_decay = 1e-3;
  int64_t seed = 0;
  int64_t batch_size = 64;         // questions per sharer prefill
};

struct KvProbeRow {
  int64_t layer = 0;
  std::string position;            // "fused slot -k" (k from the end), "mean over fused slots", "name's slot"
  double train_accuracy = 0, test_accuracy = 0;
};

struct KvProbeReport {
  std::string sharer, alignment, train, test;
  int64_t train_items = 0, test_items = 0, classes = 0;
  double chance = 0;               // mean over test items of 1 / choices
  std::vector<KvProbeRow> rows;    // layer-major, positions in the order above
  KvProbeRow best;                 // the row of the highest test accuracy (first one on ties)
  nlohmann::json to_json() const;
  std::string table() const;       // one line per layer, one column per position
};

// Every (layer, position) feature set of `items` for `sharer`, layer-major: ((layer, position),
// (N, 2 * H * D) fp32 on the CPU, rows in the order of `items`). Throws naming the item on one
// whose alignment fuses no slot, or, with `name_slot`, one that names no entity.
std::vector<std::pair<std::pair<int64_t, std::string>, torch::Tensor>> kv_probe_features(
    const LLM& sharer, const Tokenizer& sharer_tok, const Tokenizer& receiver_tok,
    const std::vector<McItem>& items, AlignMethod method, int64_t positions_from_end, int64_t batch_size,
    bool name_slot = false);

// The sharer token that ends `entity` where it first occurs in `question`, in `ids` (a rendered
// prompt that holds the question verbatim). Throws naming both when the prompt does not hold them.
int64_t entity_end_token(const Tokenizer& tok, const std::vector<int64_t>& ids, const std::string& question,
                         const std::string& entity);

// One linear probe: standardises with x_train's statistics, trains Linear(F, C) full-batch
// (cross entropy, Adam), returns {train accuracy, test accuracy}. Labels are in [0, classes).
std::pair<double, double> fit_linear_probe(const torch::Tensor& x_train, const torch::Tensor& y_train,
                                           const torch::Tensor& x_test, const torch::Tensor& y_test,
                                           int64_t classes, int64_t iterations, double lr,
                                           double weight_decay, int64_t seed);

KvProbeReport run_kv_probe(const KvProbeOptions& options, std::ostream& log);

}  // namespace c2c
