// The data side of `c2c eval`: multiple-choice benchmark files, the zero-shot prompts of
// DESIGN.md section 4 (direct MC and the T2T background request) and the answer-letter extraction
// from generated text. No model code here: the evaluator renders these strings with each model's
// chat template.
//
// Benchmark format: JSON Lines, one object per line (blank lines are allowed):
//   {"id": "arc/Mercury_7175875", "subject": "physics", "question": "...",
//    "choices": ["...", "...", "...", "..."], "answer": "B"}
// "question" (non-empty string), "choices" (2..26 non-empty strings) and "answer" (a letter "A".."Z"
// or a 0-based integer index below the number of choices) are required; "id" (string or integer,
// default "<file stem>:<line>"), "subject" (default "all") and "entity" (the name the question
// is about, written in it; the toy world's files give it, `c2c probe-kv` probes its slot) are
// optional, and null reads as absent. Other keys are ignored. scripts/convert_benchmarks.py writes this format from the
// published MMLU-Redux, OpenBookQA, ARC-Challenge and C-Eval sets; tests/fixtures/data/
// mc_example.jsonl is an example.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace c2c {

// One multiple-choice item of a benchmark file (JSON Lines, one object per line).
struct McItem {
  std::string id;                    // "id" (optional in the file; default "<file stem>:<line>")
  std::string subject;               // "subject" (optional; default "all")
  std::string entity;                // "entity" (optional; "" when absent): must occur in the question
  std::string question;              // "question" (required, non-empty string)
  std::vector<std::string> choices;  // "choices" (required, 2..26 non-empty strings)
  int answer = -1;                   // "answer": a letter "A".."Z" or a 0-based integer index; must be < choices.size()
  int64_t line = 0;                  // 1-based line number in the file
};

struct McFile {
  std::string path;
  std::vector<McItem> items;
  std::vector<std::string> errors;   // each "PATH:LINE: message" for a line that could not be used
};

// Reads a benchmark file. Never silently drops a line: a broken JSON line, a missing or mistyped
// field, an answer outside the options, a repeated id are each recorded in `errors` with the line
// number, and the line is left out (blank lines are fine). A missing/unreadable file throws
// (c2c::fail) naming the path. An empty file gives no items and no errors; the caller decides.
McFile load_mc_jsonl(const std::string& path);

// Letter for choice i ("A" + i).
std::string choice_letter(int i);

// The question with lettered options, one per line: "QUESTION\n\nA. ...\nB. ...".
std::string format_mc_question(const McItem& item);

// The user turn of the zero-shot MC prompt (DESIGN.md section 4); the assistant reply then starts
// with kAnswerLead = "The correct answer is".
std::string mc_user_prompt(const McItem& item);
extern const char* const kAnswerLead;

// T2T (DESIGN.md section 4): the request to the sharer for brief background on the question,
// WITHOUT the options.
std::string t2t_background_request(const McItem& item);

// The answer letter's index extracted from generated text, or -1 when there is none.
// 1. After a lead phrase ("answer is", "answer:", "answer would be", "option is", "答案是", ...,
//    case-insensitive), skipping spaces, markup and "(" / "**" / "option", the first standalone
//    letter below num_choices (either case; a lowercase one not followed by a word, so
//    "the answer is a mammal" does not count).
// 2. Otherwise the first standalone option letter in the text: an uppercase letter (not "A"/"I"
//    starting a sentence: "A good ..." / "I think ..."), or a lowercase one marked as an option:
//    "(b)", "b)", "**b**", "{b}", or the whole reply.
// "Standalone" means no ASCII letter or digit on either side (an apostrophe or hyphen between
// letters joins a word; "U.S." is an abbreviation), so "Based on" is neither B nor A; non-ASCII
// neighbours do not join ("答案B" is B). Letters at or beyond num_choices are ignored.
int extract_answer_letter(const std::string& text, int num_choices);

}  // namespace c2c
