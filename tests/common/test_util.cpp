#include "tests/common/test_util.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace c2c::test {

std::string source_dir() {
  const char* env = std::getenv("C2C_SOURCE_DIR");
  if (env && *env) return env;
  return std::filesystem::current_path().string();
}

std::string source_path(const std::string& rel) { return source_dir() + "/" + rel; }

std::string shared_dir() {
  std::filesystem::path p = std::filesystem::path(source_dir()).parent_path() / "shared";
  if (std::filesystem::is_directory(p)) return p.string();
  return "";
}

std::string temp_dir(const std::string& tag) {
  std::string tmpl = (std::filesystem::temp_directory_path() / ("c2c_" + tag + "_XXXXXX")).string();
  char* made = mkdtemp(tmpl.data());
  if (!made) throw std::runtime_error("mkdtemp failed for " + tmpl);
  static std::vector<std::string> to_remove;
  struct Cleaner {
    ~Cleaner() {
      for (auto& d : to_remove) std::filesystem::remove_all(d);
    }
  };
  static Cleaner cleaner;
  to_remove.push_back(made);
  return made;
}

}  // namespace c2c::test
