// Token alignment between a receiver and a sharer with different tokenizers (DESIGN.md section 3).
//
// The result says what the sharer reads and, for every receiver position, which sharer cache
// slot the fuser takes for it. In every method receiver_ids is exactly the receiver's own
// tokenization of its whole rendered chat (encode(render_chat(...), false)); tokens are never
// re-tokenized per section on the receiver's side. Character positions are code points.
//  - reference (`reference_first`, `reference_longest`): the published method. Each receiver
//    token lying wholly inside a message content section is a message token; all others
//    (template text, and tokens straddling a section boundary) are template tokens. For each
//    maximal run of template tokens the sharer reads its own tokenization of its own template text
//    between the same content positions, right-padded (sharer pad id, else eos; sharer_mask 0) to
//    the run's length as the reference pads the shorter section. Where the sharer's text has MORE
//    tokens than the receiver's run, only its first run-length tokens are kept (the tail is
//    dropped): the reference would pad the receiver instead, which would change the receiver's
//    prompt. This is the method's main distortion (e.g. Llama-3.1+'s long "Cutting Knowledge
//    Date" system block behind Qwen's 3-token "<|im_start|>user\n"). Each message token is
//    decoded alone and re-encoded with the sharer tokenizer, keeping the first, or the first of
//    the longest decoded, sharer token (none: padding, not fused). Both sequences have equal
//    length; slot_of[p] = p on message tokens and -1 on template tokens.
//  - `span`: the sharer reads its own natural tokenization of its own rendered chat. Content
//    positions are matched through the sections (same message, k-th content section, same offset
//    within it; when a template strips or rewrites the content, offsets shift to where one text
//    sits inside the other, or only the common prefix matches). Receiver position p takes the last
//    sharer token whose span ends within (begin, end] of receiver token p's part inside message
//    content (causally, the sharer has read the same text there); -1 when none: template tokens,
//    and receiver tokens inside which no sharer token ends (e.g. the sharer's token runs on).
//  - `span_tail`: `span`, and also the prompt's tail: the template tokens after the last message
//    content (e.g. "<|im_end|>\n<|im_start|>assistant\n"), which the reference never fuses. The
//    receiver's last fused token (the one before the last prompt token, which is never fused)
//    takes the sharer's last token, the one before it the sharer's one before, and so on
//    (clamped at the sharer tail's first token when the sharer's tail is shorter). Both models have read every
//    message there, so the sharer's cache at the end of its prompt, where a shallow sharer holds
//    most of what it recalled, reaches the receiver.
//  - `identity`: same tokenizer; the sharer reads the receiver's ids, slot_of[p] = p.
#pragma once
#include <string>
#include <vector>

#include "data/chat_template.h"
#include "data/tokenizer.h"

namespace c2c {

enum class AlignMethod { identity, reference_first, reference_longest, span, span_tail };
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
