// The paired training data set: per conversation the receiver's tokens, each sharer's tokens and
// token alignment, the prompt length and the positions that carry the loss; stored as HDF5 shards
// plus a manifest.json. Reading order, shuffling and rank splits live in data/stream.h; turning
// samples into tensors is the trainer's job (data/ does not depend on LibTorch).
//
// HDF5 layout of one shard (format "c2c-paired", version kPairedFormatVersion), N samples,
// R = total receiver tokens, S_k = total tokens of sharer k:
//   attributes on "/": format (string), format_version (int32), num_samples (int64),
//                      num_sharers (int32), info (string, JSON: tokenizers, alignment, ...)
//   /receiver/ids        int32 (R)      receiver tokens of all samples, concatenated
//   /receiver/offsets    int64 (N+1)    sample i is ids[offsets[i], offsets[i+1])
//   /prompt_length       int32 (N)      P: receiver tokens up to the generation prompt (incl.)
//   /loss_start          int32 (N)      the loss targets are receiver tokens [loss_start, loss_end)
//   /loss_end            int32 (N)
//   /source_index        int64 (N)      line number (JSONL) or array index of the conversation
//   /sharer_<k>/ids      int32 (S_k)    what sharer k reads, concatenated
//   /sharer_<k>/offsets  int64 (N+1)
//   /sharer_<k>/mask     uint8 (S_k)    1 on real sharer tokens, 0 on alignment padding
//   /sharer_<k>/slot_of  int32 (R)      per receiver position (receiver offsets): sharer slot or -1
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <vector>

namespace c2c {

inline constexpr const char* kPairedFormatName = "c2c-paired";
inline constexpr int kPairedFormatVersion = 1;
inline constexpr const char* kPairedManifestName = "manifest.json";

// One sharer's view of a sample.
struct PairedSharer {
  std::vector<int64_t> ids;      // what the sharer reads (prompt only)
  std::vector<uint8_t> mask;     // per sharer token: 1 real, 0 padding
  std::vector<int64_t> slot_of;  // per receiver position: sharer slot fused there, -1 none
};

// One conversation. Receiver positions [0, prompt_length - 1) are fused (DESIGN.md section 3);
// slot_of is -1 from prompt_length - 1 on. The loss targets are the tokens at positions
// [loss_start, loss_end) (predicted from the logits one position earlier); prepare writes
// loss_start = prompt_length and loss_end = receiver_ids.size().
struct PairedSample {
  int64_t index = -1;         // global index in the data set (manifest order); set on read
  int64_t source_index = -1;  // line number / array index in the prepared input
  std::vector<int64_t> receiver_ids;
  int64_t prompt_length = 0;
  int64_t loss_start = 0, loss_end = 0;
  std::vector<PairedSharer> sharers;

  int64_t length() const { return static_cast<int64_t>(receiver_ids.size()); }
};

// The layout every consumer relies on: prompt_length in [1, length) so a response remains, the
// loss range [loss_start, loss_end) non-empty inside the response [prompt_length, length).
// Returns "" when it holds, else what is wrong ("prompt_length = 0 must be in [1, 9) ...").
// The one rule: the stream checks shard samples with it, the C2C forward every batch row.
std::string sample_layout_problem(const PairedSample& sample);

// Writes one shard (atomically: a temporary name, then rename). Throws c2c::Error naming the
// path on an inconsistent sample (sizes that do not match) or an HDF5 failure.
void write_paired_shard(const std::string& path, const std::vector<PairedSample>& samples,
                        int num_sharers, const nlohmann::json& info = nlohmann::json::object());

// Random access to one shard. Opening reads the small per-sample arrays; tokens are read per
// sample. Throws c2c::Error naming the file on a wrong format name or version (HINT: re-run
// `c2c prepare`). Not thread-safe (HDF5 serial build): one reader per thread.
class PairedShardReader {
 public:
  explicit PairedShardReader(const std::string& path);
  ~PairedShardReader();
  PairedShardReader(const PairedShardReader&) = delete;
  PairedShardReader& operator=(const PairedShardReader&) = delete;

  const std::string& path() const;
  int64_t num_samples() const;
  int num_sharers() const;
  const nlohmann::json& info() const;
  int64_t length(int64_t i) const;  // receiver tokens of sample i, without reading them
  PairedSample read(int64_t i) const;  // index is set to i (the caller adds the shard's start)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// manifest.json of a prepared folder.
struct PairedManifest {
  std::string dir;
  std::vector<std::string> shard_files;      // relative to dir, in order
  std::vector<int64_t> shard_num_samples;
  int64_t num_samples = 0;
  int num_sharers = 0;
  nlohmann::json json;  // the whole file (counts, tokenizers, alignment, ...)
};

// Reads and checks `dir`/manifest.json (format name and version).
PairedManifest read_paired_manifest(const std::string& dir);

// Buffers samples and writes shard-00000.h5, shard-00001.h5, ... of `shard_size` samples each;
// finish() writes the last shard and manifest.json (`extra` keys are merged into it).
class PairedDatasetWriter {
 public:
  PairedDatasetWriter(const std::string& dir, int num_sharers, int64_t shard_size,
                      nlohmann::json shard_info = nlohmann::json::object());
  void add(PairedSample sample);
  void finish(const nlohmann::json& extra = nlohmann::json::object());
  int64_t num_written() const { return written_; }

 private:
  void flush();
  std::string dir_;
  int num_sharers_;
  int64_t shard_size_;
  nlohmann::json shard_info_;
  std::vector<PairedSample> pending_;
  nlohmann::json shards_ = nlohmann::json::array();
  int64_t written_ = 0;
  bool finished_ = false;
};

}  // namespace c2c
