// Token alignment between a receiver and a sharer tokenizer (DESIGN.md section 3): the published
// reference method, our span method, and identity. All character positions here are Unicode code
// points of the rendered text, as Tokenizer::encode reports offsets. The receiver side is always
// the receiver's own tokenization of its whole rendered text (the data preparer checks this).
#include "data/alignment.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <unordered_map>

#include "modules/common/error.h"

namespace c2c {
namespace {

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) i += std::abs(utf8_sequence(s, i));
  return n;
}

// One side's rendered chat: its text, byte <-> code point maps, and its message content sections.
struct Layout {
  struct Content {
    int message = -1;
    int ordinal = 0;          // k-th content section of this message
    int64_t begin = 0, end = 0;  // code points in the whole text
    size_t byte_begin = 0;
    std::string text;
  };
  std::string text;
  std::vector<int64_t> cp_of_byte;  // code point index of every byte position (size bytes + 1)
  std::vector<size_t> byte_of_cp;   // first byte of every code point (size code points + 1)
  std::vector<Content> contents;

  int64_t size_cp() const { return static_cast<int64_t>(byte_of_cp.size()) - 1; }
  // The text of code points [begin, end).
  std::string slice(int64_t begin, int64_t end) const {
    return text.substr(byte_of_cp[begin], byte_of_cp[end] - byte_of_cp[begin]);
  }
};

Layout layout_of(const std::vector<ChatSection>& sections) {
  Layout l;
  std::vector<size_t> section_begin;
  for (const ChatSection& s : sections) {
    section_begin.push_back(l.text.size());
    l.text += s.text;
  }
  l.cp_of_byte.assign(l.text.size() + 1, 0);
  int64_t n = 0;
  for (size_t i = 0; i < l.text.size(); ++n) {
    const size_t len = std::abs(utf8_sequence(l.text, i));
    l.byte_of_cp.push_back(i);
    for (size_t k = 0; k < len; ++k) l.cp_of_byte[i + k] = n;  // inside a sequence: its code point
    i += len;
  }
  l.byte_of_cp.push_back(l.text.size());
  l.cp_of_byte[l.text.size()] = n;
  for (size_t k = 0; k < sections.size(); ++k) {
    const ChatSection& s = sections[k];
    if (!s.is_content || s.text.empty()) continue;
    Layout::Content c;
    c.message = s.message_index;
    for (const auto& o : l.contents) c.ordinal += o.message == c.message;
    c.byte_begin = section_begin[k];
    c.begin = l.cp_of_byte[section_begin[k]];
    c.end = l.cp_of_byte[section_begin[k] + s.text.size()];
    c.text = s.text;
    l.contents.push_back(std::move(c));
  }
  return l;
}

// How offsets within one receiver content section map into the matching sharer content section.
// Templates may render a message's content differently (Llama-3 strips it, Qwen3 drops reasoning
// blocks of earlier turns): equal texts map 1:1; when one text contains the other the offsets are
// shifted by where it sits; otherwise only their common prefix maps.
struct ContentMap {
  const Layout::Content* sharer = nullptr;  // nullptr: no counterpart, nothing maps
  int64_t shift = 0;                        // sharer offset = receiver offset + shift
  int64_t receiver_limit = 0;               // receiver offsets past this map to nothing new

  // Receiver offset within the content (0..len) -> sharer code point in the sharer's whole text.
  int64_t map(int64_t receiver_offset) const {
    const int64_t o = std::min(receiver_offset, receiver_limit) + shift;
    return sharer->begin + std::clamp<int64_t>(o, 0, sharer->end - sharer->begin);
  }
};

ContentMap content_map(const Layout& r, const Layout::Content& rc, const Layout& s) {
  ContentMap m;
  for (const auto& sc : s.contents)
    if (sc.message == rc.message && sc.ordinal == rc.ordinal) m.sharer = &sc;
  if (m.sharer == nullptr) return m;
  const Layout::Content& sc = *m.sharer;
  m.receiver_limit = rc.end - rc.begin;
  if (rc.text == sc.text) return m;
  size_t at = rc.text.find(sc.text);
  if (at != std::string::npos) {
    m.shift = -(r.cp_of_byte[rc.byte_begin + at] - rc.begin);
    return m;
  }
  at = sc.text.find(rc.text);
  if (at != std::string::npos) {
    m.shift = s.cp_of_byte[sc.byte_begin + at] - sc.begin;
    return m;
  }
  size_t common = 0;
  while (common < rc.text.size() && common < sc.text.size() && rc.text[common] == sc.text[common]) ++common;
  m.receiver_limit = r.cp_of_byte[rc.byte_begin + common] - rc.begin;
  return m;
}

std::vector<ContentMap> content_maps(const Layout& r, const Layout& s) {
  std::vector<ContentMap> maps;
  for (const auto& rc : r.contents) maps.push_back(content_map(r, rc, s));
  return maps;
}

TokenAlignment align_span(const Tokenizer& receiver, const Tokenizer& sharer, const Layout& r, const Layout& s) {
  TokenAlignment a;
  const Encoding re = receiver.encode(r.text, false);
  const Encoding se = sharer.encode(s.text, false);
  a.receiver_ids = re.ids;
  a.sharer_ids = se.ids;
  a.sharer_mask.assign(se.ids.size(), 1);
  a.slot_of.assign(re.ids.size(), -1);
  const std::vector<ContentMap> maps = content_maps(r, s);

  // Sharer token ends, non-decreasing for the tokenizers we support (byte fragments of one
  // character share its span); a linear search covers any other case.
  std::vector<int64_t> ends;
  for (const auto& o : se.offsets) ends.push_back(o.second);
  const bool sorted = std::is_sorted(ends.begin(), ends.end());

  for (size_t p = 0; p < re.ids.size(); ++p) {
    const auto [b, e] = re.offsets[p];
    // The last content section this token overlaps; template-only tokens stay -1.
    int c = -1;
    for (size_t k = 0; k < r.contents.size(); ++k)
      if (b < r.contents[k].end && e > r.contents[k].begin) c = static_cast<int>(k);
    if (c < 0 || maps[c].sharer == nullptr) continue;
    const Layout::Content& rc = r.contents[c];
    // The token's part inside the content, in sharer coordinates: (lo, hi].
    const int64_t lo = maps[c].map(std::max(b, rc.begin) - rc.begin);
    const int64_t hi = maps[c].map(std::min(e, rc.end) - rc.begin);
    if (hi <= lo) continue;
    int64_t q = -1;  // the last sharer token ending at or before hi
    if (sorted) {
      q = (std::upper_bound(ends.begin(), ends.end(), hi) - ends.begin()) - 1;
    } else {
      for (int64_t k = static_cast<int64_t>(ends.size()) - 1; k >= 0 && q < 0; --k)
        if (ends[k] <= hi) q = k;
    }
    if (q >= 0 && ends[q] > lo) a.slot_of[p] = q;
  }
  return a;
}

// The tokens that start at or after the end of the last non-empty content section (all of them
// when there is none): the prompt's closing template text.
size_t tail_begin(const std::vector<std::pair<int64_t, int64_t>>& offsets, const Layout& l) {
  const int64_t end = l.contents.empty() ? 0 : l.contents.back().end;
  size_t p = offsets.size();
  while (p > 0 && offsets[p - 1].first >= end) --p;
  return p;
}

TokenAlignment align_span_tail(const Tokenizer& receiver, const Tokenizer& sharer, const Layout& r,
                               const Layout& s) {
  TokenAlignment a = align_span(receiver, sharer, r, s);
  if (r.contents.empty() || s.contents.empty()) return a;
  const auto re_offsets = receiver.encode(r.text, false).offsets;
  const auto se_offsets = sharer.encode(s.text, false).offsets;
  const int64_t rn = static_cast<int64_t>(re_offsets.size()), sn = static_cast<int64_t>(se_offsets.size());
  const int64_t r0 = static_cast<int64_t>(tail_begin(re_offsets, r));
  const int64_t s0 = static_cast<int64_t>(tail_begin(se_offsets, s));
  if (s0 >= sn) return a;  // the sharer's prompt has no tail to read from
  // The receiver's last prompt token is never fused (it runs against the fused cache), so the
  // last fused one, rn - 2, takes the sharer's last token; rn - 1 takes it too.
  for (int64_t p = r0; p < rn; ++p) a.slot_of[p] = std::max(s0, sn - std::max<int64_t>(1, rn - 1 - p));
  return a;
}

TokenAlignment align_reference(const Tokenizer& receiver, const Tokenizer& sharer, const Layout& r, const Layout& s,
                               bool longest) {
  std::optional<int64_t> pad = sharer.pad_id();
  if (!pad) pad = sharer.eos_id();
  C2C_CHECK(pad.has_value(), "the sharer tokenizer ", sharer.dir(),
            " has neither a pad nor an eos token, which the reference alignment pads template sections with",
            "\nHINT: set pad_token or eos_token in its tokenizer_config.json, or use --alignment span");
  TokenAlignment a;
  const Encoding re = receiver.encode(r.text, false);
  a.receiver_ids = re.ids;
  const int64_t n = static_cast<int64_t>(re.ids.size());
  const std::vector<ContentMap> maps = content_maps(r, s);

  // Content section of each receiver token, or -1 for template (including tokens straddling a
  // section boundary and content without a counterpart on the sharer's side).
  std::vector<int> section_of(n, -1);
  for (int64_t p = 0; p < n; ++p) {
    const auto [b, e] = re.offsets[p];
    for (size_t k = 0; k < r.contents.size(); ++k) {
      const auto& rc = r.contents[k];
      if (e > b && b >= rc.begin && e <= rc.end && maps[k].sharer != nullptr) section_of[p] = static_cast<int>(k);
    }
  }
  // Sharer code point where receiver token p's content starts / ends.
  const auto sharer_at = [&](int64_t p, bool at_end) {
    const int k = section_of[p];
    const int64_t o = (at_end ? re.offsets[p].second : re.offsets[p].first) - r.contents[k].begin;
    return maps[k].map(o);
  };

  std::unordered_map<int64_t, int64_t> picked;  // receiver id -> sharer id kept for it
  for (int64_t p = 0; p < n;) {
    if (section_of[p] < 0) {
      // A template run [p, q): the sharer's own tokenization of the text between the same content
      // positions, right-padded as in the reference, or truncated to the run's length.
      int64_t q = p;
      while (q < n && section_of[q] < 0) ++q;
      const int64_t from = p == 0 ? 0 : sharer_at(p - 1, true);
      const int64_t to = std::max(from, q == n ? s.size_cp() : sharer_at(q, false));
      const std::vector<int64_t> ids = sharer.encode(s.slice(from, to), false).ids;
      for (int64_t k = 0; k < q - p; ++k) {
        const bool real = k < static_cast<int64_t>(ids.size());
        a.sharer_ids.push_back(real ? ids[k] : *pad);
        a.sharer_mask.push_back(real ? 1 : 0);
        a.slot_of.push_back(-1);
      }
      p = q;
      continue;
    }
    // A message token: decoded alone, re-encoded by the sharer, one sharer token kept (-1: the
    // re-encoding is empty, which cannot happen for a non-empty decode: padding, not fused).
    auto cached = picked.find(re.ids[p]);
    if (cached == picked.end()) {
      const std::vector<int64_t> cand = sharer.encode(receiver.decode({re.ids[p]}, false), false).ids;
      int64_t pick = cand.empty() ? -1 : cand[0];
      if (longest) {
        int64_t best = -1;
        for (int64_t t : cand) {  // the first of the longest decoded strings, as the reference
          const int64_t len = code_points(sharer.decode({t}, false));
          if (len > best) best = len, pick = t;
        }
      }
      cached = picked.emplace(re.ids[p], pick).first;
    }
    const bool real = cached->second >= 0;
    a.sharer_ids.push_back(real ? cached->second : *pad);
    a.sharer_mask.push_back(real ? 1 : 0);
    a.slot_of.push_back(real ? p : -1);
    ++p;
  }
  return a;
}

}  // namespace

AlignMethod parse_align_method(const std::string& name) {
  for (AlignMethod m : {AlignMethod::identity, AlignMethod::reference_first, AlignMethod::reference_longest,
                        AlignMethod::span, AlignMethod::span_tail})
    if (name == align_method_name(m)) return m;
  fail("unknown token alignment method '", name, "'\nHINT: use one of identity, reference_first, ",
       "reference_longest, span, span_tail");
}

const char* align_method_name(AlignMethod method) {
  switch (method) {
    case AlignMethod::identity: return "identity";
    case AlignMethod::reference_first: return "reference_first";
    case AlignMethod::reference_longest: return "reference_longest";
    case AlignMethod::span: return "span";
    case AlignMethod::span_tail: return "span_tail";
  }
  return "unknown";
}

TokenAlignment align_chat(const Tokenizer& receiver, const Tokenizer& sharer, const std::vector<ChatMessage>& messages,
                          const ChatOptions& options, AlignMethod method) {
  const Layout r = layout_of(render_chat_sections(receiver, messages, options));
  if (method == AlignMethod::identity) {
    TokenAlignment a;
    a.receiver_ids = receiver.encode(r.text, false).ids;
    a.sharer_ids = a.receiver_ids;
    a.sharer_mask.assign(a.receiver_ids.size(), 1);
    for (size_t p = 0; p < a.receiver_ids.size(); ++p) a.slot_of.push_back(static_cast<int64_t>(p));
    return a;
  }
  const Layout s = layout_of(render_chat_sections(sharer, messages, options));
  if (method == AlignMethod::span) return align_span(receiver, sharer, r, s);
  if (method == AlignMethod::span_tail) return align_span_tail(receiver, sharer, r, s);
  return align_reference(receiver, sharer, r, s, method == AlignMethod::reference_longest);
}

TokenAlignment align_text_span(const Tokenizer& receiver, const Tokenizer& sharer, const std::string& text) {
  const Layout l = layout_of({ChatSection{text, 0, true}});
  return align_span(receiver, sharer, l, l);
}

}  // namespace c2c
