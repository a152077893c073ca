// The HDF5 shards and manifest of the paired data set: exact round trip of synthetic samples
// (ragged sizes, empty sharer views, several shards) and clear errors on a wrong format name,
// version or file.
#include <H5Cpp.h>
#include <unistd.h>

#include <fstream>

#include "data/paired_dataset.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "tests/common/test_util.h"

namespace c2c {
namespace {

// A sample with known contents: lengths and values derived from i.
PairedSample synthetic(int64_t i, int num_sharers) {
  PairedSample s;
  s.source_index = 1000 + i;
  const int64_t len = 3 + (i * 7) % 11;
  for (int64_t p = 0; p < len; ++p) s.receiver_ids.push_back(i * 100 + p);
  s.prompt_length = 1 + i % (len - 1);
  s.loss_start = s.prompt_length;
  s.loss_end = len;
  for (int k = 0; k < num_sharers; ++k) {
    PairedSharer sh;
    const int64_t slen = (i + k) % 4 == 0 ? 0 : 2 + (i + 3 * k) % 5;  // some empty
    for (int64_t q = 0; q < slen; ++q) {
      sh.ids.push_back(70000 + i * 10 + q + k);
      sh.mask.push_back(q % 3 != 2);
    }
    for (int64_t p = 0; p < len; ++p) sh.slot_of.push_back(slen == 0 ? -1 : (p + k) % (slen + 1) - 1);
    s.sharers.push_back(std::move(sh));
  }
  return s;
}

void expect_same(const PairedSample& a, const PairedSample& b) {
  EXPECT_EQ(a.source_index, b.source_index);
  EXPECT_EQ(a.receiver_ids, b.receiver_ids);
  EXPECT_EQ(a.prompt_length, b.prompt_length);
  EXPECT_EQ(a.loss_start, b.loss_start);
  EXPECT_EQ(a.loss_end, b.loss_end);
  ASSERT_EQ(a.sharers.size(), b.sharers.size());
  for (size_t k = 0; k < a.sharers.size(); ++k) {
    EXPECT_EQ(a.sharers[k].ids, b.sharers[k].ids) << "sharer " << k;
    EXPECT_EQ(a.sharers[k].mask, b.sharers[k].mask) << "sharer " << k;
    EXPECT_EQ(a.sharers[k].slot_of, b.sharers[k].slot_of) << "sharer " << k;
  }
}

using test::error_of;

TEST(PairedDataset, RoundTripAcrossShards) {
  const std::string dir = test::temp_dir("paired_rt");
  const int num_sharers = 2;
  std::vector<PairedSample> samples;
  for (int64_t i = 0; i < 7; ++i) samples.push_back(synthetic(i, num_sharers));
  PairedDatasetWriter writer(dir, num_sharers, 3, {{"note", "test"}});
  for (const auto& s : samples) writer.add(s);
  writer.finish({{"counts", {{"written", 7}}}});

  const PairedManifest m = read_paired_manifest(dir);
  EXPECT_EQ(m.num_samples, 7);
  EXPECT_EQ(m.num_sharers, 2);
  ASSERT_EQ(m.shard_files, (std::vector<std::string>{"shard-00000.h5", "shard-00001.h5", "shard-00002.h5"}));
  EXPECT_EQ(m.shard_num_samples, (std::vector<int64_t>{3, 3, 1}));
  EXPECT_EQ(m.json["counts"]["written"], 7);

  int64_t global = 0;
  for (size_t k = 0; k < m.shard_files.size(); ++k) {
    PairedShardReader shard(join_path(dir, m.shard_files[k]));
    EXPECT_EQ(shard.num_sharers(), 2);
    EXPECT_EQ(shard.info()["note"], "test");
    for (int64_t i = 0; i < shard.num_samples(); ++i, ++global) {
      SCOPED_TRACE("sample " + std::to_string(global));
      EXPECT_EQ(shard.length(i), samples[global].length());
      const PairedSample got = shard.read(i);
      EXPECT_EQ(got.index, i);
      expect_same(got, samples[global]);
    }
  }
  EXPECT_EQ(global, 7);
  EXPECT_FALSE(file_exists(join_path(dir, "shard-00000.h5.tmp")));
}

TEST(PairedDataset, EmptyShardAndNoSharers) {
  const std::string dir = test::temp_dir("paired_empty");
  const std::string path = join_path(dir, "empty.h5");
  write_paired_shard(path, {}, 0);
  PairedShardReader empty(path);
  EXPECT_EQ(empty.num_samples(), 0);
  const std::string one = join_path(dir, "one.h5");
  write_paired_shard(one, {synthetic(4, 0)}, 0);
  expect_same(PairedShardReader(one).read(0), synthetic(4, 0));
}

TEST(PairedDataset, WrongVersionNamesFileAndHints) {
  const std::string dir = test::temp_dir("paired_version");
  const std::string path = join_path(dir, "shard.h5");
  write_paired_shard(path, {synthetic(0, 1)}, 1);
  {
    H5::H5File f(path, H5F_ACC_RDWR);
    H5::Attribute a = f.openAttribute("format_version");
    const int32_t v = 99;
    a.write(H5::PredType::NATIVE_INT32, &v);
  }
  const std::string msg = error_of([&] { PairedShardReader r(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("format_version 99"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT: re-run `c2c prepare`"), std::string::npos) << msg;
}

TEST(PairedDataset, ForeignFilesAreRejected) {
  const std::string dir = test::temp_dir("paired_foreign");
  const std::string h5 = join_path(dir, "other.h5");
  { H5::H5File f(h5, H5F_ACC_TRUNC); }
  std::string msg = error_of([&] { PairedShardReader r(h5); });
  EXPECT_NE(msg.find("no 'format'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;

  const std::string txt = join_path(dir, "text.h5");
  write_file_atomic(txt, "not hdf5");
  msg = error_of([&] { PairedShardReader r(txt); });
  EXPECT_NE(msg.find("not an HDF5 file"), std::string::npos) << msg;

  msg = error_of([&] { PairedShardReader r(join_path(dir, "missing.h5")); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;

  write_file_atomic(join_path(dir, "manifest.json"), R"({"format": "c2c-paired", "format_version": 0})");
  msg = error_of([&] { read_paired_manifest(dir); });
  EXPECT_NE(msg.find("format_version"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT: re-run `c2c prepare`"), std::string::npos) << msg;
}

TEST(PairedDataset, InconsistentSampleIsRefusedOnWrite) {
  const std::string dir = test::temp_dir("paired_bad");
  PairedSample s = synthetic(1, 1);
  s.sharers[0].slot_of.pop_back();
  EXPECT_NE(error_of([&] { write_paired_shard(join_path(dir, "x.h5"), {s}, 1); }).find("slot_of"),
            std::string::npos);
  s = synthetic(1, 1);
  s.loss_end = s.length() + 1;
  EXPECT_NE(error_of([&] { write_paired_shard(join_path(dir, "x.h5"), {s}, 1); }).find("loss"),
            std::string::npos);
  EXPECT_FALSE(file_exists(join_path(dir, "x.h5")));
}

}  // namespace
}  // namespace c2c
