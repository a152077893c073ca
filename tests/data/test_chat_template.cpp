// Chat rendering against transformers' apply_chat_template (strings recorded by
// scripts/make_tokenizer_goldens.py; Qwen3 with enable_thinking=False unless a case says
// otherwise), the section split used for token alignment, and the template variants.
#include <fstream>

#include "data/chat_template.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "tests/common/test_util.h"

namespace c2c {
namespace {

using nlohmann::json;

std::string fixture(const std::string& name) { return test::source_path("tests/fixtures/tokenizers/" + name); }

std::vector<ChatMessage> messages_of(const json& c) {
  std::vector<ChatMessage> out;
  for (const json& m : c["messages"]) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  return out;
}

void check_chats(const Tokenizer& tok, const std::string& golden_name) {
  const json g = read_json(test::source_path("tests/fixtures/tokenizers/goldens/" + golden_name + ".json"));
  int checked = 0;
  for (const json& c : g["chats"]) {
    if (c["expected"].is_null()) continue;
    const auto msgs = messages_of(c);
    ChatOptions opt;
    opt.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    opt.enable_thinking = c["enable_thinking"].get<bool>();
    SCOPED_TRACE(golden_name + " chat " + c["messages"].dump());
    const std::string got = render_chat(tok, msgs, opt.add_generation_prompt, opt.enable_thinking);
    EXPECT_EQ(got, c["expected"].get<std::string>());

    // Sections concatenate to the same string; content sections come from the messages.
    std::string joined;
    for (const ChatSection& s : render_chat_sections(tok, msgs, opt)) {
      joined += s.text;
      EXPECT_FALSE(s.text.empty());
      if (s.is_content) {
        ASSERT_GE(s.message_index, 0);
        ASSERT_LT(s.message_index, static_cast<int>(msgs.size()));
        EXPECT_NE(msgs[s.message_index].content.find(s.text), std::string::npos)
            << "section '" << s.text << "' is not in message " << s.message_index;
      }
    }
    EXPECT_EQ(joined, got);
    // The rendered chat encodes as `tokenizers` does, template tokens recognised as added tokens.
    EXPECT_EQ(tok.encode(got, false).ids, c["expected_ids"].get<std::vector<int64_t>>());
    ++checked;
  }
  EXPECT_GE(checked, 7);
}

TEST(ChatTemplate, TinyQwen3TemplateMatchesTransformers) {
  check_chats(*Tokenizer::load(fixture("tiny-bytelevel")), "tiny-bytelevel");
}

TEST(ChatTemplate, TinyQwen25DefaultSystemPromptMatchesTransformers) {
  const auto tok = Tokenizer::load(fixture("tiny-qwen25"));
  check_chats(*tok, "tiny-qwen25");
  EXPECT_EQ(render_chat(*tok, {{"user", "x"}}, false),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
            "<|im_end|>\n<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplate, TinyLlama31MatchesTransformers) {
  const auto tok = Tokenizer::load(fixture("tiny-llama3"));
  check_chats(*tok, "tiny-llama3");
  ChatOptions opt;
  opt.date_string = "01 Jan 2026";
  std::string s;
  for (const auto& sec : render_chat_sections(*tok, {{"user", "hi"}}, opt)) s += sec.text;
  EXPECT_NE(s.find("Today Date: 01 Jan 2026\n\n"), std::string::npos) << s;
}

TEST(ChatTemplate, Qwen3MatchesTransformers) {
  C2C_REQUIRE_SHARED("tokenizers/qwen3", dir);
  check_chats(*Tokenizer::load(dir), "qwen3");
}

TEST(ChatTemplate, Llama3MatchesTransformers) {
  C2C_REQUIRE_SHARED("tokenizers/llama3", dir);
  check_chats(*Tokenizer::load(dir), "llama3");
}

TEST(ChatTemplate, Llama2MatchesTransformers) {
  C2C_REQUIRE_SHARED("tokenizers/llama2", dir);
  const auto tok = Tokenizer::load(dir);
  check_chats(*tok, "llama2");
  try {
    render_chat(*tok, {{"user", "a"}, {"user", "b"}}, true);
    ADD_FAILURE() << "roles that do not alternate must be rejected";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("alternating"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, Qwen3ThinkingBlockOnlyWhenDisabled) {
  const auto tok = Tokenizer::load(fixture("tiny-bytelevel"));
  const std::vector<ChatMessage> msgs{{"user", "q"}};
  EXPECT_EQ(render_chat(*tok, msgs, true, false),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(render_chat(*tok, msgs, true, true), "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n");
  // A final assistant turn gets the (empty) think block; earlier ones lose theirs.
  const std::vector<ChatMessage> train{{"user", "q"}, {"assistant", "<think>\nr\n</think>\n\na"},
                                       {"user", "q2"}, {"assistant", "a2"}};
  EXPECT_EQ(render_chat(*tok, train, false),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
            "<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na2<|im_end|>\n");
}

TEST(ChatTemplate, PlainFormatWithoutTemplate) {
  const std::string dir = test::temp_dir("chat_plain");
  std::ofstream(dir + "/tokenizer.json") << read_file(fixture("tiny-bytelevel") + "/tokenizer.json");
  std::ofstream(dir + "/tokenizer_config.json") << "{\"eos_token\": \"<|endoftext|>\"}";
  const auto tok = Tokenizer::load(dir);
  EXPECT_EQ(tok->chat_format(), "plain");
  EXPECT_EQ(render_chat(*tok, {{"system", "s"}, {"user", "u"}}, true), "system: s\nuser: u\nassistant: ");
  ChatOptions opt;
  const auto secs = render_chat_sections(*tok, {{"user", "u"}}, opt);
  ASSERT_EQ(secs.size(), 3u);
  EXPECT_TRUE(secs[1].is_content);
  EXPECT_EQ(secs[1].text, "u");
  EXPECT_EQ(secs[1].message_index, 0);
}

TEST(ChatTemplate, UnknownRoleIsAnError) {
  const auto tok = Tokenizer::load(fixture("tiny-bytelevel"));
  EXPECT_THROW(render_chat(*tok, {{"narrator", "x"}}, false), Error);
}

}  // namespace
}  // namespace c2c
