#include "modules/safetensors.h"

#include <algorithm>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {
namespace {

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
  size_t bytes;
};

// The dtypes this project reads and writes; anything else in a header is reported by name.
const DtypeInfo kDtypes[] = {
    {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2}, {"BF16", torch::kBFloat16, 2},
    {"F64", torch::kFloat64, 8}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

}  // namespace

std::string safetensors_dtype_name(torch::Dtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.name;
  fail("safetensors: cannot store tensors of dtype ", c10::toString(dtype));
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  C2C_CHECK(fd >= 0, "cannot open safetensors file '", path, "': ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail("cannot stat '", path, "'");
  }
  f->map_size_ = static_cast<size_t>(st.st_size);
  if (f->map_size_ < 8) {
    ::close(fd);
    fail("'", path, "' is not a safetensors file: only ", f->map_size_,
         " bytes (a header length alone takes 8)\nHINT: the file may be truncated; copy it again");
  }
  void* m = ::mmap(nullptr, f->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  C2C_CHECK(m != MAP_FAILED, "cannot map '", path, "': ", std::strerror(errno));
  f->map_ = static_cast<const uint8_t*>(m);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | f->map_[i];
  C2C_CHECK(header_len <= f->map_size_ - 8, "'", path, "': header length ", header_len,
            " runs past the end of the file (", f->map_size_,
            " bytes)\nHINT: the file is truncated or not a safetensors file");
  f->data_start_ = 8 + header_len;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(f->map_ + 8, f->map_ + 8 + header_len);
  } catch (const nlohmann::json::parse_error& e) {
    fail("'", path, "': the safetensors header is not valid JSON (", e.what(), ")");
  }
  C2C_CHECK(header.is_object(), "'", path, "': the safetensors header is not a JSON object");
  const size_t data_size = f->map_size_ - f->data_start_;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object())
        for (auto m2 = it->begin(); m2 != it->end(); ++m2)
          if (m2->is_string()) f->metadata_[m2.key()] = m2->get<std::string>();
      continue;
    }
    const auto& v = it.value();
    const std::string where = "'" + path + "': tensor '" + it.key() + "'";
    C2C_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") &&
                  v.contains("data_offsets"),
              where, " lacks dtype, shape or data_offsets in the header");
    SafetensorsEntry e;
    C2C_CHECK(v["dtype"].is_string(), where, ": dtype is not a string");
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = find_dtype(e.dtype);
    C2C_CHECK(info, where, " has unsupported dtype '", e.dtype, "'");
    C2C_CHECK(v["shape"].is_array(), where, ": shape is not a list");
    size_t numel = 1;
    for (const auto& s : v["shape"]) {
      C2C_CHECK(s.is_number_integer() && s.get<int64_t>() >= 0, where, ": bad shape entry ",
                s.dump());
      e.shape.push_back(s.get<int64_t>());
      numel *= static_cast<size_t>(e.shape.back());
    }
    const auto& off = v["data_offsets"];
    C2C_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                  off[1].is_number_unsigned(),
              where, ": data_offsets must be two non-negative integers, got ", off.dump());
    e.begin = off[0].get<size_t>();
    e.end = off[1].get<size_t>();
    C2C_CHECK(e.begin <= e.end && e.end <= data_size, where, ": data_offsets [", e.begin, ", ",
              e.end, "] run past the data section (", data_size,
              " bytes)\nHINT: the file is truncated; copy it again");
    C2C_CHECK(e.end - e.begin == numel * info->bytes, where, ": ", e.end - e.begin,
              " bytes of data do not match shape and dtype (", numel * info->bytes, " bytes)");
    f->entries_[it.key()] = std::move(e);
  }
  // Tensors own disjoint byte ranges (the format writes them back to back): overlapping ranges
  // mean a damaged or hand-made header whose tensors would silently share their values.
  std::vector<std::pair<const std::string*, const SafetensorsEntry*>> by_offset;
  for (const auto& [name, e] : f->entries_)
    if (e.end > e.begin) by_offset.emplace_back(&name, &e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto& [prev_name, prev] = by_offset[i - 1];
    const auto& [name, e] = by_offset[i];
    C2C_CHECK(e->begin >= prev->end, "'", path, "': tensors '", *prev_name, "' [", prev->begin, ", ",
              prev->end, ") and '", *name, "' [", e->begin, ", ", e->end, ") overlap in the data "
              "section\nHINT: the header is damaged; write the file again (safetensors' save_file)");
  }
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  C2C_CHECK(it != entries_.end(), "'", path_, "' has no tensor '", name, "'");
  return it->second;
}

torch::Tensor SafetensorsFile::load_as_stored(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  const DtypeInfo* info = find_dtype(e.dtype);
  // from_blob views the mapping; clone() gives the caller memory of its own.
  void* ptr = const_cast<uint8_t*>(map_ + data_start_ + e.begin);
  return torch::from_blob(ptr, e.shape, torch::TensorOptions().dtype(info->dtype)).clone();
}

torch::Tensor SafetensorsFile::load(const std::string& name, torch::Dtype dtype) const {
  const SafetensorsEntry& e = entry(name);
  const DtypeInfo* info = find_dtype(e.dtype);
  void* ptr = const_cast<uint8_t*>(map_ + data_start_ + e.begin);
  auto view = torch::from_blob(ptr, e.shape, torch::TensorOptions().dtype(info->dtype));
  if (info->dtype == dtype) return view.clone();
  return view.to(dtype);  // a conversion allocates a fresh tensor
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    C2C_CHECK(t.defined(), "save_safetensors('", path, "'): tensor '", name, "' is undefined");
    C2C_CHECK(!header.contains(name), "save_safetensors('", path, "'): duplicate name '", name, "'");
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const size_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  std::string out;
  out.reserve(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += h;
  for (const auto& c : data)
    out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  write_file_atomic(path, out);
}

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : f->names()) out[name] = f->load_as_stored(name);
  return out;
}

}  // namespace c2c
