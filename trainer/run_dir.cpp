#include "trainer/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <ostream>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "trainer/checkpoint.h"

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

std::unique_ptr<RunDirLock> claim_run_dir(const std::string& dir, bool resume, bool overwrite,
                                          std::ostream& log) {
  fs::create_directories(dir);
  write_file_atomic(join_path(dir, ".write_test"), "");
  fs::remove(join_path(dir, ".write_test"));
  auto lock = std::make_unique<RunDirLock>(dir);
  if (!lock->takeover().empty())
    log << "c2c train: took over the lock of " << lock->takeover() << " (no longer running)\n";
  // Resuming continues the run in the folder. A resumable start with no checkpoint yet, and no
  // final/, restarts a run that was stopped before its first save (its partial metrics are
  // redone). Any other fresh start would overwrite an earlier run.
  const bool resuming = resume && latest_checkpoint(dir).has_value();
  const bool restart = resume && !fs::exists(join_path(dir, "final"));
  const auto earlier = earlier_run_entries(dir);
  if (!resuming && !restart && !earlier.empty()) {
    std::string names;
    for (const auto& e : earlier) names += (names.empty() ? "" : ", ") + e;
    C2C_CHECK(overwrite, "checkpoint.dir '", dir, "' holds an earlier run (", names,
              ") and this run would start afresh (",
              resume ? "it has final/ but no checkpoint to resume" : "checkpoint.resume is false",
              ")\nHINT: set checkpoint.overwrite: true to move the earlier run aside to ", dir,
              ".replaced-<date>, or choose another checkpoint.dir");
    log << "c2c train: moved the earlier run in " << dir << " aside to " << move_earlier_run_aside(dir)
        << " (checkpoint.overwrite)\n";
  }
  return lock;
}

}  // namespace c2c
