// FNV-1a (64 bit) over byte strings: the fingerprints that data manifests record of tokenizers
// and fuser checkpoints of the models they were made with. Not a cryptographic hash: it tells
// "another file" from "the same file", nothing more.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace c2c {

class Fingerprint {
 public:
  // Adds one piece (a file's bytes, a name); pieces are separated, so ("ab", "c") != ("a", "bc").
  void feed(const std::string& bytes) {
    for (unsigned char c : bytes) h_ = (h_ ^ c) * kPrime;
    h_ = (h_ ^ 0xffu) * kPrime;
  }
  std::string str() const {  // "fnv1a64:" + 16 hex digits
    char buf[32];
    std::snprintf(buf, sizeof(buf), "fnv1a64:%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  static constexpr uint64_t kPrime = 1099511628211ull;
  uint64_t h_ = 1469598103934665603ull;
};

}  // namespace c2c
