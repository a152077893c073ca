#include "trainer/eval.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "data/alignment.h"
#include "data/benchmark.h"
#include "data/chat_template.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "modules/common/error.h"
#include "modules/device.h"
#include "modules/common/files.h"
#include "modules/fused_pipeline.h"
#include "modules/generate.h"
#include "trainer/trainer.h"

namespace c2c {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const std::set<std::string> kMethods = {"receiver", "sharer", "t2t", "c2c"};

// ---- configuration ----------------------------------------------------------------------------

void read_config_key(EvalConfig& c, const std::string& key, const YAML::Node& v, const std::string& where) {
  auto as_string = [&](std::string& out) {
    C2C_CHECK(v.IsScalar(), where, ": key '", key, "' must be a string");
    out = v.as<std::string>();
  };
  auto as_int = [&](int64_t& out) {
    try {
      const double d = v.as<double>();
      C2C_CHECK(d == static_cast<double>(static_cast<int64_t>(d)), "");
      out = static_cast<int64_t>(d);
    } catch (const std::exception&) {
      fail(where, ": key '", key, "' must be an integer, got '", v.IsScalar() ? v.as<std::string>() : "?", "'");
    }
  };
  auto as_list = [&](std::vector<std::string>& out) {
    out.clear();
    if (v.IsScalar()) {
      std::stringstream ss(v.as<std::string>());
      for (std::string x; std::getline(ss, x, ',');)
        if (!x.empty()) out.push_back(x);
      return;
    }
    C2C_CHECK(v.IsSequence(), where, ": key '", key, "' must be a list of strings");
    for (const auto& x : v) out.push_back(x.as<std::string>());
  };
  if (key == "receiver") as_string(c.receiver);
  else if (key == "sharers") as_list(c.sharers);
  else if (key == "fuser") as_string(c.fuser);
  else if (key == "alignment") as_string(c.alignment);
  else if (key == "methods") as_list(c.methods);
  else if (key == "mode") as_string(c.mode);
  else if (key == "limit") as_int(c.limit);
  else if (key == "batch_size") as_int(c.batch_size);
  else if (key == "max_new_tokens") as_int(c.max_new_tokens);
  else if (key == "t2t_max_new_tokens") as_int(c.t2t_max_new_tokens);
  else if (key == "max_length") as_int(c.max_length);
  else if (key == "latency_queries") as_int(c.latency_queries);
  else if (key == "latency_answer_tokens") as_int(c.latency_answer_tokens);
  else if (key == "threads") as_int(c.threads);
  else if (key == "device") as_string(c.device);
  else if (key == "output") as_string(c.output);
  else if (key == "benchmarks") {
    c.benchmarks.clear();
    C2C_CHECK(v.IsSequence(), where, ": key 'benchmarks' must be a list of {name, file} or file paths");
    for (const auto& b : v) {
      EvalBenchmark e;
      if (b.IsScalar()) {
        e.file = b.as<std::string>();
      } else {
        C2C_CHECK(b.IsMap() && b["file"], where, ": each benchmark needs a 'file'");
        for (const auto& kv : b) {
          const auto k = kv.first.as<std::string>();
          C2C_CHECK(k == "name" || k == "file", where, ": unknown benchmark key '", k,
                    "'\nHINT: a benchmark is {name: NAME, file: FILE.jsonl}");
        }
        e.file = b["file"].as<std::string>();
        if (b["name"]) e.name = b["name"].as<std::string>();
      }
      if (e.name.empty()) e.name = std::filesystem::path(e.file).stem().string();
      c.benchmarks.push_back(e);
    }
  } else {
    fail(where, ": unknown key '", key, "'\nHINT: the keys are receiver, sharers, fuser, alignment, "
         "methods, mode, benchmarks, limit, batch_size, max_new_tokens, t2t_max_new_tokens, "
         "max_length, latency_queries, latency_answer_tokens, threads, device, output");
  }
}

// ---- one method's inputs ----------------------------------------------------------------------

struct Models {
  std::shared_ptr<LLM> receiver, sharer;
  std::shared_ptr<Tokenizer> rtok, stok;
  std::unique_ptr<FusedPipeline> fusion;
  AlignMethod align = AlignMethod::span;
};

std::vector<int64_t> stop_ids(const Tokenizer& tok, const ModelConfig& cfg) {
  std::vector<int64_t> out;
  if (tok.eos_id()) out.push_back(*tok.eos_id());
  for (int64_t id : cfg.eos_token_ids)
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  return out;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

// The sample whose prompt is `prompt` (ending with a user turn) and whose reply is `reply`.
// full_turn: the reply is a whole assistant turn (content + end-of-turn carry the loss); else
// the reply is an open prefix ("The correct answer is B") whose last token alone carries it.
PairedSample reply_sample(const Tokenizer& tok, const std::vector<const Tokenizer*>& sharers,
                          std::vector<ChatMessage> prompt, const std::string& reply, bool full_turn,
                          AlignMethod align) {
  prompt.push_back({"assistant", reply});
  PairedSample s = make_paired_sample(tok, sharers, prompt, align);
  if (!full_turn) {
    prompt.pop_back();
    const std::string text = render_chat(tok, prompt, true, false) + reply;
    const auto ids = tok.encode(text, false).ids;
    const auto n = static_cast<int64_t>(ids.size());
    C2C_CHECK(n > s.prompt_length && n <= s.length() &&
                  std::equal(ids.begin(), ids.end(), s.receiver_ids.begin()),
              "the tokenizer of '", tok.dir(), "' merges the reply '", reply, "' with what follows it");
    s.receiver_ids.resize(n);
    s.loss_start = n - 1;
    s.loss_end = n;
  }
  return s;
}

// A growing cache whose row i is row index[i] of `c` (a prompt-only cache: its rows' positions
// count their valid slots from 0, so committing the selected validity restores them).
KVCache select_rows(const KVCache& c, const torch::Tensor& index, torch::Device device) {
  KVCache out = KVCache::growing(c.num_layers(), index.size(0), device);
  if (c.length() == 0) return out;
  for (int64_t l = 0; l < c.num_layers(); ++l)
    out.append(l, c.key(l).index_select(0, index), c.value(l).index_select(0, index));
  out.commit(c.valid().index_select(0, index));
  return out;
}

struct ItemResult {
  int pred = -1;
  bool correct = false;
  std::string error;
  std::string text;  // generated answer (letters) or T2T background
};

struct Latency {
  std::vector<double> total;
  double sharer_prefill = 0, sharer_decode = 0, fusion = 0, receiver_prefill = 0, decode = 0;
  int64_t n = 0;
};

class Evaluator {
 public:
  Evaluator(const EvalConfig& c, Models& m) : c_(c), m_(m) {}

  // Results for a batch of items under one method.
  std::vector<ItemResult> run(const std::string& method, const std::vector<McItem>& items) {
    std::vector<ItemResult> out(items.size());
    std::vector<std::string> background(items.size());
    if (method == "t2t") background = t2t_background(items, out);
    if (c_.mode == "letters") return generate_letters(method, items, background, out);
    // Scored modes: one row per option; the option with the smallest loss wins.
    std::vector<PairedSample> rows;
    std::vector<std::pair<size_t, int>> owner;  // (item, option)
    for (size_t i = 0; i < items.size(); ++i) {
      if (!out[i].error.empty()) continue;
      try {
        std::vector<PairedSample> mine;
        for (int o = 0; o < static_cast<int>(items[i].choices.size()); ++o) {
          const std::string reply = c_.mode == "choices" ? items[i].choices[o]
                                                         : std::string(kAnswerLead) + " " + choice_letter(o);
          mine.push_back(sample(method, items[i], background[i], reply, c_.mode == "choices"));
        }
        for (size_t o = 0; o < mine.size(); ++o) {
          rows.push_back(std::move(mine[o]));
          owner.emplace_back(i, static_cast<int>(o));
        }
      } catch (const Error& e) {
        out[i].error = e.what();
      }
    }
    if (rows.empty()) return out;
    torch::NoGradGuard no_grad;
    const LLM& model = method == "sharer" ? *m_.sharer : *m_.receiver;
    const FusedPipeline* fusion = method == "c2c" ? m_.fusion.get() : nullptr;
    auto loss = shared_prompt_loss(model, fusion, rows, owner).to(torch::kCPU);
    auto la = loss.accessor<float, 1>();
    std::vector<float> best(items.size(), std::numeric_limits<float>::infinity());
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto [i, o] = owner[r];
      if (la[r] < best[i]) {
        best[i] = la[r];
        out[i].pred = o;
      }
    }
    for (size_t i = 0; i < items.size(); ++i) {
      out[i].correct = out[i].error.empty() && out[i].pred == items[i].answer;
      if (method == "t2t") out[i].text = background[i];
    }
    return out;
  }

  // Warm batch-1 latency of one query: the whole answer with `latency_answer_tokens` decoded.
  void latency(const std::string& method, const McItem& item, Latency& lat) {
    torch::NoGradGuard no_grad;
    GenerateOptions go;
    go.max_new_tokens = c_.latency_answer_tokens;  // no stop ids: every method decodes as much
    const auto t0 = Clock::now();
    std::string bg;
    double s_prefill = 0, s_decode = 0;
    if (method == "t2t") {
      GenerateOptions so;
      so.max_new_tokens = c_.t2t_max_new_tokens;
      so.stop_ids = stop_ids(*m_.stok, m_.sharer->config());
      auto p = m_.stok->encode(render_chat(*m_.stok, {{"user", t2t_background_request(item)}}, true, false)).ids;
      auto r = generate(*m_.sharer, {p}, so);
      s_prefill = r.timings.prefill_s;
      s_decode = r.timings.decode_s;
      bg = trim(m_.stok->decode(r.tokens[0], true));
    }
    PairedSample s = sample(method, item, bg, c_.mode == "choices" ? item.choices[0] : std::string(kAnswerLead),
                            c_.mode == "choices");
    std::vector<int64_t> prompt(s.receiver_ids.begin(), s.receiver_ids.begin() + s.prompt_length);
    if (c_.mode != "choices") prompt = s.receiver_ids;  // the answer lead is part of the prompt
    GenerateResult r;
    double fusion_s = 0;
    if (method == "c2c") {
      auto inputs = sharer_inputs({s}, static_cast<int64_t>(prompt.size()));
      const auto ts = Clock::now();
      auto caches = m_.fusion->prefill_sharers(inputs);
      s_prefill = since(ts);
      r = generate(*m_.receiver, {prompt}, go, [&](KVCache& cache) { m_.fusion->fuse_into(cache, caches, inputs); });
      fusion_s = r.timings.hook_s;
    } else {
      r = generate(method == "sharer" ? *m_.sharer : *m_.receiver, {prompt}, go);
    }
    lat.total.push_back(since(t0));
    lat.sharer_prefill += s_prefill;
    lat.sharer_decode += s_decode;
    lat.fusion += fusion_s;
    lat.receiver_prefill += r.timings.prefill_s;  // generate() times the hook apart
    lat.decode += r.timings.decode_s;
    ++lat.n;
  }

 private:
  // receiver_loss (trainer.h) for rows whose options share their item's prompt: each distinct
  // prefix [0, P-1) is prefilled (and fused) once and its cache rows repeated for the options;
  // the same numbers as receiver_loss on the rows, for ~1/options of the prompt work.
  torch::Tensor shared_prompt_loss(const LLM& model, const FusedPipeline* fusion,
                                   const std::vector<PairedSample>& rows,
                                   const std::vector<std::pair<size_t, int>>& owner) const {
    std::vector<int64_t> group(rows.size());
    std::vector<size_t> first;  // a row of each group
    std::map<size_t, int64_t> of_item;
    for (size_t r = 0; r < rows.size(); ++r) {
      const size_t item = owner[r].first;
      auto it = of_item.find(item);
      const bool same = it != of_item.end() && rows[first[it->second]].prompt_length == rows[r].prompt_length &&
                        std::equal(rows[r].receiver_ids.begin(), rows[r].receiver_ids.begin() + rows[r].prompt_length - 1,
                                   rows[first[it->second]].receiver_ids.begin());
      if (same) {
        group[r] = it->second;
      } else {  // a new prompt (or options that tokenize into the prompt: their own group)
        group[r] = static_cast<int64_t>(first.size());
        of_item[item] = group[r];
        first.push_back(r);
      }
    }
    std::vector<std::vector<int64_t>> prefix, response;
    std::vector<SharerInput> inputs(fusion ? fusion->sharers().size() : 0);
    for (size_t g : first) {
      const auto& ex = rows[g];
      prefix.emplace_back(ex.receiver_ids.begin(), ex.receiver_ids.begin() + ex.prompt_length - 1);
      for (auto& in : inputs) {
        const auto& sh = ex.sharers.at(0);
        in.ids.push_back(sh.ids);
        in.mask.push_back(sh.mask);
        in.slot_of.emplace_back(sh.slot_of.begin(), sh.slot_of.begin() + ex.prompt_length - 1);
      }
    }
    const auto dev = model.device();
    KVCache cache = model.new_cache(static_cast<int64_t>(first.size()), 0);
    {
      auto [ids, mask] = pad_batch(prefix);
      model.forward_hidden(ids.to(dev), mask.to(dev), cache);
    }
    if (fusion) fusion->fuse_into(cache, fusion->prefill_sharers(inputs), inputs);
    KVCache rows_cache = select_rows(cache, torch::tensor(group).to(dev), model.device());
    for (const auto& ex : rows) response.emplace_back(ex.receiver_ids.begin() + ex.prompt_length - 1, ex.receiver_ids.end());
    auto [rids, rmask] = pad_batch(response);
    auto hidden = model.forward_hidden(rids.to(dev), rmask.to(dev), rows_cache);  // (R, Tr, E)
    const int64_t R = rids.size(0), Tr = rids.size(1);
    auto labels = torch::full({R, Tr}, -1, torch::kInt64);
    auto la = labels.accessor<int64_t, 2>();
    for (int64_t b = 0; b < R; ++b)
      for (int64_t pos = rows[b].loss_start; pos < rows[b].loss_end; ++pos)
        la[b][pos - rows[b].prompt_length] = rows[b].receiver_ids[pos];
    auto flat = labels.view({-1});
    auto sel = (flat >= 0).nonzero().view({-1});
    auto logits = model.logits(hidden.reshape({R * Tr, -1}).index_select(0, sel.to(dev)));
    auto per_token = torch::nn::functional::cross_entropy(
        logits, flat.index_select(0, sel).to(dev),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    return torch::zeros({R}, per_token.options()).index_add(0, torch::div(sel, Tr, "floor").to(dev), per_token);
  }

  // The prompt messages of a method for an item (the last one a user turn).
  std::vector<ChatMessage> prompt_messages(const std::string& method, const McItem& item,
                                           const std::string& background) const {
    const std::string q = c_.mode == "choices" ? item.question : mc_user_prompt(item);
    if (method == "t2t") return {{"user", t2t_background_request(item)}, {"assistant", background}, {"user", q}};
    return {{"user", q}};
  }

  PairedSample sample(const std::string& method, const McItem& item, const std::string& background,
                      const std::string& reply, bool full_turn) const {
    const bool sharer = method == "sharer";
    const Tokenizer& tok = sharer ? *m_.stok : *m_.rtok;
    std::vector<const Tokenizer*> sh;
    if (method == "c2c") sh.push_back(m_.stok.get());
    PairedSample s = reply_sample(tok, sh, prompt_messages(method, item, background), reply, full_turn,
                                  method == "c2c" ? m_.align : AlignMethod::identity);
    C2C_CHECK(s.length() <= c_.max_length, "prompt of ", s.length(), " tokens is over max_length ", c_.max_length);
    return s;
  }

  // SharerInputs of c2c rows whose receiver prompts have `len` tokens (positions past the
  // aligned prompt keep the receiver's own KV).
  std::vector<SharerInput> sharer_inputs(const std::vector<PairedSample>& rows, int64_t len) const {
    SharerInput in;
    for (const auto& s : rows) {
      const auto& sh = s.sharers.at(0);
      in.ids.push_back(sh.ids);
      in.mask.push_back(sh.mask);
      std::vector<int64_t> slots(sh.slot_of.begin(),
                                 sh.slot_of.begin() + std::min<int64_t>(s.prompt_length - 1, sh.slot_of.size()));
      slots.resize(std::max<int64_t>(len - 1, 0), -1);
      in.slot_of.push_back(std::move(slots));
    }
    return std::vector<SharerInput>(m_.fusion->sharers().size(), in);
  }

  std::vector<std::string> t2t_background(const std::vector<McItem>& items, std::vector<ItemResult>& out) {
    torch::NoGradGuard no_grad;
    std::vector<std::vector<int64_t>> prompts;
    std::vector<size_t> which;
    for (size_t i = 0; i < items.size(); ++i) {
      try {
        prompts.push_back(m_.stok->encode(
            render_chat(*m_.stok, {{"user", t2t_background_request(items[i])}}, true, false)).ids);
        which.push_back(i);
      } catch (const Error& e) {
        out[i].error = e.what();
      }
    }
    std::vector<std::string> bg(items.size());
    if (prompts.empty()) return bg;
    GenerateOptions so;
    so.max_new_tokens = c_.t2t_max_new_tokens;
    so.stop_ids = stop_ids(*m_.stok, m_.sharer->config());
    auto r = generate(*m_.sharer, prompts, so);
    for (size_t k = 0; k < which.size(); ++k) bg[which[k]] = trim(m_.stok->decode(r.tokens[k], true));
    return bg;
  }

  std::vector<ItemResult> generate_letters(const std::string& method, const std::vector<McItem>& items,
                                           const std::vector<std::string>& background,
                                           std::vector<ItemResult>& out) {
    torch::NoGradGuard no_grad;
    std::vector<PairedSample> rows;
    std::vector<size_t> which;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!out[i].error.empty()) continue;
      try {
        rows.push_back(sample(method, items[i], background[i], kAnswerLead, false));
        which.push_back(i);
      } catch (const Error& e) {
        out[i].error = e.what();
      }
    }
    if (rows.empty()) return out;
    const bool sharer = method == "sharer";
    const Tokenizer& tok = sharer ? *m_.stok : *m_.rtok;
    const LLM& model = sharer ? *m_.sharer : *m_.receiver;
    GenerateOptions go;
    go.max_new_tokens = c_.max_new_tokens;
    go.stop_ids = stop_ids(tok, model.config());
    std::vector<std::vector<int64_t>> prompts;
    for (const auto& s : rows) prompts.push_back(s.receiver_ids);
    GenerateResult r;
    if (method == "c2c") {
      // Every row fuses its own aligned prompt; rows are generated one length group at a time
      // so that each row's fused prefix is its own [0, P-1).
      for (size_t k = 0; k < rows.size(); ++k) {
        auto one = m_.fusion->generate({prompts[k]}, sharer_inputs({rows[k]}, prompts[k].size()), go);
        r.tokens.push_back(one.tokens[0]);
      }
    } else {
      r = generate(model, prompts, go);
    }
    for (size_t k = 0; k < which.size(); ++k) {
      const size_t i = which[k];
      out[i].text = tok.decode(r.tokens[k], true);
      out[i].pred = extract_answer_letter(std::string(kAnswerLead) + out[i].text,
                                          static_cast<int>(items[i].choices.size()));
      out[i].correct = out[i].pred == items[i].answer;
    }
    return out;
  }

  const EvalConfig& c_;
  Models& m_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

std::string key_of(const std::string& method, const std::string& bench, const std::string& id) {
  return method + "\t" + bench + "\t" + id;
}

}  // namespace

EvalConfig EvalConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  EvalConfig c;
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail("eval config '", path, "': ", e.what());
  }
  C2C_CHECK(root.IsMap(), "eval config '", path, "' must be a YAML mapping");
  for (const auto& kv : root) read_config_key(c, kv.first.as<std::string>(), kv.second, path);
  for (const auto& o : overrides) {
    const size_t eq = o.find('=');
    C2C_CHECK(eq != std::string::npos, "--set '", o, "': expected key=value");
    read_config_key(c, o.substr(0, eq), YAML::Load(o.substr(eq + 1)), "--set");
  }
  c.validate();
  return c;
}

void EvalConfig::validate() const {
  C2C_CHECK(!receiver.empty(), "eval config: 'receiver' is required");
  C2C_CHECK(!benchmarks.empty(), "eval config: 'benchmarks' is empty\nHINT: list benchmark files "
            "in the format of data/benchmark.h");
  C2C_CHECK(mode == "letters" || mode == "logits" || mode == "choices", "eval config: mode '", mode,
            "' is not one of letters, logits, choices");
  C2C_CHECK(!methods.empty(), "eval config: 'methods' is empty");
  for (const auto& m : methods) {
    C2C_CHECK(kMethods.count(m), "eval config: unknown method '", m, "'\nHINT: methods are receiver, sharer, t2t, c2c");
    if (m != "receiver") C2C_CHECK(!sharers.empty(), "eval config: method '", m, "' needs 'sharers'");
    if (m == "c2c") C2C_CHECK(!fuser.empty(), "eval config: method 'c2c' needs 'fuser' (a fuser checkpoint folder)");
  }
  // Each value's range, named with the key, the value and what is accepted.
  const std::pair<const char*, std::pair<int64_t, int64_t>> ranges[] = {
      // key, {value, smallest accepted}
      {"batch_size", {batch_size, 1}},
      {"max_new_tokens", {max_new_tokens, 1}},
      {"t2t_max_new_tokens", {t2t_max_new_tokens, 1}},
      {"latency_answer_tokens", {latency_answer_tokens, 1}},
      {"max_length", {max_length, 2}},
      {"limit", {limit, 0}},
      {"latency_queries", {latency_queries, 0}},
      {"threads", {threads, 0}},
  };
  for (const auto& [key, vr] : ranges)
    C2C_CHECK(vr.first >= vr.second, "eval config: ", key, " = ", vr.first, " is out of range: must be >= ",
              vr.second, std::string(key) == "limit" ? " (0: every item)"
              : std::string(key) == "latency_queries" ? " (0: no latency)"
              : std::string(key) == "threads" ? " (0: every core)" : "");
  const bool device_ok = device == "auto" || device == "cpu" || device == "cuda" ||
                         (device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
                          device.find_first_not_of("0123456789", 5) == std::string::npos);
  C2C_CHECK(device_ok, "eval config: device = '", device, "' is not a device\nHINT: use auto, cpu, cuda or cuda:N");
  parse_align_method(alignment);
}

std::string run_eval(const EvalConfig& c, std::ostream& log) {
  const bool live = &log == &std::cerr && isatty(STDERR_FILENO);  // progress redrawn in place
  if (c.threads > 0) torch::set_num_threads(static_cast<int>(c.threads));
  std::filesystem::create_directories(c.output);
  // The config of the run that wrote progress.jsonl must be this one, or resuming would mix
  // results of different models.
  std::ostringstream cfg;
  cfg << "receiver: " << c.receiver << "\nsharers: [";
  for (size_t i = 0; i < c.sharers.size(); ++i) cfg << (i ? ", " : "") << c.sharers[i];
  cfg << "]\nfuser: " << c.fuser << "\nalignment: " << c.alignment << "\nmode: " << c.mode
      << "\nlimit: " << c.limit << "\nmax_new_tokens: " << c.max_new_tokens
      << "\nt2t_max_new_tokens: " << c.t2t_max_new_tokens << "\n";
  const std::string cfg_path = join_path(c.output, "eval_config.txt");
  const std::string progress_path = join_path(c.output, "progress.jsonl");
  if (file_exists(progress_path) && file_exists(cfg_path)) {
    C2C_CHECK(read_file(cfg_path) == cfg.str(), "eval: '", c.output, "' holds progress of another "
              "configuration (", cfg_path, ")\nHINT: use another output folder, or delete ", progress_path);
  }
  write_file_atomic(cfg_path, cfg.str());

  // Done samples, from an earlier interrupted run. A torn last line (a kill mid-write) is redone.
  std::map<std::string, nlohmann::json> done;
  if (file_exists(progress_path)) {
    std::ifstream in(progress_path);
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      try {
        auto j = nlohmann::json::parse(line);
        done.emplace(key_of(j.at("method"), j.at("benchmark"), j.at("id")), j);
      } catch (const std::exception&) {
        log << "eval: " << progress_path << ":" << n << ": unreadable (an interrupted write); that sample is redone\n";
      }
    }
    if (!done.empty()) log << "eval: resuming, " << done.size() << " samples already done\n";
  }
  // Rewrite the file clean (without a torn line), then append.
  {
    std::string clean;
    for (const auto& kv : done) clean += kv.second.dump() + "\n";
    write_file_atomic(progress_path, clean);
  }
  std::ofstream progress(progress_path, std::ios::app);

  // Models.
  Models m;
  LoadOptions lo;
  lo.device = resolve_device(c.device, "eval: device");
  lo.dtype = resolve_dtype("auto", lo.device, "eval: device");
  m.receiver = LLM::load(c.receiver, lo);
  m.rtok = Tokenizer::load(c.receiver);
  std::vector<std::shared_ptr<LLM>> sharers;
  for (const auto& s : c.sharers) sharers.push_back(LLM::load(s, lo));
  if (!sharers.empty()) {
    m.sharer = sharers[0];
    m.stok = Tokenizer::load(c.sharers[0]);
  }
  m.align = parse_align_method(c.alignment);
  nlohmann::json gates = nlohmann::json::array();
  std::string variant;
  if (!c.fuser.empty() && std::count(c.methods.begin(), c.methods.end(), "c2c")) {
    C2C_CHECK(sharers.size() == 1, "eval: c2c evaluation takes one sharer here, got ", sharers.size());
    FuserCheckpoint ck = load_fuser_checkpoint(c.fuser, lo.dtype);
    for (auto& s : ck.sharers) {
      s.fuser->to(lo.device);
      s.fuser->eval();
      C2C_CHECK(s.alignment == align_method_name(m.align), "eval: the fuser '", c.fuser, "' was trained with ",
                "alignment '", s.alignment, "' but the config says '", c.alignment, "'");
      variant = fuser_variant_name(s.config.variant);
      for (const auto& p : s.fuser->named_parameters()) {
        // The ablations without a gate carry the gate logits unused: nothing to report.
        if (s.config.variant != FuserVariant::full) break;
        if (p.key().find("gate_logit") == std::string::npos) continue;
        auto g = p.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();  // (2, Lf)
        for (int64_t l = 0; l < g.size(1); ++l)
          gates.push_back({{"receiver_layer", s.layer_map.pairs.at(l).receiver},
                           {"key_open", g[0][l].item<float>() > 0},
                           {"value_open", g[1][l].item<float>() > 0},
                           {"key_logit", g[0][l].item<float>()},
                           {"value_logit", g[1][l].item<float>()}});
      }
    }
    m.fusion = std::make_unique<FusedPipeline>(m.receiver, sharers, std::move(ck));
  }

  Evaluator ev(c, m);
  nlohmann::json report = {{"receiver", c.receiver}, {"sharers", c.sharers}, {"fuser", c.fuser},
                           {"mode", c.mode}, {"alignment", c.alignment}, {"gates", gates}};
  if (!variant.empty()) report["fuser_variant"] = variant;
  nlohmann::json results = nlohmann::json::object();
  std::vector<McFile> files;
  std::vector<McItem> latency_items;  // the first benchmark's items, before `limit`
  for (const auto& b : c.benchmarks) {
    McFile f = load_mc_jsonl(b.file);
    if (!f.errors.empty()) {
      log << "eval: " << f.errors.size() << " unusable line(s) in " << b.file << " (counted as errors):\n";
      for (size_t i = 0; i < std::min<size_t>(f.errors.size(), 10); ++i) log << "  " << f.errors[i] << "\n";
    }
    C2C_CHECK(!f.items.empty() || !f.errors.empty(), "eval: benchmark '", b.file, "' holds no item");
    if (files.empty()) latency_items = f.items;
    if (c.limit > 0 && static_cast<int64_t>(f.items.size()) > c.limit) f.items.resize(c.limit);
    files.push_back(std::move(f));
  }

  for (const auto& method : c.methods) {
    for (size_t bi = 0; bi < c.benchmarks.size(); ++bi) {
      const auto& bench = c.benchmarks[bi];
      const McFile& f = files[bi];
      std::vector<McItem> todo;
      for (const auto& it : f.items)
        if (!done.count(key_of(method, bench.name, it.id))) todo.push_back(it);
      const auto t0 = Clock::now();
      for (size_t s = 0; s < todo.size(); s += c.batch_size) {
        std::vector<McItem> batch(todo.begin() + s, todo.begin() + std::min(todo.size(), s + c.batch_size));
        std::vector<ItemResult> res;
        try {
          res = ev.run(method, batch);
        } catch (const Error& e) {
          res.assign(batch.size(), ItemResult{});
          for (auto& r : res) r.error = e.what();
        }
        for (size_t i = 0; i < batch.size(); ++i) {
          nlohmann::json j = {{"method", method}, {"benchmark", bench.name}, {"id", batch[i].id},
                              {"subject", batch[i].subject}, {"pred", res[i].pred},
                              {"answer", batch[i].answer}, {"correct", res[i].correct}};
          if (!res[i].error.empty()) j["error"] = res[i].error;
          if (!res[i].text.empty()) j["text"] = res[i].text;
          progress << j.dump() << "\n";
          done.emplace(key_of(method, bench.name, batch[i].id), j);
        }
        progress.flush();
        const size_t n = std::min(todo.size(), s + c.batch_size);
        // One live line on a terminal; in a log file, one line per method and benchmark.
        if (live || n == todo.size())
          log << (live ? "\r" : "") << "eval: " << method << " on " << bench.name << ": " << n << "/"
              << todo.size() << "  " << std::fixed << std::setprecision(1) << since(t0) << "s"
              << (live ? "" : "\n") << std::flush;
      }
      if (!todo.empty() && live) log << "\n";
      // Accuracy from every sample of this pair (this run's and the resumed ones).
      int64_t total = 0, correct = 0, errors = 0;
      std::map<std::string, std::pair<int64_t, int64_t>> by_subject;
      for (const auto& it : f.items) {
        const auto& j = done.at(key_of(method, bench.name, it.id));
        const bool ok = j.at("correct").get<bool>();
        ++total;
        correct += ok;
        errors += j.contains("error");
        auto& s = by_subject[it.subject];
        ++s.first;
        s.second += ok;
      }
      // Unusable lines of the file are errors of every method: they stay in the denominator.
      total += static_cast<int64_t>(f.errors.size());
      errors += static_cast<int64_t>(f.errors.size());
      nlohmann::json subj = nlohmann::json::object();
      for (const auto& [k, v] : by_subject)
        subj[k] = {{"n", v.first}, {"correct", v.second}, {"accuracy", static_cast<double>(v.second) / v.first}};
      results[method][bench.name] = {{"n", total}, {"correct", correct}, {"errors", errors},
                                     {"accuracy", total ? static_cast<double>(correct) / total : 0.0},
                                     {"subjects", subj}};
    }
  }

  // Latency: warm, batch 1, on the first items of the first benchmark, methods interleaved so
  // that drifting machine load hits them alike.
  nlohmann::json latency = nlohmann::json::object();
  if (c.latency_queries > 0 && !latency_items.empty()) {
    std::map<std::string, Latency> lat;
    const auto& items = latency_items;
    for (const auto& method : c.methods) {
      Latency warm;
      try {
        ev.latency(method, items[0], warm);  // warm-up, not counted
      } catch (const Error&) {
      }
    }
    const int64_t n = std::min<int64_t>(c.latency_queries, items.size());
    for (int64_t q = 0; q < n; ++q) {
      for (const auto& method : c.methods) {
        try {
          ev.latency(method, items[q], lat[method]);
        } catch (const Error& e) {
          log << "\neval: latency query " << items[q].id << " (" << method << ") failed, not timed: " << e.what() << "\n";
        }
      }
      if (live) log << "\reval: latency " << q + 1 << "/" << n << std::flush;
    }
    log << (live ? "\n" : "eval: latency: " + std::to_string(n) + " queries per method\n");
    for (const auto& [method, l] : lat) {
      const double k = static_cast<double>(std::max<int64_t>(l.n, 1));
      latency[method] = {{"queries", l.n},
                         {"median_s", percentile(l.total, 0.5)},
                         {"p90_s", percentile(l.total, 0.9)},
                         {"sharer_prefill_s", l.sharer_prefill / k},
                         {"sharer_decode_s", l.sharer_decode / k},
                         {"fusion_s", l.fusion / k},
                         {"receiver_prefill_s", l.receiver_prefill / k},
                         {"decode_s", l.decode / k},
                         {"answer_tokens", c.latency_answer_tokens}};
    }
  }
  report["results"] = results;
  report["latency"] = latency;
  write_file_atomic(join_path(c.output, "report.json"), report.dump(2) + "\n");

  // Markdown table: methods by benchmarks, then latency.
  std::ostringstream md;
  md << "| method |";
  for (const auto& b : c.benchmarks) md << " " << b.name << " |";
  if (!latency.empty()) md << " latency median (s) | p90 (s) |";
  md << "\n|---|";
  for (size_t i = 0; i < c.benchmarks.size(); ++i) md << "---|";
  if (!latency.empty()) md << "---|---|";
  md << "\n";
  for (const auto& method : c.methods) {
    md << "| " << method << " |";
    for (const auto& b : c.benchmarks) {
      const auto& r = results[method][b.name];
      md << " " << std::fixed << std::setprecision(1) << 100.0 * r["accuracy"].get<double>() << "% ("
         << r["correct"].get<int64_t>() << "/" << r["n"].get<int64_t>();
      if (r["errors"].get<int64_t>()) md << ", " << r["errors"].get<int64_t>() << " errors";
      md << ") |";
    }
    if (latency.contains(method))
      md << " " << std::setprecision(4) << latency[method]["median_s"].get<double>() << " | "
         << latency[method]["p90_s"].get<double>() << " |";
    md << "\n";
  }
  if (!gates.empty()) {
    md << "\nFuser gates by receiver layer (K/V open):";
    for (const auto& g : gates)
      md << " " << g["receiver_layer"].get<int64_t>() << ":" << (g["key_open"].get<bool>() ? "K" : "-")
         << (g["value_open"].get<bool>() ? "V" : "-");
    md << "\n";
  }
  write_file_atomic(join_path(c.output, "report.md"), md.str());
  return md.str();
}

}  // namespace c2c
