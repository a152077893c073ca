// Token alignment between a receiver and a sharer with different tokenizers (DESIGN.md section 3).
//
// The result says what the sharer reads and, for every receiver position, which sharer cache
// slot the fuser takes for it:
//  - reference (`reference_first`, `reference_longest`): the published method. Template sections
//    are tokenized per model and the shorter one padded; in message content each receiver token
//    is decoded alone and re-encoded with the sharer tokenizer, keeping the first or the longest
//    sharer token. Both sequences have equal length; slot_of[p] = p on message tokens and -1 on
//    template tokens (only message tokens are fused).
//  - `span`: the sharer reads its own natural tokenization of the same rendered text; receiver
//    position p takes the last sharer token whose character span ends within or at the end of
//    receiver token p's span (causally, the sharer has read the same text there), -1 when none.
//  - `identity`: same tokenizer; the sharer reads the receiver's ids, slot_of[p] = p.
#pragma once
#include <string>
#include <vector>

#include "data/chat_template.h"
#include "data/tokenizer.h"

namespace c2c {

enum class AlignMethod { identity, reference_first, reference_longest, span };
AlignMethod parse_align_method(const std::string& name);  // throws listing the names
const char* align_method_name(AlignMethod method);

struct TokenAlignment {
  std::vector<int64_t> receiver_ids;  // the receiver's tokens of the conversation
  std::vector<int64_t> sharer_ids;    // what the sharer reads
  std::vector<uint8_t> sharer_mask;   // 1 where sharer_ids holds a real token, 0 on padding
  std::vector<int64_t> slot_of;       // per receiver position: sharer slot, or -1 (not fused)
};

// Aligns a conversation rendered with each model's chat template.
TokenAlignment align_chat(const Tokenizer& receiver, const Tokenizer& sharer,
                          const std::vector<ChatMessage>& messages, const ChatOptions& options,
                          AlignMethod method);

// Span alignment of one plain text (no template), for prompts given as text.
TokenAlignment align_text_span(const Tokenizer& receiver, const Tokenizer& sharer,
                               const std::string& text);

}  // namespace c2c
