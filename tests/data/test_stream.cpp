// The streaming reader on a synthetic data set with known answers: each sample's tokens are its
// own global index repeated, so what a batch returns can be checked against where it came from.
// Covers rank coverage without overlap, determinism, exact resume, resume with another world
// size, the shuffle buffer and length packing.
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include <H5Cpp.h>

#include <filesystem>

#include "data/stream.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "tests/common/test_util.h"

namespace c2c {
namespace {

constexpr int64_t kSamples = 103;

int64_t length_of(int64_t i) { return 5 + (i * 37) % 150; }  // 5..154, spread out

// 103 samples in shards of 17 (the last one short), one sharer.
const std::string& data_dir() {
  static const std::string dir = [] {
    const std::string d = test::temp_dir("stream");
    PairedDatasetWriter w(d, 1, 17);
    for (int64_t i = 0; i < kSamples; ++i) {
      PairedSample s;
      s.source_index = i;
      s.receiver_ids.assign(length_of(i), i);
      s.prompt_length = length_of(i) / 2;
      s.loss_start = s.prompt_length;
      s.loss_end = length_of(i);
      PairedSharer sh;
      sh.ids.assign(3, i);
      sh.mask.assign(3, 1);
      sh.slot_of.assign(length_of(i), -1);
      s.sharers.push_back(sh);
      w.add(s);
    }
    w.finish();
    return d;
  }();
  return dir;
}

StreamOptions options(int64_t rank = 0, int64_t world = 1) {
  StreamOptions o;
  o.batch_size = 4;
  o.shuffle_buffer = 16;
  o.pack_window = 3;
  o.seed = 1234;
  o.rank = rank;
  o.world_size = world;
  return o;
}

std::vector<int64_t> indices(const PairedBatch& b) {
  std::vector<int64_t> out;
  for (const auto& s : b.samples) out.push_back(s.index);
  return out;
}

TEST(Stream, SamplesAreReadCorrectly) {
  PairedStream st(data_dir(), options());
  EXPECT_EQ(st.num_samples(), kSamples);
  for (int n = 0; n < 5; ++n) {
    const PairedBatch b = st.next_batch();
    ASSERT_EQ(b.samples.size(), 4u);
    for (const auto& s : b.samples) {
      EXPECT_EQ(s.length(), length_of(s.index));
      EXPECT_EQ(s.receiver_ids, std::vector<int64_t>(length_of(s.index), s.index));
      EXPECT_EQ(s.source_index, s.index);
      EXPECT_EQ(s.sharers.at(0).ids, std::vector<int64_t>(3, s.index));
    }
  }
  EXPECT_EQ(st.read_sample(50).receiver_ids.front(), 50);
  EXPECT_EQ(st.sample_length(50), length_of(50));
}

TEST(Stream, ShuffleBufferIsAPermutationPerEpoch) {
  PairedStream st(data_dir(), options());
  const auto e0 = st.epoch_order(0), e1 = st.epoch_order(1);
  std::vector<int64_t> sorted = e0, all(kSamples);
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < kSamples; ++i) all[i] = i;
  EXPECT_EQ(sorted, all);
  EXPECT_NE(e0, all);
  EXPECT_NE(e0, e1);
  // A buffer of 16 slots never emits a sample more than 15 positions before its file position.
  for (int64_t q = 0; q < kSamples; ++q) EXPECT_LE(e0[q], q + 16) << q;
  StreamOptions in_order = options();
  in_order.shuffle_buffer = 1;
  EXPECT_EQ(PairedStream(data_dir(), in_order).epoch_order(0), all);
}

// Every rank over one epoch: disjoint, and together every sample (no drop_last) or all but
// fewer than one global step (drop_last, equal batch counts).
TEST(Stream, RanksCoverTheEpochWithoutOverlap) {
  for (bool drop_last : {false, true}) {
    for (int64_t world : {1, 2, 3}) {
      SCOPED_TRACE("world " + std::to_string(world) + (drop_last ? " drop_last" : ""));
      std::set<int64_t> seen;
      std::vector<int64_t> counts;
      for (int64_t r = 0; r < world; ++r) {
        StreamOptions o = options(r, world);
        o.drop_last = drop_last;
        PairedStream st(data_dir(), o);
        const int64_t n = st.batches_per_epoch();
        counts.push_back(n);
        for (int64_t k = 0; k < n; ++k) {
          const PairedBatch b = st.next_batch();
          EXPECT_EQ(b.epoch, 0);
          if (drop_last) EXPECT_EQ(b.samples.size(), 4u);
          for (int64_t i : indices(b)) EXPECT_TRUE(seen.insert(i).second) << "sample " << i << " twice";
        }
        EXPECT_EQ(st.next_batch().epoch, 1) << "batches_per_epoch is off";
      }
      const int64_t step = 4 * world;
      EXPECT_EQ(static_cast<int64_t>(seen.size()), drop_last ? kSamples / step * step : kSamples);
      if (drop_last)
        for (int64_t c : counts) EXPECT_EQ(c, counts[0]);
    }
  }
}

TEST(Stream, SameSeedSameBatchesOtherSeedOthers) {
  PairedStream a(data_dir(), options()), b(data_dir(), options());
  StreamOptions other = options();
  other.seed = 99;
  PairedStream c(data_dir(), other);
  bool differs = false;
  for (int k = 0; k < 40; ++k) {  // crosses into epoch 1
    const auto ia = indices(a.next_batch());
    EXPECT_EQ(ia, indices(b.next_batch()));
    differs = differs || ia != indices(c.next_batch());
  }
  EXPECT_TRUE(differs);
}

TEST(Stream, ResumeFromCursorIsExact) {
  for (int64_t stop : {0, 1, 5, 24, 26, 29}) {  // window edges, mid-window, across the epoch end
    SCOPED_TRACE("stop after " + std::to_string(stop));
    for (int64_t r = 0; r < 2; ++r) {
      PairedStream run(data_dir(), options(r, 2));
      for (int64_t k = 0; k < stop; ++k) run.next_batch();
      const std::string saved = run.cursor().to_json().dump();
      PairedStream resumed(data_dir(), options(r, 2));
      resumed.restore(StreamCursor::from_json(nlohmann::json::parse(saved)));
      for (int k = 0; k < 15; ++k) {
        const PairedBatch x = run.next_batch(), y = resumed.next_batch();
        EXPECT_EQ(indices(x), indices(y)) << "batch " << k;
        EXPECT_EQ(x.epoch, y.epoch);
      }
    }
  }
}

// Resume under another world size: no sample of the epoch is read twice, and the new ranks
// share the rest of the epoch without overlap.
TEST(Stream, ResumeWithAnotherWorldSize) {
  std::set<int64_t> seen;
  StreamCursor cursor;
  for (int64_t r = 0; r < 2; ++r) {
    PairedStream st(data_dir(), options(r, 2));
    for (int k = 0; k < 4; ++k)  // one full window of 3 batches and one batch of the next
      for (int64_t i : indices(st.next_batch())) EXPECT_TRUE(seen.insert(i).second);
    cursor = st.cursor();
  }
  EXPECT_EQ(seen.size(), 2u * 4 * 4);
  for (int64_t r = 0; r < 3; ++r) {
    PairedStream st(data_dir(), options(r, 3));
    st.restore(cursor);
    for (;;) {
      const PairedBatch b = st.next_batch();
      if (b.epoch != 0) break;
      for (int64_t i : indices(b)) EXPECT_TRUE(seen.insert(i).second) << "sample " << i << " twice";
    }
  }
  // Skipped: the rest of the cut window (2 ranks x 2 batches x 4) and the tail below one step.
  EXPECT_GE(static_cast<int64_t>(seen.size()), kSamples - 16 - 12);
}

TEST(Stream, CursorMismatchesAreErrors) {
  PairedStream st(data_dir(), options());
  st.next_batch();
  StreamCursor c = st.cursor();
  c.seed = 7;
  PairedStream other(data_dir(), options());
  try {
    other.restore(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("seed 7"), std::string::npos) << e.what();
  }
  EXPECT_THROW(StreamCursor::from_json({{"epoch", 1}}), Error);
}

TEST(Stream, LengthPackingReducesPadding) {
  StreamOptions packed = options(), plain = options();
  packed.pack_window = 8;
  plain.pack_window = 1;
  packed.shuffle_buffer = plain.shuffle_buffer = 1000;
  PairedStream a(data_dir(), packed), b(data_dir(), plain);
  ASSERT_EQ(a.batches_per_epoch(), b.batches_per_epoch());
  int64_t pad_a = 0, pad_b = 0, real_a = 0, real_b = 0;
  for (int64_t k = 0; k < a.batches_per_epoch(); ++k) {
    const PairedBatch x = a.next_batch(), y = b.next_batch();
    pad_a += x.padded_tokens() - x.real_tokens();
    pad_b += y.padded_tokens() - y.real_tokens();
    real_a += x.real_tokens();
    real_b += y.real_tokens();
  }
  EXPECT_EQ(real_a, real_b);  // the same 100 samples, only grouped differently
  EXPECT_LT(pad_a * 3, pad_b) << "packed padding " << pad_a << " vs unsorted " << pad_b;
}

TEST(Stream, TooSmallDataSetIsAnError) {
  StreamOptions o = options();
  o.batch_size = 200;
  PairedStream st(data_dir(), o);
  EXPECT_EQ(st.batches_per_epoch(), 0);
  try {
    st.next_batch();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
}

TEST(Stream, MissingManifestIsAnError) {
  try {
    PairedStream st(test::temp_dir("stream_none"), options());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("manifest.json"), std::string::npos) << e.what();
  }
}

// data.max_samples: the stream reads only the data set's first N samples, every epoch.
TEST(Stream, MaxSamplesKeepsTheFirstSamplesOnly) {
  StreamOptions o = options();
  o.max_samples = 9;
  PairedStream s(data_dir(), o);
  EXPECT_EQ(s.num_samples(), 9);
  EXPECT_GT(s.data_set_samples(), 9);
  for (int64_t epoch : {0, 1}) {
    auto order = s.epoch_order(epoch);
    ASSERT_EQ(order.size(), 9u);
    std::sort(order.begin(), order.end());
    for (int64_t i = 0; i < 9; ++i) EXPECT_EQ(order[i], i);
  }
  for (int k = 0; k < 6; ++k)
    for (const auto& smp : s.next_batch().samples) EXPECT_LT(smp.index, 9);
  o.max_samples = -1;
  EXPECT_THROW(PairedStream(data_dir(), o), c2c::Error);
}

// HDF5 keeps no checksums: single values patched in a shard fail when the sample is read, naming
// the shard, the sample and the field (not deep in the trainer).
void patch_int32(const std::string& file, const std::string& dataset, hsize_t at, int32_t value) {
  H5::H5File f(file, H5F_ACC_RDWR);
  H5::DataSet ds = f.openDataSet(dataset);
  H5::DataSpace space = ds.getSpace();
  hsize_t count[1] = {1}, start[1] = {at};
  space.selectHyperslab(H5S_SELECT_SET, count, start);
  H5::DataSpace mem(1, count);
  ds.write(&value, H5::PredType::NATIVE_INT32, mem, space);
}

std::string first_error(const std::string& dir, const StreamVocabularies& vocab) {
  StreamOptions o = options();
  o.shuffle_buffer = 0;  // file order: sample 0 comes first
  PairedStream st(dir, o);
  st.check_vocabularies(vocab);
  return test::error_of([&] {
    for (int k = 0; k < 40; ++k) st.next_batch();
  });
}

TEST(Stream, DamagedShardValuesAreNamedWithShardSampleAndField) {
  struct Case {
    std::string dataset;
    int32_t value;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"receiver/ids", 50000, "receiver_ids[0] = 50000 is outside the vocabulary [0, 1000)"},
      {"receiver/ids", -4, "receiver_ids[0] = -4"},
      {"sharer_0/ids", 7777, "sharer 0 ids[0] = 7777"},
      {"sharer_0/slot_of", -7, "sharer 0 slot_of[0] = -7"},
      {"sharer_0/slot_of", 100000, "sharer 0 slot_of[0] = 100000"},
      {"loss_end", 100000, "loss range"},
      {"prompt_length", 0, "prompt_length = 0"},
  };
  for (const auto& c : cases) {
    const std::string dir = test::temp_dir("damaged");
    std::filesystem::copy(data_dir(), dir, std::filesystem::copy_options::recursive |
                                               std::filesystem::copy_options::overwrite_existing);
    const std::string shard = join_path(dir, read_paired_manifest(dir).shard_files[0]);
    patch_int32(shard, c.dataset, 0, c.value);
    const std::string what = first_error(dir, {1000, {1000}});
    EXPECT_NE(what.find("paired shard " + shard + ", sample 0 (data set index 0)"), std::string::npos)
        << c.dataset << ": " << what;
    EXPECT_NE(what.find(c.field), std::string::npos) << c.dataset << ": " << what;
  }
  EXPECT_EQ(first_error(data_dir(), {1000, {1000}}), "");  // the undamaged set reads through
}

}  // namespace
}  // namespace c2c
