// Reading and writing the safetensors format (an 8-byte little-endian header length, a JSON header
// mapping names to dtype/shape/data_offsets, then raw little-endian data). Files are memory-mapped;
// every offset is checked against the file size before a byte is read.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace c2c {

struct SafetensorsEntry {
  std::string dtype;               // as written in the header: "F32", "BF16", "F16", "I64", ...
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;       // byte range inside the data section
};

class SafetensorsFile {
 public:
  // Maps the file and validates the header; throws c2c::Error naming the file on any defect
  // (too short, header not JSON, unknown dtype, offsets past the end, size not matching shape).
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A fresh tensor (owning its memory) converted to `dtype`; kUndefined keeps the stored dtype.
  torch::Tensor load(const std::string& name,
                     torch::Dtype dtype = torch::kFloat32) const;
  torch::Tensor load_as_stored(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  size_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes tensors (any of F32/F16/BF16/I64/I32/U8/BOOL, moved to CPU and made contiguous) in the
// order given, atomically (temporary file + rename).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Every tensor of a file in its stored dtype.
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

// Name of the safetensors dtype for a torch dtype ("F32", ...); throws for unsupported ones.
std::string safetensors_dtype_name(torch::Dtype dtype);

}  // namespace c2c
