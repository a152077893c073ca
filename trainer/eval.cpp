// `c2c eval` (eval.h): the methods, each scored through the one C2C forward or generating,
// and run_eval, which walks the benchmarks. The config is eval_config.cpp, the progress file and
// the reports eval_report.cpp.
#include "trainer/eval.h"

#include <unistd.h>

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
#include "modules/common/torch_compat.h"
#include "modules/fused_pipeline.h"
#include "modules/generate.h"
#include "trainer/eval_report.h"
#include "trainer/trainer.h"

namespace c2c {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }


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
      r = m_.fusion->generate({prompt}, sharer_inputs({s}, static_cast<int64_t>(prompt.size())), go);
      s_prefill = r.timings.sharer_prefill_s;
      r.timings.prefill_s -= s_prefill;  // the receiver's share
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
  // The one C2C forward (modules/c2c_forward.h) over rows whose options share their item's
  // prompt: each distinct prefix [0, P-1) is prefilled (and fused) once for all its options.
  torch::Tensor shared_prompt_loss(const LLM& model, const FusedPipeline* fusion,
                                   const std::vector<PairedSample>& rows,
                                   const std::vector<std::pair<size_t, int>>& owner) const {
    C2CLossOptions options;
    std::map<size_t, int64_t> of_item;  // item -> its group
    std::vector<size_t> lead;           // group -> its first row
    for (size_t r = 0; r < rows.size(); ++r) {
      auto it = of_item.find(owner[r].first);
      const bool same = it != of_item.end() && rows[lead[it->second]].prompt_length == rows[r].prompt_length &&
                        std::equal(rows[r].receiver_ids.begin(), rows[r].receiver_ids.begin() + rows[r].prompt_length - 1,
                                   rows[lead[it->second]].receiver_ids.begin());
      if (same) {
        options.prompt_group.push_back(it->second);
      } else {  // a new prompt (or options that tokenize into the prompt: their own group)
        options.prompt_group.push_back(static_cast<int64_t>(lead.size()));
        of_item[owner[r].first] = static_cast<int64_t>(lead.size());
        lead.push_back(r);
      }
    }
    return c2c_loss(model, fusion, rows, options).row_loss;
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

}  // namespace

std::string run_eval(const EvalConfig& c, std::ostream& log) {
  const bool live = &log == &std::cerr && isatty(STDERR_FILENO);  // progress redrawn in place
  compat::set_threads(c.threads);
  std::filesystem::create_directories(c.output);
  EvalProgress progress(c, log);  // eval_report.h: resumes OUT/progress.jsonl

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
      // The ablations without a gate have no gate logits: nothing to report.
      if (const auto logits = s.fuser->gate_logits(); logits.defined()) {
        auto g = logits.detach().to(torch::kCPU, torch::kFloat32).contiguous();  // (2, Lf)
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
        if (!progress.find(method, bench.name, it.id)) todo.push_back(it);
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
          progress.append(j);
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
        const auto& j = *progress.find(method, bench.name, it.id);
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
  return write_eval_report(c, report);  // eval_report.h: report.json and report.md
}

}  // namespace c2c
