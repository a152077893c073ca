// `c2c eval` (trainer/eval.h) on the tiny fixture pair (receiver qwen3-tiny, sharer
// llama3-tiny-sharded, span alignment) with a random fuser: the choice scores equal an
// independent full-sequence forward; closed gates make c2c equal the receiver alone; a broken
// benchmark line stays in the denominator as an error; an interrupted run resumes without
// counting a sample twice; letters mode runs end to end with latency.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/benchmark.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "modules/common/files.h"
#include "modules/fuser_checkpoint.h"
#include "modules/layer_map.h"
#include "modules/llm.h"
#include "tests/common/test_util.h"
#include "trainer/eval.h"

using namespace c2c;

namespace {

const char* kReceiver = "tests/fixtures/models/qwen3-tiny";
const char* kSharer = "tests/fixtures/models/llama3-tiny-sharded";

std::string write_fuser(const std::string& dir, float gate_logit) {
  auto r = LLM::load(test::source_path(kReceiver));
  auto s = LLM::load(test::source_path(kSharer));
  FuserCheckpoint ck;
  ck.receiver_model = kReceiver;
  FuserSet set;
  set.sharer_model = kSharer;
  set.alignment = "span";
  set.layer_map = last_aligned_layer_map(r->config().num_layers, s->config().num_layers);
  set.config.source_num_heads = s->config().num_kv_heads;
  set.config.source_head_dim = s->config().head_dim;
  set.config.target_num_heads = r->config().num_kv_heads;
  set.config.target_head_dim = r->config().head_dim;
  set.config.hidden_dim = 32;
  set.config.intermediate_dim = 48;
  set.config.num_layers = 3;
  set.fuser = StackedFuser(set.config, set.layer_map.size(), 7);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : set.fuser->named_parameters())
      if (p.key().find("gate_logit") != std::string::npos) p.value().fill_(gate_logit);
  }
  ck.sharers.push_back(set);
  save_fuser_checkpoint(dir, ck);
  return dir;
}

std::string write_bench(const std::string& dir, bool broken_line) {
  std::string text =
      "{\"id\": \"q1\", \"subject\": \"city\", \"question\": \"Where does Saan live?\", \"choices\": [\"Arden\", \"Bree\", \"Dale\"], \"answer\": 0}\n"
      "{\"id\": \"q2\", \"subject\": \"pet\", \"question\": \"What pet does Velvel keep?\", \"choices\": [\"cat\", \"newt\", \"owl\"], \"answer\": \"B\"}\n";
  if (broken_line) text += "{\"id\": \"q3\", \"question\": \"no choices here\"}\n";
  text += "{\"id\": \"q4\", \"subject\": \"city\", \"question\": \"Where does Kaanlo live?\", \"choices\": [\"Arden\", \"Bree\", \"Dale\"], \"answer\": 2}\n";
  const std::string path = join_path(dir, "bench.jsonl");
  write_file_atomic(path, text);
  return path;
}

EvalConfig base_config(const std::string& dir, const std::string& bench, const std::string& fuser) {
  EvalConfig c;
  c.receiver = test::source_path(kReceiver);
  c.sharers = {test::source_path(kSharer)};
  c.fuser = fuser;
  c.alignment = "span";
  c.mode = "choices";
  c.methods = {"receiver", "sharer", "t2t", "c2c"};
  c.benchmarks = {{"toy", bench}};
  c.batch_size = 2;
  c.t2t_max_new_tokens = 6;
  c.latency_queries = 0;
  c.output = join_path(dir, "out");
  c.validate();
  return c;
}

nlohmann::json run(const EvalConfig& c) {
  std::ostringstream log;
  run_eval(c, log);
  return read_json(join_path(c.output, "report.json"));
}

std::vector<nlohmann::json> progress_rows(const EvalConfig& c) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(join_path(c.output, "progress.jsonl"));
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

}  // namespace

TEST(Eval, ChoiceScoresMatchAFullSequenceForward) {
  const auto dir = test::temp_dir("eval_scores");
  auto c = base_config(dir, write_bench(dir, false), write_fuser(join_path(dir, "fuser"), 0.0f));
  c.methods = {"receiver"};
  run(c);
  // Independent path: the whole rendered conversation through LLM::forward, log-probs of the
  // reply tokens summed; the smallest loss is the prediction.
  auto model = LLM::load(test::source_path(kReceiver));
  auto tok = Tokenizer::load(test::source_path(kReceiver));
  auto items = load_mc_jsonl(c.benchmarks[0].file).items;
  auto rows = progress_rows(c);
  ASSERT_EQ(rows.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    int best = -1;
    double best_loss = 1e30;
    for (int o = 0; o < static_cast<int>(items[i].choices.size()); ++o) {
      PairedSample s = make_paired_sample(*tok, {}, {{"user", items[i].question}, {"assistant", items[i].choices[o]}},
                                          AlignMethod::identity);
      auto ids = torch::tensor(s.receiver_ids).view({1, -1});
      KVCache cache = model->new_cache(1, 0);
      auto logp = torch::log_softmax(model->forward(ids, {}, cache), -1)[0];
      double loss = 0;
      for (int64_t t = s.loss_start; t < s.loss_end; ++t) loss -= logp[t - 1][s.receiver_ids[t]].item<double>();
      if (loss < best_loss) {
        best_loss = loss;
        best = o;
      }
    }
    EXPECT_EQ(rows[i]["pred"].get<int>(), best) << items[i].id;
    EXPECT_EQ(rows[i]["correct"].get<bool>(), best == items[i].answer);
  }
}

TEST(Eval, ClosedGatesGiveTheReceiverAloneAndOpenOnesDoNot) {
  const auto dir = test::temp_dir("eval_gates");
  auto c = base_config(dir, write_bench(dir, false), write_fuser(join_path(dir, "fuser"), -30.0f));
  c.methods = {"receiver", "c2c"};
  auto report = run(c);
  auto rows = progress_rows(c);
  std::map<std::string, int> recv, fused;
  for (const auto& r : rows) (r["method"] == "receiver" ? recv : fused)[r["id"]] = r["pred"];
  EXPECT_EQ(recv, fused);
  for (const auto& g : report["gates"]) EXPECT_FALSE(g["key_open"].get<bool>() || g["value_open"].get<bool>());
}

TEST(Eval, BrokenLineIsAnErrorInTheDenominator) {
  const auto dir = test::temp_dir("eval_broken");
  auto c = base_config(dir, write_bench(dir, true), write_fuser(join_path(dir, "fuser"), 0.0f));
  auto report = run(c);
  for (const auto& m : c.methods) {
    const auto& r = report["results"][m]["toy"];
    EXPECT_EQ(r["n"].get<int>(), 4) << m;  // 3 usable items + the broken line
    EXPECT_GE(r["errors"].get<int>(), 1) << m;
    EXPECT_LE(r["correct"].get<int>(), 3) << m;
  }
}

TEST(Eval, ResumeCountsEverySampleOnce) {
  const auto dir = test::temp_dir("eval_resume");
  auto c = base_config(dir, write_bench(dir, false), write_fuser(join_path(dir, "fuser"), 0.0f));
  auto full = run(c);
  // Keep the first 5 finished samples and a torn line, as a kill mid-write leaves them.
  auto rows = progress_rows(c);
  ASSERT_EQ(rows.size(), 12u);  // 4 methods x 3 items
  std::string kept;
  for (size_t i = 0; i < 5; ++i) kept += rows[i].dump() + "\n";
  kept += rows[5].dump().substr(0, 20);
  write_file_atomic(join_path(c.output, "progress.jsonl"), kept);
  auto resumed = run(c);
  EXPECT_EQ(resumed["results"], full["results"]);
  auto after = progress_rows(c);
  std::set<std::string> keys;
  for (const auto& r : after) keys.insert(r["method"].get<std::string>() + "/" + r["id"].get<std::string>());
  EXPECT_EQ(after.size(), 12u);
  EXPECT_EQ(keys.size(), 12u);
  // Another configuration in the same folder is refused rather than mixed in.
  c.alignment = "reference_longest";
  EXPECT_NE(test::error_of([&] { run(c); }).find("another configuration"), std::string::npos);
}

TEST(Eval, LettersModeAndLatencyRunEndToEnd) {
  const auto dir = test::temp_dir("eval_letters");
  auto c = base_config(dir, write_bench(dir, false), write_fuser(join_path(dir, "fuser"), 0.0f));
  // The lettered prompt is longer than the fixtures' 256 positions with their tiny tokenizers:
  // copies with a longer context (RoPE has no length limit of its own).
  for (auto* model : {&c.receiver, &c.sharers[0]}) {
    const std::string copy = join_path(dir, std::filesystem::path(*model).filename().string());
    std::filesystem::copy(*model, copy, std::filesystem::copy_options::recursive);
    auto cfg = read_json(join_path(copy, "config.json"));
    cfg["max_position_embeddings"] = 2048;
    write_file_atomic(join_path(copy, "config.json"), cfg.dump());
    *model = copy;
  }
  c.mode = "letters";
  c.max_new_tokens = 4;
  c.latency_queries = 2;
  c.latency_answer_tokens = 3;
  auto report = run(c);
  for (const auto& m : c.methods) {
    EXPECT_EQ(report["results"][m]["toy"]["n"].get<int>(), 3) << m;
    EXPECT_EQ(report["latency"][m]["queries"].get<int>(), 2) << m;
    EXPECT_GT(report["latency"][m]["median_s"].get<double>(), 0.0) << m;
  }
  EXPECT_GT(report["latency"]["c2c"]["fusion_s"].get<double>(), 0.0);
  EXPECT_GT(report["latency"]["t2t"]["sharer_decode_s"].get<double>(), 0.0);
  EXPECT_TRUE(std::filesystem::exists(join_path(c.output, "report.md")));
}

TEST(Eval, ConfigErrorsNameTheKey) {
  const auto dir = test::temp_dir("eval_config");
  const std::string path = join_path(dir, "eval.yaml");
  write_file_atomic(path, "receiver: x\nbenchmark: [a.jsonl]\n");
  auto e = test::error_of([&] { EvalConfig::load(path); });
  EXPECT_NE(e.find("unknown key 'benchmark'"), std::string::npos) << e;
  EXPECT_NE(e.find(path), std::string::npos) << e;
  write_file_atomic(path, "receiver: x\nbenchmarks: [a.jsonl]\nmethods: [c2c]\nsharers: [y]\n");
  e = test::error_of([&] { EvalConfig::load(path); });
  EXPECT_NE(e.find("needs 'fuser'"), std::string::npos) << e;
  write_file_atomic(path, "receiver: x\nbenchmarks: [a.jsonl]\nmode: guess\n");
  e = test::error_of([&] { EvalConfig::load(path); });
  EXPECT_NE(e.find("mode 'guess'"), std::string::npos) << e;
  // Every out-of-range value is named with its key and value.
  for (const std::string bad : {"batch_size: 0", "max_new_tokens: 0", "t2t_max_new_tokens: -1", "limit: -2",
                                "latency_queries: -1", "latency_answer_tokens: 0", "max_length: 1",
                                "threads: -3", "device: gpu"}) {
    write_file_atomic(path, "receiver: x\nbenchmarks: [a.jsonl]\nmethods: [receiver]\n" + bad + "\n");
    e = test::error_of([&] { EvalConfig::load(path); });
    const std::string key = bad.substr(0, bad.find(':'));
    EXPECT_NE(e.find("eval config: " + key + " = "), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find(bad.substr(bad.find(':') + 2)), std::string::npos) << bad << ": " << e;
  }
}
