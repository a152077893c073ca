// Conversations -> paired shards. Records are read one at a time (a JSON array is split into its
// elements by a small scanner, so a multi-GB OpenHermes file is never parsed as one document and
// one bad element does not lose the rest), turned into samples on `threads` workers in chunks,
// and written in input order, so the output does not depend on the thread count.
#include "data/prepare.h"

#include <sys/stat.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <fstream>
#include <optional>
#include <ostream>
#include <thread>

#include "modules/common/error.h"
#include "modules/common/files.h"

namespace c2c {
namespace {

// ---- reading records ----------------------------------------------------------------------------

struct Record {
  std::string text;
  std::string location;  // "line 7" or "element 3 (line 12)"
  int64_t source_index = 0;  // line number (JSONL) or array index
  int64_t bytes = 0;         // its size in the file
  bool oversize = false;     // over the byte limit: `text` holds only its start, never parsed
};

class RecordSource {
 public:
  // Records longer than `max_bytes` are returned as oversize without being held in memory.
  RecordSource(const std::string& path, int64_t max_bytes)
      : path_(path), in_(path, std::ios::binary), max_bytes_(static_cast<size_t>(max_bytes)) {
    C2C_CHECK(in_.good(), "cannot open input ", path, "\nHINT: give a .jsonl or .json file with --input");
    int c;
    while ((c = peek()) != EOF && std::isspace(c)) get();
    array_ = c == '[';
    if (array_) get();
  }
  bool is_array() const { return array_; }

  // The next record, or false at the end. Throws on a truncated array.
  bool next(Record& r) { return array_ ? next_element(r) : next_line(r); }

 private:
  int peek() {
    if (pos_ == len_) fill();
    return pos_ < len_ ? static_cast<unsigned char>(buf_[pos_]) : EOF;
  }
  int get() {
    const int c = peek();
    if (c != EOF) {
      ++pos_;
      if (c == '\n') ++line_;
    }
    return c;
  }
  void fill() {
    in_.read(buf_, sizeof(buf_));
    len_ = static_cast<size_t>(in_.gcount());
    pos_ = 0;
  }

  bool next_line(Record& r) {
    if (peek() == EOF) return false;
    r.text.clear();
    const int64_t line = line_;
    int c;
    r.bytes = 0;
    while ((c = get()) != EOF && c != '\n') keep(r, c);
    r.oversize = r.bytes > static_cast<int64_t>(max_bytes_);
    if (!r.oversize && !r.text.empty() && r.text.back() == '\r') r.text.pop_back();
    r.location = "line " + std::to_string(line);
    r.source_index = line;
    return true;
  }

  bool next_element(Record& r) {
    if (done_) return false;
    int c;
    while ((c = peek()) != EOF && (std::isspace(c) || (c == ',' && index_ > 0))) get();
    C2C_CHECK(c != EOF, "input ", path_, ": the JSON array is not closed (']' missing at the end, after ",
              index_, " elements)\nHINT: the file is truncated");
    if (c == ']') {
      get();
      done_ = true;
      return false;
    }
    r.text.clear();
    r.bytes = 0;
    r.source_index = index_;
    r.location = "element " + std::to_string(index_) + " (line " + std::to_string(line_) + ")";
    ++index_;
    int depth = 0;
    bool in_string = false, escape = false;
    while ((c = peek()) != EOF) {
      if (!in_string && depth == 0 && (c == ',' || c == ']') && !r.text.empty()) break;
      get();
      keep(r, c);
      if (in_string) {
        if (escape) escape = false;
        else if (c == '\\') escape = true;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) break;
      }
    }
    C2C_CHECK(c != EOF, "input ", path_, ": the JSON array ends inside ", r.location,
              "\nHINT: the file is truncated");
    r.oversize = r.bytes > static_cast<int64_t>(max_bytes_);
    return true;
  }

  // Appends a record's byte while it is within the limit; counts it either way.
  void keep(Record& r, int c) {
    if (static_cast<size_t>(r.bytes++) < max_bytes_ + 1) r.text.push_back(static_cast<char>(c));
  }

  std::string path_;
  std::ifstream in_;
  size_t max_bytes_;
  char buf_[1 << 16];
  size_t pos_ = 0, len_ = 0;
  int64_t line_ = 1, index_ = 0;
  bool array_ = false, done_ = false;
};

// ---- one conversation ---------------------------------------------------------------------------

std::string rstrip_ws(const std::string& s) {
  size_t e = s.size();
  while (e > 0 && (s[e - 1] == ' ' || s[e - 1] == '\n' || s[e - 1] == '\r' || s[e - 1] == '\t')) --e;
  return s.substr(0, e);
}

std::string content_text(const nlohmann::json& c, size_t i) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_array()) {  // OpenAI content parts: keep the text parts
    std::string out;
    for (const auto& part : c) {
      C2C_CHECK(part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
                    part["text"].is_string(),
                "message ", i, " has a content part that is not {\"type\": \"text\", \"text\": ...}");
      out += part["text"].get<std::string>();
    }
    return out;
  }
  fail("message ", i, " has content of JSON type ", c.type_name(), ", expected a string");
}

enum class Outcome { written, too_long, malformed };

struct Result {
  Outcome outcome = Outcome::malformed;
  PairedSample sample;
  std::string reason;
};

struct Models {
  std::shared_ptr<Tokenizer> receiver;
  std::vector<std::shared_ptr<Tokenizer>> sharer_owned;
  std::vector<const Tokenizer*> sharers;
  AlignMethod method;
  int64_t max_length;
};

Result process(const Record& rec, const Models& models) {
  Result r;
  try {
    if (rec.text.find_first_not_of(" \t\r\n") == std::string::npos) fail("empty record");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(rec.text);
    } catch (const nlohmann::json::parse_error& e) {
      fail("bad JSON (", e.what(), ")");
    }
    const auto messages = parse_conversation(j);
    r.sample = make_paired_sample(*models.receiver, models.sharers, messages, models.method);
    r.sample.source_index = rec.source_index;
    bool too_long = r.sample.length() > models.max_length;
    for (const auto& s : r.sample.sharers) too_long = too_long || static_cast<int64_t>(s.ids.size()) > models.max_length;
    r.outcome = too_long ? Outcome::too_long : Outcome::written;
  } catch (const Error& e) {
    r.outcome = Outcome::malformed;
    r.reason = rec.location + ": " + e.what();
  } catch (const nlohmann::json::exception& e) {
    r.outcome = Outcome::malformed;
    r.reason = rec.location + ": " + e.what();
  }
  return r;
}

void make_dirs(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      cur = dir.substr(0, i);
      if (!is_directory(cur)) ::mkdir(cur.c_str(), 0755);
    }
  }
  C2C_CHECK(is_directory(dir), "cannot create the output folder ", dir);
}

}  // namespace

std::vector<ChatMessage> parse_conversation(const nlohmann::json& record) {
  C2C_CHECK(record.is_object(), "the record is a JSON ", record.type_name(), ", expected an object with "
            "'messages' or 'conversations'");
  const bool openai = record.contains("messages");
  const bool sharegpt = !openai && record.contains("conversations");
  C2C_CHECK(openai || sharegpt, "the record has neither 'messages' (role/content) nor 'conversations' "
            "(from/value)");
  const auto& list = record[openai ? "messages" : "conversations"];
  C2C_CHECK(list.is_array(), "'", openai ? "messages" : "conversations", "' is not a list");
  const char* role_key = openai ? "role" : "from";
  const char* content_key = openai ? "content" : "value";
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& m = list[i];
    C2C_CHECK(m.is_object() && m.contains(role_key) && m[role_key].is_string() && m.contains(content_key),
              "message ", i, " lacks '", role_key, "' or '", content_key, "'");
    const std::string role = m[role_key].get<std::string>();
    ChatMessage msg;
    if (role == "system") msg.role = "system";
    else if (role == "user" || role == "human") msg.role = "user";
    else if (role == "assistant" || role == "gpt") msg.role = "assistant";
    else fail("message ", i, " has unknown role '", role, "' (known: system, user/human, assistant/gpt)");
    msg.content = content_text(m[content_key], i);
    out.push_back(std::move(msg));
  }
  C2C_CHECK(!out.empty(), "the conversation is empty");
  C2C_CHECK(out.back().role == "assistant", "the last message is a '", out.back().role,
            "' turn, expected the assistant's answer");
  C2C_CHECK(out.size() >= 2, "the conversation has only the assistant's answer, no prompt");
  C2C_CHECK(rstrip_ws(out.back().content).find_first_not_of(" \t\r\n") != std::string::npos,
            "the final assistant turn is empty");
  return out;
}

PairedSample make_paired_sample(const Tokenizer& receiver, const std::vector<const Tokenizer*>& sharers,
                                const std::vector<ChatMessage>& messages, AlignMethod method) {
  C2C_CHECK(messages.size() >= 2 && messages.back().role == "assistant",
            "a paired sample needs a prompt and a final assistant turn");
  const std::vector<ChatMessage> prompt_messages(messages.begin(), messages.end() - 1);
  ChatOptions prompt_opt;  // Qwen3: thinking disabled (an empty <think></think> block)
  prompt_opt.add_generation_prompt = true;
  prompt_opt.enable_thinking = false;
  std::string prompt_text;
  for (const auto& s : render_chat_sections(receiver, prompt_messages, prompt_opt)) prompt_text += s.text;

  // The full conversation, cut after the final turn's end-of-turn text: its content plus the
  // template text of that message after the content, without trailing whitespace ("<|im_end|>",
  // not "<|im_end|>\n"; nothing of a generation header some templates append).
  ChatOptions full_opt;
  full_opt.add_generation_prompt = false;
  full_opt.enable_thinking = false;
  const int last = static_cast<int>(messages.size()) - 1;
  std::string full_text;
  size_t content_end = std::string::npos, turn_end = 0;
  for (const auto& s : render_chat_sections(receiver, messages, full_opt)) {
    full_text += s.text;
    if (s.message_index == last && s.is_content) content_end = full_text.size();
    if (s.message_index == last) turn_end = full_text.size();
  }
  C2C_CHECK(content_end != std::string::npos && content_end > prompt_text.size() &&
                full_text.compare(0, prompt_text.size(), prompt_text) == 0,
            "the receiver's chat template (", receiver.chat_format(), ", ", receiver.dir(),
            ") does not render the conversation as the prompt followed by the final assistant turn");
  const std::string footer = rstrip_ws(full_text.substr(content_end, turn_end - content_end));
  const std::string text = full_text.substr(0, content_end) + footer;

  const std::vector<int64_t> prompt_ids = receiver.encode(prompt_text, false).ids;
  PairedSample s;
  s.receiver_ids = receiver.encode(text, false).ids;
  const int64_t P = static_cast<int64_t>(prompt_ids.size());
  C2C_CHECK(P >= 1 && s.length() > P && std::equal(prompt_ids.begin(), prompt_ids.end(), s.receiver_ids.begin()),
            "the receiver tokenizer merges the end of the prompt with the answer (a token crosses the "
            "generation prompt), so the prompt length is ambiguous");
  s.prompt_length = P;
  s.loss_start = P;
  s.loss_end = s.length();

  for (const Tokenizer* sharer : sharers) {
    PairedSharer out;
    if (method == AlignMethod::identity) {
      // Same tokenizer (checked once by the caller): the sharer reads the receiver's prompt.
      out.ids = prompt_ids;
      out.mask.assign(prompt_ids.size(), 1);
      out.slot_of.resize(P);
      for (int64_t p = 0; p < P; ++p) out.slot_of[p] = p;
    } else {
      TokenAlignment a = align_chat(receiver, *sharer, prompt_messages, prompt_opt, method);
      C2C_CHECK(a.receiver_ids == prompt_ids, "alignment '", align_method_name(method), "' gives ",
                a.receiver_ids.size(), " receiver prompt tokens that differ from the receiver's own ",
                P, " tokens of the prompt");
      out.ids = std::move(a.sharer_ids);
      out.mask = std::move(a.sharer_mask);
      out.slot_of = std::move(a.slot_of);
      C2C_CHECK(static_cast<int64_t>(out.slot_of.size()) == P && out.mask.size() == out.ids.size(),
                "alignment '", align_method_name(method), "' returned inconsistent sizes");
    }
    // Fused positions are [0, P-1): the last prompt token is run by the receiver alone.
    out.slot_of.resize(s.length(), -1);
    for (int64_t p = P - 1; p < s.length(); ++p) out.slot_of[p] = -1;
    s.sharers.push_back(std::move(out));
  }
  return s;
}

std::string PrepareReport::summary() const {
  std::string out = str("prepare: ", records, " records read, ", written, " samples written, ",
                        skipped_too_long, " skipped as too long, ", skipped_malformed, " skipped as malformed");
  if (!malformed_reasons.empty()) {
    out += "\nfirst malformed records:";
    for (const auto& r : malformed_reasons) out += "\n  " + r;
    if (static_cast<int64_t>(malformed_reasons.size()) < skipped_malformed)
      out += str("\n  ... and ", skipped_malformed - static_cast<int64_t>(malformed_reasons.size()), " more");
  }
  if (!oversize_records.empty()) {
    out += "\nrecords over the byte limit, skipped without reading them:";
    for (const auto& r : oversize_records) out += "\n  " + r;
  }
  return out;
}

PrepareReport prepare_paired_dataset(const PrepareOptions& opt, std::ostream& log) {
  C2C_CHECK(!opt.input.empty() && !opt.out_dir.empty() && !opt.receiver_tokenizer.empty(),
            "prepare: the input, the receiver tokenizer and the output folder are required");
  C2C_CHECK(!opt.sharer_tokenizers.empty(), "prepare: give at least one sharer tokenizer");
  C2C_CHECK(opt.max_length >= 2, "prepare: max length must be >= 2, got ", opt.max_length);
  C2C_CHECK(opt.shard_size >= 1, "prepare: shard size must be >= 1, got ", opt.shard_size);
  C2C_CHECK(opt.threads >= 1, "prepare: threads must be >= 1, got ", opt.threads);
  Models models;
  models.method = parse_align_method(opt.alignment);
  models.max_length = opt.max_length;
  models.receiver = Tokenizer::load(opt.receiver_tokenizer);
  for (const auto& dir : opt.sharer_tokenizers) {
    models.sharer_owned.push_back(Tokenizer::load(dir));
    models.sharers.push_back(models.sharer_owned.back().get());
    if (models.method == AlignMethod::identity) {
      const std::string probe = "Hello, world! 123 <|im_start|> \xC3\xA9t\xC3\xA9\n";
      C2C_CHECK(models.sharers.back()->vocab_size() == models.receiver->vocab_size() &&
                    models.sharers.back()->encode(probe).ids == models.receiver->encode(probe).ids,
                "prepare: --alignment identity needs the sharer to use the receiver's tokenizer, but ",
                dir, " differs from ", opt.receiver_tokenizer,
                "\nHINT: use --alignment span (or reference_first / reference_longest)");
    }
  }
  make_dirs(opt.out_dir);

  std::vector<std::string> sharer_prints;
  for (const auto& dir : opt.sharer_tokenizers) sharer_prints.push_back(tokenizer_fingerprint(dir));
  nlohmann::json info = {{"receiver_tokenizer", opt.receiver_tokenizer},
                         {"sharer_tokenizers", opt.sharer_tokenizers},
                         {"receiver_tokenizer_fingerprint", tokenizer_fingerprint(opt.receiver_tokenizer)},
                         {"sharer_tokenizer_fingerprints", sharer_prints},
                         {"alignment", align_method_name(models.method)},
                         {"max_length", opt.max_length}};
  PairedDatasetWriter writer(opt.out_dir, static_cast<int>(models.sharers.size()), opt.shard_size, info);
  // A record longer than this cannot fit max_length tokens: skipped unread (bounded memory).
  const int64_t max_bytes = opt.max_record_bytes > 0 ? opt.max_record_bytes
                                                     : std::max<int64_t>(int64_t(1) << 20, 64 * opt.max_length);
  RecordSource source(opt.input, max_bytes);
  PrepareReport report;

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto last_progress = t0;
  const size_t chunk = static_cast<size_t>(std::max(64, 64 * opt.threads));
  std::vector<Record> records;
  std::vector<Result> results;
  bool more = true;
  while (more) {
    records.clear();
    Record rec;
    while (records.size() < chunk && (opt.limit < 0 || report.records < opt.limit) && (more = source.next(rec))) {
      records.push_back(rec);
      ++report.records;
    }
    if (opt.limit >= 0 && report.records >= opt.limit) more = false;
    results.assign(records.size(), Result());
    std::atomic<size_t> next{0};
    const auto work = [&] {
      for (size_t i; (i = next++) < records.size();) {
        if (!records[i].oversize) {
          results[i] = process(records[i], models);
          continue;
        }
        results[i].outcome = Outcome::too_long;
        results[i].reason = records[i].location + ": " + std::to_string(records[i].bytes) +
                            " bytes, over the limit of " + std::to_string(max_bytes) + " (not read)";
      }
    };
    if (opt.threads <= 1 || records.size() < 2) {
      work();
    } else {
      std::vector<std::thread> pool;
      for (int t = 0; t < opt.threads; ++t) pool.emplace_back(work);
      for (auto& t : pool) t.join();
    }
    for (Result& r : results) {
      if (r.outcome == Outcome::written) {
        writer.add(std::move(r.sample));
        ++report.written;
      } else if (r.outcome == Outcome::too_long) {
        ++report.skipped_too_long;
        if (!r.reason.empty() && report.oversize_records.size() < PrepareReport::kMaxReasons)
          report.oversize_records.push_back(r.reason);
      } else {
        ++report.skipped_malformed;
        if (report.malformed_reasons.size() < PrepareReport::kMaxReasons)
          report.malformed_reasons.push_back(r.reason);
      }
    }
    const auto now = Clock::now();
    if (opt.progress_seconds > 0 && std::chrono::duration<double>(now - last_progress).count() >= opt.progress_seconds) {
      last_progress = now;
      const double secs = std::chrono::duration<double>(now - t0).count();
      log << "prepare: " << report.records << " records, " << report.written << " written, "
          << report.skipped_too_long << " too long, " << report.skipped_malformed << " malformed ("
          << static_cast<int64_t>(report.records / std::max(secs, 1e-9)) << " records/s)" << std::endl;
    }
  }

  nlohmann::json extra = info;
  extra["input"] = opt.input;
  extra["input_format"] = source.is_array() ? "json_array" : "jsonl";
  extra["counts"] = {{"records", report.records},
                     {"written", report.written},
                     {"skipped_too_long", report.skipped_too_long},
                     {"skipped_malformed", report.skipped_malformed}};
  extra["malformed_reasons"] = report.malformed_reasons;
  extra["loss"] = "final assistant turn: content + end-of-turn tokens, positions [loss_start, loss_end)";
  writer.finish(extra);
  return report;
}

}  // namespace c2c
