// NFC with change counts (see unicode_nfc.h). Decompose fully, order marks canonically, then
// compose primary composites; Hangul syllables by formula (Unicode 3.12).
#include "data/unicode_nfc.h"

#include <algorithm>

namespace c2c::unicode {
namespace {

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
              kSCount = kLCount * kNCount;

int ccc(char32_t c) {
  if (c < 0x300) return 0;
  const auto* end = tables::kCcc + tables::kCccCount;
  const auto* it = std::lower_bound(tables::kCcc, end, c,
                                    [](const tables::CccEntry& e, char32_t v) { return e.cp < v; });
  return (it != end && it->cp == c) ? it->ccc : 0;
}

const tables::DecompEntry* decomposition(char32_t c) {
  if (c < 0xC0) return nullptr;
  const auto* end = tables::kDecomp + tables::kDecompCount;
  const auto* it = std::lower_bound(tables::kDecomp, end, c,
                                    [](const tables::DecompEntry& e, char32_t v) { return e.cp < v; });
  return (it != end && it->cp == c) ? it : nullptr;
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto* end = tables::kCompose + tables::kComposeCount;
  const auto* it = std::lower_bound(tables::kCompose, end, std::make_pair(a, b),
                                    [](const tables::ComposeEntry& e, std::pair<char32_t, char32_t> v) {
                                      return std::make_pair(e.first, e.second) < v;
                                    });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

struct Item {
  char32_t c;
  int change;
  int ccc;
};

}  // namespace

bool nfc_is_trivially_stable(const std::vector<char32_t>& in) {
  for (char32_t c : in)
    if (c >= 0x300) return false;
  return true;
}

std::vector<std::pair<char32_t, int>> nfc_with_changes(const std::vector<char32_t>& in) {
  std::vector<std::pair<char32_t, int>> out;
  if (nfc_is_trivially_stable(in)) {
    out.reserve(in.size());
    for (char32_t c : in) out.emplace_back(c, 0);
    return out;
  }
  // 1. Full canonical decomposition; extra code points count as insertions (+1).
  std::vector<Item> buf;
  buf.reserve(in.size() + 8);
  for (char32_t c : in) {
    if (c >= kSBase && c < kSBase + kSCount) {
      const int s = static_cast<int>(c - kSBase);
      buf.push_back({kLBase + s / kNCount, 0, 0});
      buf.push_back({static_cast<char32_t>(kVBase + (s % kNCount) / kTCount), 1, 0});
      if (s % kTCount) buf.push_back({static_cast<char32_t>(kTBase + s % kTCount), 1, 0});
    } else if (const auto* d = decomposition(c)) {
      for (uint32_t k = 0; k < d->length; ++k) {
        const char32_t x = tables::kDecompPool[d->offset + k];
        buf.push_back({x, k == 0 ? 0 : 1, ccc(x)});
      }
    } else {
      buf.push_back({c, 0, ccc(c)});
    }
  }
  // 2. Canonical ordering: stable sort of every run of non-starters by combining class.
  for (size_t i = 0; i < buf.size();) {
    if (buf[i].ccc == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < buf.size() && buf[j].ccc != 0) ++j;
    std::stable_sort(buf.begin() + i, buf.begin() + j,
                     [](const Item& a, const Item& b) { return a.ccc < b.ccc; });
    i = j;
  }
  // 3. Canonical composition. A mark composes with the last starter unless a code point in
  // between has class 0 or a class >= its own (it is "blocked").
  std::vector<Item> res;
  res.reserve(buf.size());
  long starter = -1;
  int last_ccc = 0;
  for (const Item& it : buf) {
    if (starter >= 0) {
      const bool adjacent = static_cast<long>(res.size()) - 1 == starter;
      const bool blocked = !adjacent && (last_ccc == 0 || last_ccc >= it.ccc);
      if (!blocked) {
        if (char32_t comp = compose(res[starter].c, it.c)) {
          res[starter].c = comp;
          res[starter].change += it.change - 1;
          continue;
        }
      }
    }
    if (it.ccc == 0) starter = static_cast<long>(res.size());
    res.push_back(it);
    last_ccc = it.ccc;
  }
  out.reserve(res.size());
  for (const Item& it : res) out.emplace_back(it.c, it.change);
  return out;
}

}  // namespace c2c::unicode
