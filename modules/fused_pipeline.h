// Fused inference (DESIGN.md section 3): a receiver LLM, one or more sharer LLMs and a fuser
// checkpoint. The sharers and the receiver prefill prompt tokens [0, P-1); the fuser rewrites the
// receiver's cache slots of those tokens in place, all mapped layers in one batched call per
// sharer; the receiver alone then reads token P-1 and decodes. Generated tokens are never fused.
//
// Legend: B batch, S receiver cache slots, H KV heads, D head dim; _s sharer, _r receiver.
#pragma once
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "modules/c2c_forward.h"
#include "modules/fuser_checkpoint.h"
#include "modules/generate.h"
#include "modules/llm.h"

namespace c2c {

// Where each receiver prompt position reads its sharer's KV: the sharer's own token ids per row,
// and for each receiver position of the fused prefix the sharer slot to gather (-1: none, the
// receiver position keeps its own KV).
struct SharerInput {
  std::vector<std::vector<int64_t>> ids;        // per row, the sharer's prefix tokens
  std::vector<std::vector<int64_t>> slot_of;    // per row, per receiver prefix position
  std::vector<std::vector<uint8_t>> mask;       // per row, 1 on real sharer tokens (empty: all)
};

// Identity alignment for sharers that share the receiver's tokenizer: the sharer reads the same
// prefix tokens and position p reads sharer slot p.
SharerInput identity_alignment(const std::vector<std::vector<int64_t>>& receiver_prefixes);

// Writes a warning to `log` for every model whose fingerprint differs from the one the fuser
// checkpoint recorded (model_fingerprint; nothing when it recorded none, as imported official
// checkpoints). Called by every FusedPipeline on construction.
void warn_if_other_models(const FuserCheckpoint& fusers, const LLM& receiver,
                          const std::vector<std::shared_ptr<LLM>>& sharers, std::ostream& log);

class FusedPipeline {
 public:
  FusedPipeline(const std::string& receiver_dir, const std::vector<std::string>& sharer_dirs,
                const std::string& fuser_dir, const LoadOptions& opts);
  // From already loaded parts (tests, evaluation).
  FusedPipeline(std::shared_ptr<LLM> receiver, std::vector<std::shared_ptr<LLM>> sharers,
                FuserCheckpoint fusers);

  std::shared_ptr<LLM> receiver() const { return receiver_; }
  const std::vector<std::shared_ptr<LLM>>& sharers() const { return sharers_; }
  const FuserCheckpoint& fusers() const { return fusers_; }
  FuserCheckpoint& mutable_fusers() { return fusers_; }  // training: modes, steps, noise seeds

  // Generation from receiver prompt ids; sharers reading the same tokenization (identity
  // alignment). Timings: prefill_s covers both prefills, hook_s the fusion alone.
  GenerateResult generate(const std::vector<std::vector<int64_t>>& prompts,
                          const GenerateOptions& opts) const;
  // The same with one SharerInput per sharer (token alignment across tokenizers).
  GenerateResult generate(const std::vector<std::vector<int64_t>>& prompts,
                          const std::vector<SharerInput>& sharer_inputs,
                          const GenerateOptions& opts) const;

  // The C2C forward and loss of a batch through this pipeline's receiver (c2c_forward.h).
  C2CLoss loss(const std::vector<PairedSample>& batch, const C2CLossOptions& options = {}) const {
    return c2c_loss(*receiver_, this, batch, options);
  }

  // Fuses slots [0, S) of `cache` (the receiver's, holding the prompt prefixes) in place, from
  // the sharers' prefilled caches and the alignment. Used by generate() and by training.
  void fuse_into(KVCache& cache, const std::vector<KVCache>& sharer_caches,
                 const std::vector<SharerInput>& sharer_inputs) const;

  // Prefills every sharer over its SharerInput ids (no grad).
  std::vector<KVCache> prefill_sharers(const std::vector<SharerInput>& sharer_inputs) const;

 private:
  void check_compatible() const;
  std::shared_ptr<LLM> receiver_;
  std::vector<std::shared_ptr<LLM>> sharers_;
  FuserCheckpoint fusers_;
};

}  // namespace c2c
