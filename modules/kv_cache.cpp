#include "modules/kv_cache.h"

#include "modules/common/error.h"

namespace c2c {

KVCache KVCache::preallocated(int64_t num_layers, int64_t batch, int64_t num_kv_heads,
                              int64_t capacity, int64_t head_dim, torch::TensorOptions opts) {
  KVCache c;
  c.batch_ = batch;
  c.capacity_ = capacity;
  for (int64_t l = 0; l < num_layers; ++l) {
    c.key_.push_back(torch::zeros({batch, num_kv_heads, capacity, head_dim}, opts));
    c.value_.push_back(torch::zeros({batch, num_kv_heads, capacity, head_dim}, opts));
  }
  c.pending_.assign(num_layers, 0);
  c.valid_ = torch::zeros({batch, capacity}, torch::TensorOptions().dtype(torch::kBool).device(opts.device()));
  c.next_pos_ = torch::zeros({batch}, torch::TensorOptions().dtype(torch::kInt64).device(opts.device()));
  return c;
}

KVCache KVCache::growing(int64_t num_layers, int64_t batch, torch::Device device) {
  KVCache c;
  c.batch_ = batch;
  c.key_.resize(num_layers);
  c.value_.resize(num_layers);
  c.pending_.assign(num_layers, 0);
  c.valid_ = torch::zeros({batch, 0}, torch::TensorOptions().dtype(torch::kBool).device(device));
  c.next_pos_ = torch::zeros({batch}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  return c;
}

torch::Tensor KVCache::key(int64_t l) const {
  C2C_ASSERT(l >= 0 && l < num_layers());
  return key_[l].defined() ? key_[l].narrow(2, 0, length_) : torch::Tensor();
}

torch::Tensor KVCache::value(int64_t l) const {
  C2C_ASSERT(l >= 0 && l < num_layers());
  return value_[l].defined() ? value_[l].narrow(2, 0, length_) : torch::Tensor();
}

torch::Tensor KVCache::key_pending(int64_t l) const {
  return key_[l].narrow(2, 0, length_ + pending_[l]);
}

torch::Tensor KVCache::value_pending(int64_t l) const {
  return value_[l].narrow(2, 0, length_ + pending_[l]);
}

void KVCache::set_slice(int64_t l, int64_t start, const torch::Tensor& k, const torch::Tensor& v) {
  C2C_CHECK(l >= 0 && l < num_layers(), "KVCache::set_slice: layer ", l, " out of range [0, ",
            num_layers(), ")");
  const int64_t n = k.size(2);
  C2C_CHECK(start >= 0 && start + n <= length_, "KVCache::set_slice: slots [", start, ", ",
            start + n, ") outside the filled cache (", length_, " slots)");
  C2C_CHECK(k.sizes() == v.sizes() && k.size(0) == batch_ && k.size(1) == key_[l].size(1) &&
                k.size(3) == key_[l].size(3),
            "KVCache::set_slice: expected (B, H, n, D) = (", batch_, ", ", key_[l].size(1), ", n, ",
            key_[l].size(3), "), got key ", k.sizes(), " value ", v.sizes());
  if (is_preallocated()) {
    torch::NoGradGuard no_grad;
    key_[l].narrow(2, start, n).copy_(k);
    value_[l].narrow(2, start, n).copy_(v);
    return;
  }
  auto splice = [&](const torch::Tensor& old, const torch::Tensor& mid) {
    std::vector<torch::Tensor> parts;
    if (start > 0) parts.push_back(old.narrow(2, 0, start));
    parts.push_back(mid.to(old.dtype()));
    if (start + n < old.size(2)) parts.push_back(old.narrow(2, start + n, old.size(2) - start - n));
    return parts.size() == 1 ? parts[0] : torch::cat(parts, 2);
  };
  key_[l] = splice(key_[l], k);
  value_[l] = splice(value_[l], v);
}

void KVCache::append(int64_t l, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t t = k.size(2);
  C2C_ASSERT(pending_[l] == 0);
  if (is_preallocated()) {
    C2C_CHECK(length_ + t <= capacity_, "KV cache is full: ", length_, " + ", t, " slots > capacity ",
              capacity_);
    torch::NoGradGuard no_grad;
    key_[l].narrow(2, length_, t).copy_(k);
    value_[l].narrow(2, length_, t).copy_(v);
  } else if (!key_[l].defined()) {
    key_[l] = k;
    value_[l] = v;
  } else {
    key_[l] = torch::cat({key_[l], k}, 2);
    value_[l] = torch::cat({value_[l], v}, 2);
  }
  pending_[l] = t;
}

void KVCache::commit(const torch::Tensor& new_mask) {
  const int64_t t = new_mask.size(1);
  for (auto p : pending_) C2C_ASSERT(p == t);
  if (is_preallocated()) {
    valid_.narrow(1, length_, t).copy_(new_mask);
  } else {
    valid_ = torch::cat({valid_, new_mask.to(torch::kBool)}, 1);
  }
  next_pos_ = next_pos_ + new_mask.to(torch::kInt64).sum(1);
  length_ += t;
  std::fill(pending_.begin(), pending_.end(), 0);
}

}  // namespace c2c
