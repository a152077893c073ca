// `c2c prepare`: conversations (JSON Lines or a JSON array) -> paired HDF5 shards + manifest.json.
// The work is in data/prepare.cpp; this file parses the options and prints the summary.
#include <iostream>
#include <thread>

#include "data/prepare.h"
#include "modules/common/error.h"
#include "trainer/args.h"
#include "trainer/cli.h"

namespace c2c::cli {
namespace {

const char* kUsage =
    "usage: c2c prepare --input FILE --receiver-tokenizer DIR --sharer-tokenizer DIR\n"
    "                   [--sharer-tokenizer DIR ...] [--alignment METHOD] [--max-length 2048]\n"
    "                   [--shard-size 10000] [--limit N] [--threads N] --out DIR\n\n"
    "  --input FILE              JSON Lines, or one JSON array (as OpenHermes-2.5 is published), of\n"
    "                            {\"messages\": [{\"role\", \"content\"}]} or\n"
    "                            {\"conversations\": [{\"from\": human|gpt|system, \"value\"}]}\n"
    "  --receiver-tokenizer DIR  the receiver's tokenizer folder (tokenizer.json, tokenizer_config.json)\n"
    "  --sharer-tokenizer DIR    a sharer's tokenizer folder; repeat for several sharers\n"
    "  --alignment METHOD        identity | reference_first | reference_longest | span | span_tail\n"
    "                            (default span; see data/alignment.h)\n"
    "  --max-length N            skip samples longer than N tokens (receiver or sharer; default 2048)\n"
    "  --shard-size N            samples per HDF5 shard (default 10000)\n"
    "  --limit N                 read only the first N records\n"
    "  --threads N               tokenizing threads (default: all cores)\n"
    "  --out DIR                 output folder: shard-*.h5 and manifest.json\n\n"
    "The last message of each conversation must be the assistant's; it carries the loss (content +\n"
    "end-of-turn tokens). Malformed records are skipped and reported with their line / array index.\n";

}  // namespace

int cmd_prepare(const std::vector<std::string>& argv) {
  Args args("prepare", argv, {"help"});
  if (args.flag("help")) {
    std::cout << kUsage;
    return 0;
  }
  PrepareOptions opt;
  opt.input = args.str("input");
  opt.receiver_tokenizer = args.str("receiver-tokenizer");
  opt.sharer_tokenizers = args.all("sharer-tokenizer");
  C2C_CHECK(!opt.sharer_tokenizers.empty(), "prepare: --sharer-tokenizer is required\nHINT: run `c2c prepare --help`");
  opt.alignment = args.str("alignment", opt.alignment);
  opt.max_length = args.integer("max-length", opt.max_length);
  opt.shard_size = args.integer("shard-size", opt.shard_size);
  opt.limit = args.integer("limit", opt.limit);
  opt.threads = static_cast<int>(args.integer("threads", std::max(1u, std::thread::hardware_concurrency())));
  opt.out_dir = args.str("out");
  args.finish();

  const PrepareReport report = prepare_paired_dataset(opt, std::cerr);
  std::cout << report.summary() << "\nwrote " << opt.out_dir << "/manifest.json\n";
  if (report.written == 0) {
    std::cerr << "prepare: no sample was written\n";
    return 1;
  }
  return 0;
}

}  // namespace c2c::cli
