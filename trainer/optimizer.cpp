#include "trainer/optimizer.h"

#include <cmath>

#include "modules/common/error.h"

namespace c2c {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions opts)
    : params_(std::move(params)), opts_(opts) {
  for (const auto& [name, p] : params_) {
    C2C_CHECK(p.scalar_type() == torch::kFloat32, "AdamW: parameter '", name,
              "' must be fp32 (master weights)");
    exp_avg_.push_back(torch::zeros_like(p));
    exp_avg_sq_.push_back(torch::zeros_like(p));
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

double AdamW::clip_grad_norm(double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> sq;
  for (const auto& [name, p] : params_)
    if (p.grad().defined()) sq.push_back(p.grad().to(torch::kFloat64).pow(2).sum());
  if (sq.empty()) return 0.0;
  const double norm = std::sqrt(torch::stack(sq).sum().item<double>());
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);  // as torch.nn.utils.clip_grad_norm_
    for (auto& [name, p] : params_)
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
  }
  return norm;
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1.0 - std::pow(opts_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(opts_.beta2, static_cast<double>(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    if (!p.grad().defined()) continue;
    const torch::Tensor& g = p.grad();
    p.mul_(1.0 - lr * opts_.weight_decay);  // decoupled weight decay
    exp_avg_[i].mul_(opts_.beta1).add_(g, 1.0 - opts_.beta1);
    exp_avg_sq_[i].mul_(opts_.beta2).addcmul_(g, g, 1.0 - opts_.beta2);
    auto denom = (exp_avg_sq_[i] / bc2).sqrt_().add_(opts_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bc1);
  }
}

NamedTensors AdamW::state() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + params_[i].first, exp_avg_[i]);
    out.emplace_back("exp_avg_sq." + params_[i].first, exp_avg_sq_[i]);
  }
  out.emplace_back("steps", torch::tensor({steps_}, torch::kInt64));
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where) {
  auto get = [&](const std::string& key, const torch::Tensor& like) {
    auto it = state.find(key);
    C2C_CHECK(it != state.end(), where, ": missing optimizer tensor '", key, "'");
    C2C_CHECK(it->second.sizes() == like.sizes(), where, ": optimizer tensor '", key,
              "' has the wrong shape\nHINT: the checkpoint was written for another fuser shape");
    return it->second.to(like.options());
  };
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(get("exp_avg." + params_[i].first, exp_avg_[i]));
    exp_avg_sq_[i].copy_(get("exp_avg_sq." + params_[i].first, exp_avg_sq_[i]));
  }
  auto it = state.find("steps");
  C2C_CHECK(it != state.end(), where, ": missing optimizer tensor 'steps'");
  steps_ = it->second.item<int64_t>();
  C2C_CHECK(state.size() == 2 * params_.size() + 1, where, ": ", state.size(),
            " optimizer tensors for ", params_.size(), " parameters (expected ",
            2 * params_.size() + 1, ")");
}

double scheduled_lr(double base_lr, int64_t step, int64_t total_steps, int64_t warmup_steps,
                    const std::string& kind) {
  if (warmup_steps > 0 && step < warmup_steps)
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == "constant" || total_steps <= warmup_steps) return base_lr;
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) /
                                            static_cast<double>(total_steps - warmup_steps));
  if (kind == "cosine") return base_lr * 0.5 * (1.0 + std::cos(M_PI * progress));
  return base_lr * (1.0 - progress);  // linear
}

}  // namespace c2c
