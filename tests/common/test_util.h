// Helpers shared by the tests: where the source tree and ../shared are, skipping when absent.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "modules/common/error.h"

namespace c2c::test {

// The project's root (tests run from it; C2C_SOURCE_DIR overrides).
std::string source_dir();
// A path under the project's root.
std::string source_path(const std::string& rel);
// ../shared beside the project's root, or "" when absent.
std::string shared_dir();
// A fresh empty temporary folder, removed at exit.
std::string temp_dir(const std::string& tag);

// The message of the c2c::Error that `fn` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ::c2c::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace c2c::test

// Skips the current test, saying why, when ../shared/<rel> is absent.
#define C2C_REQUIRE_SHARED(rel, out_path)                                              \
  std::string out_path = ::c2c::test::shared_dir();                                    \
  if (out_path.empty() || access((out_path + "/" + rel).c_str(), R_OK) != 0) {         \
    GTEST_SKIP() << "needs ../shared/" << rel << " beside the project root (absent)"; \
  }                                                                                    \
  out_path += "/" + std::string(rel);
