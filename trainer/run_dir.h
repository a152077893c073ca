// One training run per run folder (checkpoint.dir), and no run destroys another's work.
// RunDirLock holds an advisory lock (flock on <dir>/.c2c.lock) for the whole run: the kernel drops
// it on any exit, SIGKILL included, so a lock file left by a dead process is simply taken over.
// A fresh start on a folder that holds an earlier run is refused unless checkpoint.overwrite says
// to move that run aside (never deleted).
#pragma once
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace c2c {

class RunDirLock {
 public:
  // Takes the lock or throws naming the folder and the holder (pid and host) when another
  // process holds it.
  explicit RunDirLock(const std::string& dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;
  // "" or, when the lock file named a process that no longer holds it, what was taken over.
  const std::string& takeover() const { return takeover_; }

 private:
  std::string path_, takeover_;
  int fd_ = -1;
};

// The entries of `dir` an earlier run left (everything but the lock file), sorted.
std::vector<std::string> earlier_run_entries(const std::string& dir);

// Moves every entry of `dir` but the lock into a new sibling folder "<dir>.replaced-<UTC time>"
// (renames, so the earlier run stays byte-identical) and returns that folder.
std::string move_earlier_run_aside(const std::string& dir);

// What `c2c train` does first with its folder (rank 0): creates it, checks it can be written,
// takes the lock, and refuses a fresh start over an earlier run unless `overwrite` moves that run
// aside. Resuming (a checkpoint to continue from) and restarting a run stopped before its first
// checkpoint (no final/) are not fresh starts. Returns the lock, held while it lives.
std::unique_ptr<RunDirLock> claim_run_dir(const std::string& dir, bool resume, bool overwrite,
                                          std::ostream& log);

}  // namespace c2c
