#include "modules/fused_pipeline.h"

#include <chrono>
#include <iostream>

#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {

SharerInput identity_alignment(const std::vector<std::vector<int64_t>>& receiver_prefixes) {
  SharerInput in;
  in.ids = receiver_prefixes;
  for (const auto& row : receiver_prefixes) {
    std::vector<int64_t> slots(row.size());
    for (size_t i = 0; i < row.size(); ++i) slots[i] = static_cast<int64_t>(i);
    in.slot_of.push_back(std::move(slots));
  }
  return in;
}

FusedPipeline::FusedPipeline(const std::string& receiver_dir,
                             const std::vector<std::string>& sharer_dirs,
                             const std::string& fuser_dir, const LoadOptions& opts) {
  receiver_ = LLM::load(receiver_dir, opts);
  for (const auto& d : sharer_dirs) sharers_.push_back(LLM::load(d, opts));
  fusers_ = load_fuser_checkpoint(fuser_dir, opts.dtype);
  for (auto& s : fusers_.sharers) {
    s.fuser->to(opts.device);
    s.fuser->eval();
  }
  check_compatible();
}

FusedPipeline::FusedPipeline(std::shared_ptr<LLM> receiver, std::vector<std::shared_ptr<LLM>> sharers,
                             FuserCheckpoint fusers)
    : receiver_(std::move(receiver)), sharers_(std::move(sharers)), fusers_(std::move(fusers)) {
  check_compatible();
}

void FusedPipeline::check_compatible() const {
  C2C_CHECK(sharers_.size() == fusers_.sharers.size(), "the fuser checkpoint has ",
            fusers_.sharers.size(), " sharer fuser set(s) but ", sharers_.size(),
            " --sharer model(s) were given\nHINT: pass one --sharer per fuser set, in order");
  const ModelConfig& r = receiver_->config();
  for (size_t j = 0; j < sharers_.size(); ++j) {
    const ModelConfig& s = sharers_[j]->config();
    const FuserConfig& f = fusers_.sharers[j].config;
    C2C_CHECK(f.target_num_heads == r.num_kv_heads && f.target_head_dim == r.head_dim,
              "fuser set ", j, " writes ", f.target_num_heads, " KV heads of dim ",
              f.target_head_dim, " but the receiver '", receiver_->path(), "' has ",
              r.num_kv_heads, " of dim ", r.head_dim);
    C2C_CHECK(f.source_num_heads == s.num_kv_heads && f.source_head_dim == s.head_dim,
              "fuser set ", j, " reads ", f.source_num_heads, " KV heads of dim ",
              f.source_head_dim, " but sharer '", sharers_[j]->path(), "' has ", s.num_kv_heads,
              " of dim ", s.head_dim);
    fusers_.sharers[j].layer_map.validate(r.num_layers, s.num_layers);
  }
  warn_if_other_models(fusers_, *receiver_, sharers_, std::cerr);
}

void warn_if_other_models(const FuserCheckpoint& fusers, const LLM& receiver,
                          const std::vector<std::shared_ptr<LLM>>& sharers, std::ostream& log) {
  // A model's fingerprint when its folder is known and the checkpoint recorded one to compare.
  auto differs = [](const std::string& recorded, const std::string& dir) -> std::string {
    if (recorded.empty() || dir.empty() || !file_exists(join_path(dir, "config.json"))) return "";
    const std::string now = model_fingerprint(dir);
    return now == recorded ? "" : now;
  };
  if (const auto now = differs(fusers.receiver_fingerprint, receiver.path()); !now.empty())
    log << "warning: the fuser was trained with the receiver '" << fusers.receiver_model << "' ("
        << fusers.receiver_fingerprint << "), but the receiver '" << receiver.path() << "' is another "
        << "model (" << now << "): its shapes fit, its weights may not; check the fused results "
           "(c2c eval) before trusting them\n";
  for (size_t j = 0; j < sharers.size() && j < fusers.sharers.size(); ++j) {
    const FuserSet& set = fusers.sharers[j];
    if (const auto now = differs(set.sharer_fingerprint, sharers[j]->path()); !now.empty())
      log << "warning: fuser set " << j << " was trained with the sharer '" << set.sharer_model
          << "' (" << set.sharer_fingerprint << "), but the sharer '" << sharers[j]->path()
          << "' is another model (" << now << "): its shapes fit, its weights may not\n";
  }
}

std::vector<KVCache> FusedPipeline::prefill_sharers(const std::vector<SharerInput>& inputs) const {
  torch::NoGradGuard no_grad;  // sharers are frozen and nothing flows back into them
  std::vector<KVCache> caches;
  for (size_t j = 0; j < sharers_.size(); ++j) {
    auto [ids, mask] = pad_batch(inputs[j].ids);
    auto mask_a = mask.accessor<bool, 2>();
    for (size_t b = 0; b < inputs[j].mask.size(); ++b)
      for (size_t t = 0; t < inputs[j].mask[b].size(); ++t)
        if (!inputs[j].mask[b][t]) mask_a[b][t] = false;  // padding inside the sharer's sequence
    KVCache c = sharers_[j]->new_cache(ids.size(0), std::max<int64_t>(ids.size(1), 1));
    if (ids.size(1) > 0) sharers_[j]->forward_hidden(ids.to(sharers_[j]->device()),
                                                     mask.to(sharers_[j]->device()), c);
    caches.push_back(std::move(c));
  }
  return caches;
}

void FusedPipeline::fuse_into(KVCache& cache, const std::vector<KVCache>& sharer_caches,
                              const std::vector<SharerInput>& inputs) const {
  const int64_t S = cache.length(), B = cache.batch();
  if (S == 0) return;
  const auto dev = receiver_->device();
  std::vector<torch::Tensor> rk, rv;
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    rk.push_back(cache.key(l));    // (B, H_r, S, D_r) views, no copy
    rv.push_back(cache.value(l));
  }
  std::vector<SharerCache> sharer_parts;
  for (size_t j = 0; j < sharers_.size(); ++j) {
    // Gather index (B, S): the sharer slot for every receiver slot; positions without a sharer
    // token (-1, padding) read slot 0 and are masked back to the receiver's own KV below.
    auto index = torch::zeros({B, S}, torch::kInt64);
    auto ia = index.accessor<int64_t, 2>();
    bool identity = true;
    for (int64_t b = 0; b < B; ++b) {
      const auto& slots = inputs[j].slot_of[b];
      for (int64_t p = 0; p < S; ++p) {
        const int64_t s = p < static_cast<int64_t>(slots.size()) ? slots[p] : -1;
        ia[b][p] = std::max<int64_t>(s, 0);
        identity = identity && s == p;
      }
    }
    const KVCache& sc = sharer_caches[j];
    const bool plain = identity && sc.length() >= S;
    auto gidx = index.to(dev);
    SharerCache part;
    part.fuser = fusers_.sharers[j].fuser;
    part.map = fusers_.sharers[j].layer_map;
    for (int64_t l = 0; l < sc.num_layers(); ++l) {
      auto k = sc.key(l), v = sc.value(l);  // (B, H_s, S_s, D_s)
      if (plain) {
        part.key.push_back(k.narrow(2, 0, S));
        part.value.push_back(v.narrow(2, 0, S));
      } else {
        auto g = gidx.view({B, 1, S, 1}).expand({B, k.size(1), S, k.size(3)});
        part.key.push_back(k.gather(2, g));
        part.value.push_back(v.gather(2, g));
      }
    }
    sharer_parts.push_back(std::move(part));
  }
  FusedCache fused = fuse_multi_sharer(rk, rv, sharer_parts, fusers_.multi_sharer);
  // Positions that no sharer token covers keep the receiver's own KV.
  torch::Tensor keep_any;
  for (size_t j = 0; j < inputs.size(); ++j) {
    auto k = torch::zeros({B, S}, torch::kBool);
    auto ka = k.accessor<bool, 2>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t p = 0; p < S && p < static_cast<int64_t>(inputs[j].slot_of[b].size()); ++p)
        ka[b][p] = inputs[j].slot_of[b][p] >= 0;
    keep_any = keep_any.defined() ? keep_any.logical_or(k) : k;
  }
  // keep_any is built on the host, so this test costs no device sync.
  const bool all_covered = keep_any.all().item<bool>();
  auto fuse_mask = keep_any.to(dev).view({B, 1, S, 1});
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    if (fused.key[l].data_ptr() == rk[l].data_ptr()) continue;  // layer not mapped
    if (all_covered) {
      cache.set_slice(l, 0, fused.key[l], fused.value[l]);
    } else {
      cache.set_slice(l, 0, torch::where(fuse_mask, fused.key[l], rk[l]),
                      torch::where(fuse_mask, fused.value[l], rv[l]));
    }
  }
}

GenerateResult FusedPipeline::generate(const std::vector<std::vector<int64_t>>& prompts,
                                       const GenerateOptions& opts) const {
  std::vector<std::vector<int64_t>> prefixes;
  for (const auto& p : prompts) {
    C2C_CHECK(!p.empty(), "generate: empty prompt");
    prefixes.emplace_back(p.begin(), p.end() - 1);
  }
  std::vector<SharerInput> inputs(sharers_.size(), identity_alignment(prefixes));
  for (size_t j = 0; j < sharers_.size(); ++j)
    C2C_CHECK(sharers_[j]->config().vocab_size >= receiver_->config().vocab_size,
              "sharer '", sharers_[j]->path(), "' has a smaller vocabulary than the receiver, so it "
              "cannot read the receiver's token ids\nHINT: pass text prompts so each model "
              "tokenizes them itself (token alignment)");
  return generate(prompts, inputs, opts);
}

GenerateResult FusedPipeline::generate(const std::vector<std::vector<int64_t>>& prompts,
                                       const std::vector<SharerInput>& inputs,
                                       const GenerateOptions& opts) const {
  C2C_CHECK(inputs.size() == sharers_.size(), "generate: ", inputs.size(),
            " sharer inputs for ", sharers_.size(), " sharers");
  auto t0 = std::chrono::steady_clock::now();
  std::vector<KVCache> sharer_caches = prefill_sharers(inputs);
  const double sharer_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  GenerateResult r = c2c::generate(*receiver_, prompts, opts, [&](KVCache& cache) {
    torch::NoGradGuard no_grad;
    fuse_into(cache, sharer_caches, inputs);
  });
  r.timings.prefill_s += sharer_s;
  r.timings.sharer_prefill_s = sharer_s;
  return r;
}

}  // namespace c2c
