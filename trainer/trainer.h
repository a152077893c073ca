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

// Loss of one micro-batch: summed over supervised tokens, with their count, so accumulation
// and ranks can form the exact token mean of a whole optimizer step.
struct MicroLoss {
  torch::Tensor loss_sum;  // 0-d fp32, differentiable into the fuser
  int64_t tokens = 0;
  int64_t receiver_tokens = 0;  // all tokens the receiver processed (throughput)
  torch::Tensor row_loss;  // (B) fp32, detached: each row's summed loss (evaluation scores)
};

// The receiver's next-token loss over the loss range of each sample: prefix [0, P-1) prefilled
// without grad, fused in place when `fusion` is given (sharer prefill, fuser with grad), then the
// response section [P-1, end) run over that cache. Without `fusion` it is the receiver alone
// (training baseline, evaluation of a single model). Samples need sharer sequences only with it.
// checkpoint: keep none of the response pass's activations; recompute them in backward (the
// receiver's prefix K/V are the pass's only inputs with grad), for long responses.
MicroLoss receiver_loss(const LLM& receiver, const FusedPipeline* fusion,
                        const std::vector<PairedSample>& batch, bool checkpoint = false);

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
  MicroLoss forward(const std::vector<PairedSample>& batch, uint64_t noise_seed);

  // Sets train/eval mode of the fusers and the gate temperature of optimizer step `step`.
  void set_mode(bool training, int64_t step);

  torch::Device device() const { return device_; }

 private:
  Recipe recipe_;
  torch::Device device_ = torch::kCPU;
  std::unique_ptr<FusedPipeline> pipeline_;
};

// The whole run: `c2c train RECIPE.yaml`. Returns the final fuser folder. `stop_after` > 0 ends
// the run right after optimizer step `stop_after` has been checkpointed, as a kill would at that
// point (tests of resume); the final fuser is not exported then.
std::string run_training(const Recipe& recipe, int64_t stop_after = 0);

}  // namespace c2c
