// The KV cache of a frozen decoder: what the fuser reads and rewrites.
//
// Legend: B batch rows, H KV heads, S cache slots, D head dim, T new tokens.
// Slots are shared by all rows of a batch; a row's padding leaves holes (`valid` false) that no
// query attends to, so rows of different lengths prefill and decode together without moving data.
// Keys are stored after k-norm (Qwen3) and after RoPE, values as projected: exactly what attention
// reads, hence what C2C fuses (DESIGN.md section 3).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace c2c {

class KVCache {
 public:
  KVCache() = default;
  // Preallocated storage of `capacity` slots, written in place (inference, no autograd).
  static KVCache preallocated(int64_t num_layers, int64_t batch, int64_t num_kv_heads,
                              int64_t capacity, int64_t head_dim, torch::TensorOptions opts);
  // Storage that grows by concatenation, so autograd flows through rewritten slices (training).
  static KVCache growing(int64_t num_layers, int64_t batch, torch::Device device);

  int64_t num_layers() const { return static_cast<int64_t>(key_.size()); }
  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }  // filled slots S
  bool is_preallocated() const { return capacity_ > 0; }

  // (B, H, S, D) views of the filled slots of layer `l`.
  torch::Tensor key(int64_t l) const;
  torch::Tensor value(int64_t l) const;
  // (B, S) bool: slot holds a real token of that row.
  torch::Tensor valid() const { return valid_.narrow(1, 0, length_); }
  // (B) int64: position id the next real token of each row takes.
  const torch::Tensor& next_position() const { return next_pos_; }

  // Rewrites slots [start, start + k.size(2)) of layer `l` with k, v of shape (B, H, n, D).
  // Preallocated caches copy in place; growing caches rebuild the layer by concatenation so the
  // gradient reaches k and v.
  void set_slice(int64_t l, int64_t start, const torch::Tensor& k, const torch::Tensor& v);

  // Used by the model's forward: appends (B, H, T, D) for layer l at slots [length, length + T).
  // `commit` is called once per forward after all layers appended, with the (B, T) mask of the
  // new tokens, to advance the length, validity and positions.
  void append(int64_t l, const torch::Tensor& k, const torch::Tensor& v);
  void commit(const torch::Tensor& new_mask);
  // Key/value including slots appended by this forward but not yet committed: (B, H, S + T, D).
  torch::Tensor key_pending(int64_t l) const;
  torch::Tensor value_pending(int64_t l) const;

 private:
  std::vector<torch::Tensor> key_, value_;  // each (B, H, capacity or S, D)
  std::vector<int64_t> pending_;            // slots appended per layer in the current forward
  torch::Tensor valid_;                     // (B, capacity or S) bool
  torch::Tensor next_pos_;                  // (B) int64
  int64_t batch_ = 0, length_ = 0, capacity_ = 0;
};

}  // namespace c2c
