// `c2c prepare`: conversations (JSON Lines, or one JSON array as OpenHermes-2.5 is published) ->
// paired HDF5 shards + manifest.json (data/paired_dataset.h). Each model renders the chat with its
// own template; the receiver's loss covers the final assistant turn (content + end-of-turn
// tokens, DESIGN.md section 4). Bad records are reported by line / array index and skipped.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/alignment.h"
#include "data/chat_template.h"
#include "data/paired_dataset.h"
#include "data/tokenizer.h"

namespace c2c {

struct PrepareOptions {
  std::string input;                           // .jsonl or a .json array file
  std::string receiver_tokenizer;              // folder with tokenizer.json
  std::vector<std::string> sharer_tokenizers;  // one or more
  std::string alignment = "span";              // identity | reference_first | reference_longest | span
  int64_t max_length = 2048;                   // receiver and sharer tokens per sample
  int64_t shard_size = 10000;
  int64_t limit = -1;                          // records to read; -1 all
  std::string out_dir;                         // created when missing
  int threads = 1;
  double progress_seconds = 5;                 // a progress line on `log` this often; <= 0 none
  int64_t max_record_bytes = 0;                // longer records are skipped unread; 0: the
                                               // larger of 1 MiB and 64 bytes per max_length token
};

struct PrepareReport {
  int64_t records = 0;  // records read (lines / array elements)
  int64_t written = 0, skipped_too_long = 0, skipped_malformed = 0;
  std::vector<std::string> malformed_reasons;  // the first kMaxReasons, "line 7: ..."
  std::vector<std::string> oversize_records;   // records over the byte limit (counted too long)
  static constexpr size_t kMaxReasons = 20;
  std::string summary() const;
};

PrepareReport prepare_paired_dataset(const PrepareOptions& options, std::ostream& log);

// One record -> messages with roles system/user/assistant. Accepts {"messages": [{"role",
// "content"}]} and ShareGPT {"conversations": [{"from", "value"}]} (human/gpt/system; also
// user/assistant). Throws c2c::Error with the reason: no conversation key, an unknown role, a
// non-string content, fewer than two messages, or a final turn that is not a non-empty assistant one.
std::vector<ChatMessage> parse_conversation(const nlohmann::json& record);

// One conversation -> sample (index/source_index left unset). The receiver reads its own
// rendering: the prompt (all but the final turn, with the generation prompt, thinking disabled)
// followed by the final assistant content and its end-of-turn tokens, tokenized as one text.
// Throws c2c::Error when the template or the alignment rejects the conversation.
PairedSample make_paired_sample(const Tokenizer& receiver, const std::vector<const Tokenizer*>& sharers,
                                const std::vector<ChatMessage>& messages, AlignMethod method);

}  // namespace c2c
