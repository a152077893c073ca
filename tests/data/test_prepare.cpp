// `c2c prepare` on small fixtures (tests/fixtures/data/README.md lists what each record tests):
// counts and the line numbers of skipped records, JSON Lines and JSON array input, and the exact
// receiver positions of the loss (decoded back to the final assistant content + end-of-turn).
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "data/prepare.h"
#include "data/tokenizer.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "tests/common/test_util.h"

namespace c2c {
namespace {

std::string tokenizer_dir(const std::string& name) { return test::source_path("tests/fixtures/tokenizers/" + name); }
std::string data_fixture(const std::string& name) { return test::source_path("tests/fixtures/data/" + name); }

std::vector<PairedSample> read_all(const std::string& dir) {
  const PairedManifest m = read_paired_manifest(dir);
  std::vector<PairedSample> out;
  for (const auto& f : m.shard_files) {
    PairedShardReader r(join_path(dir, f));
    for (int64_t i = 0; i < r.num_samples(); ++i) out.push_back(r.read(i));
  }
  return out;
}

// The conversation on line `line` (1-based) of a JSON Lines file.
std::vector<ChatMessage> conversation_at_line(const std::string& path, int64_t line) {
  std::istringstream in(read_file(path));
  std::string text;
  for (int64_t i = 1; i <= line; ++i) std::getline(in, text);
  return parse_conversation(nlohmann::json::parse(text));
}

std::vector<int64_t> slice(const std::vector<int64_t>& v, int64_t b, int64_t e) {
  return std::vector<int64_t>(v.begin() + b, v.begin() + e);
}

// The loss covers exactly the final content + end-of-turn text; the prompt is the receiver's own
// rendering with the generation prompt; an identity sharer reads the prompt, fused on [0, P-1).
void check_sample(const Tokenizer& tok, const PairedSample& s, const std::vector<ChatMessage>& msgs,
                  const std::string& expected_answer) {
  const std::vector<ChatMessage> prompt(msgs.begin(), msgs.end() - 1);
  const std::string prompt_text = render_chat(tok, prompt, true, false);
  EXPECT_EQ(tok.decode(slice(s.receiver_ids, 0, s.prompt_length)), prompt_text);
  EXPECT_EQ(s.loss_start, s.prompt_length);
  EXPECT_EQ(s.loss_end, s.length());
  EXPECT_EQ(tok.decode(slice(s.receiver_ids, s.loss_start, s.loss_end)), expected_answer);
  EXPECT_EQ(tok.decode(s.receiver_ids), prompt_text + expected_answer);
}

void check_identity_sharer(const PairedSample& s) {
  ASSERT_EQ(s.sharers.size(), 1u);
  const PairedSharer& sh = s.sharers[0];
  EXPECT_EQ(sh.ids, slice(s.receiver_ids, 0, s.prompt_length));
  EXPECT_EQ(sh.mask, std::vector<uint8_t>(s.prompt_length, 1));
  ASSERT_EQ(static_cast<int64_t>(sh.slot_of.size()), s.length());
  for (int64_t p = 0; p < s.length(); ++p) EXPECT_EQ(sh.slot_of[p], p < s.prompt_length - 1 ? p : -1) << p;
}

PrepareOptions tiny_options(const std::string& input, const std::string& out) {
  PrepareOptions o;
  o.input = input;
  o.receiver_tokenizer = tokenizer_dir("tiny-bytelevel");
  o.sharer_tokenizers = {tokenizer_dir("tiny-bytelevel")};
  o.alignment = "identity";
  o.max_length = 256;
  o.shard_size = 2;
  o.out_dir = out;
  o.progress_seconds = 0;
  return o;
}

TEST(Prepare, JsonLinesCountsReasonsAndLoss) {
  const std::string out = test::temp_dir("prepare_jsonl") + "/nested/out";
  const std::string input = data_fixture("conversations.jsonl");
  std::ostringstream log;
  const PrepareReport r = prepare_paired_dataset(tiny_options(input, out), log);
  EXPECT_EQ(r.records, 9);
  EXPECT_EQ(r.written, 4);
  EXPECT_EQ(r.skipped_too_long, 1);
  EXPECT_EQ(r.skipped_malformed, 4);
  ASSERT_EQ(r.malformed_reasons.size(), 4u);
  EXPECT_EQ(r.malformed_reasons[0].rfind("line 3: bad JSON", 0), 0u) << r.malformed_reasons[0];
  EXPECT_EQ(r.malformed_reasons[1].rfind("line 5: message 0 has unknown role 'robot'", 0), 0u) << r.malformed_reasons[1];
  EXPECT_EQ(r.malformed_reasons[2], "line 6: empty record");
  EXPECT_EQ(r.malformed_reasons[3].rfind("line 7: the last message is a 'user' turn", 0), 0u) << r.malformed_reasons[3];
  const std::string summary = r.summary();
  EXPECT_NE(summary.find("4 samples written, 1 skipped as too long, 4 skipped as malformed"), std::string::npos) << summary;
  EXPECT_NE(summary.find("line 5"), std::string::npos) << summary;

  const PairedManifest m = read_paired_manifest(out);
  EXPECT_EQ(m.num_samples, 4);
  EXPECT_EQ(m.shard_files.size(), 2u);
  EXPECT_EQ(m.json["counts"]["skipped_too_long"], 1);
  EXPECT_EQ(m.json["counts"]["skipped_malformed"], 4);
  EXPECT_EQ(m.json["alignment"], "identity");
  EXPECT_EQ(m.json["max_length"], 256);
  // The tokenizers' fingerprints, which `c2c train` compares with the recipe's models.
  const std::string print = tokenizer_fingerprint(tokenizer_dir("tiny-bytelevel"));
  EXPECT_EQ(print.rfind("fnv1a64:", 0), 0u) << print;
  EXPECT_EQ(m.json["receiver_tokenizer_fingerprint"], print);
  EXPECT_EQ(m.json["sharer_tokenizer_fingerprints"], nlohmann::json::array({print}));
  EXPECT_NE(tokenizer_fingerprint(tokenizer_dir("tiny-llama3")), print);
  EXPECT_EQ(m.json["input_format"], "jsonl");
  EXPECT_EQ(m.json["malformed_reasons"].size(), 4u);

  const auto tok = Tokenizer::load(tokenizer_dir("tiny-bytelevel"));
  const auto samples = read_all(out);
  ASSERT_EQ(samples.size(), 4u);
  const std::vector<int64_t> lines = {1, 2, 8, 9};
  for (size_t i = 0; i < samples.size(); ++i) {
    SCOPED_TRACE("line " + std::to_string(lines[i]));
    EXPECT_EQ(samples[i].source_index, lines[i]);
    EXPECT_LE(samples[i].length(), 256);
    const auto msgs = conversation_at_line(input, lines[i]);
    check_sample(*tok, samples[i], msgs, msgs.back().content + "<|im_end|>");
    check_identity_sharer(samples[i]);
  }
  // Qwen3 with thinking disabled: the prompt ends in an empty think block.
  const std::string prompt = tok->decode(slice(samples[0].receiver_ids, 0, samples[0].prompt_length));
  EXPECT_NE(prompt.find("<|im_start|>assistant\n<think>\n\n</think>\n\n"), std::string::npos) << prompt;
}

TEST(Prepare, OutputDoesNotDependOnThreads) {
  const std::string input = data_fixture("conversations.jsonl");
  std::ostringstream log;
  PrepareOptions a = tiny_options(input, test::temp_dir("prepare_t1"));
  PrepareOptions b = tiny_options(input, test::temp_dir("prepare_t3"));
  b.threads = 3;
  b.shard_size = 100;
  prepare_paired_dataset(a, log);
  prepare_paired_dataset(b, log);
  const auto sa = read_all(a.out_dir), sb = read_all(b.out_dir);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].receiver_ids, sb[i].receiver_ids);
    EXPECT_EQ(sa[i].source_index, sb[i].source_index);
  }
}

TEST(Prepare, JsonArrayInputAndLimit) {
  const std::string input = data_fixture("conversations_array.json");
  std::ostringstream log;
  PrepareOptions o = tiny_options(input, test::temp_dir("prepare_array"));
  const PrepareReport r = prepare_paired_dataset(o, log);
  EXPECT_EQ(r.records, 3);
  EXPECT_EQ(r.written, 2);
  EXPECT_EQ(r.skipped_malformed, 1);
  ASSERT_EQ(r.malformed_reasons.size(), 1u);
  EXPECT_EQ(r.malformed_reasons[0].rfind("element 2 (line 32): the record has neither 'messages'", 0), 0u)
      << r.malformed_reasons[0];
  EXPECT_EQ(read_paired_manifest(o.out_dir).json["input_format"], "json_array");
  const auto samples = read_all(o.out_dir);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].source_index, 0);
  EXPECT_EQ(samples[1].source_index, 1);
  const auto tok = Tokenizer::load(tokenizer_dir("tiny-bytelevel"));
  const auto arr = read_json(input);
  for (size_t i = 0; i < 2; ++i) {
    const auto msgs = parse_conversation(arr[i]);
    check_sample(*tok, samples[i], msgs, msgs.back().content + "<|im_end|>");
  }

  PrepareOptions limited = tiny_options(data_fixture("conversations.jsonl"), test::temp_dir("prepare_limit"));
  limited.limit = 2;
  const PrepareReport rl = prepare_paired_dataset(limited, log);
  EXPECT_EQ(rl.records, 2);
  EXPECT_EQ(rl.written, 2);
}

TEST(Prepare, TruncatedArrayIsAnError) {
  const std::string dir = test::temp_dir("prepare_trunc");
  const std::string input = join_path(dir, "cut.json");
  write_file_atomic(input, R"([{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}, {"conv)");
  std::ostringstream log;
  try {
    prepare_paired_dataset(tiny_options(input, join_path(dir, "out")), log);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("element 1"), std::string::npos) << e.what();
  }
}

TEST(Prepare, ParseConversationForms) {
  using nlohmann::json;
  auto m = parse_conversation(json::parse(
      R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                        {"role": "assistant", "content": "c"}]})"));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].content, "ab");
  m = parse_conversation(json::parse(R"({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})"));
  EXPECT_EQ(m[0].role, "user");
  EXPECT_EQ(m[1].role, "assistant");
  EXPECT_THROW(parse_conversation(json::parse(R"({"messages": []})")), Error);
  EXPECT_THROW(parse_conversation(json::parse(R"({"messages": [{"role": "assistant", "content": "x"}]})")), Error);
  EXPECT_THROW(parse_conversation(json::parse(R"({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}]})")), Error);
  EXPECT_THROW(parse_conversation(json::parse(R"({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]})")), Error);
}

TEST(Prepare, IdentityNeedsOneTokenizer) {
  std::ostringstream log;
  PrepareOptions o = tiny_options(data_fixture("conversations.jsonl"), test::temp_dir("prepare_ident"));
  o.sharer_tokenizers = {tokenizer_dir("tiny-llama3")};
  try {
    prepare_paired_dataset(o, log);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HINT: use --alignment span"), std::string::npos) << e.what();
  }
}

TEST(Prepare, Llama3LossIsStrippedContentAndEot) {
  const auto tok = Tokenizer::load(tokenizer_dir("tiny-llama3"));
  const std::vector<ChatMessage> msgs = {{"system", "Be nice."}, {"user", "Hi there"}, {"assistant", "  Hello, friend!\n"}};
  const PairedSample s = make_paired_sample(*tok, {tok.get()}, msgs, AlignMethod::identity);
  check_sample(*tok, s, msgs, "Hello, friend!<|eot_id|>");
  check_identity_sharer(s);
}

TEST(Prepare, RealQwen3AndLlama3) {
  C2C_REQUIRE_SHARED("tokenizers/qwen3", qwen_dir);
  C2C_REQUIRE_SHARED("tokenizers/llama3", llama_dir);
  const std::vector<ChatMessage> msgs = {{"user", "What is the capital of France?"},
                                         {"assistant", "Paris is the capital of France."},
                                         {"user", "And of Italy? Answer with \u00e9l\u00e9gance."},
                                         {"assistant", "Rome \u2014 la capitale d'Italia."}};
  const auto qwen = Tokenizer::load(qwen_dir);
  const PairedSample q = make_paired_sample(*qwen, {qwen.get()}, msgs, AlignMethod::identity);
  check_sample(*qwen, q, msgs, msgs.back().content + "<|im_end|>");
  check_identity_sharer(q);
  const auto llama = Tokenizer::load(llama_dir);
  const PairedSample l = make_paired_sample(*llama, {llama.get()}, msgs, AlignMethod::identity);
  check_sample(*llama, l, msgs, msgs.back().content + "<|eot_id|>");
  EXPECT_EQ(llama->decode({l.receiver_ids.back()}), "<|eot_id|>");
  EXPECT_EQ(qwen->decode({q.receiver_ids.back()}), "<|im_end|>");
}


// A 256 MB line is skipped and reported without being read whole: the peak resident memory
// grows by far less than the line (reading it into a string alone would add 256 MB).
TEST(Prepare, AnOversizeLineIsSkippedWithBoundedMemory) {
  const std::string dir = test::temp_dir("prepare_long");
  const std::string input = dir + "/in.jsonl";
  const std::string good = R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})";
  {
    std::ofstream out(input, std::ios::binary);
    out << good << "\n{\"messages\": [{\"role\": \"user\", \"content\": \"";
    const std::string block(1 << 20, 'x');
    for (int i = 0; i < 256; ++i) out << block;
    out << "\"}]}\n" << good << "\n";
  }
  struct rusage before {};
  getrusage(RUSAGE_SELF, &before);
  std::ostringstream log;
  const PrepareReport r = prepare_paired_dataset(tiny_options(input, dir + "/out"), log);
  struct rusage after {};
  getrusage(RUSAGE_SELF, &after);
  EXPECT_EQ(r.records, 3);
  EXPECT_EQ(r.written, 2);
  EXPECT_EQ(r.skipped_too_long, 1);
  ASSERT_EQ(r.oversize_records.size(), 1u);
  EXPECT_EQ(r.oversize_records[0].rfind("line 2: 268435", 0), 0u) << r.oversize_records[0];
  EXPECT_NE(r.summary().find("over the byte limit"), std::string::npos) << r.summary();
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "KiB of peak RSS added";
}

}  // namespace
}  // namespace c2c
