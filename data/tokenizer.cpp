// The tokenizer.json pipeline of Hugging Face `tokenizers`, for the parts that byte-level BPE
// (Qwen, Llama-3) and SentencePiece-style BPE (Llama-2, Mistral) use: added-token split ->
// normalizers (NFC, Prepend, Replace) -> pre-tokenizers (Split regex, ByteLevel) -> BPE ->
// post-processor (TemplateProcessing, ByteLevel); decoders (ByteLevel, Replace, ByteFallback,
// Fuse, Strip, Metaspace). Offsets follow the library's alignment rules so that they match
// `encoding.offsets` exactly, also where NFC composes characters or a token holds part of one.
// Why one file of ~1,200 lines: every stage works on the same private piece/offset types and the
// offset bookkeeping crosses all of them; split into files, those internals would become a header
// of their own with no second user.
#include "data/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "data/unicode_nfc.h"
#include "modules/common/error.h"
#include "modules/common/fingerprint.h"
#include "modules/common/files.h"

namespace c2c {
namespace {

using json = nlohmann::json;
using Span = std::pair<uint32_t, uint32_t>;  // [begin, end) in bytes of the (sanitized) input

// ---- UTF-8 ------------------------------------------------------------------------------------

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}


// Valid UTF-8 with each maximal ill-formed subpart replaced by U+FFFD (as Rust's
// String::from_utf8_lossy and Python's errors="replace").
std::string utf8_lossy(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const int n = utf8_sequence(s, i);
    if (n > 0) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += -n;
    }
  }
  return out;
}

// Decodes valid UTF-8 at s[i], advancing i.
char32_t next_cp(const std::string& s, size_t& i) {
  const uint8_t c0 = static_cast<uint8_t>(s[i]);
  if (c0 < 0x80) {
    ++i;
    return c0;
  }
  int n = c0 >= 0xF0 ? 4 : c0 >= 0xE0 ? 3 : 2;
  char32_t c = c0 & (0x3F >> (n - 1));
  for (int k = 1; k < n && i + k < s.size(); ++k) c = (c << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  i += n;
  return c;
}

std::vector<char32_t> to_cps(const std::string& s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) out.push_back(next_cp(s, i));
  return out;
}

// Rust's char::is_whitespace (Unicode White_Space).
bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// ---- GPT-2 byte <-> unicode map ---------------------------------------------------------------

struct ByteMap {
  char32_t byte_to_char[256];
  std::unordered_map<char32_t, uint8_t> char_to_byte;
  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_to_char[b] = keep ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// The raw bytes a byte-level token string stands for; false when a character is outside the map.
bool byte_level_to_bytes(const std::string& token, std::string& out) {
  out.clear();
  const auto& m = byte_map().char_to_byte;
  for (size_t i = 0; i < token.size();) {
    auto it = m.find(next_cp(token, i));
    if (it == m.end()) return false;
    out += static_cast<char>(it->second);
  }
  return true;
}

// ---- regex ------------------------------------------------------------------------------------

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& where) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      fail(where, ": cannot compile regex '", pattern, "' at offset ", off, ": ",
           reinterpret_cast<const char*>(buf));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches [begin, end) in bytes of valid UTF-8 `s`, left to right.
  std::vector<Span> find_all(const std::string& s) const {
    std::vector<Span> out;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0;
    while (pos <= s.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos,
                           PCRE2_NO_UTF_CHECK, md, match_context());
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        pcre2_match_data_free(md);
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(rc, buf, sizeof(buf));
        fail("pre-tokenizer regex failed on a text of ", s.size(), " bytes: ",
             reinterpret_cast<const char*>(buf));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step one code point
        if (b >= s.size()) break;
        size_t k = b;
        next_cp(s, k);
        pos = k;
        continue;
      }
      out.emplace_back(static_cast<uint32_t>(b), static_cast<uint32_t>(e));
      pos = e;
    }
    pcre2_match_data_free(md);
    return out;
  }

 private:
  // One JIT stack per thread, larger than PCRE2's 32 KB default so that long runs of one
  // character class (e.g. 100k spaces) still match.
  static pcre2_match_context* match_context() {
    struct Context {
      pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
      pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
      Context() { pcre2_jit_stack_assign(ctx, nullptr, stack); }
      ~Context() {
        pcre2_match_context_free(ctx);
        pcre2_jit_stack_free(stack);
      }
    };
    thread_local Context c;
    return c.ctx;
  }
  pcre2_code* code_ = nullptr;
};

std::string quote_regex(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ---- text with alignments ---------------------------------------------------------------------

// A normalized string as code points, each aligned to the input bytes it came from.
struct NormText {
  std::vector<char32_t> cps;
  std::vector<Span> align;
};

// UTF-8 bytes, each aligned to input bytes (all bytes of one code point share its alignment).
struct Piece {
  std::string bytes;
  std::vector<Span> align;
};

Piece to_piece(const NormText& t) {
  Piece p;
  for (size_t i = 0; i < t.cps.size(); ++i) {
    const size_t before = p.bytes.size();
    append_utf8(p.bytes, t.cps[i]);
    p.align.insert(p.align.end(), p.bytes.size() - before, t.align[i]);
  }
  return p;
}

Piece sub_piece(const Piece& p, size_t b, size_t e) {
  Piece q;
  q.bytes = p.bytes.substr(b, e - b);
  q.align.assign(p.align.begin() + b, p.align.begin() + e);
  return q;
}

// ---- pipeline steps ---------------------------------------------------------------------------

struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = false;
};

struct Normalizer {
  enum Kind { kNfc, kPrepend, kReplace } kind;
  std::vector<char32_t> a, b;  // Prepend: a. Replace: a -> b.
};

struct PreTokenizer {
  enum Kind { kSplit, kByteLevel } kind;
  std::shared_ptr<Regex> regex;   // Split pattern, or ByteLevel's GPT-2 regex when use_regex
  PreTokenizer(Kind k, std::shared_ptr<Regex> r) : kind(k), regex(std::move(r)) {}
  bool removed = false;           // Split behaviour "Removed" (else "Isolated")
  bool add_prefix_space = false;  // ByteLevel
};

struct Decoder {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  Decoder(Kind k) : kind(k) {}  // NOLINT: implicit, for {Decoder::kFuse}
  std::string a, b;  // Replace: a -> b; Strip: content a; Metaspace: replacement a
  int start = 0, stop = 0;  // Strip
  bool prefix = false;      // Metaspace strips the first token's leading space
};

struct TemplatePiece {
  bool is_sequence = false;
  std::vector<int64_t> ids;  // special token ids
};

struct BpeToken {
  int64_t id;
  uint32_t begin, end;  // bytes within the word
};

std::string json_type_error(const std::string& file, const std::string& key, const json& v) {
  return str("'", file, "': key '", key, "' has unexpected value ", v.dump().substr(0, 200));
}

// tokenizer_config.json tokens are a string, {"content": ...} or null.
std::string config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return "";
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return "";
}

}  // namespace

// Length of the well-formed UTF-8 sequence at s[i] (Unicode table 3-7), or -(bytes of its
// maximal ill-formed subpart, at least 1) when it is not well formed.
int utf8_sequence(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return i + k < s.size() ? static_cast<uint8_t>(s[i + k]) : 0; };
  const uint8_t c0 = b(0);
  if (c0 < 0x80) return 1;
  int n = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c0 >= 0xC2 && c0 <= 0xDF) n = 2;
  else if (c0 == 0xE0) n = 3, lo = 0xA0;
  else if ((c0 >= 0xE1 && c0 <= 0xEC) || c0 == 0xEE || c0 == 0xEF) n = 3;
  else if (c0 == 0xED) n = 3, hi = 0x9F;
  else if (c0 == 0xF0) n = 4, lo = 0x90;
  else if (c0 >= 0xF1 && c0 <= 0xF3) n = 4;
  else if (c0 == 0xF4) n = 4, hi = 0x8F;
  else return -1;
  for (int k = 1; k < n; ++k) {
    const uint8_t c = b(k);
    const bool ok = (k == 1) ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok || i + k >= s.size()) return -k;
  }
  return n;
}

// ---- the tokenizer ----------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string dir, json_path, config_path;

  // Model (BPE). "Model space" strings are raw bytes for byte-level models, else the vocab text.
  bool byte_level = false;
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::optional<int64_t> unk_id;
  std::unordered_map<std::string, int64_t> model_vocab;  // model space -> id
  std::unordered_map<std::string, int64_t> token_ids;    // HF token string -> id (incl. added)
  std::vector<std::string> id_tokens;                    // id -> HF token string
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, new id)
  int64_t byte_ids[256];
  int64_t byte_fallback_ids[256];

  std::vector<AddedToken> added;
  std::unordered_map<int64_t, size_t> added_by_id;
  std::unordered_map<unsigned char, std::vector<size_t>> added_by_first_byte;  // longest first
  std::unordered_set<int64_t> special_ids;

  std::vector<Normalizer> normalizers;
  std::vector<PreTokenizer> pre_tokenizers;
  std::vector<Decoder> decoders;
  bool has_decoder = false;
  bool has_template = false;
  std::vector<TemplatePiece> template_single;
  bool trim_offsets = false, trim_add_prefix_space = false;

  // tokenizer_config.json
  std::string bos_token, eos_token, pad_token, chat_template, tokenizer_class;
  bool add_bos = false, add_eos = false;

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<BpeToken>> cache;

  void load_model(const json& m);
  void load_added(const json& a);
  void load_normalizer(const json& n);
  void load_pre_tokenizer(const json& p);
  void load_decoder(const json& d);
  void load_post_processor(const json& p);
  void load_config(const json& c);

  int64_t lookup_hf(const std::string& token, const std::string& where) const {
    auto it = token_ids.find(token);
    C2C_CHECK(it != token_ids.end(), "'", json_path, "': ", where, ": token '", token,
              "' is not in the vocabulary");
    return it->second;
  }

  struct Segment {
    uint32_t begin, end;
    int64_t added_id;  // -1 for text
  };
  std::vector<Segment> split_added(const std::string& s) const;
  void encode_text(const std::string& s, uint32_t begin, uint32_t end,
                   std::vector<BpeToken>& out) const;
  std::vector<BpeToken> bpe(const std::string& word) const;
  std::vector<BpeToken> bpe_cached(const std::string& word) const;
};

// -- loading --

void Tokenizer::Impl::load_model(const json& m) {
  C2C_CHECK(m.is_object(), "'", json_path, "': key 'model' is missing or not an object");
  const std::string type = m.value("type", std::string(m.contains("merges") ? "BPE" : ""));
  C2C_CHECK(type == "BPE", "'", json_path, "': model.type '", type,
            "' is not supported (only BPE)\nHINT: byte-level BPE (Qwen, Llama-3) and "
            "SentencePiece-style BPE (Llama-2, Mistral) tokenizers are supported");
  C2C_CHECK(m.contains("vocab") && m["vocab"].is_object(), "'", json_path,
            "': model.vocab is missing or not an object");
  C2C_CHECK(m.contains("merges") && m["merges"].is_array(), "'", json_path,
            "': model.merges is missing or not an array");
  const auto flag = [&](const char* k) { return m.contains(k) && m[k].is_boolean() && m[k].get<bool>(); };
  byte_fallback = flag("byte_fallback");
  fuse_unk = flag("fuse_unk");
  ignore_merges = flag("ignore_merges");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    C2C_CHECK(!m.contains(k) || m[k].is_null() || (m[k].is_string() && m[k].get<std::string>().empty()),
              "'", json_path, "': model.", k, " ", m.contains(k) ? m[k].dump() : "", " is not supported");
  }
  C2C_CHECK(!m.contains("dropout") || m["dropout"].is_null() ||
                (m["dropout"].is_number() && m["dropout"].get<double>() == 0.0),
            "'", json_path, "': model.dropout is not supported");

  const json& vocab = m["vocab"];
  int64_t max_id = -1;
  token_ids.reserve(vocab.size() * 2);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    C2C_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0, "'", json_path,
              "': model.vocab['", it.key(), "'] is not a non-negative integer id");
    const int64_t id = it.value().get<int64_t>();
    token_ids[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  C2C_CHECK(max_id < (int64_t(1) << 31), "'", json_path, "': model.vocab id ", max_id, " is too large");
  id_tokens.assign(static_cast<size_t>(max_id + 1), "");
  for (const auto& kv : token_ids) id_tokens[kv.second] = kv.first;
  model_vocab.reserve(token_ids.size() * 2);
  std::string raw;
  for (const auto& kv : token_ids) {
    if (byte_level && byte_level_to_bytes(kv.first, raw)) model_vocab[raw] = kv.second;
    else model_vocab[kv.first] = kv.second;
  }
  for (int b = 0; b < 256; ++b) {
    std::string one;
    if (byte_level) {
      one += static_cast<char>(b);
    } else {
      one = "";
    }
    auto it = one.empty() ? model_vocab.end() : model_vocab.find(one);
    byte_ids[b] = it == model_vocab.end() ? -1 : it->second;
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
    auto fb = token_ids.find(hex);
    byte_fallback_ids[b] = fb == token_ids.end() ? -1 : fb->second;
  }
  if (m.contains("unk_token") && m["unk_token"].is_string())
    unk_id = lookup_hf(m["unk_token"].get<std::string>(), "model.unk_token");

  const json& ms = m["merges"];
  merges.reserve(ms.size() * 2);
  for (size_t r = 0; r < ms.size(); ++r) {
    std::string a, b;
    const json& e = ms[r];
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      C2C_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, "'", json_path,
                "': model.merges[", r, "] '", s, "' is not two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      C2C_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(), "'",
                json_path, "': model.merges[", r, "] is ", e.dump().substr(0, 80),
                ", expected \"a b\" or [\"a\", \"b\"]");
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    }
    const std::string where = str("model.merges[", r, "]");
    const int64_t ia = lookup_hf(a, where), ib = lookup_hf(b, where), ic = lookup_hf(a + b, where);
    merges.emplace((static_cast<uint64_t>(ia) << 32) | static_cast<uint64_t>(ib),
                   std::make_pair(static_cast<int32_t>(r), static_cast<int32_t>(ic)));
  }
}

void Tokenizer::Impl::load_added(const json& list) {
  if (list.is_null()) return;
  C2C_CHECK(list.is_array(), json_type_error(json_path, "added_tokens", list));
  for (const json& t : list) {
    C2C_CHECK(t.is_object() && t.contains("id") && t["id"].is_number_integer() &&
                  t.contains("content") && t["content"].is_string() &&
                  !t["content"].get<std::string>().empty(),
              json_type_error(json_path, "added_tokens[]", t));
    AddedToken a;
    a.id = t["id"].get<int64_t>();
    C2C_CHECK(a.id >= 0 && a.id < (int64_t(1) << 31), json_type_error(json_path, "added_tokens[].id", t));
    a.content = t["content"].get<std::string>();
    const auto flag = [&](const char* k) { return t.contains(k) && t[k].is_boolean() && t[k].get<bool>(); };
    a.special = flag("special");
    a.single_word = flag("single_word");
    a.lstrip = flag("lstrip");
    a.rstrip = flag("rstrip");
    a.normalized = flag("normalized");
    added_by_id[a.id] = added.size();
    token_ids[a.content] = a.id;
    if (static_cast<size_t>(a.id) >= id_tokens.size()) id_tokens.resize(a.id + 1);
    id_tokens[a.id] = a.content;
    if (a.special) special_ids.insert(a.id);
    added.push_back(a);
  }
  for (size_t i = 0; i < added.size(); ++i)
    added_by_first_byte[static_cast<unsigned char>(added[i].content[0])].push_back(i);
  for (auto& kv : added_by_first_byte)
    std::stable_sort(kv.second.begin(), kv.second.end(), [&](size_t x, size_t y) {
      return added[x].content.size() > added[y].content.size();
    });
}

void Tokenizer::Impl::load_normalizer(const json& n) {
  if (n.is_null()) return;
  C2C_CHECK(n.is_object() && n.contains("type"), json_type_error(json_path, "normalizer", n));
  const std::string type = n["type"].get<std::string>();
  if (type == "Sequence") {
    for (const json& x : n.value("normalizers", json::array())) load_normalizer(x);
  } else if (type == "NFC") {
    normalizers.push_back({Normalizer::kNfc, {}, {}});
  } else if (type == "Prepend") {
    normalizers.push_back({Normalizer::kPrepend, to_cps(n.value("prepend", std::string())), {}});
  } else if (type == "Replace") {
    const json& p = n.value("pattern", json::object());
    C2C_CHECK(p.contains("String") && p["String"].is_string() && !p["String"].get<std::string>().empty(),
              "'", json_path, "': normalizer Replace with pattern ", p.dump(),
              " is not supported (only a String pattern)");
    normalizers.push_back({Normalizer::kReplace, to_cps(p["String"].get<std::string>()),
                           to_cps(n.value("content", std::string()))});
  } else {
    fail("'", json_path, "': normalizer type '", type,
         "' is not supported\nHINT: supported normalizers: NFC, Prepend, Replace, Sequence");
  }
}

void Tokenizer::Impl::load_pre_tokenizer(const json& p) {
  if (p.is_null()) return;
  C2C_CHECK(p.is_object() && p.contains("type"), json_type_error(json_path, "pre_tokenizer", p));
  const std::string type = p["type"].get<std::string>();
  if (type == "Sequence") {
    for (const json& x : p.value("pretokenizers", json::array())) load_pre_tokenizer(x);
  } else if (type == "Split") {
    const json& pat = p.value("pattern", json::object());
    std::string re;
    if (pat.contains("Regex") && pat["Regex"].is_string()) re = pat["Regex"].get<std::string>();
    else if (pat.contains("String") && pat["String"].is_string()) re = quote_regex(pat["String"].get<std::string>());
    else fail("'", json_path, "': pre_tokenizer Split has no Regex or String pattern: ", pat.dump());
    const std::string behavior = p.value("behavior", std::string("Isolated"));
    C2C_CHECK(behavior == "Isolated" || behavior == "Removed", "'", json_path,
              "': pre_tokenizer Split behavior '", behavior, "' is not supported (Isolated, Removed)");
    C2C_CHECK(!p.value("invert", false), "'", json_path, "': pre_tokenizer Split invert is not supported");
    PreTokenizer t{PreTokenizer::kSplit, std::make_shared<Regex>(re, "'" + json_path + "' pre_tokenizer Split")};
    t.removed = behavior == "Removed";
    pre_tokenizers.push_back(t);
  } else if (type == "ByteLevel") {
    byte_level = true;
    PreTokenizer t{PreTokenizer::kByteLevel, nullptr};
    t.add_prefix_space = p.value("add_prefix_space", false);
    if (p.value("use_regex", true)) t.regex = std::make_shared<Regex>(kGpt2Pattern, "ByteLevel");
    pre_tokenizers.push_back(t);
  } else {
    fail("'", json_path, "': pre_tokenizer type '", type,
         "' is not supported\nHINT: supported pre-tokenizers: Split, ByteLevel, Sequence");
  }
}

void Tokenizer::Impl::load_decoder(const json& d) {
  if (d.is_null()) return;
  has_decoder = true;
  C2C_CHECK(d.is_object() && d.contains("type"), json_type_error(json_path, "decoder", d));
  const std::string type = d["type"].get<std::string>();
  if (type == "Sequence") {
    for (const json& x : d.value("decoders", json::array())) load_decoder(x);
  } else if (type == "ByteLevel") {
    decoders.push_back({Decoder::kByteLevel});
  } else if (type == "Replace") {
    const json& p = d.value("pattern", json::object());
    C2C_CHECK(p.contains("String") && p["String"].is_string(), "'", json_path,
              "': decoder Replace needs a String pattern, got ", p.dump());
    Decoder x{Decoder::kReplace};
    x.a = p["String"].get<std::string>();
    x.b = d.value("content", std::string());
    decoders.push_back(x);
  } else if (type == "ByteFallback") {
    decoders.push_back({Decoder::kByteFallback});
  } else if (type == "Fuse") {
    decoders.push_back({Decoder::kFuse});
  } else if (type == "Strip") {
    Decoder x{Decoder::kStrip};
    x.a = d.value("content", std::string(" "));
    x.start = d.value("start", 0);
    x.stop = d.value("stop", 0);
    decoders.push_back(x);
  } else if (type == "Metaspace") {
    Decoder x{Decoder::kMetaspace};
    x.a = d.value("replacement", std::string("\xE2\x96\x81"));
    x.prefix = d.value("add_prefix_space", true) && d.value("prepend_scheme", std::string("always")) != "never";
    decoders.push_back(x);
  } else {
    fail("'", json_path, "': decoder type '", type,
         "' is not supported\nHINT: supported decoders: ByteLevel, Replace, ByteFallback, Fuse, "
         "Strip, Metaspace, Sequence");
  }
}

void Tokenizer::Impl::load_post_processor(const json& p) {
  if (p.is_null()) return;
  C2C_CHECK(p.is_object() && p.contains("type"), json_type_error(json_path, "post_processor", p));
  const std::string type = p["type"].get<std::string>();
  if (type == "Sequence") {
    for (const json& x : p.value("processors", json::array())) load_post_processor(x);
  } else if (type == "ByteLevel") {
    trim_offsets = p.value("trim_offsets", false);
    trim_add_prefix_space = p.value("add_prefix_space", false);
  } else if (type == "TemplateProcessing") {
    has_template = true;
    const json& specials = p.value("special_tokens", json::object());
    for (const json& item : p.value("single", json::array())) {
      TemplatePiece piece;
      if (item.contains("Sequence")) {
        piece.is_sequence = true;
      } else if (item.contains("SpecialToken")) {
        const std::string name = item["SpecialToken"].value("id", std::string());
        C2C_CHECK(specials.contains(name) && specials[name].contains("ids"), "'", json_path,
                  "': post_processor special token '", name, "' has no entry in special_tokens");
        for (const json& id : specials[name]["ids"]) piece.ids.push_back(id.get<int64_t>());
      } else {
        fail(json_type_error(json_path, "post_processor.single[]", item));
      }
      template_single.push_back(piece);
    }
  } else {
    fail("'", json_path, "': post_processor type '", type,
         "' is not supported\nHINT: supported: TemplateProcessing, ByteLevel, Sequence");
  }
}

void Tokenizer::Impl::load_config(const json& c) {
  C2C_CHECK(c.is_object(), "'", config_path, "' is not a JSON object");
  bos_token = config_token(c, "bos_token");
  eos_token = config_token(c, "eos_token");
  pad_token = config_token(c, "pad_token");
  add_bos = c.contains("add_bos_token") && c["add_bos_token"].is_boolean() && c["add_bos_token"].get<bool>();
  add_eos = c.contains("add_eos_token") && c["add_eos_token"].is_boolean() && c["add_eos_token"].get<bool>();
  if (c.contains("tokenizer_class") && c["tokenizer_class"].is_string())
    tokenizer_class = c["tokenizer_class"].get<std::string>();
  if (c.contains("chat_template")) {
    const json& t = c["chat_template"];
    if (t.is_string()) {
      chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": ...}, ...]
      for (const json& e : t)
        if (e.is_object() && e.value("name", std::string()) == "default" && e.contains("template") &&
            e["template"].is_string())
          chat_template = e["template"].get<std::string>();
    } else if (!t.is_null()) {
      fail(json_type_error(config_path, "chat_template", t));
    }
  }
}

// -- encoding --

std::vector<Tokenizer::Impl::Segment> Tokenizer::Impl::split_added(const std::string& s) const {
  std::vector<Segment> out;
  uint32_t text_begin = 0;
  const auto word_char = [&](size_t at_byte, bool before) -> bool {
    // The code point just before / at `at_byte` is alphanumeric or '_' (single_word boundary).
    if (before) {
      if (at_byte == 0) return false;
      size_t k = at_byte - 1;
      while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
      size_t j = k;
      char32_t c = next_cp(s, j);
      return c == '_' || (c < 0x80 ? std::isalnum(static_cast<int>(c)) != 0 : !is_whitespace(c));
    }
    if (at_byte >= s.size()) return false;
    size_t j = at_byte;
    char32_t c = next_cp(s, j);
    return c == '_' || (c < 0x80 ? std::isalnum(static_cast<int>(c)) != 0 : !is_whitespace(c));
  };
  for (size_t i = 0; i < s.size();) {
    auto bucket = added_by_first_byte.find(static_cast<unsigned char>(s[i]));
    const AddedToken* hit = nullptr;
    if (bucket != added_by_first_byte.end()) {
      for (size_t k : bucket->second) {
        const AddedToken& a = added[k];
        if (s.compare(i, a.content.size(), a.content) != 0) continue;
        if (a.single_word && (word_char(i, true) || word_char(i + a.content.size(), false))) continue;
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + hit->content.size();
    if (hit->lstrip) {
      while (b > text_begin) {
        size_t k = b - 1;
        while (k > text_begin && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!is_whitespace(next_cp(s, j))) break;
        b = k;
      }
    }
    if (hit->rstrip) {
      while (e < s.size()) {
        size_t j = e;
        if (!is_whitespace(next_cp(s, j))) break;
        e = j;
      }
    }
    if (b > text_begin) out.push_back({text_begin, static_cast<uint32_t>(b), -1});
    out.push_back({static_cast<uint32_t>(b), static_cast<uint32_t>(e), hit->id});
    text_begin = static_cast<uint32_t>(e);
    i = e;
  }
  if (text_begin < s.size()) out.push_back({text_begin, static_cast<uint32_t>(s.size()), -1});
  return out;
}

// Applies one normalizer, keeping alignments as `tokenizers` does: a replaced code point keeps
// its own alignment, an inserted one takes its predecessor's, a composite takes that of the
// first code point it absorbed.
void apply_normalizer(const Normalizer& n, NormText& t) {
  if (t.cps.empty()) return;
  if (n.kind == Normalizer::kPrepend) {
    t.cps.insert(t.cps.begin(), n.a.begin(), n.a.end());
    t.align.insert(t.align.begin(), n.a.size(), t.align[0]);
  } else if (n.kind == Normalizer::kReplace) {
    NormText r;
    for (size_t i = 0; i < t.cps.size();) {
      if (i + n.a.size() <= t.cps.size() && std::equal(n.a.begin(), n.a.end(), t.cps.begin() + i)) {
        const Span last = t.align[i + n.a.size() - 1];
        r.cps.insert(r.cps.end(), n.b.begin(), n.b.end());
        r.align.insert(r.align.end(), n.b.size(), last);
        i += n.a.size();
      } else {
        r.cps.push_back(t.cps[i]);
        r.align.push_back(t.align[i]);
        ++i;
      }
    }
    t = std::move(r);
  } else {
    if (unicode::nfc_is_trivially_stable(t.cps)) return;
    const auto out = unicode::nfc_with_changes(t.cps);
    NormText r;
    size_t idx = 0;
    for (const auto& [c, change] : out) {
      Span a;
      if (change > 0) {
        a = t.align[idx > 0 ? idx - 1 : 0];
      } else {
        a = t.align[std::min(idx, t.align.size() - 1)];
        idx += 1 + static_cast<size_t>(-change);
      }
      r.cps.push_back(c);
      r.align.push_back(a);
    }
    t = std::move(r);
  }
}

void Tokenizer::Impl::encode_text(const std::string& s, uint32_t begin, uint32_t end,
                                  std::vector<BpeToken>& out) const {
  NormText t;
  for (size_t i = begin; i < end;) {
    const size_t b = i;
    t.cps.push_back(next_cp(s, i));
    t.align.emplace_back(static_cast<uint32_t>(b), static_cast<uint32_t>(i));
  }
  for (const Normalizer& n : normalizers) apply_normalizer(n, t);
  if (t.cps.empty()) return;

  std::vector<Piece> pieces{to_piece(t)};
  for (const PreTokenizer& p : pre_tokenizers) {
    std::vector<Piece> next;
    for (Piece& piece : pieces) {
      if (p.kind == PreTokenizer::kByteLevel && p.add_prefix_space && !piece.bytes.empty() &&
          piece.bytes[0] != ' ') {
        piece.bytes.insert(piece.bytes.begin(), ' ');
        piece.align.insert(piece.align.begin(), piece.align[0]);
      }
      if (!p.regex) {
        next.push_back(std::move(piece));
        continue;
      }
      const bool removed = p.kind == PreTokenizer::kSplit && p.removed;
      size_t last = 0;
      for (const Span& m : p.regex->find_all(piece.bytes)) {
        if (m.first > last) next.push_back(sub_piece(piece, last, m.first));
        if (!removed) next.push_back(sub_piece(piece, m.first, m.second));
        last = m.second;
      }
      if (last < piece.bytes.size()) next.push_back(sub_piece(piece, last, piece.bytes.size()));
    }
    pieces = std::move(next);
  }
  for (const Piece& piece : pieces) {
    if (piece.bytes.empty()) continue;
    for (const BpeToken& tok : bpe_cached(piece.bytes))
      out.push_back({tok.id, piece.align[tok.begin].first, piece.align[tok.end - 1].second});
  }
}

std::vector<BpeToken> Tokenizer::Impl::bpe_cached(const std::string& word) const {
  constexpr size_t kMaxCachedWord = 256, kMaxCacheEntries = 1 << 18;
  if (word.size() <= kMaxCachedWord) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(word);
    if (it != cache.end()) return it->second;
  }
  std::vector<BpeToken> toks = bpe(word);
  if (word.size() <= kMaxCachedWord) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(word, toks);
  }
  return toks;
}

// BPE of one pre-token, as `tokenizers`' Word::merge_all: repeatedly merge the adjacent pair of
// lowest rank (leftmost on ties), with a heap so long words stay O(n log n).
std::vector<BpeToken> Tokenizer::Impl::bpe(const std::string& word) const {
  if (ignore_merges) {
    auto it = model_vocab.find(word);
    if (it != model_vocab.end()) return {{it->second, 0, static_cast<uint32_t>(word.size())}};
  }
  struct Symbol {
    int64_t id;
    uint32_t begin, len;
    int prev, next;
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  const auto push = [&](int64_t id, size_t b, size_t len, bool is_unk) {
    if (is_unk && fuse_unk && !sym.empty() && sym.back().id == id) {
      sym.back().len += static_cast<uint32_t>(len);
      return;
    }
    const int n = static_cast<int>(sym.size());
    sym.push_back({id, static_cast<uint32_t>(b), static_cast<uint32_t>(len), n - 1, n + 1});
  };
  const auto unk = [&](size_t b, size_t len) {
    size_t j = b;
    const char32_t c = next_cp(word, j);
    C2C_CHECK(unk_id.has_value(), "tokenizer '", json_path, "': character U+", std::hex,
              static_cast<uint32_t>(c), std::dec, " has no token and the model has no unk_token");
    push(*unk_id, b, len, true);
  };
  for (size_t i = 0; i < word.size();) {
    const size_t b = i;
    if (byte_level) {
      const int64_t id = byte_ids[static_cast<uint8_t>(word[i])];
      ++i;
      if (id >= 0) push(id, b, 1, false);
      else unk(b, 1);
      continue;
    }
    next_cp(word, i);
    auto it = model_vocab.find(word.substr(b, i - b));
    if (it != model_vocab.end()) {
      push(it->second, b, i - b, false);
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (size_t k = b; k < i; ++k) all = all && byte_fallback_ids[static_cast<uint8_t>(word[k])] >= 0;
      if (all) {
        for (size_t k = b; k < i; ++k) push(byte_fallback_ids[static_cast<uint8_t>(word[k])], k, 1, false);
        continue;
      }
    }
    unk(b, i - b);
  }
  if (!sym.empty()) sym.back().next = -1;

  struct Merge {
    int32_t rank;
    int pos;
    int64_t new_id;
    bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const auto find_merge = [&](int64_t a, int64_t b) -> const std::pair<int32_t, int32_t>* {
    auto it = merges.find((static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> queue;
  for (size_t i = 0; i + 1 < sym.size(); ++i)
    if (const auto* m = find_merge(sym[i].id, sym[i + 1].id))
      queue.push({m->first, static_cast<int>(i), m->second});
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = sym[left.next];
    const auto* m = find_merge(left.id, right.id);
    if (!m || m->second != top.new_id) continue;
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    right.len = 0;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0)
      if (const auto* p = find_merge(sym[left.prev].id, left.id)) queue.push({p->first, left.prev, p->second});
    if (left.next >= 0)
      if (const auto* p = find_merge(left.id, sym[left.next].id)) queue.push({p->first, top.pos, p->second});
  }
  std::vector<BpeToken> out;
  for (const Symbol& s : sym)
    if (s.len > 0) out.push_back({s.id, s.begin, s.begin + s.len});
  return out;
}

// ---- public API -------------------------------------------------------------------------------

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

std::shared_ptr<Tokenizer> Tokenizer::load(const std::string& dir) {
  C2C_CHECK(is_directory(dir), "tokenizer folder '", dir,
            "' does not exist\nHINT: pass a Hugging Face model folder holding tokenizer.json");
  std::shared_ptr<Tokenizer> tok(new Tokenizer());
  Impl& im = *tok->impl_;
  im.dir = dir;
  im.json_path = join_path(dir, "tokenizer.json");
  im.config_path = join_path(dir, "tokenizer_config.json");
  C2C_CHECK(file_exists(im.json_path), "tokenizer file '", im.json_path,
            "' not found\nHINT: only the `tokenizer.json` (fast tokenizer) format is read; "
            "save one with transformers' AutoTokenizer.from_pretrained(...).save_pretrained(dir)");
  const json j = read_json(im.json_path);
  try {
    C2C_CHECK(j.is_object(), "'", im.json_path, "' is not a JSON object");
    const auto get = [&](const char* k) { return j.contains(k) ? j[k] : json(); };
    // The pre-tokenizer decides whether vocab strings are byte-level, so it comes first.
    im.load_normalizer(get("normalizer"));
    im.load_pre_tokenizer(get("pre_tokenizer"));
    im.load_model(get("model"));
    im.load_added(get("added_tokens"));
    im.load_decoder(get("decoder"));
    im.load_post_processor(get("post_processor"));
    if (file_exists(im.config_path)) im.load_config(read_json(im.config_path));
  } catch (const json::exception& e) {
    fail("'", im.json_path, "' or its tokenizer_config.json has an unexpected structure: ", e.what());
  }
  return tok;
}

Encoding Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  const Impl& im = *impl_;
  const std::string s = utf8_lossy(text);
  // Code point index of every byte boundary, for offsets.
  std::vector<uint32_t> cp_at(s.size() + 1, 0);
  {
    uint32_t n = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      const bool continuation = (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80;
      cp_at[i] = continuation ? cp_at[i - 1] : n++;
    }
    cp_at[s.size()] = n;
  }
  std::vector<BpeToken> toks;  // begin/end here: input bytes
  for (const auto& seg : im.split_added(s)) {
    if (seg.added_id >= 0) toks.push_back({seg.added_id, seg.begin, seg.end});
    else im.encode_text(s, seg.begin, seg.end, toks);
  }
  Encoding enc;
  enc.ids.reserve(toks.size() + 2);
  enc.offsets.reserve(toks.size() + 2);
  for (const BpeToken& t : toks) {
    enc.ids.push_back(t.id);
    const int64_t b = cp_at[t.begin];
    const int64_t e = t.end > t.begin ? cp_at[t.end - 1] + 1 : b;
    enc.offsets.emplace_back(b, e);
  }
  if (im.trim_offsets) {  // ByteLevel post-processor: spaces at a token's edges leave its span
    for (size_t i = 0; i < enc.ids.size(); ++i) {
      const std::vector<char32_t> cps = to_cps(id_to_token(enc.ids[i]));
      const auto space = [](char32_t c) { return c == 0x120 || is_whitespace(c); };
      size_t lead = 0, trail = 0;
      while (lead < cps.size() && space(cps[lead])) ++lead;
      while (trail < cps.size() && space(cps[cps.size() - 1 - trail])) ++trail;
      auto& off = enc.offsets[i];
      if (lead > 0) {
        const bool first = i == 0 || off.first == 0;
        if (first && im.trim_add_prefix_space && lead == 1) lead = 0;
        off.first = std::min<int64_t>(off.first + lead, off.second);
      }
      if (trail > 0 && off.second >= static_cast<int64_t>(trail))
        off.second = std::max<int64_t>(off.second - trail, off.first);
    }
  }
  if (!add_special_tokens) return enc;
  Encoding out;
  const auto add = [&](int64_t id) {
    out.ids.push_back(id);
    out.offsets.emplace_back(0, 0);
  };
  if (im.has_template) {
    for (const TemplatePiece& p : im.template_single) {
      if (p.is_sequence) {
        out.ids.insert(out.ids.end(), enc.ids.begin(), enc.ids.end());
        out.offsets.insert(out.offsets.end(), enc.offsets.begin(), enc.offsets.end());
      } else {
        for (int64_t id : p.ids) add(id);
      }
    }
    return out;
  }
  if (im.add_bos && bos_id()) add(*bos_id());
  out.ids.insert(out.ids.end(), enc.ids.begin(), enc.ids.end());
  out.offsets.insert(out.offsets.end(), enc.offsets.begin(), enc.offsets.end());
  if (im.add_eos && eos_id()) add(*eos_id());
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= im.id_tokens.size()) continue;  // as `tokenizers`
    if (skip_special_tokens && im.special_ids.count(id)) continue;
    if (im.id_tokens[id].empty() && !im.added_by_id.count(id)) continue;
    toks.push_back(im.id_tokens[id]);
  }
  if (!im.has_decoder) {
    std::string out;
    for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
    return out;
  }
  for (const Decoder& d : im.decoders) {
    switch (d.kind) {
      case Decoder::kByteLevel: {
        std::string bytes, raw;
        for (const std::string& t : toks) bytes += byte_level_to_bytes(t, raw) ? raw : t;
        toks = {utf8_lossy(bytes)};
        break;
      }
      case Decoder::kReplace:
        for (std::string& t : toks) {
          if (d.a.empty()) break;
          std::string r;
          for (size_t i = 0; i < t.size();) {
            if (t.compare(i, d.a.size(), d.a) == 0) {
              r += d.b;
              i += d.a.size();
            } else {
              r += t[i++];
            }
          }
          t = std::move(r);
        }
        break;
      case Decoder::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        const auto flush = [&]() {
          if (pending.empty()) return;
          if (utf8_lossy(pending) == pending) {
            out.push_back(pending);
          } else {
            for (size_t k = 0; k < pending.size(); ++k) out.push_back("\xEF\xBF\xBD");
          }
          pending.clear();
        };
        for (const std::string& t : toks) {
          unsigned v = 0;
          const bool is_byte = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
                               std::isxdigit(static_cast<unsigned char>(t[3])) &&
                               std::isxdigit(static_cast<unsigned char>(t[4])) &&
                               std::sscanf(t.c_str() + 3, "%2x", &v) == 1;
          if (is_byte) {
            pending += static_cast<char>(v);
          } else {
            flush();
            out.push_back(t);
          }
        }
        flush();
        toks = std::move(out);
        break;
      }
      case Decoder::kFuse: {
        std::string all;
        for (const std::string& t : toks) all += t;
        toks = {all};
        break;
      }
      case Decoder::kStrip:
        for (std::string& t : toks) {
          std::vector<char32_t> cps = to_cps(t);
          const std::vector<char32_t> c = to_cps(d.a);
          if (c.size() != 1) break;
          size_t b = 0, e = cps.size();
          for (int k = 0; k < d.start && b < e && cps[b] == c[0]; ++k) ++b;
          for (int k = 0; k < d.stop && e > b && cps[e - 1] == c[0]; ++k) --e;
          std::string r;
          for (size_t k = b; k < e; ++k) append_utf8(r, cps[k]);
          t = std::move(r);
        }
        break;
      case Decoder::kMetaspace:
        for (size_t i = 0; i < toks.size(); ++i) {
          std::string r;
          const std::string& t = toks[i];
          for (size_t k = 0; k < t.size();) {
            if (!d.a.empty() && t.compare(k, d.a.size(), d.a) == 0) {
              r += ' ';
              k += d.a.size();
            } else {
              r += t[k++];
            }
          }
          if (i == 0 && d.prefix && !r.empty() && r[0] == ' ') r.erase(0, 1);
          toks[i] = std::move(r);
        }
        break;
    }
  }
  std::string out;
  for (const std::string& t : toks) out += t;
  return out;
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_tokens.size()); }

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->token_ids.find(token);
  if (it == impl_->token_ids.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(int64_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_tokens.size()) return "";
  return impl_->id_tokens[id];
}

std::optional<int64_t> Tokenizer::bos_id() const {
  return impl_->bos_token.empty() ? std::nullopt : token_to_id(impl_->bos_token);
}
std::optional<int64_t> Tokenizer::eos_id() const {
  return impl_->eos_token.empty() ? std::nullopt : token_to_id(impl_->eos_token);
}
std::optional<int64_t> Tokenizer::pad_id() const {
  return impl_->pad_token.empty() ? std::nullopt : token_to_id(impl_->pad_token);
}

bool Tokenizer::is_special(int64_t id) const { return impl_->special_ids.count(id) > 0; }

std::string Tokenizer::chat_format() const {
  const std::string& t = impl_->chat_template;
  if (t.find("<|im_start|>") != std::string::npos) return "chatml";
  if (t.find("<|start_header_id|>") != std::string::npos) return "llama3";
  if (t.find("[INST]") != std::string::npos) return "llama2";
  // Without a template, transformers (< 4.43) used the Llama-2 format for Llama tokenizers.
  if (t.empty() && impl_->tokenizer_class.rfind("LlamaTokenizer", 0) == 0) return "llama2";
  return "plain";
}

const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
const std::string& Tokenizer::dir() const { return impl_->dir; }

std::string tokenizer_fingerprint(const std::string& dir) {
  Fingerprint f;
  f.feed(read_file(join_path(dir, "tokenizer.json")));
  const std::string config = join_path(dir, "tokenizer_config.json");
  f.feed(file_exists(config) ? read_file(config) : std::string());
  return f.str();
}

}  // namespace c2c
