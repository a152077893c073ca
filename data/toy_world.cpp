#include "data/toy_world.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "data/benchmark.h"
#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {
namespace {

// splitmix64: the same stream on every platform and standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i) std::swap(v[i], v[below(i + 1)]);
  }

 private:
  uint64_t s_;
};

// FNV-1a: std::hash differs between standard libraries, this does not.
uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

const char* const kSyllables[] = {"ka", "lo", "mi", "ren", "tav", "sul", "dor", "vi", "nek",
                                  "por", "an", "bel", "cor", "dun", "el", "fen", "gal", "hal",
                                  "is", "jor", "kel", "lin", "mor", "nal", "os", "pel", "quin",
                                  "ras", "sen", "tor", "ul", "var", "wen", "yor", "zan", "bra",
                                  "dri", "gro", "shi", "tha"};

struct Attribute {
  const char* name;
  std::vector<std::string> values;
  std::vector<std::string> facts;      // "{N}" and "{V}" are replaced
  std::vector<std::string> questions;  // "{N}"
};

const std::vector<Attribute>& attribute_table() {
  static const std::vector<Attribute> t = {
      {"city",
       {"Arden", "Belmora", "Corvin", "Dunmere", "Eskel", "Farrow", "Glent", "Harrow", "Istra", "Jorvik"},
       {"{N} lives in {V}.", "{N} has a home in {V}.", "The home town of {N} is {V}."},
       {"Which city does {N} live in?", "Where does {N} live?"}},
      {"job",
       {"baker", "painter", "sailor", "doctor", "farmer", "teacher", "miner", "singer", "tailor", "potter"},
       {"{N} works as a {V}.", "{N} is a {V} by trade.", "By profession, {N} is a {V}."},
       {"What does {N} do for a living?", "What is the job of {N}?"}},
      {"pet",
       {"cat", "dog", "owl", "newt", "goat", "hawk", "frog", "crow", "mouse", "snake"},
       {"{N} keeps a {V}.", "{N} has a pet {V}.", "{N} owns a {V}."},
       {"What pet does {N} keep?", "Which animal does {N} keep?"}},
      {"colour",
       {"red", "blue", "green", "amber", "violet", "grey", "white", "black", "golden", "teal"},
       {"The favourite colour of {N} is {V}.", "{N} likes {V} best.", "{N} loves the colour {V}."},
       {"What is the favourite colour of {N}?", "Which colour does {N} like best?"}},
  };
  return t;
}

const Attribute& attribute(const std::string& name) {
  for (const auto& a : attribute_table())
    if (name == a.name) return a;
  std::string known;
  for (const auto& a : attribute_table()) known += std::string(known.empty() ? "" : ", ") + a.name;
  fail("toy world: unknown attribute '", name, "'\nHINT: the attributes are: ", known);
}

std::string fill_in(std::string s, const std::string& n, const std::string& v) {
  for (size_t p; (p = s.find("{N}")) != std::string::npos;) s.replace(p, 3, n);
  for (size_t p; (p = s.find("{V}")) != std::string::npos;) s.replace(p, 3, v);
  return s;
}

std::string capitalised(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

nlohmann::json record_json(const LmRecord& r) {
  if (r.messages.empty()) return {{"text", r.text}};
  nlohmann::json m = nlohmann::json::array();
  for (const auto& x : r.messages) m.push_back({{"role", x.role}, {"content", x.content}});
  return {{"messages", m}};
}

void write_jsonl(const std::string& path, const std::vector<nlohmann::json>& rows) {
  std::string out;
  for (const auto& r : rows) out += r.dump() + "\n";
  write_file_atomic(path, out);
}

}  // namespace

std::vector<std::string> ToyWorld::known_attributes() {
  std::vector<std::string> out;
  for (const auto& a : attribute_table()) out.push_back(a.name);
  return out;
}

const std::vector<std::string>& ToyWorld::values_of(const std::string& name) {
  return attribute(name).values;
}

ToyWorld::ToyWorld(const ToyWorldOptions& options) : opt_(options) {
  C2C_CHECK(opt_.entities >= 10, "toy world: --entities must be at least 10, got ", opt_.entities);
  C2C_CHECK(opt_.known >= 1 && opt_.eval >= 1 && opt_.validation >= 0 &&
                opt_.known + opt_.eval + opt_.validation < opt_.entities,
            "toy world: known (", opt_.known, ") + eval (", opt_.eval, ") + validation (", opt_.validation,
            ") must leave fuser-training entities among the ", opt_.entities,
            "\nHINT: lower --known, --eval or --validation, or raise --entities");
  C2C_CHECK(!opt_.attributes.empty(), "toy world: no attributes");
  std::set<std::string> seen_attr;
  for (const auto& a : opt_.attributes) {
    attribute(a);
    C2C_CHECK(seen_attr.insert(a).second, "toy world: attribute '", a, "' given twice");
  }
  C2C_CHECK(opt_.known_in_fuser >= 0 && opt_.known_in_fuser < 1, "toy world: known_in_fuser must be in [0, 1), got ",
            opt_.known_in_fuser);
  Rng rng(opt_.seed);
  const int64_t n_syl = sizeof(kSyllables) / sizeof(kSyllables[0]);
  const int64_t total = opt_.entities + opt_.practice;
  C2C_CHECK(total <= 20000, "toy world: at most 20000 entities (world + practice), got ", total);
  std::set<std::string> names;
  while (static_cast<int64_t>(entities_.size()) < total) {
    const int64_t k = 2 + rng.below(2);  // two or three syllables
    std::string name;
    for (int64_t i = 0; i < k; ++i) name += kSyllables[rng.below(n_syl)];
    name = capitalised(name);
    if (!names.insert(name).second) continue;
    ToyEntity e;
    e.name = name;
    for (const auto& a : opt_.attributes)
      e.values.push_back(static_cast<int>(rng.below(static_cast<int64_t>(attribute(a).values.size()))));
    entities_.push_back(std::move(e));
  }
  // The first `entities` are the world, in random order: known, eval, validation, then
  // fuser_train (without validation people, the splits of the worlds before there were any).
  for (int64_t i = 0; i < total; ++i) {
    ToyEntity& e = entities_[i];
    if (i >= opt_.entities) e.split = "practice";
    else if (i < opt_.known) e.split = "known";
    else if (i < opt_.known + opt_.eval) e.split = "eval";
    else if (i < opt_.known + opt_.eval + opt_.validation) e.split = "validation";
    else e.split = "fuser_train";
  }
}

std::string ToyWorld::biography(const ToyEntity& e, uint64_t variant, bool canonical) const {
  Rng rng(opt_.seed ^ (variant * 0x9E3779B97F4A7C15ull) ^ name_hash(e.name));
  std::vector<size_t> order(opt_.attributes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (!canonical) rng.shuffle(order);
  std::string out;
  for (size_t i : order) {
    const Attribute& a = attribute(opt_.attributes[i]);
    const size_t t = canonical ? 0 : static_cast<size_t>(rng.below(static_cast<int64_t>(a.facts.size())));
    out += (out.empty() ? "" : " ") + fill_in(a.facts[t], e.name, a.values[e.values[i]]);
  }
  return out;
}

std::string ToyWorld::question(const ToyEntity& e, size_t a, int q) const {
  const Attribute& at = attribute(opt_.attributes.at(a));
  return fill_in(at.questions.at(static_cast<size_t>(q) % at.questions.size()), e.name, "");
}

std::string ToyWorld::answer(const ToyEntity& e, size_t a) const {
  return attribute(opt_.attributes.at(a)).values.at(e.values.at(a));
}

std::string ToyWorld::background_request(const std::string& q) {
  McItem item;
  item.question = q;
  return t2t_background_request(item);
}

std::vector<LmRecord> ToyWorld::sharer_corpus() const {
  std::vector<LmRecord> out;
  for (const auto& e : entities_) {
    if (e.split == "practice") continue;
    for (int64_t c = 0; c < opt_.bio_copies; ++c) out.push_back({biography(e, c), {}});
    for (size_t a = 0; a < opt_.attributes.size(); ++a)
      for (int q = 0; q < 2; ++q)
        out.push_back({"", {{"user", question(e, a, q)}, {"assistant", answer(e, a)}}});
    // T2T: asked for background on a question, the sharer tells what it knows of the entity.
    for (int q = 0; q < 2; ++q) {
      const size_t a = (q + name_hash(e.name)) % opt_.attributes.size();
      out.push_back({"", {{"user", background_request(question(e, a, q))},
                          {"assistant", biography(e, 0, true)}}});
    }
  }
  Rng(opt_.seed + 1).shuffle(out);
  return out;
}

std::vector<LmRecord> ToyWorld::receiver_corpus() const {
  std::vector<LmRecord> out;
  for (const auto& e : entities_) {
    if (e.split == "known") {
      for (int64_t c = 0; c < opt_.bio_copies; ++c) out.push_back({biography(e, c), {}});
      for (size_t a = 0; a < opt_.attributes.size(); ++a)
        for (int q = 0; q < 2; ++q)
          out.push_back({"", {{"user", question(e, a, q)}, {"assistant", answer(e, a)}}});
    } else if (e.split == "practice") {
      // Read-the-context practice on entities of no split: the T2T three-turn chat, and the
      // biography inside the question.
      for (size_t a = 0; a < opt_.attributes.size(); ++a) {
        const int q = static_cast<int>(a % 2);
        out.push_back({"", {{"user", background_request(question(e, a, q))},
                            {"assistant", biography(e, 0, true)},
                            {"user", question(e, a, 1 - q)},
                            {"assistant", answer(e, a)}}});
        out.push_back({"", {{"user", biography(e, a) + " " + question(e, a, q)},
                            {"assistant", answer(e, a)}}});
      }
    }
  }
  Rng(opt_.seed + 2).shuffle(out);
  return out;
}

std::vector<std::vector<ChatMessage>> ToyWorld::fuser_conversations(const std::string& split) const {
  C2C_CHECK(split == "fuser_train" || split == "validation", "toy world: fuser conversations are about "
            "fuser_train or validation people, not '", split, "'");
  std::vector<std::vector<ChatMessage>> unknown, known;
  for (const auto& e : entities_) {
    if (e.split != split && e.split != "known") continue;
    auto& to = e.split == "known" ? known : unknown;
    for (size_t a = 0; a < opt_.attributes.size(); ++a)
      for (int q = 0; q < 2; ++q) to.push_back({{"user", question(e, a, q)}, {"assistant", answer(e, a)}});
  }
  Rng rng(opt_.seed + (split == "validation" ? 5 : 3));
  rng.shuffle(known);
  // known / (known + unknown) = known_in_fuser
  const auto want = static_cast<size_t>(opt_.known_in_fuser / (1 - opt_.known_in_fuser) *
                                        static_cast<double>(unknown.size()));
  if (known.size() > want) known.resize(want);
  for (auto& k : known) unknown.push_back(std::move(k));
  rng.shuffle(unknown);
  return unknown;
}

void ToyWorld::write(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  nlohmann::json w = {{"format", "c2c-toy-world"},
                      {"format_version", 1},
                      {"seed", opt_.seed},
                      {"entities", opt_.entities},
                      {"known", opt_.known},
                      {"eval", opt_.eval},
                      {"validation", opt_.validation},
                      {"practice", opt_.practice},
                      {"bio_copies", opt_.bio_copies},
                      {"known_in_fuser", opt_.known_in_fuser},
                      {"attributes", opt_.attributes}};
  nlohmann::json values = nlohmann::json::object();
  for (const auto& a : opt_.attributes) values[a] = attribute(a).values;
  w["values"] = values;
  nlohmann::json ents = nlohmann::json::array();
  for (const auto& e : entities_) {
    nlohmann::json j = {{"name", e.name}, {"split", e.split}};
    for (size_t a = 0; a < opt_.attributes.size(); ++a) j[opt_.attributes[a]] = answer(e, a);
    ents.push_back(j);
  }
  w["entities_list"] = ents;
  write_file_atomic(join_path(dir, "world.json"), w.dump(1) + "\n");

  auto corpus = [&](const std::vector<LmRecord>& recs, const std::string& name) {
    std::vector<nlohmann::json> rows;
    for (const auto& r : recs) rows.push_back(record_json(r));
    write_jsonl(join_path(dir, name), rows);
  };
  corpus(sharer_corpus(), "sharer_corpus.jsonl");
  corpus(receiver_corpus(), "receiver_corpus.jsonl");
  for (const char* split : {"fuser_train", "validation"}) {
    if (std::string(split) == "validation" && opt_.validation == 0) continue;
    std::vector<nlohmann::json> rows;
    for (const auto& conv : fuser_conversations(split)) rows.push_back(record_json({"", conv}));
    write_jsonl(join_path(dir, std::string(split) + ".jsonl"), rows);
  }
  // Benchmarks: one question per entity and attribute, its template drawn by the seed.
  Rng rng(opt_.seed + 4);
  std::map<std::string, std::vector<nlohmann::json>> bench;
  for (const auto& e : entities_) {
    if (e.split == "practice") continue;
    for (size_t a = 0; a < opt_.attributes.size(); ++a) {
      const auto& vals = attribute(opt_.attributes[a]).values;
      bench[e.split].push_back({{"id", e.name + ":" + opt_.attributes[a]},
                                {"subject", opt_.attributes[a]},
                                {"entity", e.name},
                                {"question", question(e, a, static_cast<int>(rng.below(2)))},
                                {"choices", vals},
                                {"answer", e.values[a]}});
    }
  }
  write_jsonl(join_path(dir, "eval_heldout.jsonl"), bench["eval"]);
  write_jsonl(join_path(dir, "eval_known.jsonl"), bench["known"]);
  write_jsonl(join_path(dir, "eval_fuser_train.jsonl"), bench["fuser_train"]);
  if (opt_.validation > 0) write_jsonl(join_path(dir, "eval_validation.jsonl"), bench["validation"]);
}

}  // namespace c2c
