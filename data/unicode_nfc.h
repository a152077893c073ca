// Unicode NFC normalization for the tokenizer's NFC normalizer, with the per-character change
// counts that Hugging Face `tokenizers` uses to keep offsets pointing into the original text.
// Tables come from scripts/make_unicode_tables.py (Python's unicodedata); no ICU needed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace c2c::unicode {

// NFC of `in`. Each output code point comes with its change in length, as the
// `unicode-normalization-alignments` crate reports it: 0 for a code point that replaces one
// input code point, +1 for one inserted by a decomposition, -n for a composite that absorbed n
// further input code points.
std::vector<std::pair<char32_t, int>> nfc_with_changes(const std::vector<char32_t>& in);

// True when NFC leaves every code point of `in` unchanged (quick path for ASCII-ish text).
bool nfc_is_trivially_stable(const std::vector<char32_t>& in);

namespace tables {
struct CccEntry { char32_t cp; uint8_t ccc; };
struct DecompEntry { char32_t cp; uint32_t offset; uint32_t length; };
struct ComposeEntry { char32_t first, second, composite; };
extern const CccEntry kCcc[];
extern const size_t kCccCount;
extern const char32_t kDecompPool[];
extern const DecompEntry kDecomp[];
extern const size_t kDecompCount;
extern const ComposeEntry kCompose[];
extern const size_t kComposeCount;
}  // namespace tables

}  // namespace c2c::unicode
