// Streaming reader over a prepared paired data set (data/paired_dataset.h): shards in manifest
// order through a shuffle buffer, split across ranks, packed into batches by length, with an exact
// resume cursor. Tensors are made by the trainer from the returned samples.
//
// How an epoch is ordered (every step is a pure function of seed, epoch and positions, so nothing
// but the cursor below needs saving):
//  1. The global stream: data set indices 0..N-1 (shards in manifest order) passed through a
//     shuffle buffer of `shuffle_buffer` slots seeded by (seed, epoch). Stream position q holds
//     sample order[q]. shuffle_buffer <= 1 keeps the file order.
//  2. Windows: from position w, a window is the next min(pack_window * batch_size * world_size,
//     usable rest) positions, where with drop_last the usable rest is a multiple of
//     batch_size * world_size (every rank gets the same number of full batches).
//  3. Rank split: stream position q belongs to rank q % world_size (interleaved, not blocks). It
//     depends only on (q, world_size), so a resumed run may use another world size.
//  4. Packing: each rank sorts its share of the window by receiver length, cuts it into batches
//     of batch_size and emits them in an order shuffled by (seed, epoch, w).
// Resume: the cursor names the epoch, the window start and how many of its batches were taken.
// With the same world size and batch size the next batches are exactly those an uninterrupted
// run gets. With another world size or batch size the rest of a partly read window is skipped
// (no sample is seen twice in an epoch) and the new split starts at the next window.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/paired_dataset.h"

namespace c2c {

struct StreamOptions {
  int64_t batch_size = 8;
  int64_t shuffle_buffer = 10000;  // slots; <= 1 reads in file order
  int64_t pack_window = 16;        // batches per length-sorted window; 1 = no packing
  uint64_t seed = 0;
  int64_t rank = 0, world_size = 1;
  bool drop_last = true;  // keep only full batches, equal in number on every rank
  int64_t max_samples = 0;  // > 0: only the data set's first max_samples samples (file order)
};

// Where a stream stands; JSON-serialisable for the training state. The same on every rank.
struct StreamCursor {
  int64_t epoch = 0;
  int64_t window_start = 0;       // global stream position where the current window begins
  int64_t window_batches_taken = 0;  // batches of that window already returned (per rank)
  // What the positions mean: checked (seed, shuffle_buffer, num_samples) or adapted (the rest).
  uint64_t seed = 0;
  int64_t shuffle_buffer = 0, num_samples = 0;
  int64_t world_size = 1, batch_size = 0, pack_window = 0;
  bool drop_last = true;

  nlohmann::json to_json() const;
  static StreamCursor from_json(const nlohmann::json& j);  // throws naming a missing key
};

struct PairedBatch {
  std::vector<PairedSample> samples;  // sample.index: the global data set index
  int64_t epoch = 0;
  int64_t max_length() const;     // longest receiver sequence
  int64_t padded_tokens() const;  // samples.size() * max_length()
  int64_t real_tokens() const;
};

// Vocabulary sizes every token id of a sample read must lie within (0: not checked).
struct StreamVocabularies {
  int64_t receiver = 0;
  std::vector<int64_t> sharers;
};

class PairedStream {
 public:
  // `data_dir` is the --out folder of `c2c prepare` (manifest.json + shards).
  PairedStream(const std::string& data_dir, const StreamOptions& options);
  ~PairedStream();

  // The next batch of this rank; rolls over into the next epoch at the end of one (check
  // batch.epoch). Throws when an epoch has no batch at all (data set smaller than one step).
  PairedBatch next_batch();

  StreamCursor cursor() const;              // state after the last returned batch
  void restore(const StreamCursor& cursor);  // continue from a saved cursor

  int64_t num_samples() const;        // the stream reads (the data set's, or max_samples)
  int64_t data_set_samples() const;   // in the data set (manifest)
  int64_t batches_per_epoch() const;  // of this rank, from the start of an epoch
  const PairedManifest& manifest() const;
  // Random access by global index. Every sample read is checked (ids within the vocabularies
  // given below and >= 0, prompt and loss ranges within its length, alignment slots within the
  // sharer's length); a bad one throws naming the shard, the sample and the field.
  PairedSample read_sample(int64_t index) const;
  void check_vocabularies(const StreamVocabularies& vocab);
  int64_t sample_length(int64_t index) const;     // receiver tokens, without reading them

  // The global stream order of one epoch (step 1 above); exposed for tests and tools.
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace c2c
