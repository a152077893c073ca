// Token alignment (data/alignment.cpp): maps stated by hand on small texts (tiny fixture tokenizers
// and the real Qwen3 / Llama-3 ones), and the invariants of each method on chat prompts with
// multi-byte text (CJK, accents, emoji) for both directions of the real Qwen3 <-> Llama-3 pair.
#include <unistd.h>

#include <algorithm>
#include <map>

#include "data/alignment.h"
#include "modules/common/error.h"
#include "tests/common/test_util.h"

namespace c2c {
namespace {

std::shared_ptr<Tokenizer> tiny(const std::string& name) {
  return Tokenizer::load(test::source_path("tests/fixtures/tokenizers/" + name));
}

// Code points of valid UTF-8 (all test inputs are valid).
int64_t cps(const std::string& s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

// A rendered chat's content sections in code points of the whole text.
struct ContentSpan {
  int message, ordinal;
  int64_t begin, end;
  std::string text;
};
std::vector<ContentSpan> content_spans(const Tokenizer& tok, const std::vector<ChatMessage>& msgs,
                                       const ChatOptions& opt) {
  std::vector<ContentSpan> out;
  int64_t at = 0;
  for (const ChatSection& s : render_chat_sections(tok, msgs, opt)) {
    const int64_t n = cps(s.text);
    if (s.is_content && n > 0) {
      int ordinal = 0;
      for (const auto& o : out) ordinal += o.message == s.message_index;
      out.push_back({s.message_index, ordinal, at, at + n, s.text});
    }
    at += n;
  }
  return out;
}

std::vector<int64_t> iota_map(size_t n) {
  std::vector<int64_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<int64_t>(i);
  return v;
}

// Code points [from, to) of valid UTF-8.
std::string cp_substr(const std::string& s, int64_t from, int64_t to) {
  std::string out;
  int64_t n = -1;
  for (char c : s) {
    n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
    if (n >= from && n < to) out += c;
  }
  return out;
}

bool has_replacement_char(const std::string& s) { return s.find("\xEF\xBF\xBD") != std::string::npos; }

// ---- method names ---------------------------------------------------------------------------------

TEST(AlignMethodName, RoundTripsAndRejectsUnknownNamesListingTheValidOnes) {
  for (AlignMethod m : {AlignMethod::identity, AlignMethod::reference_first, AlignMethod::reference_longest,
                        AlignMethod::span, AlignMethod::span_tail})
    EXPECT_EQ(parse_align_method(align_method_name(m)), m);
  try {
    parse_align_method("spans");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'spans'"), std::string::npos) << what;
    for (const char* name : {"identity", "reference_first", "reference_longest", "span", "span_tail"})
      EXPECT_NE(what.find(name), std::string::npos) << what;
    EXPECT_NE(what.find("HINT"), std::string::npos) << what;
  }
}

// ---- small cases on the tiny fixture tokenizers ------------------------------------------------

TEST(AlignTextSpan, IdenticalSplitsGiveTheIdentityMap) {
  auto r = tiny("tiny-bytelevel"), s = tiny("tiny-llama3");
  // Both split "Hello world" as H|e|ll|o| w|o|r|l|d.
  const TokenAlignment a = align_text_span(*r, *s, "Hello world");
  EXPECT_EQ(a.receiver_ids, r->encode("Hello world").ids);
  EXPECT_EQ(a.sharer_ids, s->encode("Hello world").ids);
  ASSERT_EQ(a.receiver_ids.size(), 9u);
  EXPECT_EQ(a.slot_of, iota_map(9));
  EXPECT_EQ(a.sharer_mask, std::vector<uint8_t>(a.sharer_ids.size(), 1));
}

TEST(AlignTextSpan, ByteFragmentsOfOneCharacterShareTheSlotOfItsLastFragment) {
  auto r = tiny("tiny-bytelevel"), s = tiny("tiny-llama3");
  // B|o|n|j|ou|r| c|a|f|<0xC3>|<0xA9> on both sides: both fragments of "é" span the whole
  // character (11, 12), so both receiver fragments take the sharer's second fragment (slot 10).
  const TokenAlignment a = align_text_span(*r, *s, "Bonjour café");
  ASSERT_EQ(a.receiver_ids.size(), 11u);
  ASSERT_EQ(a.sharer_ids.size(), 11u);
  EXPECT_EQ(a.slot_of, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 10}));
}

TEST(AlignChat, IdentityReadsTheReceiversTokens) {
  auto t = tiny("tiny-bytelevel");
  const std::vector<ChatMessage> msgs = {{"user", "Hi there"}};
  ChatOptions opt;
  opt.add_generation_prompt = true;
  const TokenAlignment a = align_chat(*t, *t, msgs, opt, AlignMethod::identity);
  EXPECT_EQ(a.receiver_ids, t->encode(render_chat(*t, msgs, true), false).ids);
  EXPECT_EQ(a.sharer_ids, a.receiver_ids);
  EXPECT_EQ(a.slot_of, iota_map(a.receiver_ids.size()));
  EXPECT_EQ(a.sharer_mask, std::vector<uint8_t>(a.receiver_ids.size(), 1));
}

TEST(AlignChat, SpanSkipsTemplateAndStrippedWhitespace) {
  // tiny-llama3 strips message content (Llama-3 template), tiny-bytelevel (Qwen3 template) keeps it:
  // "  Spaced text  " is ' ' ' ' S p ac e d ' text' '  ' for the receiver, S p ac e d ' text' for
  // the sharer. The leading and trailing spaces have no sharer text: -1; the rest map 1:1.
  auto r = tiny("tiny-bytelevel"), s = tiny("tiny-llama3");
  const std::vector<ChatMessage> msgs = {{"user", "  Spaced text  "}};
  ChatOptions opt;
  opt.add_generation_prompt = true;
  const TokenAlignment a = align_chat(*r, *s, msgs, opt, AlignMethod::span);
  EXPECT_EQ(a.receiver_ids, r->encode(render_chat(*r, msgs, true), false).ids);
  EXPECT_EQ(a.sharer_ids, s->encode(render_chat(*s, msgs, true), false).ids);
  std::vector<std::string> mapped;  // "receiver token=sharer token" for every fused position
  int unmapped_content = 0;
  for (size_t p = 0; p < a.slot_of.size(); ++p) {
    const std::string rt = r->decode({a.receiver_ids[p]});
    if (a.slot_of[p] >= 0) mapped.push_back(rt + "=" + s->decode({a.sharer_ids[a.slot_of[p]]}));
    else unmapped_content += rt == " " || rt == "  ";
  }
  EXPECT_EQ(mapped, (std::vector<std::string>{"S=S", "p=p", "ac=ac", "e=e", "d=d", " text= text"}));
  EXPECT_EQ(unmapped_content, 3);  // ' ', ' ' and '  '
}

TEST(AlignChat, SpanTailAlsoMapsTheClosingTemplateFromTheEnd) {
  // Qwen3-style receiver, Llama-3-style sharer: the content maps as in `span`; the receiver's
  // "<|im_end|>\n<|im_start|>assistant\n" tail takes the sharer's "<|eot_id|>...\n\n" tail
  // aligned at the end (the last fused receiver token, rn - 2, with the sharer's last),
  // clamped to the sharer tail's first token.
  auto r = tiny("tiny-bytelevel"), s = tiny("tiny-llama3");
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hello world"}};
  ChatOptions opt;
  opt.add_generation_prompt = true;
  const TokenAlignment span = align_chat(*r, *s, msgs, opt, AlignMethod::span);
  const TokenAlignment tail = align_chat(*r, *s, msgs, opt, AlignMethod::span_tail);
  EXPECT_EQ(tail.receiver_ids, span.receiver_ids);
  EXPECT_EQ(tail.sharer_ids, span.sharer_ids);
  const int64_t rn = static_cast<int64_t>(tail.receiver_ids.size());
  const int64_t sn = static_cast<int64_t>(tail.sharer_ids.size());
  // The tails: the tokens after the last content token ("...world"), which span maps last.
  int64_t r0 = rn;
  while (r0 > 0 && span.slot_of[r0 - 1] < 0) --r0;
  ASSERT_GT(r0, 0);
  ASSERT_LT(r0 + 2, rn);
  EXPECT_NE(r->decode({tail.receiver_ids[r0 - 1]}).find("d"), std::string::npos);  // "...world"
  const int64_t s0 = span.slot_of[r0 - 1] + 1;
  ASSERT_LT(s0 + 2, sn);
  for (int64_t p = 0; p < rn; ++p) {
    if (p < r0) {
      EXPECT_EQ(tail.slot_of[p], span.slot_of[p]) << "position " << p;  // content and head: as span
    } else {
      EXPECT_EQ(span.slot_of[p], -1);
      EXPECT_EQ(tail.slot_of[p], std::max(s0, sn - std::max<int64_t>(1, rn - 1 - p))) << "position " << p;
    }
  }
  EXPECT_EQ(tail.slot_of[rn - 2], sn - 1);  // the last fused receiver token: the sharer's last
  EXPECT_EQ(tail.slot_of[rn - 3], sn - 2);
  // Earlier template text (the system turn's end, the user header) stays unfused.
  int64_t unfused_before_tail = 0;
  for (int64_t p = 0; p < r0; ++p) unfused_before_tail += tail.slot_of[p] < 0;
  EXPECT_GT(unfused_before_tail, 0);
}

TEST(AlignChat, ReferenceKeepsTheHeadOfALongerSharerTemplateRunAndPadsAShorterOne) {
  auto r = tiny("tiny-bytelevel"), s = tiny("tiny-llama3");
  const std::vector<ChatMessage> msgs = {{"user", "Hello world"}};
  ChatOptions opt;
  opt.add_generation_prompt = true;
  const TokenAlignment a = align_chat(*r, *s, msgs, opt, AlignMethod::reference_longest);
  const Encoding re = r->encode(render_chat(*r, msgs, true), false);
  EXPECT_EQ(a.receiver_ids, re.ids);
  ASSERT_EQ(a.sharer_ids.size(), a.receiver_ids.size());
  // Receiver: <|im_start|> us er \n | H e ll o ' w' o r l d | <|im_end|> \n <|im_start|> ... (template)
  const auto content = content_spans(*r, msgs, opt);
  ASSERT_EQ(content.size(), 1u);
  int64_t first_content = -1, last_content = -1;
  for (size_t p = 0; p < re.ids.size(); ++p) {
    const bool inside = re.offsets[p].first >= content[0].begin && re.offsets[p].second <= content[0].end;
    EXPECT_EQ(a.slot_of[p], inside ? static_cast<int64_t>(p) : -1) << p;
    if (inside && first_content < 0) first_content = static_cast<int64_t>(p);
    if (inside) last_content = static_cast<int64_t>(p);
  }
  ASSERT_EQ(first_content, 4);
  ASSERT_EQ(last_content, 12);
  // The sharer's first template run (its Llama-3.1 system block and user header, ~60 tokens) is
  // longer than the receiver's 4: its first 4 tokens are kept.
  const std::vector<int64_t> sharer_natural = s->encode(render_chat(*s, msgs, true), false).ids;
  EXPECT_EQ(std::vector<int64_t>(a.sharer_ids.begin(), a.sharer_ids.begin() + 4),
            std::vector<int64_t>(sharer_natural.begin(), sharer_natural.begin() + 4));
  // The trailing run: the sharer's "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
  // is shorter than the receiver's "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
  // so it is right-padded with the sharer's pad (eos here: no pad token), mask 0.
  const std::vector<int64_t> tail = s->encode("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n").ids;
  const size_t run = a.sharer_ids.size() - 13;
  ASSERT_LT(tail.size(), run);
  const int64_t pad = s->pad_id().value_or(s->eos_id().value());
  for (size_t k = 0; k < run; ++k) {
    const bool real = k < tail.size();
    EXPECT_EQ(a.sharer_ids[13 + k], real ? tail[k] : pad) << k;
    EXPECT_EQ(a.sharer_mask[13 + k], real ? 1 : 0) << k;
  }
  // Message tokens split identically by both: the sharer reads the receiver's token texts.
  for (int64_t p = 4; p <= 12; ++p) EXPECT_EQ(s->decode({a.sharer_ids[p]}), r->decode({a.receiver_ids[p]}));
}

// The real tokenizers, loaded once (each load parses a large tokenizer.json).
std::shared_ptr<Tokenizer> real(const std::string& dir) {
  static std::map<std::string, std::shared_ptr<Tokenizer>> cache;
  auto& t = cache[dir];
  if (!t) t = Tokenizer::load(dir);
  return t;
}

// ---- small cases on the real tokenizers -----------------------------------------------------------

TEST(AlignTextSpan, RealTokenizersSplitCjkDifferently) {
  C2C_REQUIRE_SHARED("tokenizers/qwen3", qwen_dir);
  C2C_REQUIRE_SHARED("tokenizers/llama3", llama_dir);
  auto qwen = real(qwen_dir), llama = real(llama_dir);
  const std::string text = "Hello 東京";
  // Qwen3: Hello | ' ' + first bytes of 東 (5,7) | last byte of 東 (6,7) | 京 (7,8).
  // Llama-3: Hello | ' 東京' (5,8).
  ASSERT_EQ(qwen->encode(text).ids.size(), 4u);
  ASSERT_EQ(llama->encode(text).ids.size(), 2u);
  // Receiver Qwen3: no Llama token ends inside ' 東' -> -1, -1; 京 ends where ' 東京' ends -> 1.
  EXPECT_EQ(align_text_span(*qwen, *llama, text).slot_of, (std::vector<int64_t>{0, -1, -1, 1}));
  // Receiver Llama-3: ' 東京' takes the last Qwen token ending in it, 京 (slot 3).
  EXPECT_EQ(align_text_span(*llama, *qwen, text).slot_of, (std::vector<int64_t>{0, 3}));
  // Identical splits: the identity map.
  EXPECT_EQ(align_text_span(*qwen, *llama, "Hello world").slot_of, (std::vector<int64_t>{0, 1}));
}

TEST(AlignChat, ReferenceFirstAndLongestPickDifferentSharerTokens) {
  C2C_REQUIRE_SHARED("tokenizers/qwen3", qwen_dir);
  C2C_REQUIRE_SHARED("tokenizers/llama3", llama_dir);
  auto qwen = real(qwen_dir), llama = real(llama_dir);
  // Llama-3 reads "人民共和国" as one token; Qwen3 re-encodes it as 人民 | 共和国.
  const std::vector<ChatMessage> msgs = {{"user", "中华人民共和国"}};
  ChatOptions opt;
  opt.add_generation_prompt = true;
  const TokenAlignment first = align_chat(*llama, *qwen, msgs, opt, AlignMethod::reference_first);
  const TokenAlignment longest = align_chat(*llama, *qwen, msgs, opt, AlignMethod::reference_longest);
  ASSERT_EQ(first.receiver_ids, longest.receiver_ids);
  int found = 0;
  for (size_t p = 0; p < first.receiver_ids.size(); ++p) {
    if (llama->decode({first.receiver_ids[p]}) != "人民共和国") continue;
    ++found;
    EXPECT_EQ(first.slot_of[p], static_cast<int64_t>(p));
    EXPECT_EQ(qwen->decode({first.sharer_ids[p]}), "人民");
    EXPECT_EQ(qwen->decode({longest.sharer_ids[p]}), "共和国");
  }
  EXPECT_EQ(found, 1);
}

// ---- invariants on chat prompts with the real tokenizers ------------------------------------------

// Contents without leading or trailing whitespace (check_span compares offsets within them).
std::vector<std::vector<ChatMessage>> conversations() {
  return {
      {{"user", "What is the capital of France? Réponds en français, s'il te plaît."}},
      {{"system", "You are a helpful assistant 🙂"}, {"user", "东京和北京哪个大？ Answer briefly 😀👍🏽."}},
      {{"user", "Naïve café crème brûlée: 3 × 4 = 12 — ok?"},
       {"assistant", "Yes: αβγ переписка 한국어."},
       {"user", "日本語でお願いします 🎉🎉"}},
  };
}

struct Pair {
  std::shared_ptr<Tokenizer> receiver, sharer;
  std::string name;
};

// Span: the sharer reads its own prompt; every fused position p takes a sharer token whose text
// ends inside receiver token p's part of the same message content (same offset in that content:
// these contents have no leading/trailing whitespace, so both templates keep them unchanged), and
// no sharer token ends inside a content token left at -1.
void check_span(const Pair& pair, const std::vector<ChatMessage>& msgs, const ChatOptions& opt) {
  const Tokenizer &r = *pair.receiver, &s = *pair.sharer;
  const TokenAlignment a = align_chat(r, s, msgs, opt, AlignMethod::span);
  const Encoding re = r.encode(render_chat(r, msgs, true), false);
  const Encoding se = s.encode(render_chat(s, msgs, true), false);
  ASSERT_EQ(a.receiver_ids, re.ids);
  ASSERT_EQ(a.sharer_ids, se.ids);
  ASSERT_EQ(a.sharer_mask, std::vector<uint8_t>(se.ids.size(), 1));
  ASSERT_EQ(a.slot_of.size(), re.ids.size());
  const auto rc = content_spans(r, msgs, opt), sc = content_spans(s, msgs, opt);
  ASSERT_EQ(rc.size(), sc.size());
  for (size_t k = 0; k < rc.size(); ++k) ASSERT_EQ(rc[k].text, sc[k].text);
  int64_t content_tokens = 0, fused = 0;
  for (size_t p = 0; p < re.ids.size(); ++p) {
    const auto [b, e] = re.offsets[p];
    int k = -1;
    for (size_t j = 0; j < rc.size(); ++j)
      if (b < rc[j].end && e > rc[j].begin) k = static_cast<int>(j);
    if (k < 0) {
      EXPECT_EQ(a.slot_of[p], -1) << "template token " << p;
      continue;
    }
    ++content_tokens;
    const int64_t lo = std::max(b, rc[k].begin) - rc[k].begin, hi = std::min(e, rc[k].end) - rc[k].begin;
    if (a.slot_of[p] < 0) {
      for (const auto& o : se.offsets) {
        const int64_t end = o.second - sc[k].begin;
        EXPECT_FALSE(end > lo && end <= hi) << "receiver token " << p << " left unfused";
      }
      continue;
    }
    ++fused;
    ASSERT_LT(a.slot_of[p], static_cast<int64_t>(se.ids.size()));
    const int64_t q = a.slot_of[p], end = se.offsets[q].second - sc[k].begin;
    EXPECT_GT(end, lo) << p;
    EXPECT_LE(end, hi) << p;
    // The last one ending there.
    if (q + 1 < static_cast<int64_t>(se.ids.size())) {
      EXPECT_GT(se.offsets[q + 1].second - sc[k].begin, hi) << p;
    }
    // In text: the sharer token (whole characters, inside the content) is the receiver's content
    // text just before that end.
    const std::string st = s.decode({se.ids[q]});
    const int64_t begin = se.offsets[q].first - sc[k].begin;
    if (!has_replacement_char(st) && begin >= 0) {
      EXPECT_EQ(cp_substr(rc[k].text, begin, end), st) << p;
    }
  }
  EXPECT_GT(content_tokens, 0);
  EXPECT_GE(fused * 2, content_tokens) << "fewer than half of the content tokens fused";
}

// Reference: equal lengths; message tokens (wholly inside content) map to themselves and the
// sharer token there decodes to text contained in the receiver token's text, or to U+FFFD where
// either side is a byte fragment of a multi-byte character; other positions are template, -1;
// padding only in template runs.
void check_reference(const Pair& pair, const std::vector<ChatMessage>& msgs, const ChatOptions& opt,
                     AlignMethod method) {
  const Tokenizer &r = *pair.receiver, &s = *pair.sharer;
  const TokenAlignment a = align_chat(r, s, msgs, opt, method);
  const Encoding re = r.encode(render_chat(r, msgs, true), false);
  ASSERT_EQ(a.receiver_ids, re.ids);
  ASSERT_EQ(a.sharer_ids.size(), re.ids.size());
  ASSERT_EQ(a.sharer_mask.size(), re.ids.size());
  ASSERT_EQ(a.slot_of.size(), re.ids.size());
  const auto rc = content_spans(r, msgs, opt);
  int64_t fused = 0;
  for (size_t p = 0; p < re.ids.size(); ++p) {
    const auto [b, e] = re.offsets[p];
    bool inside = false;
    for (const auto& c : rc) inside = inside || (e > b && b >= c.begin && e <= c.end);
    if (!inside) {
      EXPECT_EQ(a.slot_of[p], -1) << p;
      continue;
    }
    ++fused;
    EXPECT_EQ(a.slot_of[p], static_cast<int64_t>(p));
    EXPECT_EQ(a.sharer_mask[p], 1) << p;
    const std::string rt = r.decode({re.ids[p]}), st = s.decode({a.sharer_ids[p]});
    EXPECT_TRUE(rt.find(st) != std::string::npos || has_replacement_char(st) || has_replacement_char(rt))
        << p << ": receiver '" << rt << "', sharer '" << st << "'";
    // The rule itself: the first / the first longest of the sharer's re-encoding.
    const std::vector<int64_t> cand = s.encode(rt, false).ids;
    ASSERT_FALSE(cand.empty());
    int64_t expected = cand[0], best = -1;
    if (method == AlignMethod::reference_longest) {
      for (int64_t t : cand) {
        const int64_t len = cps(s.decode({t}));
        if (len > best) best = len, expected = t;
      }
    }
    EXPECT_EQ(a.sharer_ids[p], expected) << p;
  }
  EXPECT_GT(fused, 0);
  for (size_t p = 0; p < re.ids.size(); ++p) {
    if (a.sharer_mask[p] == 0) {
      EXPECT_EQ(a.slot_of[p], -1) << "padding at a fused position " << p;
    }
  }
}

TEST(AlignChat, InvariantsOnRealTokenizersWithMultiByteText) {
  C2C_REQUIRE_SHARED("tokenizers/qwen3", qwen_dir);
  C2C_REQUIRE_SHARED("tokenizers/llama3", llama_dir);
  auto qwen = real(qwen_dir), llama = real(llama_dir);
  ChatOptions opt;
  opt.add_generation_prompt = true;
  for (const Pair& pair : {Pair{qwen, llama, "qwen3<-llama3"}, Pair{llama, qwen, "llama3<-qwen3"}}) {
    for (const auto& msgs : conversations()) {
      SCOPED_TRACE(pair.name + ", first message: " + msgs[0].content);
      check_span(pair, msgs, opt);
      check_reference(pair, msgs, opt, AlignMethod::reference_first);
      check_reference(pair, msgs, opt, AlignMethod::reference_longest);
    }
  }
}

}  // namespace
}  // namespace c2c
