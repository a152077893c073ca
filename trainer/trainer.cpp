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
      FuserConfig& c = set.config;
      c.source_num_heads = s.num_kv_heads;
      c.source_head_dim = s.head_dim;
      c.target_num_heads = r.num_kv_heads;
      c.target_head_dim = r.head_dim;
      c.hidden_dim = recipe.fuser.hidden_dim;
      c.intermediate_dim = recipe.fuser.intermediate_dim;
      c.num_layers = recipe.fuser.num_layers;
      c.dropout = recipe.fuser.dropout;
      c.initial_temperature = recipe.fuser.initial_temperature;
      c.final_temperature = recipe.fuser.final_temperature;
      c.anneal_steps = recipe.fuser.anneal_steps;  // run_training fills 0 with the run's length
      c.anneal = parse_anneal_kind(recipe.fuser.anneal);
      c.variant = parse_fuser_variant(recipe.fuser.variant);
      c.validate();
      // Each sharer's fuser set starts from its own seed so two sharers do not start identical.
      set.fuser = StackedFuser(c, set.layer_map.size(), static_cast<uint64_t>(recipe.train.seed) + 1000 * j);
      ckpt.sharers.push_back(std::move(set));
    }
  }
  for (auto& s : ckpt.sharers) s.fuser->to(device_);
  pipeline_ = std::make_unique<FusedPipeline>(receiver, sharers, std::move(ckpt));
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

MicroLoss FuserTrainer::forward(const std::vector<PairedSample>& batch, uint64_t noise_seed) {
  for (size_t j = 0; j < pipeline_->sharers().size(); ++j)
    pipeline_->mutable_fusers().sharers[j].fuser->reseed(noise_seed + 7919 * j);
  return receiver_loss(*pipeline_->receiver(), pipeline_.get(), batch,
                       recipe_.train.activation_checkpointing);
}

namespace {

// Activation checkpointing of the receiver's response pass: forward runs without keeping
// activations; backward rebuilds the prefix cache from its K/V (the pass's only inputs with
// grad; the receiver's weights are frozen), reruns the pass with grad and differentiates it.
// The prefix cache holds only the prompt, so each row's positions continue from its count of
// valid slots, which committing the validity restores.
class CheckpointedResponse : public torch::autograd::Function<CheckpointedResponse> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::TensorList kv,
                               const torch::Tensor& valid, const torch::Tensor& ids,
                               const torch::Tensor& mask, const LLM* model) {
    std::vector<torch::Tensor> saved(kv.begin(), kv.end());
    saved.push_back(valid);
    saved.push_back(ids);
    saved.push_back(mask);
    ctx->save_for_backward(saved);
    ctx->saved_data["model"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(model));
    return run(*model, kv.vec(), valid, ids, mask);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto* model = reinterpret_cast<const LLM*>(static_cast<intptr_t>(ctx->saved_data["model"].toInt()));
    const size_t n = saved.size() - 3;
    std::vector<torch::Tensor> kv;
    for (size_t i = 0; i < n; ++i) kv.push_back(saved[i].detach().requires_grad_(true));
    torch::Tensor hidden;
    {
      torch::AutoGradMode enable(true);
      hidden = run(*model, kv, saved[n], saved[n + 1], saved[n + 2]);
    }
    auto grads = torch::autograd::grad({hidden}, kv, {grad_out[0]}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    grads.resize(n + 4);  // valid, ids, mask, model: no grad
    return grads;
  }

 private:
  static torch::Tensor run(const LLM& model, const std::vector<torch::Tensor>& kv,
                           const torch::Tensor& valid, const torch::Tensor& ids, const torch::Tensor& mask) {
    const int64_t L = static_cast<int64_t>(kv.size() / 2);
    KVCache cache = KVCache::growing(L, ids.size(0), model.device());
    if (valid.size(1) > 0) {
      for (int64_t l = 0; l < L; ++l) cache.append(l, kv[2 * l], kv[2 * l + 1]);
      cache.commit(valid);
    }
    return model.forward_hidden(ids, mask, cache);
  }
};

}  // namespace

MicroLoss receiver_loss(const LLM& receiver, const FusedPipeline* fusion,
                        const std::vector<PairedSample>& batch, bool checkpoint) {
  const int64_t B = static_cast<int64_t>(batch.size());
  C2C_CHECK(B > 0, "receiver_loss: empty batch");
  const size_t n_sharers = fusion ? fusion->sharers().size() : 0;

  // Split every row into the fused prefix [0, P-1) and the response section [P-1, end).
  std::vector<std::vector<int64_t>> prefix(B), response(B);
  std::vector<SharerInput> inputs(n_sharers);
  MicroLoss out;
  for (int64_t b = 0; b < B; ++b) {
    const PairedSample& ex = batch[b];
    const int64_t n = static_cast<int64_t>(ex.receiver_ids.size());
    C2C_CHECK(ex.prompt_length >= 1 && ex.prompt_length < n, "sample ", ex.index,
              ": prompt length ", ex.prompt_length, " must be in [1, ", n, ") so a response remains");
    C2C_CHECK(!fusion || ex.sharers.size() == n_sharers, "sample ", ex.index, " has ", ex.sharers.size(),
              " sharer sequences for ", n_sharers, " sharers\nHINT: prepare the data with the "
              "recipe's sharer tokenizers");
    prefix[b].assign(ex.receiver_ids.begin(), ex.receiver_ids.begin() + ex.prompt_length - 1);
    response[b].assign(ex.receiver_ids.begin() + ex.prompt_length - 1, ex.receiver_ids.end());
    C2C_CHECK(ex.loss_start >= ex.prompt_length && ex.loss_end <= n && ex.loss_start < ex.loss_end,
              "sample ", ex.index, ": loss range [", ex.loss_start, ", ", ex.loss_end,
              ") must lie in the response [", ex.prompt_length, ", ", n, ")");
    out.tokens += ex.loss_end - ex.loss_start;
    out.receiver_tokens += n;
    for (size_t j = 0; j < n_sharers; ++j) {
      const auto& s = ex.sharers[j];
      C2C_CHECK(static_cast<int64_t>(s.slot_of.size()) >= ex.prompt_length - 1, "sample ", ex.index,
                ": sharer ", j, " alignment covers ", s.slot_of.size(), " of ", ex.prompt_length - 1,
                " prompt positions");
      inputs[j].ids.push_back(s.ids);
      inputs[j].mask.push_back(s.mask);
      inputs[j].slot_of.emplace_back(s.slot_of.begin(), s.slot_of.begin() + ex.prompt_length - 1);
    }
  }
  const auto dev = receiver.device();
  std::vector<KVCache> sharer_caches;
  if (fusion) sharer_caches = fusion->prefill_sharers(inputs);
  KVCache cache = receiver.new_cache(B, 0);  // growing: the fused slices stay in the graph
  {
    torch::NoGradGuard no_grad;  // the receiver's own prefix KV is an input, not a parameter path
    auto [ids, mask] = pad_batch(prefix);
    receiver.forward_hidden(ids.to(dev), mask.to(dev), cache);
  }
  if (fusion) fusion->fuse_into(cache, sharer_caches, inputs);

  auto [rids, rmask] = pad_batch(response);
  torch::Tensor hidden;  // (B, Tr, E)
  if (checkpoint && torch::GradMode::is_enabled() && cache.length() > 0) {
    std::vector<torch::Tensor> kv;
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      kv.push_back(cache.key(l));
      kv.push_back(cache.value(l));
    }
    hidden = CheckpointedResponse::apply(torch::TensorList(kv), cache.valid(), rids.to(dev), rmask.to(dev), &receiver);
  } else {
    hidden = receiver.forward_hidden(rids.to(dev), rmask.to(dev), cache);
  }
  // Labels: response position t (receiver position P-1+t) predicts receiver token P+t, which
  // carries the loss when it lies in [loss_start, loss_end). Only supervised rows go through
  // the LM head (V can be 150k).
  const int64_t Tr = rids.size(1);
  auto labels = torch::full({B, Tr}, -1, torch::kInt64);
  auto la = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const PairedSample& ex = batch[b];
    for (int64_t pos = ex.loss_start; pos < ex.loss_end; ++pos)
      la[b][pos - ex.prompt_length] = ex.receiver_ids[pos];
  }
  auto flat_labels = labels.view({-1});
  auto rows = (flat_labels >= 0).nonzero().view({-1});
  auto picked = hidden.reshape({B * Tr, -1}).index_select(0, rows.to(dev));
  auto logits = receiver.logits(picked);  // (tokens, V) fp32
  auto per_token = torch::nn::functional::cross_entropy(
      logits, flat_labels.index_select(0, rows).to(dev),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  out.loss_sum = per_token.sum();
  out.row_loss = torch::zeros({B}, per_token.options())
                     .index_add(0, rows.div(Tr, "floor").to(dev), per_token.detach());
  return out;
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
