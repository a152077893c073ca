// Sub-commands of the `c2c` binary. Each lives in its own cli_<name>.cpp and is listed once in
// the table in cli.cpp.
#pragma once
#include <string>
#include <vector>

namespace c2c::cli {

int run(int argc, char** argv);

// Each sub-command takes the arguments after its name.
int cmd_generate(const std::vector<std::string>& argv);
int cmd_tokenize(const std::vector<std::string>& argv);
int cmd_import_official(const std::vector<std::string>& argv);
int cmd_export_official(const std::vector<std::string>& argv);
int cmd_make_random_model(const std::vector<std::string>& argv);
int cmd_prepare(const std::vector<std::string>& argv);
int cmd_train(const std::vector<std::string>& argv);
int cmd_eval(const std::vector<std::string>& argv);
int cmd_pretrain(const std::vector<std::string>& argv);
int cmd_toy_world(const std::vector<std::string>& argv);
int cmd_probe_kv(const std::vector<std::string>& argv);

}  // namespace c2c::cli
