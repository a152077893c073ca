// The one C2C forward and loss (c2c_forward.h).
#include "modules/c2c_forward.h"

#include <algorithm>

#include "modules/common/error.h"
#include "modules/fused_pipeline.h"
#include "modules/generate.h"

namespace c2c {
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

// A growing cache whose row i is row index[i] of `c` (a prompt-only cache: its rows' positions
// count their valid slots from 0, so committing the selected validity restores them).
KVCache select_rows(const KVCache& c, const torch::Tensor& index, torch::Device device) {
  KVCache out = KVCache::growing(c.num_layers(), index.size(0), device);
  if (c.length() == 0) return out;
  for (int64_t l = 0; l < c.num_layers(); ++l)
    out.append(l, c.key(l).index_select(0, index), c.value(l).index_select(0, index));
  out.commit(c.valid().index_select(0, index));
  return out;
}

// Checks one sample against the sequence layout c2c_loss relies on.
void check_sample(const PairedSample& ex, size_t n_sharers) {
  const std::string problem = sample_layout_problem(ex);  // data/paired_dataset.h
  C2C_CHECK(problem.empty(), "sample ", ex.index, ": ", problem);
  C2C_CHECK(n_sharers == 0 || ex.sharers.size() == n_sharers, "sample ", ex.index, " has ", ex.sharers.size(),
            " sharer sequences for ", n_sharers,
            " sharers\nHINT: prepare the data with the recipe's sharer tokenizers");
  for (size_t j = 0; j < n_sharers; ++j)
    C2C_CHECK(static_cast<int64_t>(ex.sharers[j].slot_of.size()) >= ex.prompt_length - 1, "sample ",
              ex.index, ": sharer ", j, " alignment covers ", ex.sharers[j].slot_of.size(), " of ",
              ex.prompt_length - 1, " prompt positions");
}

}  // namespace

TokenLoss next_token_loss(const LLM& model, const torch::Tensor& hidden,
                          const torch::Tensor& labels, bool exact_match) {
  C2C_CHECK(hidden.dim() == 3 && labels.dim() == 2 && labels.size(0) == hidden.size(0) &&
                labels.size(1) == hidden.size(1),
            "next_token_loss: hidden (B, T, E) and labels (B, T) disagree");
  const int64_t B = hidden.size(0), T = hidden.size(1);
  const auto dev = hidden.device();
  auto flat = labels.reshape({-1});
  auto rows = (flat >= 0).nonzero().view({-1});  // supervised positions (host when labels are)
  auto picked = hidden.reshape({B * T, -1}).index_select(0, rows.to(dev));
  const auto logits = model.logits(picked);
  const auto targets = flat.index_select(0, rows).to(dev);
  auto per_token = torch::nn::functional::cross_entropy(
      logits, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  const auto row_of = rows.div(T, "floor").to(dev);
  TokenLoss out;
  out.sum = per_token.sum();
  out.rows = torch::zeros({B}, per_token.options()).index_add(0, row_of, per_token);
  if (exact_match) {
    torch::NoGradGuard no_grad;
    auto misses = torch::zeros({B}, logits.options().dtype(torch::kInt64));
    misses.index_add_(0, row_of, logits.argmax(-1).ne(targets).to(torch::kInt64));
    const auto supervised = torch::zeros({B}, misses.options().dtype(torch::kBool)).index_fill_(0, row_of, true);
    out.rows_exact = misses.eq(0).logical_and(supervised);
  }
  out.tokens = rows.size(0);
  return out;
}

C2CLoss c2c_loss(const LLM& receiver, const FusedPipeline* fusion,
                 const std::vector<PairedSample>& batch, const C2CLossOptions& options) {
  const int64_t B = static_cast<int64_t>(batch.size());
  C2C_CHECK(B > 0, "c2c_loss: empty batch");
  const size_t n_sharers = fusion ? fusion->sharers().size() : 0;
  std::vector<int64_t> group = options.prompt_group;
  if (group.empty()) {
    group.resize(B);
    for (int64_t b = 0; b < B; ++b) group[b] = b;
  }
  C2C_CHECK(static_cast<int64_t>(group.size()) == B, "c2c_loss: ", group.size(),
            " prompt groups for ", B, " rows");

  // The first row of every group carries its prompt; each row its response section [P-1, end).
  std::vector<int64_t> first;
  std::vector<std::vector<int64_t>> prefix, response;
  std::vector<SharerInput> inputs(n_sharers);
  C2CLoss out;
  for (int64_t b = 0; b < B; ++b) {
    const PairedSample& ex = batch[b];
    check_sample(ex, n_sharers);
    out.tokens += ex.loss_end - ex.loss_start;
    out.receiver_tokens += ex.length();
    response.emplace_back(ex.receiver_ids.begin() + ex.prompt_length - 1, ex.receiver_ids.end());
    const int64_t g = group[b];
    C2C_CHECK(g >= 0 && g <= static_cast<int64_t>(first.size()), "c2c_loss: prompt group ", g,
              " of row ", b, " is not numbered in order of first appearance");
    if (g < static_cast<int64_t>(first.size())) {
      const PairedSample& lead = batch[first[g]];
      C2C_CHECK(lead.prompt_length == ex.prompt_length &&
                    std::equal(ex.receiver_ids.begin(), ex.receiver_ids.begin() + ex.prompt_length - 1,
                               lead.receiver_ids.begin()),
                "c2c_loss: row ", b, " (sample ", ex.index, ") shares prompt group ", g,
                " but not its prompt");
      continue;
    }
    first.push_back(b);
    prefix.emplace_back(ex.receiver_ids.begin(), ex.receiver_ids.begin() + ex.prompt_length - 1);
    for (size_t j = 0; j < n_sharers; ++j) {
      const auto& s = ex.sharers[j];
      inputs[j].ids.push_back(s.ids);
      inputs[j].mask.push_back(s.mask);
      inputs[j].slot_of.emplace_back(s.slot_of.begin(), s.slot_of.begin() + ex.prompt_length - 1);
    }
  }
  const bool grouped = static_cast<int64_t>(first.size()) < B;

  // Steps 1-3: sharers' prefill, the receiver's prefix prefill, the fusion.
  const auto dev = receiver.device();
  std::vector<KVCache> sharer_caches;
  if (fusion) sharer_caches = fusion->prefill_sharers(inputs);
  KVCache cache = receiver.new_cache(static_cast<int64_t>(first.size()), 0);  // growing
  {
    torch::NoGradGuard no_grad;  // the receiver's own prefix K/V are inputs, not a parameter path
    auto [ids, mask] = pad_batch(prefix);
    receiver.forward_hidden(ids.to(dev), mask.to(dev), cache);
  }
  if (fusion) fusion->fuse_into(cache, sharer_caches, inputs);
  if (grouped) cache = select_rows(cache, torch::tensor(group).to(dev), dev);

  // Step 4: the receiver alone on the response sections.
  auto [rids, rmask] = pad_batch(response);
  torch::Tensor hidden;  // (B, Tr, E)
  if (options.checkpoint_response && torch::GradMode::is_enabled() && cache.length() > 0) {
    std::vector<torch::Tensor> kv;
    for (int64_t l = 0; l < cache.num_layers(); ++l) {
      kv.push_back(cache.key(l));
      kv.push_back(cache.value(l));
    }
    hidden = CheckpointedResponse::apply(torch::TensorList(kv), cache.valid(), rids.to(dev),
                                         rmask.to(dev), &receiver);
  } else {
    hidden = receiver.forward_hidden(rids.to(dev), rmask.to(dev), cache);
  }

  // Step 5: response position t (receiver position P-1+t) predicts receiver token P+t, which
  // carries the loss when it lies in [loss_start, loss_end).
  const int64_t Tr = rids.size(1);
  auto labels = torch::full({B, Tr}, -1, torch::kInt64);
  auto la = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const PairedSample& ex = batch[b];
    for (int64_t pos = ex.loss_start; pos < ex.loss_end; ++pos)
      la[b][pos - ex.prompt_length] = ex.receiver_ids[pos];
  }
  TokenLoss loss = next_token_loss(receiver, hidden, labels, options.exact_match);
  out.loss_sum = loss.sum;
  out.row_loss = loss.rows.detach();
  out.row_exact = loss.rows_exact;
  return out;
}

}  // namespace c2c
