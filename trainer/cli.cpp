#include "trainer/cli.h"

#include <torch/cuda.h>

#include <iostream>

#include "kernels/fused_ops.h"
#include "modules/common/error.h"
#include "modules/common/torch_compat.h"

namespace c2c::cli {
namespace {

// What this build carries and what this machine shows it: scripts/gpu_check.sh reads the last line.
int cmd_version(const std::vector<std::string>& argv) {
  C2C_CHECK(argv.empty(), "version takes no arguments");
#ifdef USE_C10D_NCCL
  const char* nccl = "on";
#else
  const char* nccl = "off";
#endif
  std::cout << "c2c on LibTorch " << compat::torch_version() << "\n"
            << "CUDA kernels: " << (kernels::built_with_cuda() ? "built" : "not built")
            << "; NCCL process group: " << nccl << "\n"
            << "CUDA devices visible: " << (torch::cuda::is_available() ? torch::cuda::device_count() : 0)
            << "\n";
  return 0;
}

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
  const char* summary;
};

// The one table of sub-commands.
const Command kCommands[] = {
    {"train", cmd_train, "train a fuser from a YAML recipe (both LLMs frozen)"},
    {"generate", cmd_generate, "generate text with one model, or with a receiver + sharer(s) + fuser"},
    {"tokenize", cmd_tokenize, "print token ids and character offsets of a text"},
    {"import-official", cmd_import_official, "convert a published C2C fuser (projector_*.pt) to our fuser checkpoint"},
    {"export-official", cmd_export_official, "write a fuser of ours in the official C2C layout (projector_*.pt)"},
    {"make-random-model", cmd_make_random_model, "write a random-weight model folder with published shapes"},
    {"eval", cmd_eval, "accuracy and latency of receiver / sharer / T2T / C2C on multiple-choice benchmarks"},
    {"pretrain", cmd_pretrain, "train every weight of a small LLM on text / chats (the toy world's models)"},
    {"toy-world", cmd_toy_world, "write the seeded fictional world of the demo (corpora, fuser data, benchmarks)"},
    {"probe-kv", cmd_probe_kv, "a linear probe of a sharer's cached K/V at the slots a fuser reads (the toy world's check)"},
    {"prepare", cmd_prepare, "turn conversations (JSONL / JSON array) into paired HDF5 training shards"},
    {"version", cmd_version, "the LibTorch, kernels and NCCL of this build, and the CUDA devices visible"},
};

void print_usage() {
  std::cout << "usage: c2c <command> [options]   (c2c <command> --help for its options)\n\n";
  for (const auto& c : kCommands) std::cout << "  " << c.name << "\t" << c.summary << "\n";
  std::cout << "\nLibTorch " << compat::torch_version() << "\n";
}

}  // namespace

int run(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  for (const auto& c : kCommands) {
    if (name == c.name) return c.run(rest);
  }
  std::string known;
  for (const auto& c : kCommands) known += std::string(known.empty() ? "" : ", ") + c.name;
  fail("unknown command '", name, "'\nHINT: the commands are: ", known);
}

}  // namespace c2c::cli
