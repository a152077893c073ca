#include "trainer/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "modules/common/error.h"

namespace c2c {
namespace fs = std::filesystem;

namespace {

constexpr const char* kLockName = ".c2c.lock";

std::string read_fd(int fd) {
  std::string text;
  char buf[256];
  if (lseek(fd, 0, SEEK_SET) != 0) return text;
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) text.append(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string this_process() {
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  return "pid " + std::to_string(getpid()) + " on host " + host;
}

}  // namespace

RunDirLock::RunDirLock(const std::string& dir) : path_((fs::path(dir) / kLockName).string()) {
  fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  C2C_CHECK(fd_ >= 0, "cannot open the run lock ", path_, ": ", std::strerror(errno));
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = read_fd(fd_);
    close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      fail("checkpoint.dir '", dir, "' is in use by another training run (",
           holder.empty() ? "holder unknown" : holder, ", lock ", path_, ")\nHINT: wait for it to "
           "end, or give this run another checkpoint.dir; two runs on one folder would overwrite "
           "each other's checkpoints");
    fail("cannot lock ", path_, ": ", std::strerror(err));
  }
  // The kernel dropped the lock of whoever wrote this (it ended, perhaps killed): take it over.
  const std::string previous = read_fd(fd_);
  if (!previous.empty()) takeover_ = previous;
  const std::string me = this_process() + "\n";
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
    fail("cannot write the run lock ", path_, ": ", std::strerror(errno));
}

RunDirLock::~RunDirLock() {
  if (fd_ < 0) return;
  if (ftruncate(fd_, 0) != 0) {
  }  // an empty lock file: the next run has nothing to take over
  flock(fd_, LOCK_UN);
  close(fd_);
}

std::vector<std::string> earlier_run_entries(const std::string& dir) {
  std::vector<std::string> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != kLockName) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string move_earlier_run_aside(const std::string& dir) {
  const fs::path src = fs::absolute(dir).lexically_normal();
  const fs::path base = src.has_filename() ? src : src.parent_path();
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", std::gmtime(&now));
  fs::path aside = base.string() + ".replaced-" + stamp;
  for (int k = 2; fs::exists(aside); ++k) aside = base.string() + ".replaced-" + stamp + "-" + std::to_string(k);
  fs::create_directories(aside);
  for (const auto& name : earlier_run_entries(dir)) fs::rename(base / name, aside / name);
  return aside.string();
}

}  // namespace c2c
