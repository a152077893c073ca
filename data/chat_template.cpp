// Chat templates rendered in C++ for the families we train on; the expected strings come from
// transformers' apply_chat_template (scripts/make_tokenizer_goldens.py). What varies between
// releases of one family is read from the template text:
//   chatml: Qwen3 (reasoning blocks, enable_thinking) when the template mentions them; a default
//           system prompt (Qwen2.5) when the template writes a literal one.
//   llama3: Llama-3.0 (plain headers; the assistant header is added always when the template does
//           not test add_generation_prompt); Llama-3.1+ ("Cutting Knowledge Date" system block).
//   llama2: [INST] ... [/INST] with <<SYS>> folded into the first user turn.
// Tools and tool calls are left out (plain text messages only).
#include "data/chat_template.h"

#include <ctime>
#include <regex>

#include "modules/common/error.h"

namespace c2c {
namespace {

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// Python's str.isspace() for one code point given as UTF-8 at s[i]; sets the byte length.
bool py_space_at(const std::string& s, size_t i, size_t& len) {
  const auto u = [&](size_t k) { return i + k < s.size() ? static_cast<uint8_t>(s[i + k]) : 0; };
  const uint8_t c = u(0);
  len = 1;
  if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return true;
  if (c == 0xC2 && (u(1) == 0x85 || u(1) == 0xA0)) return len = 2, true;
  if (c == 0xE1 && u(1) == 0x9A && u(2) == 0x80) return len = 3, true;  // U+1680
  if (c == 0xE2 && u(1) == 0x80 && ((u(2) >= 0x80 && u(2) <= 0x8A) || u(2) == 0xA8 || u(2) == 0xA9 || u(2) == 0xAF))
    return len = 3, true;  // U+2000-200A, 2028, 2029, 202F
  if (c == 0xE2 && u(1) == 0x81 && u(2) == 0x9F) return len = 3, true;  // U+205F
  if (c == 0xE3 && u(1) == 0x80 && u(2) == 0x80) return len = 3, true;  // U+3000
  return false;
}

size_t py_lstrip_count(const std::string& s) {
  size_t i = 0, len = 0;
  while (i < s.size() && py_space_at(s, i, len)) i += len;
  return i;
}

// Byte index where trailing Python whitespace starts.
size_t py_rstrip_pos(const std::string& s) {
  size_t end = 0, i = 0, len = 0;
  while (i < s.size()) {
    if (!py_space_at(s, i, len)) {
      size_t k = i + 1;
      while (k < s.size() && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) ++k;
      end = k;
      i = k;
    } else {
      i += len;
    }
  }
  return end;
}

std::string py_strip(const std::string& s) {
  const size_t b = py_lstrip_count(s);
  return b >= s.size() ? std::string() : s.substr(b, py_rstrip_pos(s) - b);
}

std::string strip_chars(const std::string& s, char c, bool lead, bool trail) {
  size_t b = 0, e = s.size();
  if (lead)
    while (b < e && s[b] == c) ++b;
  if (trail)
    while (e > b && s[e - 1] == c) --e;
  return s.substr(b, e - b);
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

class Builder {
 public:
  void text(const std::string& t, int msg = -1) { add(t, msg, false); }
  void content(const std::string& t, int msg) { add(t, msg, true); }
  std::vector<ChatSection> take() { return std::move(out_); }

 private:
  void add(const std::string& t, int msg, bool is_content) {
    if (t.empty()) return;
    if (!out_.empty() && out_.back().message_index == msg && out_.back().is_content == is_content) {
      out_.back().text += t;
      return;
    }
    out_.push_back({t, msg, is_content});
  }
  std::vector<ChatSection> out_;
};

// ---- ChatML (Qwen2.5, Qwen3) ---------------------------------------------------------------------

// A literal default system prompt written in the template, e.g. Qwen2.5's
// '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n'.
std::string default_system_prompt(const std::string& tmpl) {
  static const std::regex re(R"(<\|im_start\|>system\\n([^'"+{}<\\]*)<\|im_end\|>)");
  std::smatch m;
  if (!std::regex_search(tmpl, m, re)) return "";
  return m[1].str();
}

void render_chatml(const Tokenizer& tok, const std::vector<ChatMessage>& msgs, const ChatOptions& opt,
                   Builder& b) {
  const std::string& tmpl = tok.chat_template();
  const bool reasoning = contains(tmpl, "reasoning_content");
  const bool think_switch = contains(tmpl, "enable_thinking");
  const int n = static_cast<int>(msgs.size());
  if (n > 0 && msgs[0].role == "system") {
    b.text("<|im_start|>system\n", 0);
    b.content(msgs[0].content, 0);
    b.text("<|im_end|>\n", 0);
  } else {
    const std::string def = default_system_prompt(tmpl);
    if (!def.empty()) b.text("<|im_start|>system\n" + def + "<|im_end|>\n");
  }
  // Qwen3: assistant turns after the last real user query carry a <think> block.
  int last_query = n - 1;
  for (int i = n - 1; i >= 0; --i) {
    const std::string& c = msgs[i].content;
    if (msgs[i].role == "user" && !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
      last_query = i;
      break;
    }
  }
  for (int i = 0; i < n; ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      b.text("<|im_start|>" + m.role + "\n", i);
      b.content(m.content, i);
      b.text("<|im_end|>\n", i);
    } else if (m.role == "assistant") {
      if (!reasoning) {
        b.text("<|im_start|>assistant\n", i);
        b.content(m.content, i);
        b.text("<|im_end|>\n", i);
        continue;
      }
      std::string content = m.content, thought;
      const size_t close = m.content.rfind("</think>");
      if (close != std::string::npos) {
        content = strip_chars(m.content.substr(close + 8), '\n', true, false);
        std::string before = strip_chars(m.content.substr(0, m.content.find("</think>")), '\n', false, true);
        const size_t open = before.rfind("<think>");
        thought = strip_chars(open == std::string::npos ? before : before.substr(open + 7), '\n', true, false);
      }
      if (i > last_query && (i == n - 1 || !thought.empty())) {
        b.text("<|im_start|>assistant\n<think>\n", i);
        b.content(strip_chars(thought, '\n', true, true), i);
        b.text("\n</think>\n\n", i);
        b.content(strip_chars(content, '\n', true, false), i);
      } else {
        b.text("<|im_start|>assistant\n", i);
        b.content(content, i);
      }
      b.text("<|im_end|>\n", i);
    } else if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") b.text("<|im_start|>user", i);
      b.text("\n<tool_response>\n", i);
      b.content(m.content, i);
      b.text("\n</tool_response>", i);
      if (i == n - 1 || msgs[i + 1].role != "tool") b.text("<|im_end|>\n", i);
    } else if (m.role != "system") {
      fail("chat message ", i, " has role '", m.role,
           "', which the ChatML template does not render\nHINT: use system, user, assistant or tool");
    }
  }
  if (opt.add_generation_prompt) {
    b.text("<|im_start|>assistant\n");
    if (think_switch && !opt.enable_thinking) b.text("<think>\n\n</think>\n\n");
  }
}

// ---- Llama-3.x ----------------------------------------------------------------------------------

std::string today_string() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%d %b %Y", &tm);
  return buf;
}

void render_llama3(const Tokenizer& tok, const std::vector<ChatMessage>& msgs, const ChatOptions& opt,
                   Builder& b) {
  const std::string& tmpl = tok.chat_template();
  const auto message = [&](int i) {
    b.text("<|start_header_id|>" + msgs[i].role + "<|end_header_id|>\n\n", i);
    b.content(py_strip(msgs[i].content), i);
    b.text("<|eot_id|>", i);
  };
  size_t first = 0;
  if (contains(tmpl, "Cutting Knowledge Date")) {  // Llama-3.1 / 3.2 / 3.3
    std::string date = opt.date_string;
    if (date.empty()) date = contains(tmpl, "strftime_now") ? today_string() : "26 Jul 2024";
    b.text(tok.bos_token());
    const int sys = !msgs.empty() && msgs[0].role == "system" ? 0 : -1;
    b.text("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: " +
               date + "\n\n",
           sys);
    if (sys == 0) {
      b.content(py_strip(msgs[0].content), 0);
      first = 1;
    }
    b.text("<|eot_id|>", sys);
    for (size_t i = first; i < msgs.size(); ++i) message(static_cast<int>(i));
    if (opt.add_generation_prompt) b.text("<|start_header_id|>assistant<|end_header_id|>\n\n");
    return;
  }
  // Llama-3.0: bos_token before the first message only.
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (i == 0) b.text(tok.bos_token());
    message(static_cast<int>(i));
  }
  if (opt.add_generation_prompt || !contains(tmpl, "add_generation_prompt"))
    b.text("<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// ---- Llama-2 ------------------------------------------------------------------------------------

void render_llama2(const Tokenizer& tok, const std::vector<ChatMessage>& msgs, Builder& b) {
  size_t start = 0;
  bool has_system = false;
  if (!msgs.empty() && msgs[0].role == "system") {
    has_system = true;
    start = 1;
  }
  for (size_t k = start; k < msgs.size(); ++k) {
    const size_t idx = k - start;
    const ChatMessage& m = msgs[k];
    const int i = static_cast<int>(k);
    C2C_CHECK((m.role == "user") == (idx % 2 == 0), "chat message ", k, " has role '", m.role,
              "': the Llama-2 template needs roles alternating user/assistant/user/... (after an "
              "optional system message)");
    C2C_CHECK(m.role == "user" || m.role == "assistant", "chat message ", k, " has role '", m.role,
              "', which the Llama-2 template does not render");
    // content.strip() over the whole (system block + content) text.
    std::string lead, body = m.content;
    if (idx == 0 && has_system) lead = "<<SYS>>\n" + msgs[0].content + "\n<</SYS>>\n\n";
    const std::string whole = lead + body;
    const size_t sb = py_lstrip_count(whole), se = std::max(sb, py_rstrip_pos(whole));
    const auto emit = [&](size_t from, size_t to, auto&& put) {  // the part of [from,to) kept by strip
      const size_t a = std::max(from, sb), z = std::min(to, se);
      if (a < z) put(whole.substr(a, z - a));
    };
    const auto put_text = [&](const std::string& s) { b.text(s, i); };
    if (m.role == "user") {
      b.text(tok.bos_token() + "[INST] ", i);
      if (!lead.empty()) {
        const size_t sys_b = 8, sys_e = 8 + msgs[0].content.size();
        emit(0, sys_b, put_text);
        emit(sys_b, sys_e, [&](const std::string& s) { b.content(s, 0); });
        emit(sys_e, lead.size(), put_text);
      }
      emit(lead.size(), whole.size(), [&](const std::string& s) { b.content(s, i); });
      b.text(" [/INST]", i);
    } else {
      b.text(" ", i);
      emit(0, whole.size(), [&](const std::string& s) { b.content(s, i); });
      b.text(" " + tok.eos_token(), i);
    }
  }
}

// ---- plain --------------------------------------------------------------------------------------

void render_plain(const std::vector<ChatMessage>& msgs, const ChatOptions& opt, Builder& b) {
  for (size_t k = 0; k < msgs.size(); ++k) {
    const int i = static_cast<int>(k);
    b.text(msgs[k].role + ": ", i);
    b.content(msgs[k].content, i);
    b.text("\n", i);
  }
  if (opt.add_generation_prompt) b.text("assistant: ");
}

}  // namespace

std::vector<ChatSection> render_chat_sections(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                              const ChatOptions& options) {
  Builder b;
  const std::string format = tok.chat_format();
  if (format == "chatml") render_chatml(tok, messages, options, b);
  else if (format == "llama3") render_llama3(tok, messages, options, b);
  else if (format == "llama2") render_llama2(tok, messages, b);
  else render_plain(messages, options, b);
  return b.take();
}

std::string render_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, bool enable_thinking) {
  ChatOptions opt;
  opt.add_generation_prompt = add_generation_prompt;
  opt.enable_thinking = enable_thinking;
  std::string out;
  for (const ChatSection& s : render_chat_sections(tok, messages, opt)) out += s.text;
  return out;
}

}  // namespace c2c
