// `c2c probe-kv` (trainer/kv_probe.h): a linear probe of a sharer's cached K/V at the slots a
// fuser reads, per layer and position; the toy world's check reads its JSON.
#include <iostream>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/common/torch_compat.h"
#include "trainer/args.h"
#include "trainer/cli.h"
#include "trainer/kv_probe.h"

namespace c2c::cli {
namespace {

const char* kUsage =
    "usage: c2c probe-kv --sharer DIR --receiver-tokenizer DIR --train FILE.jsonl --test FILE.jsonl\n"
    "                    [--alignment span_tail] [--positions 4] [--iterations 300] [--lr 1e-2]\n"
    "                    [--weight-decay 1e-3] [--seed 0] [--threads 0] [--out PROBE.json]\n\n"
    "For every question of the benchmark files (JSON Lines: question, choices, answer, subject), the\n"
    "sharer reads its prompt aligned to the receiver as `c2c prepare` aligns it; a linear probe of its\n"
    "cached K/V (all KV heads) at one layer and one fused slot (the k-th from the end, k < --positions,\n"
    "and the mean over fused slots) is trained on --train and scored on --test. Prints the table of\n"
    "test accuracies and writes it as JSON to --out (scripts/check_toy_world.py reads it).\n";

}  // namespace

int cmd_probe_kv(const std::vector<std::string>& argv) {
  Args args("probe-kv", argv, {"help"});
  if (args.flag("help")) {
    std::cout << kUsage;
    return 0;
  }
  KvProbeOptions o;
  o.sharer = args.str("sharer");
  o.receiver_tokenizer = args.str("receiver-tokenizer");
  o.train = args.str("train");
  o.test = args.str("test");
  o.alignment = args.str("alignment", o.alignment);
  o.positions_from_end = args.integer("positions", o.positions_from_end);
  o.iterations = args.integer("iterations", o.iterations);
  o.lr = args.number("lr", o.lr);
  o.weight_decay = args.number("weight-decay", o.weight_decay);
  o.seed = args.integer("seed", o.seed);
  const int64_t threads = args.integer("threads", 0);
  const std::string out = args.str("out", "");
  args.finish();
  compat::set_threads(threads);
  const KvProbeReport r = run_kv_probe(o, std::cerr);
  std::cout << r.table();
  if (!out.empty()) {
    write_file_atomic(out, r.to_json().dump(1) + "\n");
    std::cout << "probe-kv: written to " << out << "\n";
  }
  return 0;
}

}  // namespace c2c::cli
