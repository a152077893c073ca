// `c2c pretrain` (full-parameter LM training, trainer/pretrain.h) and `c2c toy-world` (the
// seeded fictional world of the demo, data/toy_world.h).
#include <iostream>
#include <sstream>

#include "data/toy_world.h"
#include "modules/common/error.h"
#include "trainer/args.h"
#include "trainer/cli.h"
#include "trainer/pretrain.h"

namespace c2c::cli {
namespace {

const char* kPretrainUsage =
    "usage: c2c pretrain (--config CONFIG.json | --init MODEL_DIR) --tokenizer DIR --data FILE.jsonl\n"
    "                    [--data FILE ...] --out DIR [--steps 1000] [--batch-size 32] [--lr 3e-3]\n"
    "                    [--max-length 256] [--warmup-ratio 0.05] [--schedule cosine]\n"
    "                    [--weight-decay 0] [--max-grad-norm 1] [--seed 0] [--log-every 50]\n"
    "                    [--init-std 0.02] [--save-dtype float32|bfloat16]\n\n"
    "Trains every weight of a decoder LLM (Qwen2/Qwen3/Llama config) on JSON Lines records:\n"
    "{\"text\": ...} (loss on every token, EOS appended) or {\"messages\": [...]} rendered with the\n"
    "tokenizer's chat template (loss on the final assistant turn). Writes a Hugging Face model folder\n"
    "(config.json, model.safetensors, the tokenizer files) and pretrain_metrics.jsonl to --out.\n";

const char* kToyUsage =
    "usage: c2c toy-world --out DIR [--seed 0] [--entities 600] [--known 150] [--eval 100]\n"
    "                     [--validation 50] [--attributes city,job,pet] [--practice 300]\n"
    "                     [--bio-copies 3] [--known-in-fuser 0.3]\n\n"
    "Writes a seeded fictional world (data/toy_world.h): world.json, the sharer's and the receiver's\n"
    "pretraining corpora, fuser_train.jsonl and validation.jsonl (for `c2c prepare`: the fuser's\n"
    "training data and its model-selection data, about other people) and the benchmark files\n"
    "eval_heldout.jsonl, eval_known.jsonl, eval_fuser_train.jsonl, eval_validation.jsonl (for `c2c eval`).\n";

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

}  // namespace

int cmd_pretrain(const std::vector<std::string>& argv) {
  Args args("pretrain", argv, {"help"});
  if (args.flag("help")) {
    std::cout << kPretrainUsage;
    return 0;
  }
  PretrainOptions o;
  o.init = args.str("init", "");
  o.config = args.str("config", "");
  o.init_std = args.number("init-std", o.init_std);
  o.tokenizer = args.str("tokenizer");
  o.data = args.all("data");
  o.out = args.str("out");
  o.steps = args.integer("steps", o.steps);
  o.batch_size = args.integer("batch-size", o.batch_size);
  o.max_length = args.integer("max-length", o.max_length);
  o.lr = args.number("lr", o.lr);
  o.weight_decay = args.number("weight-decay", o.weight_decay);
  o.warmup_ratio = args.number("warmup-ratio", o.warmup_ratio);
  o.schedule = args.str("schedule", o.schedule);
  o.max_grad_norm = args.number("max-grad-norm", o.max_grad_norm);
  o.seed = args.integer("seed", o.seed);
  o.log_every = args.integer("log-every", o.log_every);
  o.save_dtype = args.str("save-dtype", o.save_dtype);
  args.finish();
  const PretrainReport r = run_pretraining(o, std::cerr);
  std::cout << "pretrain: loss " << r.first_loss << " -> " << r.last_loss << " in " << r.seconds
            << " s; model in " << o.out << "\n";
  return 0;
}

int cmd_toy_world(const std::vector<std::string>& argv) {
  Args args("toy-world", argv, {"help"});
  if (args.flag("help")) {
    std::cout << kToyUsage;
    return 0;
  }
  ToyWorldOptions o;
  const std::string out = args.str("out");
  o.seed = static_cast<uint64_t>(args.integer("seed", 0));
  o.entities = args.integer("entities", o.entities);
  o.known = args.integer("known", o.known);
  o.eval = args.integer("eval", o.eval);
  o.validation = args.integer("validation", o.validation);
  if (args.has("attributes")) o.attributes = split_commas(args.str("attributes"));
  o.practice = args.integer("practice", o.practice);
  o.bio_copies = args.integer("bio-copies", o.bio_copies);
  o.known_in_fuser = args.number("known-in-fuser", o.known_in_fuser);
  args.finish();
  ToyWorld world(o);
  world.write(out);
  std::cout << "toy-world: seed " << o.seed << ", " << o.entities << " entities (" << o.known
            << " known to the receiver, " << o.eval << " held out for evaluation, " << o.validation
            << " for model selection, " << o.entities - o.known - o.eval - o.validation
            << " for fuser training), " << o.practice
            << " practice entities; files in " << out << "\n";
  return 0;
}

}  // namespace c2c::cli
