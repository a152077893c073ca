// Tokenizers read from Hugging Face `tokenizer.json` + `tokenizer_config.json`, matching the
// `tokenizers` library on ids, offsets and decodes for byte-level BPE (Qwen2/2.5/3, Llama-3) and
// SentencePiece-style BPE with byte fallback (Llama-2, Mistral). Other models (WordPiece,
// Unigram) and pipeline parts these families do not use are rejected with a clear error.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace c2c {

// ids and, per id, the [begin, end) span it covers in the input, in Unicode code points (as
// `encoding.offsets` of the `tokenizers` Python package). Tokens added by the post-processor
// (BOS) have the empty span (0, 0).
// Length of the well-formed UTF-8 sequence at s[i] (Unicode table 3-7), or -(bytes of its
// maximal ill-formed subpart) when it is not: the rule by which encode() reads invalid input as
// U+FFFD, one code point per ill-formed subpart (offsets count code points that way).
int utf8_sequence(const std::string& s, size_t i);

struct Encoding {
  std::vector<int64_t> ids;
  std::vector<std::pair<int64_t, int64_t>> offsets;
};

class Tokenizer {
 public:
  // Reads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json. Throws c2c::Error
  // naming the file and key on missing or malformed input.
  static std::shared_ptr<Tokenizer> load(const std::string& dir);

  // Special and added tokens written in `text` (e.g. "<|im_start|>") are always recognised.
  // add_special_tokens adds what the post-processor (TemplateProcessing) or tokenizer_config's
  // add_bos_token / add_eos_token ask for. Invalid UTF-8 bytes are read as U+FFFD.
  Encoding encode(const std::string& text, bool add_special_tokens = false) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  int64_t vocab_size() const;  // including added tokens (max id + 1)
  std::optional<int64_t> token_to_id(const std::string& token) const;  // HF token string
  std::string id_to_token(int64_t id) const;  // "" for an id outside the vocabulary
  std::optional<int64_t> bos_id() const;  // from tokenizer_config.json
  std::optional<int64_t> eos_id() const;
  std::optional<int64_t> pad_id() const;
  bool is_special(int64_t id) const;  // an added token marked "special"

  // "chatml", "llama3", "llama2" or "plain", derived from tokenizer_config's chat_template.
  std::string chat_format() const;
  // The raw chat_template text ("" when absent); chat_template.cpp reads variants from it.
  const std::string& chat_template() const;
  const std::string& bos_token() const;  // "" when unset
  const std::string& eos_token() const;
  const std::string& dir() const;

  ~Tokenizer();

 private:
  struct Impl;
  Tokenizer();
  std::unique_ptr<Impl> impl_;
};

// What identifies a tokenizer folder's behaviour for prepared data: "fnv1a64:<16 hex digits>" over
// tokenizer.json and, when present, tokenizer_config.json (it holds the chat template).
// `c2c prepare` records it in manifest.json; `c2c train` compares it with the recipe's models.
std::string tokenizer_fingerprint(const std::string& dir);

}  // namespace c2c
