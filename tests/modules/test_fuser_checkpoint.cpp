// Fuser checkpoints: the torch.save reader against a safetensors copy written by Python, the
// official import (fixture tests/fixtures/fuser/official_tiny from
// scripts/make_official_checkpoint.py), the bit-exact round trip through our format, and strict
// loading errors that name the tensor.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/official_checkpoint.h"
#include "modules/torch_pickle.h"
#include "modules/safetensors.h"
#include "tests/common/test_util.h"
#include "trainer/cli.h"

namespace c2c {
namespace {

namespace fs = std::filesystem;

std::string official_dir() { return test::source_path("tests/fixtures/fuser/official_tiny"); }

using test::error_of;

TEST(FuserCheckpoint, TorchStateDictReaderMatchesPython) {
  auto tensors = read_torch_state_dict(official_dir() + "/final/projector_0.pt");
  auto ref = load_safetensors(official_dir() + "/projector_0_reference.safetensors");
  ASSERT_EQ(tensors.size(), ref.size());
  EXPECT_EQ(tensors.size(), 33u);  // 2 x 15 + 2 gate logits + gate_temperature (L=3)
  EXPECT_EQ(tensors[0].first, "key_gate_logit");  // file order kept
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(ref.count(name)) << name;
    EXPECT_EQ(t.scalar_type(), torch::kBFloat16) << name;
    EXPECT_TRUE(torch::equal(t, ref.at(name))) << name;
  }
}

TEST(FuserCheckpoint, OfficialImportRoundTripsBitExactly) {
  FuserCheckpoint ck = import_official_checkpoint(official_dir());  // parent of final/ works
  ASSERT_EQ(ck.sharers.size(), 1u);
  const FuserSet& set = ck.sharers[0];
  EXPECT_EQ(ck.receiver_model, "test/receiver-tiny");
  EXPECT_EQ(set.sharer_model, "test/sharer-tiny");
  EXPECT_EQ(set.config.hidden_dim, 32);
  EXPECT_EQ(set.config.source_head_dim, 8);
  EXPECT_EQ(set.config.num_layers, 3);
  EXPECT_EQ(set.fuser->dtype(), torch::kBFloat16);
  // last_aligned 4 <- 3: 0,1 -> 0; 2 -> 1; 3 -> 2
  EXPECT_EQ(set.layer_map.pairs, (std::vector<LayerPair>{{0, 0}, {1, 0}, {2, 1}, {3, 2}}));
  for (int64_t i = 0; i < 4; ++i) {
    auto pt = read_torch_state_dict(official_dir() + "/final/projector_" + std::to_string(i) + ".pt");
    std::map<std::string, torch::Tensor> want(pt.begin(), pt.end());
    auto got = set.fuser->layer_state(i);
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [name, t] : got) EXPECT_TRUE(torch::equal(t, want.at(name))) << i << " " << name;
  }

  const std::string dir = test::temp_dir("fuser_ckpt") + "/ours";
  save_fuser_checkpoint(dir, ck);
  auto file = SafetensorsFile::open(dir + "/fuser.safetensors");
  EXPECT_TRUE(file->contains("sharer0.layer3.value_proj_out.bias"));
  EXPECT_EQ(file->entry("sharer0.layer2.key_in.weight").dtype, "BF16");
  EXPECT_EQ(file->names().size(), 4u * 33u);

  FuserCheckpoint back = load_fuser_checkpoint(dir);
  ASSERT_EQ(back.sharers.size(), 1u);
  EXPECT_EQ(back.receiver_model, ck.receiver_model);
  EXPECT_EQ(back.sharers[0].sharer_model, set.sharer_model);
  EXPECT_EQ(back.sharers[0].layer_map.pairs, set.layer_map.pairs);
  EXPECT_EQ(back.sharers[0].config.to_json(), set.config.to_json());
  EXPECT_EQ(back.sharers[0].fuser->dtype(), torch::kBFloat16);
  for (int64_t i = 0; i < 4; ++i) {
    auto a = set.fuser->layer_state(i), b = back.sharers[0].fuser->layer_state(i);
    for (size_t k = 0; k < a.size(); ++k) {
      EXPECT_EQ(a[k].first, b[k].first);
      EXPECT_TRUE(torch::equal(a[k].second, b[k].second)) << a[k].first;
    }
  }
  // fp32 master weights from a bf16 checkpoint: exact widening.
  FuserCheckpoint f32 = load_fuser_checkpoint(dir, torch::kFloat32);
  EXPECT_EQ(f32.sharers[0].fuser->dtype(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(f32.sharers[0].fuser->layer_state(1)[3].second.to(torch::kBFloat16),
                           set.fuser->layer_state(1)[3].second));
}

TEST(FuserCheckpoint, CliImportOfficial) {
  const std::string dir = test::temp_dir("fuser_cli") + "/out";
  EXPECT_EQ(cli::cmd_import_official({official_dir() + "/final", dir, "--dtype", "float32",
                                      "--sharer", "my/sharer"}),
            0);
  FuserCheckpoint ck = load_fuser_checkpoint(dir);
  EXPECT_EQ(ck.sharers[0].fuser->dtype(), torch::kFloat32);
  EXPECT_EQ(ck.sharers[0].sharer_model, "my/sharer");
  EXPECT_NE(error_of([&] { cli::cmd_import_official({dir}); }).find("SRC_DIR DST_DIR"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cli::cmd_import_official({dir, dir, "--bogus", "1"}); }).find("bogus"),
            std::string::npos);
}

// Our torch.save writer against our reader, every dtype the fusers use, 0-d tensors included.
TEST(FuserCheckpoint, TorchStateDictWriterRoundTrips) {
  torch::manual_seed(3);
  std::vector<std::pair<std::string, torch::Tensor>> state{
      {"key_gate_logit", torch::tensor(0.25f)},
      {"gate_temperature", torch::tensor(0.001f)},
      {"key_in.weight", torch::randn({5, 7}).to(torch::kBFloat16)},
      {"value_proj_mlp2.blocks.1.w2.weight", torch::randn({3, 4, 2})},
      {"big", torch::randn({70000})}};  // a length over 65535 and an integer over 2^16
  const std::string path = test::temp_dir("pickle_write") + "/projector_0.pt";
  write_torch_state_dict(path, state);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  auto back = read_torch_state_dict(path);
  ASSERT_EQ(back.size(), state.size());
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(back[i].first, state[i].first);
    EXPECT_EQ(back[i].second.scalar_type(), state[i].second.scalar_type()) << state[i].first;
    EXPECT_TRUE(torch::equal(back[i].second, state[i].second)) << state[i].first;
  }
}

// A fuser of ours -> the official layout -> `c2c import-official`: bit-identical in fp32, equal
// after rounding in bf16; the layout's files; refusals.
TEST(FuserCheckpoint, OfficialExportRoundTrips) {
  FuserCheckpoint ck = import_official_checkpoint(official_dir());
  for (auto& set : ck.sharers) {  // fp32 weights that bf16 cannot hold exactly
    set.fuser->to(torch::kFloat32);
    torch::NoGradGuard no_grad;
    for (auto& p : set.fuser->parameters()) p.add_(torch::randn_like(p) * 1e-3);
  }
  const std::string base = test::temp_dir("export");
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const std::string out = base + "/" + dtype_name(dtype);
    OfficialExportOptions eo;
    eo.dtype = dtype;
    eo.recipe_yaml = "receiver: r\n";
    EXPECT_TRUE(export_official_checkpoint(ck, out, eo).empty());  // reference_longest: no warning
    for (const char* f : {"config.json", "README.md", "final/projector_config.json",
                          "final/projector_3.pt", "final/projector_3.json"})
      EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
    const nlohmann::json spec = read_json(out + "/final/projector_0.json");
    EXPECT_EQ(spec["class"], "C2CProjector");
    EXPECT_EQ(spec["init_args"]["dtype"]["value"], dtype_name(dtype));
    EXPECT_NE(read_file(out + "/final/projector_0.json").find("{\n  \"class\": \"C2CProjector\",\n  \"init_args\": {\n    \"source_dim\""),
              std::string::npos);
    EXPECT_EQ(read_json(out + "/config.json")["model"]["teacher_model"], "test/sharer-tiny");
    FuserCheckpoint back = import_official_checkpoint(out);
    ASSERT_EQ(back.sharers.size(), 1u);
    EXPECT_EQ(back.sharers[0].layer_map.pairs, ck.sharers[0].layer_map.pairs);
    EXPECT_EQ(back.sharers[0].config.to_json(), ck.sharers[0].config.to_json());
    EXPECT_EQ(back.receiver_model, ck.receiver_model);
    for (int64_t i = 0; i < 4; ++i) {
      auto a = ck.sharers[0].fuser->layer_state(i), b = back.sharers[0].fuser->layer_state(i);
      ASSERT_EQ(a.size(), b.size());
      for (size_t k = 0; k < a.size(); ++k) {
        EXPECT_EQ(a[k].first, b[k].first);
        EXPECT_TRUE(torch::equal(b[k].second, a[k].second.to(dtype))) << dtype_name(dtype) << " " << a[k].first;
      }
    }
  }
  // Refusals: a folder that is not empty, an ablation, another dtype.
  std::string m = error_of([&] { export_official_checkpoint(ck, base + "/float32"); });
  EXPECT_NE(m.find("not an empty folder"), std::string::npos) << m;
  FuserCheckpoint ablation = ck;
  ablation.sharers[0].config.variant = FuserVariant::projection_fusion;
  m = error_of([&] { export_official_checkpoint(ablation, base + "/ablation"); });
  EXPECT_NE(m.find("projection_fusion"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(base + "/ablation"));
  OfficialExportOptions half;
  half.dtype = torch::kFloat16;
  m = error_of([&] { export_official_checkpoint(ck, base + "/half", half); });
  EXPECT_NE(m.find("float16"), std::string::npos) << m;
  // An unwritable place (below a file) is named.
  write_file_atomic(base + "/a_file", "x");
  m = error_of([&] { export_official_checkpoint(ck, base + "/a_file/out"); });
  EXPECT_NE(m.find("cannot write " + base + "/a_file/out"), std::string::npos) << m;
  // A `c2c eval` report's accuracies go in the model card.
  const std::string report = base + "/report.json";
  write_file_atomic(report, R"({"results": {"c2c": {"mmlu": {"n": 10, "correct": 7, "accuracy": 0.7}}}})");
  OfficialExportOptions with_eval;
  with_eval.eval_report = report;
  export_official_checkpoint(ck, base + "/card", with_eval);
  EXPECT_NE(read_file(base + "/card/README.md").find("| c2c | mmlu | 70.0% (7/10) |"), std::string::npos)
      << read_file(base + "/card/README.md");
  // A span-aligned fuser exports with a warning that says why.
  FuserCheckpoint span = ck;
  span.sharers[0].alignment = "span";
  auto warnings = export_official_checkpoint(span, base + "/span");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("'span'"), std::string::npos) << warnings[0];
}

// The CLI, and PyTorch itself loading the export (scripts/check_official_export.py:
// torch.load(weights_only=True), then load_state_dict(strict=True) into the published module).
TEST(FuserCheckpoint, CliExportOfficialLoadsInPyTorch) {
  const std::string base = test::temp_dir("export_cli");
  const std::string ours = base + "/ours";
  EXPECT_EQ(cli::cmd_import_official({official_dir(), ours, "--dtype", "float32"}), 0);
  const std::string out = base + "/out";
  EXPECT_EQ(cli::cmd_export_official({ours, out}), 0);  // bfloat16 by default
  EXPECT_EQ(import_official_checkpoint(out).sharers[0].fuser->dtype(), torch::kBFloat16);
  EXPECT_NE(error_of([&] { cli::cmd_export_official({base, base + "/x"}); }).find("no fuser checkpoint"),
            std::string::npos);  // a folder that holds no fuser is named
  EXPECT_NE(error_of([&] { cli::cmd_export_official({ours}); }).find("FUSER_DIR OUT_DIR"),
            std::string::npos);
  const std::string python = test::source_path(".venv/bin/python");
  if (!fs::exists(python) ||
      std::system((python + " -c 'import torch' > /dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "no PyTorch in .venv (scripts/setup.sh installs it) to load the export with";
  const std::string log = base + "/python.txt";
  const int rc = std::system((python + " " + test::source_path("scripts/check_official_export.py") +
                              " " + out + " > " + log + " 2>&1").c_str());
  EXPECT_EQ(rc, 0) << read_file(log);
  EXPECT_NE(read_file(log).find("ok: 4 projectors"), std::string::npos) << read_file(log);
}

TEST(FuserCheckpoint, OfficialImportErrorsNameTheProblem) {
  const std::string tmp = test::temp_dir("fuser_bad") + "/copy";
  fs::copy(official_dir(), tmp, fs::copy_options::recursive);
  // A projector JSON that does not describe its .pt: a wrong shape names key and file.
  auto j = read_json(tmp + "/final/projector_1.json");
  j["init_args"]["hidden_dim"] = 16;
  write_file_atomic(tmp + "/final/projector_1.json", j.dump());
  std::string m = error_of([&] { import_official_checkpoint(tmp); });
  EXPECT_NE(m.find("projector_1.json"), std::string::npos) << m;  // differs from projector_0
  j["init_args"]["hidden_dim"] = 32;
  j["init_args"]["source_dim"] = 4;
  write_file_atomic(tmp + "/final/projector_1.json", j.dump());
  j["init_args"]["source_dim"] = 4;
  for (int i = 0; i < 4; ++i)
    write_file_atomic(tmp + "/final/projector_" + std::to_string(i) + ".json", j.dump());
  m = error_of([&] { import_official_checkpoint(tmp); });
  EXPECT_NE(m.find("projector_0.pt"), std::string::npos) << m;
  EXPECT_NE(m.find("'key_in.weight' has shape (32, 32), expected (32, 24)"), std::string::npos) << m;
  // Unknown init_args key and missing mapping file.
  j["init_args"]["source_dim"] = 8;
  j["init_args"]["use_magic"] = true;
  write_file_atomic(tmp + "/final/projector_0.json", j.dump());
  m = error_of([&] { import_official_checkpoint(tmp); });
  EXPECT_NE(m.find("unknown init_args key 'use_magic'"), std::string::npos) << m;
  m = error_of([&] { import_official_checkpoint(tmp + "/nowhere"); });
  EXPECT_NE(m.find("projector_config.json"), std::string::npos) << m;
  // A missing key in a state dict (the same strict path the import uses).
  FuserCheckpoint ck = import_official_checkpoint(official_dir());
  auto pt = read_torch_state_dict(official_dir() + "/final/projector_2.pt");
  std::map<std::string, torch::Tensor> state(pt.begin(), pt.end());
  state.erase("value_scalar_head.bias");
  m = error_of([&] { ck.sharers[0].fuser->load_layer_state(2, state, "projector_2.pt"); });
  EXPECT_NE(m.find("missing tensor 'value_scalar_head.bias'"), std::string::npos) << m;
  // Not a zip archive.
  write_file_atomic(tmp + "/junk.pt", "not a zip");
  m = error_of([&] { read_torch_state_dict(tmp + "/junk.pt"); });
  EXPECT_NE(m.find("junk.pt"), std::string::npos) << m;
}

TEST(FuserCheckpoint, OurFormatLoadsStrictly) {
  FuserCheckpoint ck = import_official_checkpoint(official_dir());
  const std::string base = test::temp_dir("fuser_strict");
  const std::string good = base + "/good";
  save_fuser_checkpoint(good, ck);
  auto tensors = load_safetensors(good + "/fuser.safetensors");
  const std::map<std::string, std::string> meta = {{"format", "c2c-fuser"},
                                                   {"format_version", "1"}};
  auto write_variant = [&](const std::string& name, NamedTensors list) {
    const std::string dir = base + "/" + name;
    fs::create_directories(dir);
    fs::copy_file(good + "/fuser.json", dir + "/fuser.json");
    save_safetensors(dir + "/fuser.safetensors", list, meta);
    return dir;
  };
  NamedTensors all(tensors.begin(), tensors.end());

  NamedTensors missing;
  for (auto& [n, t] : all)
    if (n != "sharer0.layer2.value_mlp1.blocks.0.w2.weight") missing.emplace_back(n, t);
  std::string m = error_of([&] { load_fuser_checkpoint(write_variant("missing", missing)); });
  EXPECT_NE(m.find("missing tensor 'value_mlp1.blocks.0.w2.weight'"), std::string::npos) << m;
  EXPECT_NE(m.find("sharer0.layer2."), std::string::npos) << m;

  NamedTensors extra = all;
  extra.emplace_back("sharer0.layer9.key_in.weight", torch::zeros({2}));
  m = error_of([&] { load_fuser_checkpoint(write_variant("extra", extra)); });
  EXPECT_NE(m.find("unexpected tensor 'sharer0.layer9.key_in.weight'"), std::string::npos) << m;

  NamedTensors shaped = all;
  for (auto& [n, t] : shaped)
    if (n == "sharer0.layer1.key_proj_out.weight") t = torch::zeros({16, 32}, torch::kBFloat16);
  m = error_of([&] { load_fuser_checkpoint(write_variant("shape", shaped)); });
  EXPECT_EQ(m, "") << "same shape and a dtype we convert from: must load";
  for (auto& [n, t] : shaped)
    if (n == "sharer0.layer1.key_proj_out.weight") t = torch::zeros({8, 32}, torch::kBFloat16);
  m = error_of([&] { load_fuser_checkpoint(write_variant("shape2", shaped)); });
  EXPECT_NE(m.find("'key_proj_out.weight' has shape (8, 32), expected (16, 32)"),
            std::string::npos) << m;

  auto j = read_json(good + "/fuser.json");
  j["format_version"] = 2;
  write_file_atomic(good + "/fuser.json", j.dump());
  m = error_of([&] { load_fuser_checkpoint(good); });
  EXPECT_NE(m.find("format_version 2"), std::string::npos) << m;
  j["format_version"] = 1;
  j["sharers"][0]["fuser"]["hidden_size"] = 3;
  write_file_atomic(good + "/fuser.json", j.dump());
  m = error_of([&] { load_fuser_checkpoint(good); });
  EXPECT_NE(m.find("unknown fuser config key 'hidden_size'"), std::string::npos) << m;
}

}  // namespace
}  // namespace c2c
