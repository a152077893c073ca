// Small file helpers shared by every folder: whole-file reads with clear errors, atomic writes.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace c2c {

// Reads a whole file; throws c2c::Error naming the path when it is missing or unreadable.
std::string read_file(const std::string& path);

// Parses a JSON file; a syntax error names the file and the byte where parsing stopped.
nlohmann::json read_json(const std::string& path);

// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename.
// A kill during the write leaves the previous file intact.
void write_file_atomic(const std::string& path, const std::string& data);

bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);

}  // namespace c2c
