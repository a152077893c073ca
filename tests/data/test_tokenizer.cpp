// Tokenizers against Hugging Face `tokenizers`: ids, offsets and decodes of a varied corpus
// (goldens from scripts/make_tokenizer_goldens.py), for the committed tiny fixtures and the real
// Qwen3 / Llama-3 / Llama-2 files in ../shared (skipped when absent); plus errors and speed.
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "data/tokenizer.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "tests/common/test_util.h"

namespace c2c {
namespace {

using nlohmann::json;

json golden(const std::string& name) {
  return read_json(test::source_path("tests/fixtures/tokenizers/goldens/" + name + ".json"));
}

std::string fixture(const std::string& name) { return test::source_path("tests/fixtures/tokenizers/" + name); }

// Compares every corpus case of a golden file; reports the first differing token per case.
void check_goldens(const Tokenizer& tok, const json& g) {
  EXPECT_EQ(tok.vocab_size(), g["vocab_size"].get<int64_t>());
  const auto opt = [](const json& v) { return v.is_null() ? std::optional<int64_t>() : v.get<int64_t>(); };
  EXPECT_EQ(tok.bos_id(), opt(g["bos_id"]));
  EXPECT_EQ(tok.eos_id(), opt(g["eos_id"]));
  EXPECT_EQ(tok.pad_id(), opt(g["pad_id"]));
  for (const json& id : g["special_ids"]) EXPECT_TRUE(tok.is_special(id.get<int64_t>())) << id;
  ASSERT_GT(g["cases"].size(), 20u);
  for (const json& c : g["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const bool add = c["add_special_tokens"].get<bool>();
    SCOPED_TRACE("text '" + text.substr(0, 60) + "' add_special_tokens=" + std::to_string(add));
    const Encoding enc = tok.encode(text, add);
    const auto ids = c["ids"].get<std::vector<int64_t>>();
    EXPECT_EQ(enc.ids, ids);
    ASSERT_EQ(enc.offsets.size(), enc.ids.size());
    const auto& offs = c["offsets"];
    for (size_t i = 0; i < std::min(enc.offsets.size(), offs.size()); ++i) {
      const std::pair<int64_t, int64_t> want(offs[i][0].get<int64_t>(), offs[i][1].get<int64_t>());
      if (enc.offsets[i] != want) {
        ADD_FAILURE() << "offset of token " << i << " ('" << tok.id_to_token(enc.ids[i]) << "'): got ["
                      << enc.offsets[i].first << "," << enc.offsets[i].second << "), want [" << want.first
                      << "," << want.second << ")";
        break;
      }
    }
    EXPECT_EQ(tok.decode(ids, false), c["decode"].get<std::string>());
    EXPECT_EQ(tok.decode(ids, true), c["decode_skip_special"].get<std::string>());
  }
}

TEST(Tokenizer, TinyByteLevelMatchesHuggingFace) {
  const auto tok = Tokenizer::load(fixture("tiny-bytelevel"));
  check_goldens(*tok, golden("tiny-bytelevel"));
  EXPECT_EQ(tok->chat_format(), "chatml");
  EXPECT_EQ(tok->token_to_id("<|im_start|>"), 501);
  EXPECT_EQ(tok->id_to_token(501), "<|im_start|>");
  EXPECT_FALSE(tok->is_special(*tok->token_to_id("<think>")));  // added, not special
}

TEST(Tokenizer, TinyQwen25MatchesHuggingFace) {
  check_goldens(*Tokenizer::load(fixture("tiny-qwen25")), golden("tiny-qwen25"));
}

TEST(Tokenizer, TinyLlama3MatchesHuggingFace) {
  const auto tok = Tokenizer::load(fixture("tiny-llama3"));
  check_goldens(*tok, golden("tiny-llama3"));
  EXPECT_EQ(tok->chat_format(), "llama3");
  // The post-processor adds <|begin_of_text|> with the empty span.
  const Encoding e = tok->encode("Hi", true);
  ASSERT_FALSE(e.ids.empty());
  EXPECT_EQ(e.ids[0], *tok->bos_id());
  EXPECT_EQ(e.offsets[0], (std::pair<int64_t, int64_t>(0, 0)));
}

TEST(Tokenizer, Qwen3MatchesHuggingFace) {
  C2C_REQUIRE_SHARED("tokenizers/qwen3", dir);
  const auto tok = Tokenizer::load(dir);
  check_goldens(*tok, golden("qwen3"));
  EXPECT_EQ(tok->chat_format(), "chatml");
  EXPECT_EQ(tok->vocab_size(), 151669);
  EXPECT_FALSE(tok->bos_id().has_value());
  EXPECT_EQ(tok->token_to_id("<|im_end|>"), 151645);
}

TEST(Tokenizer, Llama3MatchesHuggingFace) {
  C2C_REQUIRE_SHARED("tokenizers/llama3", dir);
  const auto tok = Tokenizer::load(dir);
  check_goldens(*tok, golden("llama3"));
  EXPECT_EQ(tok->chat_format(), "llama3");
  EXPECT_EQ(tok->token_to_id("<|eot_id|>"), 128009);
}

TEST(Tokenizer, Llama2MatchesHuggingFace) {
  C2C_REQUIRE_SHARED("tokenizers/llama2", dir);
  const auto tok = Tokenizer::load(dir);
  check_goldens(*tok, golden("llama2"));
  EXPECT_EQ(tok->chat_format(), "llama2");  // no template: the Llama-2 default
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->id_to_token(13), "<0x0A>");
}

TEST(Tokenizer, InvalidUtf8IsReadAsReplacementCharacter) {
  const auto tok = Tokenizer::load(fixture("tiny-bytelevel"));
  const std::string bad = std::string("ab\xFF") + "c\xE2\x82" + "d";
  const Encoding e = tok->encode(bad);
  EXPECT_EQ(tok->decode(e.ids), "ab\xEF\xBF\xBD" "c\xEF\xBF\xBD" "d");
  ASSERT_FALSE(e.offsets.empty());
  EXPECT_EQ(e.offsets.back().second, 6);  // a b U+FFFD c U+FFFD d
}

TEST(Tokenizer, DecodeSkipsUnknownIds) {
  const auto tok = Tokenizer::load(fixture("tiny-bytelevel"));
  const Encoding e = tok->encode("hello");
  std::vector<int64_t> ids = e.ids;
  ids.push_back(-5);
  ids.push_back(1 << 30);
  EXPECT_EQ(tok->decode(ids), "hello");
  EXPECT_EQ(tok->id_to_token(-1), "");
  EXPECT_FALSE(tok->token_to_id("no such token").has_value());
}

// A few KB of text must take milliseconds (merge ranks in a hash map, a cache per word).
TEST(Tokenizer, EncodesKilobytesInMilliseconds) {
  std::string dir = fixture("tiny-bytelevel");
  const std::string shared = test::shared_dir();
  if (!shared.empty() && access((shared + "/tokenizers/qwen3/tokenizer.json").c_str(), R_OK) == 0)
    dir = shared + "/tokenizers/qwen3";
  const auto tok = Tokenizer::load(dir);
  std::string text;
  for (int i = 0; text.size() < 8000; ++i)
    text += "Paragraph " + std::to_string(i) + ": the receiver reads the fused cache, 中文 😀, and answers.\n";
  tok->encode(text);  // warm the word cache
  const auto t0 = std::chrono::steady_clock::now();
  const Encoding e = tok->encode(text + " cold words: zyzzyva quixotic");
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(e.ids.size(), 1000u);
  EXPECT_EQ(tok->decode(e.ids), text + " cold words: zyzzyva quixotic");
  EXPECT_LT(ms, 200.0) << "encoding 8 KB took " << ms << " ms with " << dir;
  // A long run without pre-tokenizer splits stays fast (heap-based merges).
  const std::string spaces(20000, ' ');
  const auto t1 = std::chrono::steady_clock::now();
  tok->encode("x" + spaces + "y");
  const double ms2 = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  EXPECT_LT(ms2, 500.0);
}

// ---- errors ---------------------------------------------------------------------------------

std::string error_of(const std::string& dir) {
  try {
    Tokenizer::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string tiny_json() { return read_file(fixture("tiny-bytelevel") + "/tokenizer.json"); }

std::string folder_with(const std::string& tag, const std::string& tokenizer_json,
                        const std::string& config = "{}") {
  const std::string dir = test::temp_dir(tag);
  std::ofstream(dir + "/tokenizer.json") << tokenizer_json;
  std::ofstream(dir + "/tokenizer_config.json") << config;
  return dir;
}

TEST(TokenizerErrors, MissingFolderNamesIt) {
  const std::string msg = error_of("/nonexistent/tok_dir");
  EXPECT_NE(msg.find("/nonexistent/tok_dir"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
}

TEST(TokenizerErrors, MissingTokenizerJsonNamesIt) {
  const std::string dir = test::temp_dir("tok_empty");
  const std::string msg = error_of(dir);
  EXPECT_NE(msg.find(dir + "/tokenizer.json"), std::string::npos) << msg;
}

TEST(TokenizerErrors, MalformedJsonNamesTheFile) {
  const std::string dir = folder_with("tok_bad", "{\"model\": {");
  const std::string msg = error_of(dir);
  EXPECT_NE(msg.find(dir + "/tokenizer.json"), std::string::npos) << msg;
}

TEST(TokenizerErrors, MalformedConfigNamesTheFile) {
  const std::string dir = folder_with("tok_badcfg", tiny_json(), "[1, 2");
  const std::string msg = error_of(dir);
  EXPECT_NE(msg.find(dir + "/tokenizer_config.json"), std::string::npos) << msg;
}

TEST(TokenizerErrors, UnsupportedModelTypeIsNamed) {
  json j = json::parse(tiny_json());
  j["model"]["type"] = "WordPiece";
  const std::string msg = error_of(folder_with("tok_wp", j.dump()));
  EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
}

TEST(TokenizerErrors, MissingVocabAndBadMergesAreNamed) {
  json j = json::parse(tiny_json());
  j["model"].erase("vocab");
  std::string msg = error_of(folder_with("tok_novocab", j.dump()));
  EXPECT_NE(msg.find("model.vocab"), std::string::npos) << msg;

  j = json::parse(tiny_json());
  j["model"]["merges"].push_back(json::array({"qqqq", "zzzz"}));
  msg = error_of(folder_with("tok_badmerge", j.dump()));
  EXPECT_NE(msg.find("model.merges["), std::string::npos) << msg;
  EXPECT_NE(msg.find("qqqq"), std::string::npos) << msg;

  j = json::parse(tiny_json());
  j["model"]["merges"][0] = 42;
  msg = error_of(folder_with("tok_badmerge2", j.dump()));
  EXPECT_NE(msg.find("model.merges[0]"), std::string::npos) << msg;
}

TEST(TokenizerErrors, UnsupportedPipelinePartsAreNamed) {
  json j = json::parse(tiny_json());
  j["normalizer"] = {{"type", "NFKD"}};
  std::string msg = error_of(folder_with("tok_nfkd", j.dump()));
  EXPECT_NE(msg.find("NFKD"), std::string::npos) << msg;

  j = json::parse(tiny_json());
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  msg = error_of(folder_with("tok_regex", j.dump()));
  EXPECT_NE(msg.find("(unclosed"), std::string::npos) << msg;

  j = json::parse(tiny_json());
  j["added_tokens"][0]["id"] = "seven";
  msg = error_of(folder_with("tok_added", j.dump()));
  EXPECT_NE(msg.find("added_tokens"), std::string::npos) << msg;
}

}  // namespace
}  // namespace c2c
