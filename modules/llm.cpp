#include "modules/llm.h"

#include <cmath>
#include <filesystem>
#include <set>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/safetensors.h"

namespace c2c {
namespace {

// Where each tensor of a model folder lives: one file, or the shards of an index.
struct WeightSource {
  std::map<std::string, std::shared_ptr<SafetensorsFile>> files;  // file name -> opened file
  std::map<std::string, std::string> where;                       // tensor name -> file name
};

WeightSource open_weights(const std::string& dir) {
  WeightSource src;
  const std::string single = join_path(dir, "model.safetensors");
  const std::string index = join_path(dir, "model.safetensors.index.json");
  if (file_exists(index)) {
    const auto j = read_json(index);
    C2C_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), index,
              ": missing object 'weight_map'");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      C2C_CHECK(it->is_string(), index, ": weight_map entry '", it.key(), "' is not a file name");
      const std::string file = it->get<std::string>();
      C2C_CHECK(file.find('/') == std::string::npos, index, ": shard name '", file,
                "' must be a file name inside the model folder");
      if (!src.files.count(file)) {
        const std::string p = join_path(dir, file);
        C2C_CHECK(file_exists(p), index, " names shard '", file, "' which is missing from '", dir, "'");
        src.files[file] = SafetensorsFile::open(p);
      }
      C2C_CHECK(src.files[file]->contains(it.key()), index, " says tensor '", it.key(),
                "' is in '", file, "' but that shard does not hold it");
      src.where[it.key()] = file;
    }
  } else {
    C2C_CHECK(file_exists(single), "model folder '", dir,
              "' has neither model.safetensors nor model.safetensors.index.json\n"
              "HINT: only safetensors weights are read; convert .bin weights with transformers' "
              "save_pretrained(safe_serialization=True)");
    auto f = SafetensorsFile::open(single);
    src.files["model.safetensors"] = f;
    for (const auto& n : f->names()) src.where[n] = "model.safetensors";
  }
  return src;
}

// x (R, in) times weight (out, in)^T. A single row (decode at batch 1) goes through a GEMV:
// OpenBLAS's GEMM with one row and a transposed operand runs 2-3x slower than its GEMV here.
torch::Tensor project(const torch::Tensor& x, const torch::Tensor& w) {
  if (x.size(0) == 1) return torch::mv(w, x[0]).unsqueeze(0);
  return torch::mm(x, w.t());
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

std::shared_ptr<LLM> LLM::load(const std::string& dir, const LoadOptions& opts) {
  auto m = std::shared_ptr<LLM>(new LLM());
  m->config_ = ModelConfig::from_folder(dir);
  m->opts_ = opts;
  m->path_ = dir;
  const ModelConfig& c = m->config_;
  WeightSource src = open_weights(dir);

  const int64_t E = c.hidden_size, D = c.head_dim, Hq = c.num_heads, H = c.num_kv_heads,
                I = c.intermediate_size, V = c.vocab_size;
  std::set<std::string> used;
  auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    auto it = src.where.find(name);
    C2C_CHECK(it != src.where.end(), "model '", dir, "': missing tensor '", name, "' (",
              c.arch.hf_class, " needs it)\nHINT: the weights do not match config.json");
    const auto& file = src.files.at(it->second);
    const SafetensorsEntry& e = file->entry(name);
    C2C_CHECK(e.dtype == "F32" || e.dtype == "BF16" || e.dtype == "F16", "'", file->path(),
              "': tensor '", name, "' has dtype ", e.dtype, "; weights must be F32, BF16 or F16");
    C2C_CHECK(e.shape == shape, "'", file->path(), "': tensor '", name, "' has shape ",
              torch::IntArrayRef(e.shape), " but config.json implies ", torch::IntArrayRef(shape));
    used.insert(name);
    auto t = file->load(name, opts.dtype).to(opts.device);
    m->weights_[name] = t;
    return t;
  };

  m->embed_ = get("model.embed_tokens.weight", {V, E});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    auto q = get(p + "self_attn.q_proj.weight", {Hq * D, E});
    auto k = get(p + "self_attn.k_proj.weight", {H * D, E});
    auto v = get(p + "self_attn.v_proj.weight", {H * D, E});
    L.qkv_w = torch::cat({q, k, v}, 0);
    if (c.attention_bias) {
      L.qkv_b = torch::cat({get(p + "self_attn.q_proj.bias", {Hq * D}),
                            get(p + "self_attn.k_proj.bias", {H * D}),
                            get(p + "self_attn.v_proj.bias", {H * D})});
    }
    L.o_w = get(p + "self_attn.o_proj.weight", {E, Hq * D});
    if (c.arch.qk_norm) {
      L.q_norm = get(p + "self_attn.q_norm.weight", {D});
      L.k_norm = get(p + "self_attn.k_norm.weight", {D});
    }
    L.gate_up_w = torch::cat({get(p + "mlp.gate_proj.weight", {I, E}),
                              get(p + "mlp.up_proj.weight", {I, E})}, 0);
    L.down_w = get(p + "mlp.down_proj.weight", {E, I});
    L.in_norm = get(p + "input_layernorm.weight", {E});
    L.post_norm = get(p + "post_attention_layernorm.weight", {E});
    m->layers_.push_back(std::move(L));
  }
  m->final_norm_ = get("model.norm.weight", {E});
  if (c.tie_word_embeddings) {
    m->lm_head_ = m->embed_;
    if (src.where.count("lm_head.weight")) used.insert("lm_head.weight");  // a saved copy of the tie
  } else {
    m->lm_head_ = get("lm_head.weight", {V, E});
  }
  for (const auto& kv : src.where) {
    // Old checkpoints carry RoPE frequency buffers; they are recomputed from the config.
    if (kv.first.find("rotary_emb.inv_freq") != std::string::npos) continue;
    C2C_CHECK(used.count(kv.first), "model '", dir, "': unexpected tensor '", kv.first, "' in '",
              kv.second, "'\nHINT: config.json (model_type '", c.model_type,
              "') does not match the weights");
  }
  m->inv_freq_ = m->rope_inv_freq().to(opts.device);
  return m;
}

torch::Tensor LLM::rope_inv_freq() const {
  const ModelConfig& c = config_;
  // Same float32 arithmetic as transformers, so positions far out round the same way.
  auto idx = torch::arange(0, c.head_dim, 2, torch::kInt64).to(torch::kFloat32) /
             static_cast<float>(c.head_dim);
  auto inv_freq = 1.0 / torch::pow(static_cast<float>(c.rope_theta), idx);
  if (c.rope_scaling.type == "llama3") {
    const auto& s = c.rope_scaling;
    const double old_ctx = static_cast<double>(s.original_max_position);
    const double low_wavelen = old_ctx / s.low_freq_factor;
    const double high_wavelen = old_ctx / s.high_freq_factor;
    auto wavelen = 2 * M_PI / inv_freq;
    auto scaled = torch::where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq);
    auto smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  return inv_freq.to(torch::kFloat32);
}

KVCache LLM::new_cache(int64_t batch, int64_t capacity) const {
  if (capacity > 0)
    return KVCache::preallocated(config_.num_layers, batch, config_.num_kv_heads, capacity,
                                 config_.head_dim,
                                 torch::TensorOptions().dtype(opts_.dtype).device(opts_.device));
  return KVCache::growing(config_.num_layers, batch, opts_.device);
}

torch::Tensor LLM::rms_norm(const torch::Tensor& x, const torch::Tensor& w) const {
  // As transformers: normalise in fp32, cast back, then scale.
  auto xf = x.to(torch::kFloat32);
  auto var = xf.pow(2).mean(-1, true);
  xf = xf * torch::rsqrt(var + config_.rms_norm_eps);
  return w * xf.to(x.scalar_type());
}

torch::Tensor LLM::forward_hidden(const torch::Tensor& ids_in, const torch::Tensor& mask_in,
                                  KVCache& cache) const {
  const ModelConfig& c = config_;
  C2C_CHECK(ids_in.dim() == 2, "LLM::forward: ids must be (B, T), got ", ids_in.sizes());
  auto ids = ids_in.to(opts_.device, torch::kInt64);
  const int64_t B = ids.size(0), T = ids.size(1);
  C2C_CHECK(B == cache.batch(), "LLM::forward: batch ", B, " does not match the cache's ",
            cache.batch());
  auto mask = mask_in.defined() ? mask_in.to(opts_.device, torch::kBool)
                                : torch::ones({B, T}, torch::TensorOptions().dtype(torch::kBool).device(opts_.device));
  C2C_CHECK(mask.sizes() == ids.sizes(), "LLM::forward: mask ", mask.sizes(),
            " does not match ids ", ids.sizes());
  {
    // Bounds checks cost one host sync per forward, not per layer.
    const auto range = torch::stack({ids.min(), ids.max()}).to(torch::kCPU);
    const int64_t lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
    C2C_CHECK(lo >= 0 && hi < c.vocab_size, "token id out of range [0, ", c.vocab_size, "): ",
              lo < 0 ? lo : hi);
  }
  const int64_t E = c.hidden_size, D = c.head_dim, Hq = c.num_heads, H = c.num_kv_heads,
                G = Hq / H;
  const int64_t S_old = cache.length(), S = S_old + T;

  // Positions: each row continues from its own count of real tokens.
  auto mask_i = mask.to(torch::kInt64);
  auto pos = (cache.next_position().unsqueeze(1) + mask_i.cumsum(1) - 1).clamp_min(0);  // (B, T)
  auto freqs = pos.to(torch::kFloat32).unsqueeze(-1) * inv_freq_;                     // (B, T, D/2)
  auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos().to(opts_.dtype).unsqueeze(1);  // (B, 1, T, D)
  auto sin = emb.sin().to(opts_.dtype).unsqueeze(1);

  // Which slots each query attends to, (B, 1, T, S) for scaled_dot_product_attention's boolean
  // mask: causal in slot order, holes hidden; a padding query sees itself so its (ignored) row
  // never becomes all -inf.
  auto dev_i64 = torch::TensorOptions().dtype(torch::kInt64).device(opts_.device);
  auto slot = torch::arange(S, dev_i64);
  auto qslot = torch::arange(S_old, S, dev_i64);
  auto causal = slot.unsqueeze(0) <= qslot.unsqueeze(1);                                  // (T, S)
  auto valid_all = torch::cat({cache.valid(), mask}, 1);                                  // (B, S)
  auto self = slot.unsqueeze(0) == qslot.unsqueeze(1);                                    // (T, S)
  auto allowed = causal.unsqueeze(0)
                     .logical_and(valid_all.unsqueeze(1).logical_or(self.unsqueeze(0)))
                     .view({B, 1, T, S});
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));

  auto x = embed_.index_select(0, ids.reshape({-1})).view({B, T, E});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[l];
    auto h = rms_norm(x, L.in_norm);
    auto qkv = project(h.reshape({B * T, E}), L.qkv_w);
    if (L.qkv_b.defined()) qkv = qkv + L.qkv_b;
    auto q = qkv.narrow(1, 0, Hq * D).view({B, T, Hq, D});
    auto k = qkv.narrow(1, Hq * D, H * D).view({B, T, H, D});
    auto v = qkv.narrow(1, (Hq + H) * D, H * D).view({B, T, H, D});
    if (c.arch.qk_norm) {
      q = rms_norm(q, L.q_norm);
      k = rms_norm(k, L.k_norm);
    }
    q = q.transpose(1, 2);  // (B, Hq, T, D)
    k = k.transpose(1, 2);  // (B, H, T, D)
    v = v.transpose(1, 2);
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
    cache.append(l, k, v);
    auto K = cache.key_pending(l);  // (B, H, S, D)
    auto Vc = cache.value_pending(l);
    // Grouped-query attention without repeating K/V (enable_gqa): LibTorch's fused attention
    // (flash attention on the CPU, one parallel loop over batch, heads and query blocks).
    auto attn = at::scaled_dot_product_attention(q, K, Vc, allowed, 0.0, false, scale, G > 1)
                    .transpose(1, 2).reshape({B * T, Hq * D});
    x = x + project(attn, L.o_w).view({B, T, E});
    h = rms_norm(x, L.post_norm).reshape({B * T, E});
    auto gu = project(h, L.gate_up_w);
    const int64_t I = c.intermediate_size;
    auto act = torch::silu(gu.narrow(1, 0, I)) * gu.narrow(1, I, I);
    x = x + project(act, L.down_w).view({B, T, E});
  }
  cache.commit(mask);
  return rms_norm(x, final_norm_);
}

std::vector<std::pair<std::string, torch::Tensor>> LLM::make_trainable() {
  C2C_CHECK(opts_.dtype == torch::kFloat32, "LLM::make_trainable: model '", path_,
            "' must be loaded in float32 to be trained");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  auto add = [&](const std::string& name, torch::Tensor& t) {
    if (!t.defined()) return;
    t = t.detach().clone().requires_grad_(true);
    out.emplace_back(name, t);
  };
  add("model.embed_tokens.weight", embed_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "self_attn.qkv_proj.weight", L.qkv_w);
    add(p + "self_attn.qkv_proj.bias", L.qkv_b);
    add(p + "self_attn.o_proj.weight", L.o_w);
    add(p + "self_attn.q_norm.weight", L.q_norm);
    add(p + "self_attn.k_norm.weight", L.k_norm);
    add(p + "mlp.gate_up_proj.weight", L.gate_up_w);
    add(p + "mlp.down_proj.weight", L.down_w);
    add(p + "input_layernorm.weight", L.in_norm);
    add(p + "post_attention_layernorm.weight", L.post_norm);
  }
  add("model.norm.weight", final_norm_);
  if (config_.tie_word_embeddings) lm_head_ = embed_;
  else add("lm_head.weight", lm_head_);
  return out;
}

void LLM::save(const std::string& dir, torch::Dtype dtype) const {
  const ModelConfig& c = config_;
  const int64_t D = c.head_dim, Hq = c.num_heads, H = c.num_kv_heads, I = c.intermediate_size;
  NamedTensors t;
  auto put = [&](const std::string& name, const torch::Tensor& x) {
    t.emplace_back(name, x.detach().to(torch::kCPU, dtype).contiguous());
  };
  put("model.embed_tokens.weight", embed_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    put(p + "self_attn.q_proj.weight", L.qkv_w.narrow(0, 0, Hq * D));
    put(p + "self_attn.k_proj.weight", L.qkv_w.narrow(0, Hq * D, H * D));
    put(p + "self_attn.v_proj.weight", L.qkv_w.narrow(0, (Hq + H) * D, H * D));
    if (L.qkv_b.defined()) {
      put(p + "self_attn.q_proj.bias", L.qkv_b.narrow(0, 0, Hq * D));
      put(p + "self_attn.k_proj.bias", L.qkv_b.narrow(0, Hq * D, H * D));
      put(p + "self_attn.v_proj.bias", L.qkv_b.narrow(0, (Hq + H) * D, H * D));
    }
    put(p + "self_attn.o_proj.weight", L.o_w);
    if (L.q_norm.defined()) {
      put(p + "self_attn.q_norm.weight", L.q_norm);
      put(p + "self_attn.k_norm.weight", L.k_norm);
    }
    put(p + "mlp.gate_proj.weight", L.gate_up_w.narrow(0, 0, I));
    put(p + "mlp.up_proj.weight", L.gate_up_w.narrow(0, I, I));
    put(p + "mlp.down_proj.weight", L.down_w);
    put(p + "input_layernorm.weight", L.in_norm);
    put(p + "post_attention_layernorm.weight", L.post_norm);
  }
  put("model.norm.weight", final_norm_);
  if (!c.tie_word_embeddings) put("lm_head.weight", lm_head_);
  std::filesystem::create_directories(dir);
  auto cfg = read_json(join_path(path_, "config.json"));
  cfg["torch_dtype"] = dtype == torch::kBFloat16 ? "bfloat16" : dtype == torch::kFloat16 ? "float16" : "float32";
  cfg.erase("dtype");
  const std::string tmp = join_path(dir, ".model.safetensors.tmp");
  save_safetensors(tmp, t, {{"format", "pt"}});
  std::filesystem::rename(tmp, join_path(dir, "model.safetensors"));
  write_file_atomic(join_path(dir, "config.json"), cfg.dump(2) + "\n");
}

torch::Tensor LLM::logits(const torch::Tensor& hidden) const {
  const auto sizes = hidden.sizes().vec();
  auto out = project(hidden.reshape({-1, hidden.size(-1)}), lm_head_);
  auto shape = sizes;
  shape.back() = lm_head_.size(0);
  return out.view(shape).to(torch::kFloat32);
}

torch::Tensor LLM::forward(const torch::Tensor& ids, const torch::Tensor& mask, KVCache& cache,
                           bool last_only) const {
  auto hidden = forward_hidden(ids, mask, cache);  // (B, T, E)
  if (!last_only) return logits(hidden);
  const int64_t B = hidden.size(0), T = hidden.size(1);
  torch::Tensor last;
  if (mask.defined()) {
    last = (mask.to(hidden.device(), torch::kInt64).sum(1) - 1).clamp_min(0);  // right padding
  } else {
    last = torch::full({B}, T - 1, torch::TensorOptions().dtype(torch::kInt64).device(hidden.device()));
  }
  auto picked = hidden.gather(1, last.view({B, 1, 1}).expand({B, 1, hidden.size(2)})).squeeze(1);
  return logits(picked);  // (B, V)
}

}  // namespace c2c
