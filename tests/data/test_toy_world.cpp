// The toy world (data/toy_world.h): the same seed gives the same files, another seed another
// world; the splits are disjoint and each corpus holds only what its reader may know.
#include <gtest/gtest.h>

#include <set>

#include "data/benchmark.h"
#include "data/toy_world.h"
#include "modules/common/files.h"
#include "tests/common/test_util.h"

using namespace c2c;

namespace {

std::string all_text(const std::vector<LmRecord>& recs) {
  std::string s;
  for (const auto& r : recs) {
    s += r.text + "\n";
    for (const auto& m : r.messages) s += m.content + "\n";
  }
  return s;
}

bool mentions(const std::string& text, const std::string& name) {
  // Whole-word match: "Kalo" must not be found inside "Kalomi".
  for (size_t p = text.find(name); p != std::string::npos; p = text.find(name, p + 1)) {
    const bool left = p == 0 || !std::isalpha(static_cast<unsigned char>(text[p - 1]));
    const size_t e = p + name.size();
    const bool right = e >= text.size() || !std::isalpha(static_cast<unsigned char>(text[e]));
    if (left && right) return true;
  }
  return false;
}

}  // namespace

TEST(ToyWorld, SameSeedSameFilesOtherSeedOtherWorld) {
  ToyWorldOptions o;
  o.entities = 60;
  o.known = 15;
  o.eval = 10;
  o.validation = 5;
  o.practice = 20;
  const auto a = test::temp_dir("toy_a"), b = test::temp_dir("toy_b"), c = test::temp_dir("toy_c");
  ToyWorld(o).write(a);
  ToyWorld(o).write(b);
  o.seed = 1;
  ToyWorld(o).write(c);
  for (const char* f : {"world.json", "sharer_corpus.jsonl", "receiver_corpus.jsonl", "fuser_train.jsonl",
                        "validation.jsonl", "eval_heldout.jsonl", "eval_known.jsonl", "eval_validation.jsonl"}) {
    EXPECT_EQ(read_file(join_path(a, f)), read_file(join_path(b, f))) << f;
    EXPECT_NE(read_file(join_path(a, f)), read_file(join_path(c, f))) << f;
  }
  // The benchmark files load cleanly in the format of c2c eval.
  auto bench = load_mc_jsonl(join_path(a, "eval_heldout.jsonl"));
  EXPECT_TRUE(bench.errors.empty());
  EXPECT_EQ(bench.items.size(), 10u * 3);
  for (const auto& it : bench.items) EXPECT_EQ(it.choices.size(), 10u);
}

TEST(ToyWorld, SplitsAreDisjointAndCorporaHoldOnlyWhatTheirReaderMayKnow) {
  ToyWorldOptions o;
  o.entities = 120;
  o.known = 30;
  o.eval = 20;
  o.validation = 10;
  o.practice = 40;
  ToyWorld w(o);
  std::set<std::string> names;
  std::map<std::string, int> count;
  for (const auto& e : w.entities()) {
    EXPECT_TRUE(names.insert(e.name).second) << "duplicate name " << e.name;
    ++count[e.split];
  }
  EXPECT_EQ(count["known"], 30);
  EXPECT_EQ(count["eval"], 20);
  EXPECT_EQ(count["validation"], 10);
  EXPECT_EQ(count["fuser_train"], 60);
  EXPECT_EQ(count["practice"], 40);

  const std::string receiver = all_text(w.receiver_corpus());
  const std::string sharer = all_text(w.sharer_corpus());
  std::string fuser, validation;
  for (const auto& conv : w.fuser_conversations())
    for (const auto& m : conv) fuser += m.content + "\n";
  for (const auto& conv : w.fuser_conversations("validation"))
    for (const auto& m : conv) validation += m.content + "\n";
  for (const auto& e : w.entities()) {
    const bool known = e.split == "known", practice = e.split == "practice";
    EXPECT_EQ(mentions(receiver, e.name), known || practice) << e.name << " (" << e.split << ")";
    EXPECT_EQ(mentions(sharer, e.name), !practice) << e.name << " (" << e.split << ")";
    if (e.split == "eval" || e.split == "validation" || practice) EXPECT_FALSE(mentions(fuser, e.name)) << e.name;
    if (e.split == "fuser_train") EXPECT_TRUE(mentions(fuser, e.name)) << e.name;
    // Model selection sees its own people (and known ones), never the training or test people.
    if (e.split == "validation") EXPECT_TRUE(mentions(validation, e.name)) << e.name;
    if (e.split == "eval" || e.split == "fuser_train" || practice)
      EXPECT_FALSE(mentions(validation, e.name)) << e.name << " (" << e.split << ")";
  }
  // Every biography states every attribute of its entity.
  const auto& e = w.entities()[0];
  const std::string bio = w.biography(e, 5);
  for (size_t a = 0; a < o.attributes.size(); ++a) EXPECT_TRUE(mentions(bio, w.answer(e, a))) << bio;
}

TEST(ToyWorld, BadOptionsAreNamed) {
  ToyWorldOptions o;
  o.known = 400;
  o.eval = 300;
  EXPECT_NE(test::error_of([&] { ToyWorld w(o); }).find("must leave fuser-training entities"), std::string::npos);
  o = ToyWorldOptions{};
  o.validation = -1;
  EXPECT_NE(test::error_of([&] { ToyWorld w(o); }).find("validation (-1)"), std::string::npos);
  EXPECT_NE(test::error_of([&] { ToyWorld(ToyWorldOptions{}).fuser_conversations("eval"); }).find("not 'eval'"),
            std::string::npos);
  o = ToyWorldOptions{};
  o.attributes = {"city", "height"};
  EXPECT_NE(test::error_of([&] { ToyWorld w(o); }).find("unknown attribute 'height'"), std::string::npos);
}
