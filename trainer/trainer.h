// The training loop of a C2C fuser (DESIGN.md sections 3, 4, 7): both LLMs frozen, paired
// prompts streamed in, the receiver's next-token loss on the final assistant turn computed over
// the fused prompt cache, AdamW on the fuser parameters only, checkpoints with exact resume.
//
// Legend: B rows, P prompt length of a row, E receiver hidden size, V vocabulary.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "data/paired_dataset.h"
#include "modules/fused_pipeline.h"
#include "modules/llm.h"
#include "trainer/optimizer.h"
#include "trainer/recipe.h"

namespace c2c {

class FuserTrainer {
 public:
  // Loads the frozen models and builds (or loads, fuser.init_from) the fuser sets.
  explicit FuserTrainer(const Recipe& recipe);

  const Recipe& recipe() const { return recipe_; }
  FusedPipeline& pipeline() { return *pipeline_; }
  const FuserCheckpoint& fusers() const { return pipeline_->fusers(); }
  // (name, fp32 parameter) of every trainable tensor, names as in our checkpoint format.
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;

  // Forward of a micro-batch: sharer prefill (no grad), receiver prefix prefill (no grad),
  // fusion (grad), receiver forward of the response section over the fused cache (grad).
  // `noise_seed` seeds gate noise and dropout for this micro-batch.
  // The loss is the one C2C forward's (FusedPipeline::loss, modules/c2c_forward.h).
  // exact_match: also each row's teacher-forced exact match (held-out evaluation).
  C2CLoss forward(const std::vector<PairedSample>& batch, uint64_t noise_seed, bool exact_match = false);

  // Sets train/eval mode of the fusers and the gate temperature of optimizer step `step`.
  void set_mode(bool training, int64_t step);

  torch::Device device() const { return device_; }

 private:
  Recipe recipe_;
  torch::Device device_ = torch::kCPU;
  std::unique_ptr<FusedPipeline> pipeline_;
};

// The gates of one fuser set at the end of training, per fused receiver layer: each key and
// value gate as training saw it at temperature tau (its mean value: sigmoid(logit / tau) without
// noise; with Gumbel noise the mean of sigmoid((logit + G) / tau) over G, which for small tau is
// the chance 1 - exp(-e^logit) that the gate was open) and as inference uses it (open when
// logit > 0). A gate whose training mean lies in [0.05, 0.95] is "part-open": inference rounds
// it, so the exported fuser does something its training did not.
struct GateState {
  int64_t receiver_layer = 0;
  bool key = true;  // false: the value gate
  double logit = 0;
  double training = 0;  // mean gate value in training at tau
  bool open = false;    // at inference
  bool part_open = false;
};
// gate_logit: (2, Lf) of StackedFuser (row 0 keys, row 1 values); receiver_layers: Lf entries.
std::vector<GateState> final_gate_states(const torch::Tensor& gate_logit,
                                         const std::vector<int64_t>& receiver_layers, double tau,
                                         bool gate_noise);
// Lines for the training log: the gates by layer, then a warning where some are part-open.
std::string describe_final_gates(const std::vector<GateState>& states, double tau);

// The whole run: `c2c train RECIPE.yaml`. Returns the final fuser folder. `stop_after` > 0 ends
// the run right after optimizer step `stop_after` has been checkpointed, as a kill would at that
// point (tests of resume); the final fuser is not exported then.
std::string run_training(const Recipe& recipe, int64_t stop_after = 0);

}  // namespace c2c
