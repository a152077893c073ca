// Benchmark files and prompts of `c2c eval` (data/benchmark.h): answer-letter extraction over
// realistic model replies, the JSON Lines loader's per-line errors (line numbers, good lines kept
// around bad ones), the shipped example, and the exact prompt strings.
#include <fstream>
#include <set>

#include "data/benchmark.h"
#include "modules/common/error.h"
#include "tests/common/test_util.h"

namespace c2c {
namespace {

struct ExtractCase {
  const char* text;
  int num_choices;
  int expected;  // index, -1 for none
};

// Replies as models write them after the prompt (some repeat the lead, some only continue it).
const ExtractCase kExtractCases[] = {
    {"The correct answer is (B).", 4, 1},
    {" B", 4, 1},
    {" B. Mercury is the closest planet to the Sun.", 4, 1},
    {" (C) Paris is the capital of France.", 4, 2},
    {"b)", 4, 1},
    {" b", 4, 1},
    {" c.\n\nExplanation: the Moon reflects sunlight.", 4, 2},
    {"the answer is d", 4, 3},
    {"Answer: C", 4, 2},
    {"ANSWER: B", 4, 1},
    {"Answer: (a)", 4, 0},
    {"**D**", 4, 3},
    {"The correct answer is **A**.", 4, 0},
    {"The correct answer is: C. Mitochondria", 4, 2},
    {"The correct answer is C) 42", 4, 2},
    {"Based on the passage, the reaction is exothermic.", 4, -1},  // "Based": neither B nor A
    {"I don't know.", 4, -1},                                       // no letter at all
    {"There is no correct option here.", 4, -1},
    {"", 4, -1},
    {"E", 4, -1},                                                   // beyond the options
    {"The correct answer is E.", 4, -1},
    {"The correct answer is E.", 5, 4},
    {"The correct answer is E, or maybe B", 4, 1},
    {"A good choice would be C.", 4, 2},                            // "A" as an article
    {"A is correct because water boils at 100 C.", 4, 0},
    {"I think it is B.", 10, 1},                                    // "I" as a pronoun
    {"I'd choose B", 10, 1},
    {"I think the best option is C because it is larger.", 4, 2},
    {"The answer is a mammal, so C", 4, 2},                         // "a" as an article
    {"The answer isn't obvious, but (c) fits best.", 4, 2},
    {"Vitamin B-12 deficiency causes anemia.", 4, -1},              // "B-12" is a word
    {"U.S. law says D", 26, 3},                                     // "U.S." is an abbreviation
    {"A. Paris", 4, 0},
    {"$\\boxed{D}$", 4, 3},
    {"\xE7\xAD\x94\xE6\xA1\x88\xE6\x98\xAF" "B", 4, 1},                 // 答案是B
    {"\xE6\x88\x91\xE9\x80\x89" "C\xE3\x80\x82", 4, 2},                 // 我选C。
    {"The correct answer is (B). Option A is wrong because ...", 4, 1},
};

TEST(Benchmark, ExtractAnswerLetterTable) {
  for (const auto& c : kExtractCases)
    EXPECT_EQ(extract_answer_letter(c.text, c.num_choices), c.expected)
        << "text: \"" << c.text << "\" with " << c.num_choices << " choices";
}

TEST(Benchmark, ExtractAnswerLetterLimits) {
  EXPECT_EQ(extract_answer_letter("B", 0), -1);
  EXPECT_EQ(extract_answer_letter("Z", 26), 25);
  EXPECT_EQ(extract_answer_letter("Z", 40), 25);  // clamped to 26 letters
}

std::string write_lines(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(Benchmark, LoadKeepsGoodLinesAndNamesBadOnes) {
  const std::string dir = test::temp_dir("benchmark_load");
  const std::string path = write_lines(
      dir, "bench.jsonl",
      // 1: letter answer, id, subject
      R"({"id": "q1", "subject": "physics", "question": "Unit of force?", "choices": ["joule", "newton", "watt", "pascal"], "answer": "B"})"
      "\n"
      // 2: index answer, no id, no subject
      R"({"question": "2 + 2 = ?", "choices": ["3", "4"], "answer": 1})"
      "\n"
      // 3: blank
      "   \n"
      // 4: missing question
      R"({"choices": ["a", "b"], "answer": 0})"
      "\n"
      // 5: wrong type
      R"({"question": "Q?", "choices": "A or B", "answer": 0})"
      "\n"
      // 6: answer outside the options
      R"({"question": "Q?", "choices": ["w", "x", "y", "z"], "answer": "E"})"
      "\n"
      // 7: too few choices
      R"({"question": "Q?", "choices": ["only"], "answer": 0})"
      "\n"
      // 8: broken JSON
      R"({"question": "Q?", "choices": ["a", "b"], "answer": )"
      "\n"
      // 9: good, integer id, CRLF line end
      R"({"id": 9, "subject": "math", "question": "Largest?", "choices": ["1", "2", "3", "4"], "answer": 3})"
      "\r\n"
      // 10: integer answer outside the options
      R"({"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 4})"
      "\n"
      // 11: repeated id
      R"({"id": "q1", "question": "Again?", "choices": ["a", "b"], "answer": "A"})"
      "\n"
      // 12: good, lowercase letter, null subject reads as absent
      R"({"id": "q12", "subject": null, "question": "Third?", "choices": ["x", "y", "z"], "answer": "c"})"
      "\n"
      // 13: answer given as a digit string
      R"({"question": "Q?", "choices": ["a", "b"], "answer": "1"})"
      "\n"
      // 14: empty choice
      R"({"question": "Q?", "choices": ["a", ""], "answer": 0})"
      "\n"
      // 15: not an object
      R"(["question", "choices"])"
      "\n"
      // 16: good, with the entity it is about
      R"({"id": "q16", "question": "Where does Kalo live?", "entity": "Kalo", "choices": ["a", "b"], "answer": 0})"
      "\n"
      // 17: an entity the question does not name
      R"({"question": "Where does Kalo live?", "entity": "Renvi", "choices": ["a", "b"], "answer": 0})");
  const McFile f = load_mc_jsonl(path);
  EXPECT_EQ(f.path, path);

  ASSERT_EQ(f.items.size(), 5u);
  EXPECT_EQ(f.items[0].id, "q1");
  EXPECT_EQ(f.items[0].subject, "physics");
  EXPECT_EQ(f.items[0].question, "Unit of force?");
  EXPECT_EQ(f.items[0].choices, (std::vector<std::string>{"joule", "newton", "watt", "pascal"}));
  EXPECT_EQ(f.items[0].answer, 1);
  EXPECT_EQ(f.items[0].line, 1);
  EXPECT_EQ(f.items[1].id, "bench:2");
  EXPECT_EQ(f.items[1].subject, "all");
  EXPECT_EQ(f.items[1].answer, 1);
  EXPECT_EQ(f.items[1].line, 2);
  EXPECT_EQ(f.items[2].id, "9");
  EXPECT_EQ(f.items[2].subject, "math");
  EXPECT_EQ(f.items[2].answer, 3);
  EXPECT_EQ(f.items[2].line, 9);
  EXPECT_EQ(f.items[3].id, "q12");
  EXPECT_EQ(f.items[3].subject, "all");
  EXPECT_EQ(f.items[3].answer, 2);
  EXPECT_EQ(f.items[3].line, 12);
  EXPECT_EQ(f.items[3].entity, "");
  EXPECT_EQ(f.items[4].id, "q16");
  EXPECT_EQ(f.items[4].entity, "Kalo");

  const std::vector<std::pair<int, std::string>> expected = {
      {4, "\"question\" is missing"},
      {5, "\"choices\" must be an array of strings, got string"},
      {6, "\"answer\" \"E\" is outside the 4 choices (A..D or 0..3)"},
      {7, "\"choices\" has 1 option(s); need 2..26"},
      {8, "bad JSON"},
      {10, "\"answer\" 4 is outside the 4 choices (A..D or 0..3)"},
      {11, "\"id\" \"q1\" repeats an earlier line's id"},
      {13, "\"answer\" \"1\" is not a letter"},
      {14, "\"choices\"[1] (B) is empty"},
      {15, "expected a JSON object, got array"},
      {17, "\"entity\" \"Renvi\" does not occur in the question"},
  };
  ASSERT_EQ(f.errors.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::string prefix = path + ":" + std::to_string(expected[i].first) + ": ";
    EXPECT_EQ(f.errors[i].rfind(prefix, 0), 0u) << f.errors[i];
    EXPECT_NE(f.errors[i].find(expected[i].second), std::string::npos) << f.errors[i];
  }
}

TEST(Benchmark, LoadEmptyAndBlankFiles) {
  const std::string dir = test::temp_dir("benchmark_empty");
  const McFile empty = load_mc_jsonl(write_lines(dir, "empty.jsonl", ""));
  EXPECT_TRUE(empty.items.empty());
  EXPECT_TRUE(empty.errors.empty());
  const McFile blank = load_mc_jsonl(write_lines(dir, "blank.jsonl", "\n  \n\t\n"));
  EXPECT_TRUE(blank.items.empty());
  EXPECT_TRUE(blank.errors.empty());
}

TEST(Benchmark, MissingFileThrowsNamingThePath) {
  const std::string path = test::temp_dir("benchmark_missing") + "/no_such_benchmark.jsonl";
  const std::string err = test::error_of([&] { load_mc_jsonl(path); });
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("HINT:"), std::string::npos) << err;
  const std::string dir = test::temp_dir("benchmark_dir");
  EXPECT_NE(test::error_of([&] { load_mc_jsonl(dir); }).find("is a folder"), std::string::npos);
}

TEST(Benchmark, ShippedExampleLoadsCleanly) {
  const McFile f = load_mc_jsonl(test::source_path("tests/fixtures/data/mc_example.jsonl"));
  EXPECT_TRUE(f.errors.empty()) << f.errors.front();
  ASSERT_EQ(f.items.size(), 6u);
  std::set<std::string> subjects;
  for (const auto& item : f.items) {
    subjects.insert(item.subject);
    EXPECT_GE(item.answer, 0);
    EXPECT_LT(item.answer, static_cast<int>(item.choices.size()));
  }
  EXPECT_EQ(subjects, (std::set<std::string>{"astronomy", "chemistry"}));
  EXPECT_EQ(f.items[1].answer, 2);  // integer answer
  EXPECT_EQ(f.items[3].answer, 2);  // letter answer
  EXPECT_EQ(f.items[5].id, "mc_example:6");
}

McItem sample_item() {
  McItem item;
  item.id = "t";
  item.question = "Which gas do plants absorb?";
  item.choices = {"Oxygen", "Carbon dioxide", "Nitrogen"};
  item.answer = 1;
  return item;
}

TEST(Benchmark, PromptStrings) {
  const McItem item = sample_item();
  EXPECT_EQ(choice_letter(0), "A");
  EXPECT_EQ(choice_letter(25), "Z");
  EXPECT_EQ(format_mc_question(item),
            "Which gas do plants absorb?\n\nA. Oxygen\nB. Carbon dioxide\nC. Nitrogen");
  EXPECT_EQ(mc_user_prompt(item),
            "Answer the following multiple-choice question.\n\n"
            "Which gas do plants absorb?\n\nA. Oxygen\nB. Carbon dioxide\nC. Nitrogen\n\n"
            "Reply with the letter of the single correct option (A, B or C) in the form "
            "\"The correct answer is X\", with no explanation.");
  EXPECT_EQ(std::string(kAnswerLead), "The correct answer is");
  EXPECT_EQ(t2t_background_request(item),
            "Give brief background knowledge (a few sentences) that would help answer the following "
            "question. Do not answer the question itself.\n\nQuestion: Which gas do plants absorb?");
  // The background request never shows the options.
  EXPECT_EQ(t2t_background_request(item).find("Carbon dioxide"), std::string::npos);
}

TEST(Benchmark, ExtractionReadsBackEveryLetterOfAFormattedReply) {
  for (int n = 2; n <= 26; ++n) {
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(extract_answer_letter(std::string(" ") + choice_letter(i) + ".", n), i) << n << " " << i;
      EXPECT_EQ(extract_answer_letter(std::string(kAnswerLead) + " (" + choice_letter(i) + ")", n), i);
    }
  }
}

}  // namespace
}  // namespace c2c
