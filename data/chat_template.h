// Chat rendering without a Jinja engine: the templates of Qwen2.5/Qwen3 (ChatML), Llama-3.x,
// Llama-2 and a plain "role: content" format, reproduced for plain text messages (no tools).
// The variant is read from the tokenizer_config's chat_template text (see chat_template.cpp).
#pragma once
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace c2c {

struct ChatMessage {
  std::string role, content;
};

// One piece of a rendered chat: template text (message_index -1, or the index of the message
// whose header/footer it is, with is_content false) or text taken from a message's content.
struct ChatSection {
  std::string text;
  int message_index = -1;
  bool is_content = false;
};

// Options beyond the common ones. date_string: the "Today Date" of Llama-3.1+ templates; empty
// means the template's default ("26 Jul 2024", or today's date where the template asks
// strftime_now, as transformers renders it).
struct ChatOptions {
  bool add_generation_prompt = false;
  bool enable_thinking = false;
  std::string date_string;
};

// The sections whose concatenated text equals render_chat's output.
std::vector<ChatSection> render_chat_sections(const Tokenizer& tok,
                                              const std::vector<ChatMessage>& messages,
                                              const ChatOptions& options);

std::string render_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, bool enable_thinking = false);

}  // namespace c2c
