// The streaming reader (see stream.h for the ordering rules). The order is computed on indices
// and lengths only (a few bytes per sample, cheap to recompute on resume); sample tokens are read
// from the shards when a batch is returned. Shuffles use our own SplitMix64 + Fisher-Yates, not
// std::shuffle, whose algorithm differs between standard libraries: a cursor saved on one machine
// replays on another.
#include "data/stream.h"

#include <algorithm>
#include <numeric>

#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class Rng {
 public:
  Rng(uint64_t seed, uint64_t a, uint64_t b) : s_(splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b)) {}
  uint64_t next() { return splitmix64(s_++ * 0x2545F4914F6CDD1Dull); }
  // Uniform in [0, n), without modulo bias.
  uint64_t below(uint64_t n) {
    const uint64_t limit = ~uint64_t(0) - (~uint64_t(0) % n);
    uint64_t r;
    do r = next();
    while (r >= limit);
    return r % n;
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  uint64_t s_;
};

constexpr uint64_t kSaltOrder = 1, kSaltBatches = 2;

}  // namespace

// ---- cursor and batch ---------------------------------------------------------------------------

nlohmann::json StreamCursor::to_json() const {
  return {{"epoch", epoch},
          {"window_start", window_start},
          {"window_batches_taken", window_batches_taken},
          {"seed", seed},
          {"shuffle_buffer", shuffle_buffer},
          {"num_samples", num_samples},
          {"world_size", world_size},
          {"batch_size", batch_size},
          {"pack_window", pack_window},
          {"drop_last", drop_last}};
}

StreamCursor StreamCursor::from_json(const nlohmann::json& j) {
  StreamCursor c;
  try {
    c.epoch = j.at("epoch").get<int64_t>();
    c.window_start = j.at("window_start").get<int64_t>();
    c.window_batches_taken = j.at("window_batches_taken").get<int64_t>();
    c.seed = j.at("seed").get<uint64_t>();
    c.shuffle_buffer = j.at("shuffle_buffer").get<int64_t>();
    c.num_samples = j.at("num_samples").get<int64_t>();
    c.world_size = j.at("world_size").get<int64_t>();
    c.batch_size = j.at("batch_size").get<int64_t>();
    c.pack_window = j.at("pack_window").get<int64_t>();
    c.drop_last = j.at("drop_last").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    fail("data stream cursor: ", e.what(), " in ", j.dump());
  }
  return c;
}

int64_t PairedBatch::max_length() const {
  int64_t m = 0;
  for (const auto& s : samples) m = std::max(m, s.length());
  return m;
}
int64_t PairedBatch::padded_tokens() const { return static_cast<int64_t>(samples.size()) * max_length(); }
int64_t PairedBatch::real_tokens() const {
  int64_t t = 0;
  for (const auto& s : samples) t += s.length();
  return t;
}

// ---- the stream ---------------------------------------------------------------------------------

struct PairedStream::Impl {
  PairedManifest manifest;
  StreamOptions opt;
  std::vector<std::unique_ptr<PairedShardReader>> shards;
  std::vector<int64_t> shard_start;  // global index of each shard's first sample
  std::vector<int64_t> lengths;      // receiver length per global index
  StreamVocabularies vocab;  // 0: unchecked
  int64_t n = 0;           // samples the stream reads
  int64_t data_set_n = 0;  // samples in the data set

  // Position.
  int64_t epoch = 0, window_start = 0, taken = 0;
  // Caches of pure functions of the position.
  int64_t order_epoch = -1;
  std::vector<int64_t> order;
  int64_t batches_epoch = -1, batches_start = -1;
  std::vector<std::vector<int64_t>> batches;

  int64_t window_size(int64_t ws, int64_t world, int64_t batch, int64_t pack, bool drop_last) const {
    const int64_t rest = n - ws;
    if (rest <= 0) return 0;
    const int64_t step = batch * world;
    const int64_t usable = drop_last ? rest / step * step : rest;
    return std::min(pack * step, usable);
  }
  int64_t window_size(int64_t ws) const {
    return window_size(ws, opt.world_size, opt.batch_size, opt.pack_window, opt.drop_last);
  }

  std::vector<int64_t> make_order(int64_t e) const {
    std::vector<int64_t> out;
    out.reserve(n);
    const int64_t slots = std::min(opt.shuffle_buffer, n);
    if (slots <= 1) {
      for (int64_t i = 0; i < n; ++i) out.push_back(i);
      return out;
    }
    Rng rng(opt.seed, kSaltOrder, static_cast<uint64_t>(e));
    std::vector<int64_t> buffer;
    buffer.reserve(slots);
    for (int64_t i = 0; i < n; ++i) {
      if (static_cast<int64_t>(buffer.size()) < slots) {
        buffer.push_back(i);
        continue;
      }
      const uint64_t j = rng.below(static_cast<uint64_t>(slots));
      out.push_back(buffer[j]);
      buffer[j] = i;
    }
    rng.shuffle(buffer);
    out.insert(out.end(), buffer.begin(), buffer.end());
    return out;
  }

  const std::vector<int64_t>& order_of(int64_t e) {
    if (order_epoch != e) {
      order = make_order(e);
      order_epoch = e;
    }
    return order;
  }

  // This rank's batches of the window starting at ws in epoch e.
  const std::vector<std::vector<int64_t>>& window_batches(int64_t e, int64_t ws) {
    if (batches_epoch == e && batches_start == ws) return batches;
    batches.clear();
    const auto& ord = order_of(e);
    const int64_t win = window_size(ws);
    std::vector<int64_t> mine;
    for (int64_t q = ws; q < ws + win; ++q)
      if (q % opt.world_size == opt.rank) mine.push_back(ord[q]);
    // Sort by length (ties by index, so the result does not depend on the sort's stability).
    if (opt.pack_window > 1)
      std::sort(mine.begin(), mine.end(), [&](int64_t a, int64_t b) {
        return lengths[a] != lengths[b] ? lengths[a] < lengths[b] : a < b;
      });
    for (size_t i = 0; i < mine.size(); i += opt.batch_size)
      batches.emplace_back(mine.begin() + i, mine.begin() + std::min(mine.size(), i + opt.batch_size));
    if (opt.pack_window > 1) {
      Rng rng(opt.seed, kSaltBatches, splitmix64(static_cast<uint64_t>(e)) ^ static_cast<uint64_t>(ws));
      rng.shuffle(batches);
    }
    batches_epoch = e;
    batches_start = ws;
    return batches;
  }

  PairedSample read(int64_t index) const {
    C2C_CHECK(index >= 0 && index < n, "paired data set ", manifest.dir, ": sample index ", index,
              " out of range [0, ", n, ")");
    const size_t k = std::upper_bound(shard_start.begin(), shard_start.end(), index) - shard_start.begin() - 1;
    PairedSample s = shards[k]->read(index - shard_start[k]);
    s.index = index;
    check_sample(s, shards[k]->path(), index - shard_start[k]);
    return s;
  }

  // HDF5 keeps no checksums: a damaged value must fail here, naming the shard, the sample and the
  // field, not deep inside the trainer.
  void check_sample(const PairedSample& s, const std::string& shard, int64_t local) const {
    auto bad = [&](const std::string& field, const auto&... what) {
      fail("paired shard ", shard, ", sample ", local, " (data set index ", s.index, "): ", field, " ",
           what..., "\nHINT: the shard is damaged or was not written by this `c2c prepare`; re-run it");
    };
    auto ids_in = [&](const std::vector<int64_t>& ids, int64_t vocab, const std::string& field) {
      for (size_t t = 0; t < ids.size(); ++t)
        if (ids[t] < 0 || (vocab > 0 && ids[t] >= vocab))
          bad(field + "[" + std::to_string(t) + "]", "= ", ids[t], " is outside the vocabulary [0, ",
              vocab > 0 ? std::to_string(vocab) : std::string("..."), ")");
    };
    ids_in(s.receiver_ids, vocab.receiver, "receiver_ids");
    if (const std::string problem = sample_layout_problem(s); !problem.empty()) bad("layout:", problem);
    for (size_t j = 0; j < s.sharers.size(); ++j) {
      const PairedSharer& sh = s.sharers[j];
      const std::string tag = "sharer " + std::to_string(j) + " ";
      ids_in(sh.ids, j < vocab.sharers.size() ? vocab.sharers[j] : 0, tag + "ids");
      if (sh.mask.size() != sh.ids.size())
        bad(tag + "mask", "has ", sh.mask.size(), " entries for ", sh.ids.size(), " ids");
      const int64_t slen = static_cast<int64_t>(sh.ids.size());
      for (size_t t = 0; t < sh.slot_of.size(); ++t)
        if (sh.slot_of[t] < -1 || sh.slot_of[t] >= slen)
          bad(tag + "slot_of[" + std::to_string(t) + "]", "= ", sh.slot_of[t], " is neither -1 (not fused) nor a position in [0, ",
              slen, ")");
    }
  }
};

PairedStream::PairedStream(const std::string& data_dir, const StreamOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opt = options;
  C2C_CHECK(options.batch_size >= 1, "data stream: batch_size must be >= 1, got ", options.batch_size);
  C2C_CHECK(options.pack_window >= 1, "data stream: pack_window must be >= 1, got ", options.pack_window);
  C2C_CHECK(options.world_size >= 1 && options.rank >= 0 && options.rank < options.world_size,
            "data stream: rank ", options.rank, " of world size ", options.world_size, " is invalid");
  m.manifest = read_paired_manifest(data_dir);
  for (size_t k = 0; k < m.manifest.shard_files.size(); ++k) {
    auto shard = std::make_unique<PairedShardReader>(join_path(data_dir, m.manifest.shard_files[k]));
    C2C_CHECK(shard->num_samples() == m.manifest.shard_num_samples[k], "paired shard ", shard->path(),
              " holds ", shard->num_samples(), " samples, its manifest says ",
              m.manifest.shard_num_samples[k], "\nHINT: the folder was changed after `c2c prepare`; re-run it");
    C2C_CHECK(shard->num_sharers() == m.manifest.num_sharers, "paired shard ", shard->path(), " has ",
              shard->num_sharers(), " sharers, its manifest says ", m.manifest.num_sharers,
              "\nHINT: re-run `c2c prepare`");
    m.shard_start.push_back(m.n);
    for (int64_t i = 0; i < shard->num_samples(); ++i) m.lengths.push_back(shard->length(i));
    m.n += shard->num_samples();
    m.shards.push_back(std::move(shard));
  }
  m.data_set_n = m.n;
  C2C_CHECK(options.max_samples >= 0, "data stream: max_samples must be >= 0, got ", options.max_samples);
  if (options.max_samples > 0 && options.max_samples < m.n) {
    m.n = options.max_samples;  // every ordering below ranges over [0, n)
    m.lengths.resize(static_cast<size_t>(m.n));
  }
}

PairedStream::~PairedStream() = default;

PairedBatch PairedStream::next_batch() {
  Impl& m = *impl_;
  const int64_t start_epoch = m.epoch;
  for (;;) {
    const auto& batches = m.window_batches(m.epoch, m.window_start);
    if (m.taken < static_cast<int64_t>(batches.size())) {
      PairedBatch out;
      out.epoch = m.epoch;
      for (int64_t index : batches[m.taken]) out.samples.push_back(m.read(index));
      ++m.taken;
      return out;
    }
    const int64_t win = m.window_size(m.window_start);
    m.taken = 0;
    if (win > 0) {
      m.window_start += win;
      continue;
    }
    C2C_CHECK(m.epoch == start_epoch, "paired data set ", m.manifest.dir, " has ", m.n,
              " samples: no batch for rank ", m.opt.rank, " of ", m.opt.world_size, " at batch size ",
              m.opt.batch_size, "\nHINT: prepare more data, lower the batch size or set drop_last off");
    ++m.epoch;
    m.window_start = 0;
  }
}

StreamCursor PairedStream::cursor() const {
  const Impl& m = *impl_;
  StreamCursor c;
  c.epoch = m.epoch;
  c.window_start = m.window_start;
  c.window_batches_taken = m.taken;
  c.seed = m.opt.seed;
  c.shuffle_buffer = m.opt.shuffle_buffer;
  c.num_samples = m.n;
  c.world_size = m.opt.world_size;
  c.batch_size = m.opt.batch_size;
  c.pack_window = m.opt.pack_window;
  c.drop_last = m.opt.drop_last;
  return c;
}

void PairedStream::restore(const StreamCursor& c) {
  Impl& m = *impl_;
  const char* hint = "\nHINT: resume with the data set and data options the run started with";
  C2C_CHECK(c.num_samples == m.n, "data stream cursor was saved on ", c.num_samples,
            " samples, the data set ", m.manifest.dir, " has ", m.n, hint);
  C2C_CHECK(c.seed == m.opt.seed, "data stream cursor was saved with seed ", c.seed,
            ", the stream has seed ", m.opt.seed, hint);
  C2C_CHECK(std::min(c.shuffle_buffer, m.n) == std::min(m.opt.shuffle_buffer, m.n),
            "data stream cursor was saved with shuffle_buffer ", c.shuffle_buffer, ", the stream has ",
            m.opt.shuffle_buffer, hint);
  C2C_CHECK(c.epoch >= 0 && c.window_start >= 0 && c.window_batches_taken >= 0 && c.world_size >= 1 &&
                c.batch_size >= 1 && c.pack_window >= 1,
            "data stream cursor is invalid: ", c.to_json().dump());
  m.epoch = c.epoch;
  m.window_start = c.window_start;
  m.taken = c.window_batches_taken;
  const bool same_split = c.world_size == m.opt.world_size && c.batch_size == m.opt.batch_size &&
                          c.pack_window == m.opt.pack_window && c.drop_last == m.opt.drop_last;
  if (!same_split && m.taken > 0) {
    // The window was cut under another split: skip its rest, start the new split after it.
    m.window_start += m.window_size(c.window_start, c.world_size, c.batch_size, c.pack_window, c.drop_last);
    m.taken = 0;
  }
}

int64_t PairedStream::num_samples() const { return impl_->n; }
int64_t PairedStream::data_set_samples() const { return impl_->data_set_n; }
void PairedStream::check_vocabularies(const StreamVocabularies& v) { impl_->vocab = v; }
const PairedManifest& PairedStream::manifest() const { return impl_->manifest; }
PairedSample PairedStream::read_sample(int64_t index) const { return impl_->read(index); }
int64_t PairedStream::sample_length(int64_t index) const {
  C2C_CHECK(index >= 0 && index < impl_->n, "sample index ", index, " out of range [0, ", impl_->n, ")");
  return impl_->lengths[index];
}
std::vector<int64_t> PairedStream::epoch_order(int64_t epoch) const { return impl_->make_order(epoch); }

int64_t PairedStream::batches_per_epoch() const {
  const Impl& m = *impl_;
  int64_t total = 0;
  for (int64_t ws = 0;;) {
    const int64_t win = m.window_size(ws);
    if (win == 0) break;
    // Positions q in [ws, ws + win) with q % W == rank.
    const int64_t W = m.opt.world_size, r = m.opt.rank;
    int64_t share = 0;
    for (int64_t q = ws; q < ws + win && q < ws + W; ++q)
      if (q % W == r) share = (ws + win - q + W - 1) / W;
    total += (share + m.opt.batch_size - 1) / m.opt.batch_size;
    ws += win;
  }
  return total;
}

}  // namespace c2c
