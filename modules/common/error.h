// One error policy for the whole project (STYLE.md item 3).
// Mistakes of the caller or of the input throw c2c::Error with a message that names the thing,
// the value and, when known, the fix ("HINT: ..."). Internal invariants use C2C_ASSERT.
// The CLI's main() catches once and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace c2c {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from any streamable parts: str("bad key '", key, "' in ", path).
template <typename... Parts>
std::string str(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  return os.str();
}

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(::c2c::str(parts...));  // qualified: no ADL clash with c10::str
}

}  // namespace c2c

// Input or caller error: C2C_CHECK(n > 0, "recipe ", path, ": steps must be > 0, got ", n);
#define C2C_CHECK(cond, ...)              \
  do {                                    \
    if (!(cond)) ::c2c::fail(__VA_ARGS__); \
  } while (0)

// Internal invariant: a failure is a bug in this project, reported with file and line.
#define C2C_ASSERT(cond)                                                                  \
  do {                                                                                    \
    if (!(cond))                                                                          \
      ::c2c::fail("internal error: assertion '", #cond, "' failed at ", __FILE__, ":", \
                  __LINE__, " (please report)");                                         \
  } while (0)
