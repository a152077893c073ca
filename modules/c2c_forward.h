// The one C2C forward and loss (DESIGN.md section 3). Every caller that scores text through a
// fused (or an unfused) receiver goes through c2c_loss: training micro-batches, every scored
// evaluation mode (the receiver alone, the sharer alone, text-to-text, C2C); pretraining uses its
// masked next-token loss. For one batch of paired samples it runs, in order:
//   1. the sharers' prefill of their own prompt tokens (no grad),
//   2. the receiver's prefill of its prompt prefix [0, P-1) (no grad: its own K/V are inputs),
//   3. the fusion of those prefix slots in place (FusedPipeline::fuse_into: layer map, token
//      alignment, multi-sharer mode, the StackedFuser with grad),
//   4. the receiver alone on the rest [P-1, end) over the fused cache,
//   5. the masked next-token loss over each sample's loss range [loss_start, loss_end), summed
//      per row and in total (only supervised rows reach the LM head).
// Fused generation (FusedPipeline::generate) runs steps 1-3 and then decodes.
//
// Legend: B rows, P prompt length of a row, T positions, E hidden size, V vocabulary.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "data/paired_dataset.h"
#include "modules/llm.h"

namespace c2c {

class FusedPipeline;

// Masked next-token loss: labels (B, T) int64 with -1 where no token is predicted; hidden
// (B, T, E) of `model`. Cross entropy in fp32 of the supervised positions only.
struct TokenLoss {
  torch::Tensor sum;   // 0-d, differentiable
  torch::Tensor rows;  // (B): each row's summed loss, differentiable
  torch::Tensor rows_exact;  // (B) bool, only when asked: every supervised token of the row is
                             // the logits' argmax (teacher-forced exact match; false for a row
                             // without any)
  int64_t tokens = 0;  // supervised positions
};
TokenLoss next_token_loss(const LLM& model, const torch::Tensor& hidden,
                          const torch::Tensor& labels, bool exact_match = false);

struct C2CLossOptions {
  // Activation checkpointing of the receiver's response pass: none of its activations are kept;
  // backward recomputes them from the prefix K/V (the pass's only inputs with grad).
  bool checkpoint_response = false;
  // Rows that share a prompt prefix may share its prefill and fusion: prompt_group[r] is the
  // group of row r (groups numbered from 0 in order of first appearance; every row of a group
  // must have the same prefix, which is checked). Empty: every row its own group.
  std::vector<int64_t> prompt_group;
  // Also each row's teacher-forced exact match (C2CLoss::row_exact): an argmax over the
  // vocabulary at every supervised position, which training steps do not need.
  bool exact_match = false;
};

// A batch's loss: summed over supervised tokens with their count, so accumulation and ranks can
// form the exact token mean of a whole optimizer step.
struct C2CLoss {
  torch::Tensor loss_sum;  // 0-d fp32, differentiable into the fuser
  torch::Tensor row_loss;  // (B) fp32, detached: each row's summed loss (evaluation scores)
  torch::Tensor row_exact; // (B) bool with options.exact_match: the row's supervised tokens are all
                           // the argmax (held-out accuracy); undefined otherwise
  int64_t tokens = 0;           // supervised tokens
  int64_t receiver_tokens = 0;  // all tokens the receiver processed (throughput)
};

// Steps 1-5 above for `batch` on `receiver`; without `fusion` the receiver alone (a single
// model's baseline; samples then need no sharer sequences). Throws naming the sample on a prompt
// length, loss range or alignment that does not fit its tokens.
C2CLoss c2c_loss(const LLM& receiver, const FusedPipeline* fusion,
                 const std::vector<PairedSample>& batch, const C2CLossOptions& options = {});

}  // namespace c2c
