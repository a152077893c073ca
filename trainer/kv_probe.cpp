#include "trainer/kv_probe.h"

#include <algorithm>
#include <iomanip>
#include <iterator>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include "data/prepare.h"
#include "modules/common/error.h"

namespace c2c {
namespace {

std::string position_name(int64_t k) { return k == 0 ? "fused slot -0 (last)" : "fused slot -" + std::to_string(k); }
const char* const kMeanName = "mean over fused slots";
const char* const kNameName = "name's slot";

McFile load_items(const std::string& path, const char* what) {
  McFile f = load_mc_jsonl(path);
  if (!f.errors.empty()) {
    std::string all;
    for (const auto& e : f.errors) all += "\n  " + e;
    fail("probe-kv: ", what, " file '", path, "' has ", f.errors.size(), " unusable line(s):", all);
  }
  C2C_CHECK(!f.items.empty(), "probe-kv: ", what, " file '", path, "' holds no questions");
  return f;
}

}  // namespace

int64_t entity_end_token(const Tokenizer& tok, const std::vector<int64_t>& ids, const std::string& question,
                         const std::string& entity) {
  const std::string text = tok.decode(ids);
  const size_t q = text.find(question), n = question.find(entity);
  C2C_CHECK(q != std::string::npos && n != std::string::npos && !entity.empty(), "probe-kv: the sharer's prompt '",
            text, "' does not hold the question '", question, "' with its entity '", entity, "'");
  const size_t end = q + n + entity.size();
  // The first prefix of the ids whose decoding reaches the name's end (decodes of byte-level
  // BPE prefixes are prefixes of the whole decode at token boundaries).
  std::vector<int64_t> prefix;
  for (size_t j = 0; j < ids.size(); ++j) {
    prefix.push_back(ids[j]);
    if (tok.decode(prefix).size() >= end) return static_cast<int64_t>(j);
  }
  fail("probe-kv: no token of the sharer's prompt ends the entity '", entity, "'");
}

std::vector<std::pair<std::pair<int64_t, std::string>, torch::Tensor>> kv_probe_features(
    const LLM& sharer, const Tokenizer& sharer_tok, const Tokenizer& receiver_tok,
    const std::vector<McItem>& items, AlignMethod method, int64_t positions_from_end, int64_t batch_size,
    bool name_slot) {
  C2C_CHECK(positions_from_end >= 1, "probe-kv: positions from the end must be >= 1, got ", positions_from_end);
  C2C_CHECK(batch_size >= 1, "probe-kv: batch size must be >= 1, got ", batch_size);
  const int64_t L = sharer.config().num_layers;
  const int64_t K = positions_from_end;
  const int64_t N = static_cast<int64_t>(items.size());
  // feats[l][k]: rows of (2 H D); k == K is the mean over fused slots, K + 1 the name's slot.
  const int64_t P = K + 1 + (name_slot ? 1 : 0);
  std::vector<std::vector<std::vector<torch::Tensor>>> feats(L, std::vector<std::vector<torch::Tensor>>(P));
  torch::NoGradGuard no_grad;
  for (int64_t b0 = 0; b0 < N; b0 += batch_size) {
    const int64_t B = std::min(batch_size, N - b0);
    std::vector<PairedSharer> rows;
    std::vector<std::vector<int64_t>> fused;  // per row: its fused sharer slots, ascending
    std::vector<int64_t> name_at;             // per row: the name's slot (name_slot only)
    int64_t T = 0;
    for (int64_t i = b0; i < b0 + B; ++i) {
      const McItem& it = items[i];
      C2C_CHECK(it.answer >= 0 && it.answer < static_cast<int>(it.choices.size()),
                "probe-kv: item '", it.id, "' has no answer among its choices");
      const std::vector<ChatMessage> chat = {{"user", it.question}, {"assistant", it.choices[it.answer]}};
      PairedSample s = make_paired_sample(receiver_tok, {&sharer_tok}, chat, method);
      PairedSharer sh = std::move(s.sharers.at(0));
      std::set<int64_t> slots;
      for (int64_t slot : sh.slot_of)
        if (slot >= 0 && sh.mask.at(slot)) slots.insert(slot);
      C2C_CHECK(!slots.empty(), "probe-kv: alignment '", align_method_name(method), "' fuses no sharer slot of item '",
                it.id, "' (line ", it.line, "): nothing to probe");
      fused.emplace_back(slots.begin(), slots.end());
      if (name_slot) {
        C2C_CHECK(!it.entity.empty(), "probe-kv: item '", it.id, "' (line ", it.line, ") names no \"entity\"");
        const int64_t end = entity_end_token(sharer_tok, sh.ids, it.question, it.entity);
        auto after = slots.upper_bound(end);  // the first fused slot past the name's end
        name_at.push_back(after == slots.begin() ? *after : *std::prev(after));
      }
      T = std::max<int64_t>(T, static_cast<int64_t>(sh.ids.size()));
      rows.push_back(std::move(sh));
    }
    // Right-padded batch: a row's padding slots are never read (cache.h: holes no query sees).
    auto ids = torch::zeros({B, T}, torch::kInt64);
    auto mask = torch::zeros({B, T}, torch::kBool);
    for (int64_t r = 0; r < B; ++r)
      for (size_t t = 0; t < rows[r].ids.size(); ++t) {
        ids[r][static_cast<int64_t>(t)] = rows[r].ids[t];
        mask[r][static_cast<int64_t>(t)] = rows[r].mask[t] != 0;
      }
    KVCache cache = sharer.new_cache(B, T);
    sharer.forward(ids.to(sharer.device()), mask.to(sharer.device()), cache, /*last_only=*/true);
    for (int64_t l = 0; l < L; ++l) {
      // (B, S, 2 H D): K and V of every slot, heads concatenated.
      auto kv = torch::cat({cache.key(l), cache.value(l)}, 1).permute({0, 2, 1, 3});
      kv = kv.reshape({B, kv.size(1), -1}).to(torch::kCPU, torch::kFloat32);
      for (int64_t r = 0; r < B; ++r) {
        const auto& f = fused[r];
        const int64_t m = static_cast<int64_t>(f.size());
        for (int64_t k = 0; k < K; ++k) feats[l][k].push_back(kv[r][f[std::max<int64_t>(m - 1 - k, 0)]]);
        feats[l][K].push_back(kv[r].index_select(0, torch::tensor(f, torch::kInt64)).mean(0));
        if (name_slot) feats[l][K + 1].push_back(kv[r][name_at[r]]);
      }
    }
  }
  std::vector<std::pair<std::pair<int64_t, std::string>, torch::Tensor>> out;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t k = 0; k < P; ++k)
      out.push_back({{l, k < K ? position_name(k) : k == K ? kMeanName : kNameName}, torch::stack(feats[l][k])});
  return out;
}

std::pair<double, double> fit_linear_probe(const torch::Tensor& x_train, const torch::Tensor& y_train,
                                           const torch::Tensor& x_test, const torch::Tensor& y_test,
                                           int64_t classes, int64_t iterations, double lr,
                                           double weight_decay, int64_t seed) {
  C2C_CHECK(x_train.dim() == 2 && x_test.dim() == 2 && x_train.size(1) == x_test.size(1) &&
                y_train.size(0) == x_train.size(0) && y_test.size(0) == x_test.size(0),
            "linear probe: features ", x_train.sizes(), " / ", x_test.sizes(), " and labels ",
            y_train.sizes(), " / ", y_test.sizes(), " do not fit");
  C2C_CHECK(classes >= 2 && iterations >= 1, "linear probe: needs >= 2 classes and >= 1 iteration");
  torch::manual_seed(static_cast<uint64_t>(seed));
  const auto mu = x_train.mean(0);
  const auto sd = x_train.std(0) + 1e-5;
  const auto xtr = (x_train - mu) / sd, xte = (x_test - mu) / sd;
  torch::nn::Linear lin(x_train.size(1), classes);
  torch::optim::Adam opt(lin->parameters(), torch::optim::AdamOptions(lr).weight_decay(weight_decay));
  for (int64_t i = 0; i < iterations; ++i) {
    opt.zero_grad();
    torch::nn::functional::cross_entropy(lin(xtr), y_train).backward();
    opt.step();
  }
  torch::NoGradGuard no_grad;
  auto acc = [&](const torch::Tensor& x, const torch::Tensor& y) {
    return lin(x).argmax(-1).eq(y).to(torch::kFloat64).mean().item<double>();
  };
  return {acc(xtr, y_train), acc(xte, y_test)};
}

KvProbeReport run_kv_probe(const KvProbeOptions& o, std::ostream& log) {
  // Before any model is read: the options the CLI passes through (--iterations, --positions).
  C2C_CHECK(o.iterations >= 1, "probe-kv: --iterations must be >= 1, got ", o.iterations);
  C2C_CHECK(o.positions_from_end >= 1, "probe-kv: --positions must be >= 1, got ", o.positions_from_end);
  const AlignMethod method = parse_align_method(o.alignment);
  C2C_CHECK(method != AlignMethod::identity, "probe-kv: alignment 'identity' needs no receiver tokenizer "
            "and is not probed here\nHINT: use the alignment the fuser trains with (span_tail in the toy world)");
  const McFile train = load_items(o.train, "training"), test = load_items(o.test, "test");
  auto model = LLM::load(o.sharer);
  auto stok = Tokenizer::load(o.sharer);
  auto rtok = Tokenizer::load(o.receiver_tokenizer);

  // Classes: (subject, choice) pairs of both files, numbered in sorted order.
  std::map<std::pair<std::string, int>, int64_t> cls;
  for (const auto* f : {&train, &test})
    for (const auto& it : f->items) cls.emplace(std::make_pair(it.subject, it.answer), 0);
  int64_t next = 0;
  for (auto& [key, id] : cls) id = next++;
  auto labels = [&](const McFile& f) {
    std::vector<int64_t> y;
    for (const auto& it : f.items) y.push_back(cls.at({it.subject, it.answer}));
    return torch::tensor(y, torch::kInt64);
  };
  const auto ytr = labels(train), yte = labels(test);

  KvProbeReport r;
  r.sharer = o.sharer;
  r.alignment = align_method_name(method);
  r.train = o.train;
  r.test = o.test;
  r.train_items = static_cast<int64_t>(train.items.size());
  r.test_items = static_cast<int64_t>(test.items.size());
  r.classes = static_cast<int64_t>(cls.size());
  for (const auto& it : test.items) r.chance += 1.0 / static_cast<double>(it.choices.size());
  r.chance /= static_cast<double>(r.test_items);

  log << "probe-kv: the sharer's cache at the slots '" << r.alignment << "' fuses: " << r.train_items
      << " training questions (" << o.train << "), " << r.test_items << " test questions (" << o.test << ")\n";
  // The name's slot when every question of both files names its entity.
  bool name_slot = true;
  for (const auto* f : {&train, &test})
    for (const auto& it : f->items) name_slot = name_slot && !it.entity.empty();
  const auto ftr =
      kv_probe_features(*model, *stok, *rtok, train.items, method, o.positions_from_end, o.batch_size, name_slot);
  const auto fte =
      kv_probe_features(*model, *stok, *rtok, test.items, method, o.positions_from_end, o.batch_size, name_slot);
  for (size_t i = 0; i < ftr.size(); ++i) {
    KvProbeRow row;
    row.layer = ftr[i].first.first;
    row.position = ftr[i].first.second;
    std::tie(row.train_accuracy, row.test_accuracy) =
        fit_linear_probe(ftr[i].second, ytr, fte[i].second, yte, r.classes, o.iterations, o.lr, o.weight_decay, o.seed);
    if (r.rows.empty() || row.test_accuracy > r.best.test_accuracy) r.best = row;
    r.rows.push_back(row);
  }
  return r;
}

nlohmann::json KvProbeReport::to_json() const {
  auto row_json = [](const KvProbeRow& x) {
    return nlohmann::json{{"layer", x.layer}, {"position", x.position},
                          {"train_accuracy", x.train_accuracy}, {"test_accuracy", x.test_accuracy}};
  };
  nlohmann::json rs = nlohmann::json::array();
  for (const auto& x : rows) rs.push_back(row_json(x));
  return {{"format", "c2c-kv-probe"}, {"format_version", 1}, {"sharer", sharer}, {"alignment", alignment},
          {"train", train}, {"test", test}, {"train_items", train_items}, {"test_items", test_items},
          {"classes", classes}, {"chance", chance}, {"best", row_json(best)}, {"rows", rs}};
}

std::string KvProbeReport::table() const {
  std::vector<std::string> positions;
  for (const auto& x : rows)
    if (x.layer == rows.front().layer) positions.push_back(x.position);
  std::ostringstream o;
  o << "held-out accuracy of a linear probe of the sharer's K/V (train accuracy in brackets); chance "
    << std::fixed << std::setprecision(1) << 100 * chance << "%\n";
  o << std::left << std::setw(7) << "layer";
  for (const auto& p : positions) o << " | " << std::setw(22) << p;
  o << "\n";
  for (size_t i = 0; i < rows.size(); i += positions.size()) {
    o << std::left << std::setw(7) << rows[i].layer;
    for (size_t j = 0; j < positions.size(); ++j) {
      std::ostringstream c;
      c << std::fixed << std::setprecision(1) << 100 * rows[i + j].test_accuracy << "% ("
        << 100 * rows[i + j].train_accuracy << "%)";
      o << " | " << std::setw(22) << c.str();
    }
    o << "\n";
  }
  o << "best: layer " << best.layer << ", " << best.position << ": " << std::fixed << std::setprecision(1)
    << 100 * best.test_accuracy << "% held-out\n";
  return o.str();
}

}  // namespace c2c
