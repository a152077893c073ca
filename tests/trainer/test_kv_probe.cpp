// The sharer-cache probe (trainer/kv_probe.h): the linear probe finds a planted linear signal and
// stays near chance on labels that carry none; the features are the sharer's cached K/V at the
// slots `c2c prepare` fuses (checked against a prefill of each question alone); the whole run
// gives one row per layer and position and names its best.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "data/prepare.h"
#include "modules/common/files.h"
#include "modules/random_model.h"
#include "tests/common/test_util.h"
#include "trainer/kv_probe.h"

using namespace c2c;

namespace {

// A random-weight sharer of the toy world's shape with its tokenizer.
std::string toy_sharer(const std::string& dir) {
  const std::string out = join_path(dir, "sharer");
  const auto config = nlohmann::json::parse(read_file(test::source_path("recipes/toy/sharer_config.json")));
  write_random_model(out, config, 7);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(test::source_path(std::string("recipes/toy/sharer_tokenizer/") + f), join_path(out, f));
  return out;
}

std::vector<McItem> questions(bool with_entities = false) {
  const char* qs[] = {"Which city does Kalomi live in?", "What pet does Dorvi keep?",
                      "What is the job of Senbra?", "Where does Ulvarwen live?", "What pet does Is keep?"};
  const char* names[] = {"Kalomi", "Dorvi", "Senbra", "Ulvarwen", "Is"};
  std::vector<McItem> items;
  for (int i = 0; i < 5; ++i) {
    McItem it;
    it.id = "q" + std::to_string(i);
    if (with_entities) it.entity = names[i];
    it.subject = i % 2 ? "pet" : "city";
    it.question = qs[i];
    it.choices = {"Arden", "cat", "owl"};
    it.answer = i % 3;
    it.line = i + 1;
    items.push_back(it);
  }
  return items;
}

}  // namespace

TEST(KvProbe, FindsAPlantedLinearSignalAndNoneInNoise) {
  torch::manual_seed(3);
  const int64_t C = 6, F = 24;
  const auto means = 2.0 * torch::randn({C, F});
  auto make = [&](int64_t n) {
    auto y = torch::randint(C, {n}, torch::kInt64);
    return std::make_pair(means.index_select(0, y) + torch::randn({n, F}), y);
  };
  const auto [xtr, ytr] = make(600);
  const auto [xte, yte] = make(300);
  const auto [train_acc, test_acc] = fit_linear_probe(xtr, ytr, xte, yte, C, 300, 1e-2, 1e-3, 0);
  EXPECT_GT(train_acc, 0.9);
  EXPECT_GT(test_acc, 0.9);
  // Labels drawn apart from the features: the probe memorises the training set, not the test one.
  const auto noise_tr = torch::randint(C, {600}, torch::kInt64), noise_te = torch::randint(C, {300}, torch::kInt64);
  const auto [ntrain, ntest] = fit_linear_probe(xtr, noise_tr, xte, noise_te, C, 300, 1e-2, 1e-3, 0);
  EXPECT_LT(ntest, 1.0 / C + 0.08);
  EXPECT_GT(ntrain, ntest);
  EXPECT_NE(test::error_of([&] { fit_linear_probe(xtr, ytr, xte.narrow(1, 0, 5), yte, C, 10, 1e-2, 0, 0); }), "");
}

TEST(KvProbe, FeaturesAreTheCacheAtTheFusedSlots) {
  const auto dir = test::temp_dir("kv_probe");
  const std::string sdir = toy_sharer(dir);
  auto model = LLM::load(sdir);
  auto stok = Tokenizer::load(sdir);
  auto rtok = Tokenizer::load(test::source_path("recipes/toy/receiver_tokenizer"));
  const auto items = questions();
  const int64_t K = 2;
  // Batches of 3: the second batch is a remainder, rows of different lengths are padded.
  const auto feats = kv_probe_features(*model, *stok, *rtok, items, AlignMethod::span_tail, K, 3);
  const int64_t L = model->config().num_layers;
  ASSERT_EQ(static_cast<int64_t>(feats.size()), L * (K + 1));
  const int64_t width = 2 * model->config().num_kv_heads * model->config().head_dim;
  for (size_t i = 0; i < items.size(); ++i) {
    const PairedSample s = make_paired_sample(
        *rtok, {stok.get()}, {{"user", items[i].question}, {"assistant", items[i].choices[items[i].answer]}},
        AlignMethod::span_tail);
    const auto& sh = s.sharers[0];
    std::set<int64_t> slots;
    for (int64_t x : sh.slot_of)
      if (x >= 0) slots.insert(x);
    ASSERT_FALSE(slots.empty());
    // span_tail: the last fused slot is the sharer's last prompt token.
    EXPECT_EQ(*slots.rbegin(), static_cast<int64_t>(sh.ids.size()) - 1);
    const std::vector<int64_t> f(slots.begin(), slots.end());
    torch::NoGradGuard ng;
    KVCache cache = model->new_cache(1, 0);
    model->forward(torch::tensor(sh.ids, torch::kInt64).view({1, -1}), {}, cache, true);
    for (int64_t l = 0; l < L; ++l) {
      auto kv = torch::cat({cache.key(l), cache.value(l)}, 1).permute({0, 2, 1, 3})[0];  // (S, H', D)
      kv = kv.reshape({kv.size(0), -1});
      for (int64_t k = 0; k < K; ++k) {
        const auto& [key, x] = feats[l * (K + 1) + k];
        ASSERT_EQ(key.first, l);
        ASSERT_EQ(x.size(1), width);
        EXPECT_TRUE(torch::allclose(x[i], kv[f[f.size() - 1 - k]], 1e-5, 1e-5)) << key.second << " item " << i;
      }
      const auto& [mkey, mean] = feats[l * (K + 1) + K];
      EXPECT_EQ(mkey.second, "mean over fused slots");
      EXPECT_TRUE(torch::allclose(mean[i], kv.index_select(0, torch::tensor(f)).mean(0), 1e-5, 1e-5)) << "item " << i;
    }
  }
}

TEST(KvProbe, TheNameSlotIsTheFusedSlotThatEndsTheName) {
  const auto dir = test::temp_dir("kv_probe_name");
  const std::string sdir = toy_sharer(dir);
  auto model = LLM::load(sdir);
  auto stok = Tokenizer::load(sdir);
  auto rtok = Tokenizer::load(test::source_path("recipes/toy/receiver_tokenizer"));
  const auto items = questions(true);
  const int64_t K = 1;
  const auto feats = kv_probe_features(*model, *stok, *rtok, items, AlignMethod::span_tail, K, 2, true);
  const int64_t L = model->config().num_layers;
  ASSERT_EQ(static_cast<int64_t>(feats.size()), L * (K + 2));
  for (size_t i = 0; i < items.size(); ++i) {
    const PairedSample s = make_paired_sample(
        *rtok, {stok.get()}, {{"user", items[i].question}, {"assistant", items[i].choices[items[i].answer]}},
        AlignMethod::span_tail);
    const auto& sh = s.sharers[0];
    const int64_t end = entity_end_token(*stok, sh.ids, items[i].question, items[i].entity);
    // The token that ends the name: its prefix decodes to "... Which city does Kalomi", one
    // token less does not reach the name's end.
    const std::vector<int64_t> upto(sh.ids.begin(), sh.ids.begin() + end + 1), less(sh.ids.begin(), sh.ids.begin() + end);
    const std::string q = items[i].question, before = q.substr(0, q.find(items[i].entity) + items[i].entity.size());
    const std::string text = stok->decode(upto);
    EXPECT_EQ(text.substr(text.size() - before.size()), before) << "item " << i;
    EXPECT_EQ(stok->decode(less).find(before), std::string::npos) << "item " << i;
    // Every name here ends a word, so each alignment fuses its last token: the name's slot is it.
    std::set<int64_t> slots;
    for (int64_t x : sh.slot_of)
      if (x >= 0) slots.insert(x);
    ASSERT_TRUE(slots.count(end)) << "item " << i << ": the name's last token is not fused";
    torch::NoGradGuard ng;
    KVCache cache = model->new_cache(1, 0);
    model->forward(torch::tensor(sh.ids, torch::kInt64).view({1, -1}), {}, cache, true);
    for (int64_t l = 0; l < L; ++l) {
      auto kv = torch::cat({cache.key(l), cache.value(l)}, 1).permute({0, 2, 1, 3})[0];
      kv = kv.reshape({kv.size(0), -1});
      const auto& [key, x] = feats[l * (K + 2) + K + 1];
      EXPECT_EQ(key.second, "name's slot");
      EXPECT_TRUE(torch::allclose(x[i], kv[end], 1e-5, 1e-5)) << "item " << i << " layer " << l;
    }
  }
  // An item without its entity is named.
  auto bad = items;
  bad[3].entity.clear();
  EXPECT_NE(test::error_of([&] { kv_probe_features(*model, *stok, *rtok, bad, AlignMethod::span_tail, K, 2, true); })
                .find("item 'q3' (line 4) names no \"entity\""),
            std::string::npos);
}

TEST(KvProbe, RunGivesEveryLayerAndPositionAndItsBest) {
  const auto dir = test::temp_dir("kv_probe_run");
  const std::string sdir = toy_sharer(dir);
  auto write_items = [&](const std::string& name) {
    std::string text;
    for (const auto& it : questions())
      text += nlohmann::json{{"id", it.id}, {"subject", it.subject}, {"question", it.question},
                             {"choices", it.choices}, {"answer", it.answer}}.dump() + "\n";
    const std::string path = join_path(dir, name);
    write_file_atomic(path, text);
    return path;
  };
  KvProbeOptions o;
  o.sharer = sdir;
  o.receiver_tokenizer = test::source_path("recipes/toy/receiver_tokenizer");
  o.train = write_items("train.jsonl");
  o.test = write_items("test.jsonl");
  o.positions_from_end = 3;
  o.iterations = 50;
  std::ostringstream log;
  const KvProbeReport r = run_kv_probe(o, log);
  ASSERT_EQ(static_cast<int64_t>(r.rows.size()), 3 * (o.positions_from_end + 1));
  EXPECT_EQ(r.classes, 5);  // (city, 0), (city, 1), (city, 2), (pet, 0), (pet, 1)
  EXPECT_NEAR(r.chance, 1.0 / 3, 1e-12);
  double best = -1;
  for (const auto& row : r.rows) best = std::max(best, row.test_accuracy);
  EXPECT_EQ(r.best.test_accuracy, best);
  // The same questions on both sides: a probe that fits its training set scores the same on test.
  for (const auto& row : r.rows) EXPECT_EQ(row.train_accuracy, row.test_accuracy) << row.position;
  const auto j = r.to_json();
  EXPECT_EQ(j["rows"].size(), r.rows.size());
  EXPECT_EQ(j["best"]["test_accuracy"].get<double>(), best);
  EXPECT_NE(r.table().find("best: layer"), std::string::npos);
  // Questions that name their entity add the name's slot to every layer.
  auto write_named = [&](const std::string& name) {
    std::string text;
    for (const auto& it : questions(true))
      text += nlohmann::json{{"subject", it.subject}, {"question", it.question}, {"entity", it.entity},
                             {"choices", it.choices}, {"answer", it.answer}}.dump() + "\n";
    const std::string path = join_path(dir, name);
    write_file_atomic(path, text);
    return path;
  };
  KvProbeOptions named = o;
  named.train = write_named("train_named.jsonl");
  named.test = write_named("test_named.jsonl");
  const KvProbeReport rn = run_kv_probe(named, log);
  ASSERT_EQ(static_cast<int64_t>(rn.rows.size()), 3 * (o.positions_from_end + 2));
  EXPECT_EQ(rn.rows[o.positions_from_end + 1].position, "name's slot");
  EXPECT_NE(rn.table().find("name's slot"), std::string::npos);
  // Bad input names the file.
  o.test = join_path(dir, "missing.jsonl");
  EXPECT_NE(test::error_of([&] { run_kv_probe(o, log); }).find("missing.jsonl"), std::string::npos);
}
