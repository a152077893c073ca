#include "trainer/trainer.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "modules/common/error.h"
#include "modules/device.h"
#include "modules/fuser_checkpoint.h"
#include "modules/layer_map.h"

namespace c2c {

FuserTrainer::FuserTrainer(const Recipe& recipe) : recipe_(recipe) {
  device_ = resolve_device(recipe.train.device, "recipe: train.device");
  LoadOptions load;
  load.device = device_;
  load.dtype = resolve_dtype(recipe.train.dtype, device_, "recipe: train.dtype");
  auto receiver = LLM::load(recipe.receiver, load);
  std::vector<std::shared_ptr<LLM>> sharers;
  for (const auto& s : recipe.sharers) sharers.push_back(LLM::load(s, load));

  FuserCheckpoint ckpt;
  if (!recipe.fuser.init_from.empty()) {
    // fp32 master weights whatever the stored dtype.
    ckpt = load_fuser_checkpoint(recipe.fuser.init_from, torch::kFloat32);
  } else {
    ckpt.receiver_model = recipe.receiver;
    ckpt.multi_sharer = parse_multi_sharer_mode(recipe.fuser.multi_sharer);
    const ModelConfig& r = receiver->config();
    for (size_t j = 0; j < sharers.size(); ++j) {
      const ModelConfig& s = sharers[j]->config();
      FuserSet set;
      set.sharer_model = recipe.sharers[j];
      set.alignment = recipe.alignment;
      set.layer_map = parse_layer_map(recipe.fuser.layer_map, r.num_layers, s.num_layers);
      // The recipe's fuser section with the shapes of this pair (anneal_steps 0 was filled
      // with the run's length by run_training).
      FuserConfig& c = set.config;
      c = recipe.fuser.config;
      c.source_num_heads = s.num_kv_heads;
      c.source_head_dim = s.head_dim;
      c.target_num_heads = r.num_kv_heads;
      c.target_head_dim = r.head_dim;
      c.validate();
      // Each sharer's fuser set starts from its own seed so two sharers do not start identical.
      set.fuser = StackedFuser(c, set.layer_map.size(), static_cast<uint64_t>(recipe.train.seed) + 1000 * j);
      ckpt.sharers.push_back(std::move(set));
    }
  }
  for (auto& s : ckpt.sharers) s.fuser->to(device_);
  pipeline_ = std::make_unique<FusedPipeline>(receiver, sharers, std::move(ckpt));  // warns on other models
  // What this run trains with, recorded in every fuser it saves.
  FuserCheckpoint& trained = pipeline_->mutable_fusers();
  trained.receiver_model = recipe.receiver;
  trained.receiver_fingerprint = model_fingerprint(recipe.receiver);
  for (size_t j = 0; j < trained.sharers.size(); ++j) {
    trained.sharers[j].sharer_model = recipe.sharers[j];
    trained.sharers[j].sharer_fingerprint = model_fingerprint(recipe.sharers[j]);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> FuserTrainer::named_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const auto& sets = pipeline_->fusers().sharers;
  for (size_t j = 0; j < sets.size(); ++j)
    for (const auto& p : sets[j].fuser->named_parameters())
      out.emplace_back("sharer" + std::to_string(j) + "." + p.key(), p.value());
  return out;
}

void FuserTrainer::set_mode(bool training, int64_t step) {
  for (auto& s : pipeline_->mutable_fusers().sharers) {
    s.fuser->train(training);
    s.fuser->set_step(step);
    s.fuser->set_gate_noise(recipe_.fuser.gate_noise);
  }
}

C2CLoss FuserTrainer::forward(const std::vector<PairedSample>& batch, uint64_t noise_seed, bool exact_match) {
  for (size_t j = 0; j < pipeline_->sharers().size(); ++j)
    pipeline_->mutable_fusers().sharers[j].fuser->reseed(noise_seed + 7919 * j);
  C2CLossOptions options;
  options.checkpoint_response = recipe_.train.activation_checkpointing;
  options.exact_match = exact_match;
  return pipeline_->loss(batch, options);
}

std::vector<GateState> final_gate_states(const torch::Tensor& gate_logit,
                                         const std::vector<int64_t>& receiver_layers, double tau,
                                         bool gate_noise) {
  C2C_CHECK(gate_logit.dim() == 2 && gate_logit.size(0) == 2 &&
                gate_logit.size(1) == static_cast<int64_t>(receiver_layers.size()),
            "final_gate_states: gate logits of shape ", gate_logit.sizes(), " for ",
            receiver_layers.size(), " fused layers (expected (2, ", receiver_layers.size(), "))");
  C2C_CHECK(tau > 0, "final_gate_states: temperature ", tau, " must be > 0");
  auto logits = gate_logit.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const double* l = logits.data_ptr<double>();
  const auto sigmoid = [](double x) { return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x)); };
  std::vector<GateState> out;
  for (int64_t kind = 0; kind < 2; ++kind) {
    for (size_t i = 0; i < receiver_layers.size(); ++i) {
      GateState g;
      g.receiver_layer = receiver_layers[i];
      g.key = kind == 0;
      g.logit = l[kind * static_cast<int64_t>(receiver_layers.size()) + static_cast<int64_t>(i)];
      if (!gate_noise) {
        g.training = sigmoid(g.logit / tau);
      } else {
        // Mean over u ~ U[0,1) of sigmoid((logit + G(u)) / tau), G(u) = -log(-log u): midpoint
        // rule on 1<<14 points (the integrand is monotone in u, so the error is below 1e-4).
        constexpr int kPoints = 1 << 14;
        double sum = 0;
        for (int k = 0; k < kPoints; ++k) {
          const double u = (k + 0.5) / kPoints;
          sum += sigmoid((g.logit - std::log(-std::log(u))) / tau);
        }
        g.training = sum / kPoints;
      }
      g.open = g.logit > 0;
      g.part_open = g.training >= 0.05 && g.training <= 0.95;
      out.push_back(g);
    }
  }
  return out;
}

std::string describe_final_gates(const std::vector<GateState>& states, double tau) {
  std::ostringstream o;
  o << "gates at the end (tau " << std::setprecision(3) << tau
    << "; mean value in training -> state at inference):\n";
  std::vector<int64_t> layers;
  for (const auto& g : states)
    if (std::find(layers.begin(), layers.end(), g.receiver_layer) == layers.end())
      layers.push_back(g.receiver_layer);
  int64_t part_open = 0;
  for (int64_t layer : layers) {
    o << "  receiver layer " << layer << ":";
    for (const auto& g : states) {
      if (g.receiver_layer != layer) continue;
      o << "  " << (g.key ? "key " : "value ") << std::fixed << std::setprecision(2) << g.training
        << " -> " << (g.open ? "open" : "closed") << (g.part_open ? " (part-open)" : "");
      part_open += g.part_open;
    }
    o << "\n";
  }
  if (part_open > 0) {
    o << "warning: " << part_open << " of " << states.size()
      << " gates were part-open in training (mean value in [0.05, 0.95]); inference rounds them "
         "to the state shown, which training did not see: check the exported fuser with c2c "
         "eval before trusting it (README, the toy world, on the gates).\n";
  }
  return o.str();
}

}  // namespace c2c
