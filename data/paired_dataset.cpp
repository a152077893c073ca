// HDF5 shards and the manifest of the paired data set (layout in paired_dataset.h). Arrays are
// flat and ragged (tokens + int64 offsets) so a shard is a handful of datasets whatever N is;
// shards are written whole from memory (10k samples of 2k tokens are ~100 MB), read per sample.
#include "data/paired_dataset.h"

#include <H5Cpp.h>

#include <cstdio>
#include <limits>

#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {
namespace {

const char* kHint = "HINT: re-run `c2c prepare` to write the data set with this version of c2c";

void quiet_hdf5() {
  static const bool once = [] {
    H5::Exception::dontPrint();
    return true;
  }();
  (void)once;
}

template <typename T>
const H5::PredType& h5_type();
template <>
const H5::PredType& h5_type<int32_t>() { return H5::PredType::NATIVE_INT32; }
template <>
const H5::PredType& h5_type<int64_t>() { return H5::PredType::NATIVE_INT64; }
template <>
const H5::PredType& h5_type<uint8_t>() { return H5::PredType::NATIVE_UINT8; }

template <typename T>
void write_array(H5::Group& group, const std::string& name, const std::vector<T>& data) {
  hsize_t dims[1] = {static_cast<hsize_t>(data.size())};
  H5::DataSpace space(1, dims);
  H5::DataSet ds = group.createDataSet(name, h5_type<T>(), space);
  if (!data.empty()) ds.write(data.data(), h5_type<T>());
}

void write_string_attr(H5::H5Object& obj, const std::string& name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, std::max<size_t>(1, value.size()));
  H5::Attribute attr = obj.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  attr.write(type, padded.data());
}

template <typename T>
void write_scalar_attr(H5::H5Object& obj, const std::string& name, T value) {
  H5::Attribute attr = obj.createAttribute(name, h5_type<T>(), H5::DataSpace(H5S_SCALAR));
  attr.write(h5_type<T>(), &value);
}

int32_t to_i32(int64_t v, const std::string& what) {
  C2C_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(),
            "paired data set: ", what, " ", v, " does not fit the int32 storage");
  return static_cast<int32_t>(v);
}

}  // namespace

std::string sample_layout_problem(const PairedSample& s) {
  const int64_t len = s.length();
  if (s.prompt_length < 1 || s.prompt_length >= len)
    return c2c::str("prompt_length = ", s.prompt_length, " must be in [1, ", len,
                    ") so a response remains");
  if (s.loss_start < s.prompt_length || s.loss_end > len || s.loss_start >= s.loss_end)
    return c2c::str("loss range [", s.loss_start, ", ", s.loss_end, ") must lie in the response [",
                    s.prompt_length, ", ", len, ")");
  return "";
}

void write_paired_shard(const std::string& path, const std::vector<PairedSample>& samples,
                        int num_sharers, const nlohmann::json& info) {
  quiet_hdf5();
  const size_t n = samples.size();
  std::vector<int32_t> r_ids, prompt_length(n), loss_start(n), loss_end(n);
  std::vector<int64_t> r_off{0}, source(n);
  std::vector<std::vector<int32_t>> s_ids(num_sharers), s_slot(num_sharers);
  std::vector<std::vector<uint8_t>> s_mask(num_sharers);
  std::vector<std::vector<int64_t>> s_off(num_sharers, std::vector<int64_t>{0});
  for (size_t i = 0; i < n; ++i) {
    const PairedSample& s = samples[i];
    const int64_t len = s.length();
    C2C_CHECK(static_cast<int>(s.sharers.size()) == num_sharers, "paired shard ", path, ": sample ",
              i, " has ", s.sharers.size(), " sharers, the shard ", num_sharers);
    C2C_CHECK(s.prompt_length >= 1 && s.prompt_length <= len && s.loss_start >= 0 &&
                  s.loss_start <= s.loss_end && s.loss_end <= len,
              "paired shard ", path, ": sample ", i, " has prompt_length ", s.prompt_length,
              ", loss [", s.loss_start, ", ", s.loss_end, ") for ", len, " receiver tokens");
    for (int64_t id : s.receiver_ids) r_ids.push_back(to_i32(id, "receiver token id"));
    r_off.push_back(static_cast<int64_t>(r_ids.size()));
    prompt_length[i] = to_i32(s.prompt_length, "prompt_length");
    loss_start[i] = to_i32(s.loss_start, "loss_start");
    loss_end[i] = to_i32(s.loss_end, "loss_end");
    source[i] = s.source_index;
    for (int k = 0; k < num_sharers; ++k) {
      const PairedSharer& sh = s.sharers[k];
      C2C_CHECK(sh.mask.size() == sh.ids.size() && static_cast<int64_t>(sh.slot_of.size()) == len,
                "paired shard ", path, ": sample ", i, " sharer ", k, " has ", sh.ids.size(),
                " ids, ", sh.mask.size(), " mask entries and ", sh.slot_of.size(),
                " slot_of entries for ", len, " receiver tokens");
      for (int64_t id : sh.ids) s_ids[k].push_back(to_i32(id, "sharer token id"));
      s_mask[k].insert(s_mask[k].end(), sh.mask.begin(), sh.mask.end());
      for (int64_t slot : sh.slot_of) {
        C2C_CHECK(slot >= -1 && slot < static_cast<int64_t>(sh.ids.size()), "paired shard ", path,
                  ": sample ", i, " sharer ", k, " has slot ", slot, " outside its ", sh.ids.size(),
                  " tokens");
        s_slot[k].push_back(static_cast<int32_t>(slot));
      }
      s_off[k].push_back(static_cast<int64_t>(s_ids[k].size()));
    }
  }

  const std::string tmp = path + ".tmp";
  try {
    H5::H5File file(tmp, H5F_ACC_TRUNC);
    write_string_attr(file, "format", kPairedFormatName);
    write_scalar_attr<int32_t>(file, "format_version", kPairedFormatVersion);
    write_scalar_attr<int64_t>(file, "num_samples", static_cast<int64_t>(n));
    write_scalar_attr<int32_t>(file, "num_sharers", num_sharers);
    write_string_attr(file, "info", info.dump());
    H5::Group root = file.openGroup("/");
    H5::Group recv = file.createGroup("receiver");
    write_array(recv, "ids", r_ids);
    write_array(recv, "offsets", r_off);
    write_array(root, "prompt_length", prompt_length);
    write_array(root, "loss_start", loss_start);
    write_array(root, "loss_end", loss_end);
    write_array(root, "source_index", source);
    for (int k = 0; k < num_sharers; ++k) {
      H5::Group g = file.createGroup("sharer_" + std::to_string(k));
      write_array(g, "ids", s_ids[k]);
      write_array(g, "offsets", s_off[k]);
      write_array(g, "mask", s_mask[k]);
      write_array(g, "slot_of", s_slot[k]);
    }
    file.close();
  } catch (const H5::Exception& e) {
    std::remove(tmp.c_str());
    fail("cannot write paired shard ", path, ": HDF5 error in ", e.getFuncName(), ": ",
         e.getDetailMsg());
  }
  C2C_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

// ---- reader -------------------------------------------------------------------------------------

struct PairedShardReader::Impl {
  std::string path;
  H5::H5File file;
  int64_t n = 0;
  int num_sharers = 0;
  nlohmann::json info;
  std::vector<int64_t> r_off, source;
  std::vector<int32_t> prompt_length, loss_start, loss_end;
  H5::DataSet r_ids;
  struct Sharer {
    std::vector<int64_t> off;
    H5::DataSet ids, mask, slot_of;
  };
  std::vector<Sharer> sharers;

  bool has_link(const std::string& name) const {
    return H5Lexists(file.getId(), name.c_str(), H5P_DEFAULT) > 0;
  }
  H5::DataSet open(const std::string& name, hsize_t expect) const {
    C2C_CHECK(has_link(name.substr(0, name.find('/'))) && has_link(name), "paired shard ", path,
              ": dataset '", name, "' is missing\n", kHint);
    H5::DataSet ds = file.openDataSet(name);
    H5::DataSpace space = ds.getSpace();
    C2C_CHECK(space.getSimpleExtentNdims() == 1, "paired shard ", path, ": dataset '", name,
              "' is not one-dimensional\n", kHint);
    hsize_t dims[1] = {0};
    space.getSimpleExtentDims(dims);
    C2C_CHECK(expect == static_cast<hsize_t>(-1) || dims[0] == expect, "paired shard ", path,
              ": dataset '", name, "' has ", dims[0], " entries, expected ", expect, "\n", kHint);
    return ds;
  }
  template <typename T>
  std::vector<T> read_whole(const std::string& name, hsize_t expect) const {
    H5::DataSet ds = open(name, expect);
    hsize_t dims[1] = {0};
    ds.getSpace().getSimpleExtentDims(dims);
    std::vector<T> out(dims[0]);
    if (!out.empty()) ds.read(out.data(), h5_type<T>());
    return out;
  }
  template <typename T>
  std::vector<T> read_range(const H5::DataSet& ds, int64_t begin, int64_t end) const {
    std::vector<T> out(end - begin);
    if (out.empty()) return out;
    H5::DataSpace file_space = ds.getSpace();
    hsize_t start[1] = {static_cast<hsize_t>(begin)}, count[1] = {static_cast<hsize_t>(end - begin)};
    file_space.selectHyperslab(H5S_SELECT_SET, count, start);
    H5::DataSpace mem(1, count);
    ds.read(out.data(), h5_type<T>(), mem, file_space);
    return out;
  }
  void check_offsets(const std::vector<int64_t>& off, hsize_t total, const std::string& name) const {
    for (size_t i = 0; i + 1 < off.size(); ++i)
      C2C_CHECK(off[i] <= off[i + 1], "paired shard ", path, ": ", name, " decrease at ", i, "\n", kHint);
    C2C_CHECK(!off.empty() && off.front() == 0 && static_cast<hsize_t>(off.back()) == total,
              "paired shard ", path, ": ", name, " do not cover the tokens\n", kHint);
  }
};

namespace {

std::string read_string_attr(const H5::H5File& file, const std::string& name) {
  H5::Attribute attr = file.openAttribute(name);
  H5::StrType type = attr.getStrType();
  std::string out;
  attr.read(type, out);
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

template <typename T>
T read_scalar_attr(const H5::H5File& file, const std::string& name) {
  T v{};
  file.openAttribute(name).read(h5_type<T>(), &v);
  return v;
}

}  // namespace

PairedShardReader::PairedShardReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  quiet_hdf5();
  Impl& m = *impl_;
  m.path = path;
  C2C_CHECK(file_exists(path), "paired shard ", path, " does not exist\nHINT: run `c2c prepare` to write it");
  try {
    C2C_CHECK(H5::H5File::isHdf5(path), "paired shard ", path, " is not an HDF5 file\n", kHint);
    m.file.openFile(path, H5F_ACC_RDONLY);
    C2C_CHECK(m.file.attrExists("format") && m.file.attrExists("format_version"), "paired shard ",
              path, " has no 'format'/'format_version' attributes: not a c2c paired data set\n", kHint);
    const std::string format = read_string_attr(m.file, "format");
    C2C_CHECK(format == kPairedFormatName, "paired shard ", path, " has format '", format,
              "', expected '", kPairedFormatName, "'\n", kHint);
    const int32_t version = read_scalar_attr<int32_t>(m.file, "format_version");
    C2C_CHECK(version == kPairedFormatVersion, "paired shard ", path, " has format_version ",
              version, ", this build reads version ", kPairedFormatVersion, "\n", kHint);
    m.n = read_scalar_attr<int64_t>(m.file, "num_samples");
    m.num_sharers = read_scalar_attr<int32_t>(m.file, "num_sharers");
    C2C_CHECK(m.n >= 0 && m.num_sharers >= 0, "paired shard ", path, ": bad num_samples ", m.n,
              " or num_sharers ", m.num_sharers, "\n", kHint);
    if (m.file.attrExists("info")) m.info = nlohmann::json::parse(read_string_attr(m.file, "info"), nullptr, false);
    const hsize_t n = static_cast<hsize_t>(m.n), any = static_cast<hsize_t>(-1);
    m.r_off = m.read_whole<int64_t>("receiver/offsets", n + 1);
    m.r_ids = m.open("receiver/ids", any);
    hsize_t total[1] = {0};
    m.r_ids.getSpace().getSimpleExtentDims(total);
    m.check_offsets(m.r_off, total[0], "receiver/offsets");
    m.prompt_length = m.read_whole<int32_t>("prompt_length", n);
    m.loss_start = m.read_whole<int32_t>("loss_start", n);
    m.loss_end = m.read_whole<int32_t>("loss_end", n);
    m.source = m.read_whole<int64_t>("source_index", n);
    for (int k = 0; k < m.num_sharers; ++k) {
      const std::string g = "sharer_" + std::to_string(k) + "/";
      Impl::Sharer s;
      s.off = m.read_whole<int64_t>(g + "offsets", n + 1);
      s.ids = m.open(g + "ids", any);
      hsize_t st[1] = {0};
      s.ids.getSpace().getSimpleExtentDims(st);
      m.check_offsets(s.off, st[0], g + "offsets");
      s.mask = m.open(g + "mask", st[0]);
      s.slot_of = m.open(g + "slot_of", total[0]);
      m.sharers.push_back(std::move(s));
    }
  } catch (const H5::Exception& e) {
    fail("cannot read paired shard ", path, ": HDF5 error in ", e.getFuncName(), ": ",
         e.getDetailMsg(), "\n", kHint);
  }
}

PairedShardReader::~PairedShardReader() = default;
const std::string& PairedShardReader::path() const { return impl_->path; }
int64_t PairedShardReader::num_samples() const { return impl_->n; }
int PairedShardReader::num_sharers() const { return impl_->num_sharers; }
const nlohmann::json& PairedShardReader::info() const { return impl_->info; }

int64_t PairedShardReader::length(int64_t i) const {
  C2C_ASSERT(i >= 0 && i < impl_->n);
  return impl_->r_off[i + 1] - impl_->r_off[i];
}

PairedSample PairedShardReader::read(int64_t i) const {
  const Impl& m = *impl_;
  C2C_CHECK(i >= 0 && i < m.n, "paired shard ", m.path, ": sample ", i, " out of range [0, ", m.n, ")");
  PairedSample s;
  s.index = i;
  s.source_index = m.source[i];
  s.prompt_length = m.prompt_length[i];
  s.loss_start = m.loss_start[i];
  s.loss_end = m.loss_end[i];
  try {
    const int64_t b = m.r_off[i], e = m.r_off[i + 1];
    const auto ids = m.read_range<int32_t>(m.r_ids, b, e);
    s.receiver_ids.assign(ids.begin(), ids.end());
    for (const Impl::Sharer& sh : m.sharers) {
      PairedSharer out;
      const auto sid = m.read_range<int32_t>(sh.ids, sh.off[i], sh.off[i + 1]);
      out.ids.assign(sid.begin(), sid.end());
      out.mask = m.read_range<uint8_t>(sh.mask, sh.off[i], sh.off[i + 1]);
      const auto slot = m.read_range<int32_t>(sh.slot_of, b, e);
      out.slot_of.assign(slot.begin(), slot.end());
      s.sharers.push_back(std::move(out));
    }
  } catch (const H5::Exception& e) {
    fail("cannot read sample ", i, " of paired shard ", m.path, ": HDF5 error in ",
         e.getFuncName(), ": ", e.getDetailMsg());
  }
  return s;
}

// ---- manifest and the sharded writer ------------------------------------------------------------

PairedManifest read_paired_manifest(const std::string& dir) {
  const std::string path = join_path(dir, kPairedManifestName);
  C2C_CHECK(file_exists(path), "paired data set ", dir, " has no ", kPairedManifestName,
            "\nHINT: give the --out folder of `c2c prepare`");
  PairedManifest m;
  m.dir = dir;
  m.json = read_json(path);
  const auto& j = m.json;
  C2C_CHECK(j.is_object() && j.value("format", "") == kPairedFormatName, path, ": key 'format' is not '",
            kPairedFormatName, "'\n", kHint);
  C2C_CHECK(j.contains("format_version") && j["format_version"] == kPairedFormatVersion, path,
            ": key 'format_version' is ", j.value("format_version", nlohmann::json()).dump(),
            ", this build reads ", kPairedFormatVersion, "\n", kHint);
  try {
    m.num_sharers = j.at("num_sharers").get<int>();
    for (const auto& s : j.at("shards")) {
      m.shard_files.push_back(s.at("file").get<std::string>());
      m.shard_num_samples.push_back(s.at("num_samples").get<int64_t>());
      m.num_samples += m.shard_num_samples.back();
    }
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": malformed manifest (", e.what(), ")\n", kHint);
  }
  C2C_CHECK(m.num_samples == j.value("num_samples", int64_t(-1)), path, ": key 'num_samples' is ",
            j.value("num_samples", int64_t(-1)), " but the shards hold ", m.num_samples, "\n", kHint);
  return m;
}

PairedDatasetWriter::PairedDatasetWriter(const std::string& dir, int num_sharers, int64_t shard_size,
                                         nlohmann::json shard_info)
    : dir_(dir), num_sharers_(num_sharers), shard_size_(shard_size), shard_info_(std::move(shard_info)) {
  C2C_CHECK(shard_size > 0, "shard size must be > 0, got ", shard_size);
  C2C_CHECK(is_directory(dir), "output folder ", dir, " does not exist");
}

void PairedDatasetWriter::add(PairedSample sample) {
  C2C_ASSERT(!finished_);
  pending_.push_back(std::move(sample));
  if (static_cast<int64_t>(pending_.size()) >= shard_size_) flush();
}

void PairedDatasetWriter::flush() {
  if (pending_.empty()) return;
  char name[32];
  std::snprintf(name, sizeof(name), "shard-%05d.h5", static_cast<int>(shards_.size()));
  write_paired_shard(join_path(dir_, name), pending_, num_sharers_, shard_info_);
  shards_.push_back({{"file", name}, {"num_samples", static_cast<int64_t>(pending_.size())}});
  written_ += static_cast<int64_t>(pending_.size());
  pending_.clear();
}

void PairedDatasetWriter::finish(const nlohmann::json& extra) {
  C2C_ASSERT(!finished_);
  flush();
  finished_ = true;
  nlohmann::json j = extra.is_object() ? extra : nlohmann::json::object();
  j["format"] = kPairedFormatName;
  j["format_version"] = kPairedFormatVersion;
  j["num_sharers"] = num_sharers_;
  j["num_samples"] = written_;
  j["shards"] = shards_;
  write_file_atomic(join_path(dir_, kPairedManifestName),
                    j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace c2c
