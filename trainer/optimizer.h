// AdamW with fp32 master weights and learning-rate schedules. Written out rather than taken from
// torch::optim so its state saves by parameter name and resumes bit-exactly, and so bf16 compute
// copies can be refreshed from the fp32 masters after each step.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "modules/safetensors.h"

namespace c2c {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

class AdamW {
 public:
  // `params`: (name, fp32 tensor requiring grad) pairs; updated in place.
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions opts);
  // One update with learning rate `lr` from the parameters' .grad() (missing grads are zero).
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return steps_; }

  // Global L2 norm of all gradients; scales them to `max_norm` when above it (max_norm > 0).
  // Returns the norm before clipping. One host sync.
  double clip_grad_norm(double max_norm);

  // Moments and step count by parameter name, for exact resume.
  NamedTensors state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where);

 private:
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions opts_;
  int64_t steps_ = 0;
};

// Warm-up then decay: lr * s/warmup for s < warmup; then linear to 0, cosine to 0, or constant.
// `step` counts updates from 0; the first update already gets lr/warmup (transformers gives
// its first update lr 0).
double scheduled_lr(double base_lr, int64_t step, int64_t total_steps, int64_t warmup_steps,
                    const std::string& kind);

}  // namespace c2c
