// Bad model folders and inputs give a c2c::Error that names the file and the problem; never a
// crash or a hang. Each case mutates a copy of the qwen3-tiny fixture.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/generate.h"
#include "modules/llm.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"

using namespace c2c;
namespace fs = std::filesystem;

namespace {

std::string copy_fixture(const std::string& tag) {
  const std::string dir = test::temp_dir(tag);
  for (const char* f : {"config.json", "model.safetensors"})
    fs::copy_file(test::source_path(std::string("tests/fixtures/models/qwen3-tiny/") + f),
                  dir + "/" + f);
  return dir;
}

// Expects LLM::load(dir) to throw c2c::Error whose message contains every fragment.
void expect_load_error(const std::string& dir, const std::vector<std::string>& fragments) {
  try {
    LLM::load(dir);
    FAIL() << "loading " << dir << " should have failed";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "message: " << msg;
  }
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Rewrites model.safetensors with `edit` applied to its tensors.
void rewrite_weights(const std::string& dir,
                     const std::function<void(std::map<std::string, torch::Tensor>&)>& edit) {
  auto t = load_safetensors(dir + "/model.safetensors");
  edit(t);
  NamedTensors out(t.begin(), t.end());
  save_safetensors(dir + "/model.safetensors", out);
}

TEST(ModelErrors, MissingFolder) {
  expect_load_error("/nonexistent/model", {"/nonexistent/model", "does not exist"});
}

TEST(ModelErrors, MissingConfig) {
  const std::string dir = copy_fixture("noconfig");
  fs::remove(dir + "/config.json");
  expect_load_error(dir, {"config.json", dir});
}

TEST(ModelErrors, UnreadableConfig) {
  const std::string dir = copy_fixture("unreadable");
  fs::remove(dir + "/config.json");
  fs::create_directory(dir + "/config.json");  // a folder where a file should be
  expect_load_error(dir, {"config.json"});
}

TEST(ModelErrors, ConfigNotJson) {
  const std::string dir = copy_fixture("badjson");
  write_bytes(dir + "/config.json", "{\"model_type\": \"qwen3\", ");
  expect_load_error(dir, {"config.json", "not valid JSON"});
}

TEST(ModelErrors, UnknownArchitecture) {
  const std::string dir = copy_fixture("arch");
  auto j = read_json(dir + "/config.json");
  j["model_type"] = "gpt_neox";
  write_bytes(dir + "/config.json", j.dump());
  expect_load_error(dir, {"config.json", "unknown architecture", "gpt_neox", "qwen3"});
}

TEST(ModelErrors, ConfigKeyWithWrongType) {
  const std::string dir = copy_fixture("type");
  auto j = read_json(dir + "/config.json");
  j["hidden_size"] = "sixty-four";
  write_bytes(dir + "/config.json", j.dump());
  expect_load_error(dir, {"config.json", "hidden_size", "wrong type"});
}

TEST(ModelErrors, MissingWeights) {
  const std::string dir = copy_fixture("noweights");
  fs::remove(dir + "/model.safetensors");
  expect_load_error(dir, {dir, "model.safetensors"});
}

TEST(ModelErrors, TruncatedSafetensors) {
  const std::string dir = copy_fixture("trunc");
  const std::string bytes = read_file(dir + "/model.safetensors");
  write_bytes(dir + "/model.safetensors", bytes.substr(0, bytes.size() / 2));
  expect_load_error(dir, {"model.safetensors", "truncated"});
}

TEST(ModelErrors, TinyFileShorterThanHeaderLength) {
  const std::string dir = copy_fixture("tiny");
  write_bytes(dir + "/model.safetensors", "abc");
  expect_load_error(dir, {"model.safetensors", "not a safetensors file"});
}

TEST(ModelErrors, HeaderNotJson) {
  const std::string dir = copy_fixture("hdr");
  std::string header = "{not json at all}";
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(header.size());
  write_bytes(dir + "/model.safetensors", bytes + header);
  expect_load_error(dir, {"model.safetensors", "header is not valid JSON"});
}

TEST(ModelErrors, HeaderOffsetsPastTheFile) {
  const std::string dir = copy_fixture("offs");
  std::string header = R"({"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}})";
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(header.size());
  write_bytes(dir + "/model.safetensors", bytes + header + std::string(16, '\0'));
  expect_load_error(dir, {"model.safetensors", "model.norm.weight", "run past"});
}

// Every tensor at offset 0: each would read the same bytes. Refused, naming two of them.
TEST(ModelErrors, OverlappingDataOffsets) {
  const std::string dir = copy_fixture("overlap");
  std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                       R"("b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                       R"("c":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(header.size());
  write_bytes(dir + "/model.safetensors", bytes + header + std::string(16, '\0'));
  const std::string what = test::error_of([&] { SafetensorsFile::open(dir + "/model.safetensors"); });
  EXPECT_NE(what.find("overlap in the data section"), std::string::npos) << what;
  EXPECT_NE(what.find("model.safetensors"), std::string::npos) << what;
  // Back-to-back ranges are fine.
  header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  bytes.assign(8, '\0');
  bytes[0] = static_cast<char>(header.size());
  write_bytes(dir + "/ok.safetensors", bytes + header + std::string(16, '\0'));
  EXPECT_EQ(test::error_of([&] { SafetensorsFile::open(dir + "/ok.safetensors"); }), "");
}

TEST(ModelErrors, HeaderLengthPastTheFile) {
  const std::string dir = copy_fixture("hlen");
  std::string bytes(8, '\0');
  bytes[3] = 1;  // 16 MiB header in a 20-byte file
  write_bytes(dir + "/model.safetensors", bytes + "{}          ");
  expect_load_error(dir, {"model.safetensors", "header length"});
}

TEST(ModelErrors, TensorWithWrongShape) {
  const std::string dir = copy_fixture("shape");
  rewrite_weights(dir, [](auto& t) { t["model.norm.weight"] = torch::ones({63}); });
  expect_load_error(dir, {"model.norm.weight", "shape", "[63]", "[64]"});
}

TEST(ModelErrors, TensorWithWrongDtype) {
  const std::string dir = copy_fixture("dtype");
  rewrite_weights(dir, [](auto& t) { t["model.norm.weight"] = torch::ones({64}, torch::kInt64); });
  expect_load_error(dir, {"model.norm.weight", "dtype I64"});
}

TEST(ModelErrors, MissingTensor) {
  const std::string dir = copy_fixture("missing");
  rewrite_weights(dir, [](auto& t) { t.erase("model.layers.1.mlp.up_proj.weight"); });
  expect_load_error(dir, {"missing tensor", "model.layers.1.mlp.up_proj.weight"});
}

TEST(ModelErrors, UnexpectedTensor) {
  const std::string dir = copy_fixture("extra");
  rewrite_weights(dir, [](auto& t) { t["model.layers.7.mlp.up_proj.weight"] = torch::ones({2}); });
  expect_load_error(dir, {"unexpected tensor", "model.layers.7.mlp.up_proj.weight"});
}

TEST(ModelErrors, ShardIndexNamingMissingShard) {
  const std::string dir = test::temp_dir("shard");
  const std::string src = test::source_path("tests/fixtures/models/llama3-tiny-sharded");
  for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), dir + "/" + e.path().filename().string());
  fs::remove(dir + "/model-00002-of-00004.safetensors");
  expect_load_error(dir, {"model.safetensors.index.json", "model-00002-of-00004.safetensors", "missing"});
}

TEST(ModelErrors, PromptLongerThanContext) {
  auto model = LLM::load(test::source_path("tests/fixtures/models/qwen3-tiny"));
  std::vector<int64_t> prompt(model->config().max_position_embeddings + 1, 5);
  try {
    generate(*model, {prompt}, GenerateOptions{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("longer than the model's context"), std::string::npos) << e.what();
  }
}

TEST(ModelErrors, TokenIdOutOfRange) {
  auto model = LLM::load(test::source_path("tests/fixtures/models/qwen3-tiny"));
  KVCache cache = model->new_cache(1, 4);
  EXPECT_THROW(model->forward(torch::tensor({{1, 5000}}, torch::kInt64), torch::Tensor(), cache), Error);
}

}  // namespace
