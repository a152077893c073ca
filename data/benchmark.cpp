// Multiple-choice benchmark files (JSON Lines), the zero-shot prompts and the answer extraction.
// The extraction scans bytes: option letters are ASCII, and non-ASCII bytes (Chinese text around a
// C-Eval answer) never join a letter into a word.
#include "data/benchmark.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {

const char* const kAnswerLead = "The correct answer is";

namespace {

constexpr int kMaxChoices = 26;

// ---- reading ------------------------------------------------------------------------------------

std::string file_stem(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = base.find_last_of('.');
  if (dot != std::string::npos && dot > 0) base = base.substr(0, dot);
  return base;
}

bool is_blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// One line -> one item; throws c2c::Error with the reason (the caller adds path and line).
McItem parse_item(const std::string& text, const std::string& stem, int64_t line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("bad JSON (", e.what(), ")");
  }
  C2C_CHECK(j.is_object(), "expected a JSON object, got ", j.type_name());
  const auto present = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };

  McItem item;
  item.line = line;
  if (present("id")) {
    const auto& v = j["id"];
    if (v.is_string()) item.id = v.get<std::string>();
    else if (v.is_number_integer()) item.id = v.dump();
    else fail("\"id\" must be a string or an integer, got ", v.type_name());
    C2C_CHECK(!item.id.empty(), "\"id\" is empty");
  } else {
    item.id = stem + ":" + std::to_string(line);
  }
  item.subject = "all";
  if (present("subject")) {
    C2C_CHECK(j["subject"].is_string(), "\"subject\" must be a string, got ", j["subject"].type_name());
    item.subject = j["subject"].get<std::string>();
    C2C_CHECK(!item.subject.empty(), "\"subject\" is empty (leave it out for \"all\")");
  }

  C2C_CHECK(present("question"), "\"question\" is missing");
  C2C_CHECK(j["question"].is_string(), "\"question\" must be a string, got ", j["question"].type_name());
  item.question = j["question"].get<std::string>();
  C2C_CHECK(!is_blank(item.question), "\"question\" is empty");
  if (present("entity")) {
    C2C_CHECK(j["entity"].is_string(), "\"entity\" must be a string, got ", j["entity"].type_name());
    item.entity = j["entity"].get<std::string>();
    C2C_CHECK(!item.entity.empty() && item.question.find(item.entity) != std::string::npos, "\"entity\" \"",
              item.entity, "\" does not occur in the question (leave it out when the question names none)");
  }

  C2C_CHECK(present("choices"), "\"choices\" is missing");
  const auto& choices = j["choices"];
  C2C_CHECK(choices.is_array(), "\"choices\" must be an array of strings, got ", choices.type_name());
  C2C_CHECK(choices.size() >= 2 && choices.size() <= static_cast<size_t>(kMaxChoices), "\"choices\" has ",
            choices.size(), " option(s); need 2..", kMaxChoices);
  for (size_t i = 0; i < choices.size(); ++i) {
    C2C_CHECK(choices[i].is_string(), "\"choices\"[", i, "] must be a string, got ", choices[i].type_name());
    item.choices.push_back(choices[i].get<std::string>());
    C2C_CHECK(!is_blank(item.choices.back()), "\"choices\"[", i, "] (", choice_letter(static_cast<int>(i)),
              ") is empty");
  }

  C2C_CHECK(present("answer"), "\"answer\" is missing");
  const auto& a = j["answer"];
  const int n = static_cast<int>(item.choices.size());
  const std::string range = "A.." + choice_letter(n - 1) + " or 0.." + std::to_string(n - 1);
  if (a.is_string()) {
    const std::string s = a.get<std::string>();
    C2C_CHECK(s.size() == 1 && std::isalpha(static_cast<unsigned char>(s[0])), "\"answer\" \"", s,
              "\" is not a letter; give ", range);
    item.answer = std::toupper(static_cast<unsigned char>(s[0])) - 'A';
    C2C_CHECK(item.answer < n, "\"answer\" \"", s, "\" is outside the ", n, " choices (", range, ")");
  } else if (a.is_number_integer()) {
    const int64_t v = a.get<int64_t>();
    C2C_CHECK(v >= 0 && v < n, "\"answer\" ", v, " is outside the ", n, " choices (", range, ")");
    item.answer = static_cast<int>(v);
  } else {
    fail("\"answer\" must be a letter or a 0-based integer index, got ", a.type_name(), " ", a.dump());
  }
  return item;
}

// ---- answer extraction --------------------------------------------------------------------------

bool is_word(unsigned char c) { return c < 0x80 && std::isalnum(c); }
bool is_alpha(unsigned char c) { return c < 0x80 && std::isalpha(c); }
bool is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }

unsigned char at(const std::string& t, int64_t i) {
  return i >= 0 && i < static_cast<int64_t>(t.size()) ? static_cast<unsigned char>(t[i]) : 0;
}

bool starts_with_at(const std::string& t, size_t p, const std::string& s) { return t.compare(p, s.size(), s) == 0; }

// Length of a word joiner (apostrophe, hyphen, typographic apostrophe) starting at p, else 0.
size_t joiner_at(const std::string& t, size_t p) {
  if (at(t, p) == '\'' || at(t, p) == '-') return 1;
  if (starts_with_at(t, p, "\xE2\x80\x99")) return 3;  // U+2019
  return 0;
}

// The letter at p is a word of its own: "B", "(B)", "答案B", not "Based", "I'm", "B-12", "U.S.".
bool is_standalone(const std::string& t, size_t p) {
  const int64_t i = static_cast<int64_t>(p);
  if (is_word(at(t, i - 1)) || is_word(at(t, i + 1))) return false;
  const size_t j = joiner_at(t, p + 1);
  if (j > 0 && is_word(at(t, i + 1 + j))) return false;
  if ((at(t, i - 1) == '\'' || at(t, i - 1) == '-') && is_word(at(t, i - 2))) return false;
  if (i >= 4 && t.compare(p - 3, 3, "\xE2\x80\x99") == 0 && is_word(at(t, i - 4))) return false;
  if (at(t, i + 1) == '.' && is_alpha(at(t, i + 2))) return false;  // "U.S", "e.g"
  if (at(t, i - 1) == '.' && is_alpha(at(t, i - 2))) return false;  // "U.S"
  return true;
}

// The letter at p is followed by a space and a word ("a mammal", "I think", "A good").
bool starts_phrase(const std::string& t, size_t p) {
  const int64_t i = static_cast<int64_t>(p);
  return at(t, i + 1) == ' ' && is_alpha(at(t, i + 2));
}

std::string lower_ascii(const std::string& s) {
  std::string out = s;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Phrases after which the answer letter comes (matched on the lowercased text).
const char* const kLeads[] = {"answer is",   "answer:",      "answer would be", "answer should be",
                              "answer will be", "answer -",  "option is",       "choice is",
                              "\xE7\xAD\x94\xE6\xA1\x88\xE6\x98\xAF",           // 答案是
                              "\xE7\xAD\x94\xE6\xA1\x88\xE4\xB8\xBA",           // 答案为
                              "\xE7\xAD\x94\xE6\xA1\x88\xEF\xBC\x9A",           // 答案：
                              "\xE7\xAD\x94\xE6\xA1\x88:"};                     // 答案:
// Skipped between a lead and its letter.
const char* const kFillers[] = {" ", "\t", "\n", "\r", "*", "_", ":", "(", "[", "{", "\"", "'", "`", "$",
                                "\\boxed{", "\\text{", "\\textbf{", "\\mathrm{",
                                "\xEF\xBC\x88",   // （
                                "\xE3\x80\x90",   // 【
                                "\xE2\x80\x9C",   // “
                                "\xEF\xBC\x9A",   // ：
                                "option", "choice", "letter"};

// The letter right after the lead ending at p, or -1.
int letter_after_lead(const std::string& t, const std::string& lower, size_t p, int num_choices) {
  for (bool moved = true; moved && p < t.size();) {
    moved = false;
    for (const char* f : kFillers) {
      const std::string s = f;
      if (!starts_with_at(lower, p, s)) continue;
      if (s.size() > 1 && is_alpha(static_cast<unsigned char>(s[0])) && is_word(at(t, p + s.size()))) continue;
      p += s.size();
      moved = true;
      break;
    }
  }
  const unsigned char c = at(t, p);
  if (!is_alpha(c) || !is_standalone(t, p)) return -1;
  const int idx = std::toupper(c) - 'A';
  if (idx >= num_choices) return -1;
  if (!is_upper(c) && starts_phrase(t, p)) return -1;  // "the answer is a mammal"
  return idx;
}

// A lowercase letter marked as an option: "(b)", "[b]", "{b}", "*b*", "b)" starting a word, or the
// first word of the reply when no word follows ("b.", "c\n\nExplanation").
bool marked_lowercase(const std::string& t, size_t p) {
  const int64_t i = static_cast<int64_t>(p);
  const unsigned char prev = at(t, i - 1), next = at(t, i + 1);
  if ((prev == '(' && next == ')') || (prev == '[' && next == ']') || (prev == '{' && next == '}') ||
      (prev == '*' && next == '*'))
    return true;
  if (next == ')' && (i == 0 || std::isspace(prev))) return true;
  for (int64_t k = 0; k < i; ++k) {
    const unsigned char c = at(t, k);
    if (!(std::isspace(c) || c == '*' || c == '(' || c == '[' || c == '"' || c == '\'')) return false;
  }
  return !starts_phrase(t, p);
}

}  // namespace

McFile load_mc_jsonl(const std::string& path) {
  C2C_CHECK(!is_directory(path), "benchmark file ", path,
            " is a folder\nHINT: give one .jsonl file (scripts/convert_benchmarks.py writes them)");
  std::ifstream in(path, std::ios::binary);
  C2C_CHECK(in.good(), "cannot open benchmark file ", path,
            "\nHINT: check the path; scripts/convert_benchmarks.py converts the published benchmarks "
            "to this JSON Lines format");
  McFile out;
  out.path = path;
  const std::string stem = file_stem(path);
  std::set<std::string> ids;
  std::string text;
  for (int64_t line = 1; std::getline(in, text); ++line) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (line == 1 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);  // UTF-8 BOM
    if (is_blank(text)) continue;
    try {
      McItem item = parse_item(text, stem, line);
      C2C_CHECK(ids.insert(item.id).second, "\"id\" \"", item.id, "\" repeats an earlier line's id");
      out.items.push_back(std::move(item));
    } catch (const Error& e) {
      out.errors.push_back(str(path, ":", line, ": ", e.what()));
    } catch (const nlohmann::json::exception& e) {
      out.errors.push_back(str(path, ":", line, ": ", e.what()));
    }
  }
  C2C_CHECK(!in.bad(), "error while reading benchmark file ", path);
  return out;
}

std::string choice_letter(int i) {
  C2C_ASSERT(i >= 0 && i < kMaxChoices);
  return std::string(1, static_cast<char>('A' + i));
}

std::string format_mc_question(const McItem& item) {
  std::string out = item.question + "\n";
  for (size_t i = 0; i < item.choices.size(); ++i)
    out += "\n" + choice_letter(static_cast<int>(i)) + ". " + item.choices[i];
  return out;
}

std::string mc_user_prompt(const McItem& item) {
  const int n = static_cast<int>(item.choices.size());
  C2C_CHECK(n >= 2 && n <= kMaxChoices, "item ", item.id, " has ", n, " choices; need 2..", kMaxChoices);
  std::string letters;
  for (int i = 0; i < n; ++i) letters += (i == 0 ? "" : i == n - 1 ? " or " : ", ") + choice_letter(i);
  return "Answer the following multiple-choice question.\n\n" + format_mc_question(item) +
         "\n\nReply with the letter of the single correct option (" + letters + ") in the form \"" +
         kAnswerLead + " X\", with no explanation.";
}

std::string t2t_background_request(const McItem& item) {
  return "Give brief background knowledge (a few sentences) that would help answer the following "
         "question. Do not answer the question itself.\n\nQuestion: " +
         item.question;
}

int extract_answer_letter(const std::string& text, int num_choices) {
  num_choices = std::min(num_choices, kMaxChoices);
  if (num_choices <= 0) return -1;
  const std::string lower = lower_ascii(text);

  // 1. After a lead phrase: the first lead (by position) followed by a usable letter.
  std::vector<std::pair<size_t, size_t>> leads;  // (start, end)
  for (const char* lead : kLeads) {
    const std::string s = lead;
    for (size_t p = lower.find(s); p != std::string::npos; p = lower.find(s, p + 1)) leads.emplace_back(p, p + s.size());
  }
  std::sort(leads.begin(), leads.end());
  for (const auto& [start, end] : leads) {
    const int idx = letter_after_lead(text, lower, end, num_choices);
    if (idx >= 0) return idx;
  }

  // 2. The first standalone option letter.
  for (size_t p = 0; p < text.size(); ++p) {
    const unsigned char c = static_cast<unsigned char>(text[p]);
    if (!is_alpha(c) || !is_standalone(text, p)) continue;
    const int idx = std::toupper(c) - 'A';
    if (idx >= num_choices) continue;
    if (is_upper(c)) {
      // "A good choice ..." / "I think ..." are words, "A is correct" / "A and C" are options.
      if ((c == 'A' || c == 'I') && starts_phrase(text, p)) {
        const std::string rest = lower.substr(p + 2, 5);
        const bool option_verb = c == 'A' && (rest.rfind("is ", 0) == 0 || rest.rfind("and ", 0) == 0 ||
                                              rest.rfind("or ", 0) == 0 || rest == "is" || rest == "or");
        if (!option_verb) continue;
      }
      return idx;
    }
    if (marked_lowercase(text, p)) return idx;
  }
  return -1;
}

}  // namespace c2c
