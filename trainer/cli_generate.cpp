// `c2c generate`: text generation with one model (--model), or with a receiver that reads one or
// more sharers' caches through a fuser (--receiver, --sharer, --fuser). Same flags and --json
// output in both modes.
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/alignment.h"
#include "data/chat_template.h"
#include "data/tokenizer.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/common/torch_compat.h"
#include "modules/generate.h"
#include "modules/llm.h"
#include "trainer/cli.h"
#include "modules/device.h"
#include "trainer/args.h"
#include "modules/fused_pipeline.h"

namespace c2c::cli {
namespace {

const char* kUsage = R"(usage: c2c generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [options]
       c2c generate --receiver DIR --sharer DIR [--sharer DIR ...] --fuser DIR (--prompt TEXT | --prompt-ids ...) [options]

  --prompt TEXT           text to continue (tokenized with the model folder's tokenizer.json);
                          repeat --prompt for a batch
  --prompt-ids 1,2,3      token ids instead of text (repeatable)
  --chat                  wrap each prompt as one user turn in the model's chat template
  --max-new-tokens N      default 64
  --temperature T         0 (default) is greedy
  --top-k K --top-p P     sampling filters (default off)
  --seed S                sampling seed (default 0)
  --stop-ids 1,2          stop tokens (default: the model's end-of-sequence ids); --ignore-eos for none
  --device auto|cpu|cuda[:N]  where the models run (default auto: the GPU when one is visible)
  --dtype auto|float32|bfloat16  compute dtype (default auto: bfloat16 on a GPU, float32 on the CPU)
  --json                  print one JSON object (ids, text, timings)
)";

std::vector<int64_t> parse_ids(const std::string& s, const std::string& flag) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    C2C_CHECK(end && *end == '\0', "generate: ", flag, " expects comma-separated integers, got '",
              item, "'");
    out.push_back(v);
  }
  return out;
}

std::shared_ptr<Tokenizer> maybe_tokenizer(const std::string& dir) {
  if (!file_exists(join_path(dir, "tokenizer.json"))) return nullptr;
  return Tokenizer::load(dir);
}

}  // namespace

int cmd_generate(const std::vector<std::string>& argv) {
  Args args("generate", argv, {"json", "chat", "ignore-eos", "help"});
  if (args.flag("help")) {
    std::cout << kUsage;
    return 0;
  }
  const bool fused = args.has("receiver") || args.has("fuser") || args.has("sharer");
  C2C_CHECK(fused != args.has("model"), "generate: give either --model DIR, or --receiver DIR ",
            "--sharer DIR --fuser DIR\n", kUsage);
  const std::string model_dir = fused ? args.str("receiver") : args.str("model");
  LoadOptions load;
  load.device = resolve_device(args.str("device", "auto"), "generate: --device");
  load.dtype = resolve_dtype(args.str("dtype", "auto"), load.device, "generate: --dtype");

  GenerateOptions opts;
  opts.max_new_tokens = args.integer("max-new-tokens", 64);
  opts.temperature = args.number("temperature", 0.0);
  opts.top_k = args.integer("top-k", 0);
  opts.top_p = args.number("top-p", 1.0);
  opts.seed = static_cast<uint64_t>(args.integer("seed", 0));
  C2C_CHECK(opts.max_new_tokens >= 0, "generate: --max-new-tokens must be >= 0");
  C2C_CHECK(opts.top_p > 0 && opts.top_p <= 1.0, "generate: --top-p must be in (0, 1], got ", opts.top_p);
  const bool json = args.flag("json"), chat = args.flag("chat"), ignore_eos = args.flag("ignore-eos");
  const auto texts = args.all("prompt");
  const auto id_lists = args.all("prompt-ids");
  const std::string stop_arg = args.str("stop-ids", "");
  std::vector<std::string> sharer_dirs = fused ? args.all("sharer") : std::vector<std::string>{};
  const std::string fuser_dir = fused ? args.str("fuser") : "";
  args.finish();
  C2C_CHECK(texts.empty() != id_lists.empty(), "generate: give --prompt TEXT or --prompt-ids IDS (not both)");

  auto tok = maybe_tokenizer(model_dir);
  std::vector<std::vector<int64_t>> prompts;
  std::vector<std::string> prompt_texts;
  for (const auto& t : texts) {
    C2C_CHECK(tok, "generate: '", model_dir, "' has no tokenizer.json, so --prompt cannot be tokenized",
              "\nHINT: pass token ids with --prompt-ids 1,2,3");
    std::string text = chat ? render_chat(*tok, {{"user", t}}, /*add_generation_prompt=*/true) : t;
    prompt_texts.push_back(text);
    // Fused text prompts carry no BOS so that they match the span alignment's tokenization.
    prompts.push_back(tok->encode(text, /*add_special_tokens=*/!chat && !fused).ids);
  }
  for (const auto& s : id_lists) prompts.push_back(parse_ids(s, "--prompt-ids"));

  std::shared_ptr<LLM> model;
  std::unique_ptr<FusedPipeline> pipeline;
  if (fused) {
    pipeline = std::make_unique<FusedPipeline>(model_dir, sharer_dirs, fuser_dir, load);
    model = pipeline->receiver();
  } else {
    model = LLM::load(model_dir, load);
  }
  if (!stop_arg.empty()) {
    opts.stop_ids = parse_ids(stop_arg, "--stop-ids");
  } else if (!ignore_eos) {
    opts.stop_ids = model->config().eos_token_ids;
    if (tok && tok->eos_id()) opts.stop_ids.push_back(*tok->eos_id());
    if (tok && chat) {
      for (const char* end : {"<|im_end|>", "<|eot_id|>"})
        if (auto id = tok->token_to_id(end)) opts.stop_ids.push_back(*id);
    }
  }

  GenerateResult r;
  if (!pipeline) {
    r = generate(*model, prompts, opts);
  } else if (texts.empty()) {
    r = pipeline->generate(prompts, opts);  // ids: every sharer reads the receiver's ids
  } else {
    // Text prompts: each sharer reads its own tokenization, aligned as its fuser was trained.
    std::vector<SharerInput> inputs;
    for (size_t j = 0; j < sharer_dirs.size(); ++j) {
      const std::string method = pipeline->fusers().sharers[j].alignment;
      auto stok = maybe_tokenizer(sharer_dirs[j]);
      SharerInput in;
      if (method == "identity") {
        std::vector<std::vector<int64_t>> prefixes;
        for (const auto& p : prompts) prefixes.emplace_back(p.begin(), p.end() - 1);
        in = identity_alignment(prefixes);
      } else {
        C2C_CHECK(stok, "generate: sharer '", sharer_dirs[j], "' has no tokenizer.json, needed for ",
                  method, " alignment of text prompts\nHINT: pass --prompt-ids with an identity fuser");
        for (size_t b = 0; b < texts.size(); ++b) {
          TokenAlignment a;
          if (chat) {
            ChatOptions co;
            co.add_generation_prompt = true;
            a = align_chat(*tok, *stok, {{"user", texts[b]}}, co, parse_align_method(method));
          } else {
            a = align_text_span(*tok, *stok, texts[b]);
          }
          C2C_CHECK(a.receiver_ids == prompts[b], "generate: the alignment tokenized prompt ", b,
                    " differently from the receiver (internal inconsistency)");
          in.ids.push_back(a.sharer_ids);
          in.mask.push_back(a.sharer_mask);
          in.slot_of.emplace_back(a.slot_of.begin(), a.slot_of.end() - 1);
        }
      }
      inputs.push_back(std::move(in));
    }
    r = pipeline->generate(prompts, inputs, opts);
  }
  const auto& tm = r.timings;
  const double prefill_tps = tm.prefill_s > 0 ? tm.prefill_tokens / tm.prefill_s : 0.0;
  const double decode_tps = tm.decode_s > 0 ? tm.decode_tokens / tm.decode_s : 0.0;
  if (json) {
    nlohmann::json out;
    out["model"] = model_dir;
    if (fused) {
      out["sharers"] = sharer_dirs;
      out["fuser"] = fuser_dir;
    }
    nlohmann::json rows = nlohmann::json::array();
    for (size_t b = 0; b < prompts.size(); ++b) {
      nlohmann::json row;
      row["prompt_ids"] = prompts[b];
      row["generated_ids"] = r.tokens[b];
      if (tok) row["text"] = tok->decode(r.tokens[b], /*skip_special_tokens=*/true);
      rows.push_back(row);
    }
    out["rows"] = rows;
    if (prompts.size() == 1) {  // the common case reads flat
      out["prompt_ids"] = rows[0]["prompt_ids"];
      out["generated_ids"] = rows[0]["generated_ids"];
      if (tok) out["text"] = rows[0]["text"];
    }
    out["timings"] = {{"prefill_s", tm.prefill_s},
                      {"fusion_s", tm.hook_s},
                      {"decode_s", tm.decode_s},
                      {"prefill_tokens", tm.prefill_tokens},
                      {"decode_tokens", tm.decode_tokens},
                      {"prefill_tokens_per_s", prefill_tps},
                      {"decode_tokens_per_s", decode_tps}};
    std::cout << out.dump() << "\n";
  } else {
    for (size_t b = 0; b < prompts.size(); ++b) {
      if (prompts.size() > 1) std::cout << "--- row " << b << "\n";
      if (tok) {
        std::cout << (b < prompt_texts.size() ? prompt_texts[b] : tok->decode(prompts[b]))
                  << tok->decode(r.tokens[b], /*skip_special_tokens=*/true) << "\n";
      } else {
        for (auto id : r.tokens[b]) std::cout << id << " ";
        std::cout << "\n";
      }
    }
    std::cerr << "prefill " << tm.prefill_tokens << " tokens in " << tm.prefill_s * 1e3 << " ms ("
              << static_cast<int64_t>(prefill_tps) << " tok/s)";
    if (fused) std::cerr << ", fusion " << tm.hook_s * 1e3 << " ms";
    std::cerr << ", decode " << tm.decode_tokens << " tokens in " << tm.decode_s * 1e3 << " ms ("
              << static_cast<int64_t>(decode_tps) << " tok/s)\n";
  }
  return 0;
}

}  // namespace c2c::cli
