#include "trainer/pretrain.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <ostream>
#include <random>

#include "data/prepare.h"
#include "data/tokenizer.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/c2c_forward.h"
#include "modules/common/torch_compat.h"
#include "modules/generate.h"
#include "modules/llm.h"
#include "modules/random_model.h"
#include "trainer/optimizer.h"

namespace c2c {
namespace {

struct LmSample {
  std::vector<int64_t> ids;
  int64_t loss_start = 1, loss_end = 0;  // tokens [loss_start, loss_end) are predicted
};

std::vector<LmSample> read_corpus(const PretrainOptions& opt, const Tokenizer& tok,
                                  PretrainReport& report) {
  std::vector<LmSample> out;
  for (const auto& path : opt.data) {
    std::ifstream in(path);
    C2C_CHECK(in.good(), "pretrain: cannot read data file '", path, "'");
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      ++report.records;
      LmSample s;
      try {
        const auto j = nlohmann::json::parse(line);
        if (j.is_object() && j.contains("text")) {
          C2C_CHECK(j["text"].is_string() && !j["text"].get<std::string>().empty(),
                    "\"text\" must be a non-empty string");
          s.ids = tok.encode(j["text"].get<std::string>(), true).ids;
          if (tok.eos_id()) s.ids.push_back(*tok.eos_id());
          s.loss_start = 1;
          s.loss_end = static_cast<int64_t>(s.ids.size());
        } else {
          PairedSample p = make_paired_sample(tok, {}, parse_conversation(j), AlignMethod::identity);
          s.ids = std::move(p.receiver_ids);
          s.loss_start = p.loss_start;
          s.loss_end = p.loss_end;
        }
      } catch (const nlohmann::json::exception& e) {
        fail(path, ":", line_no, ": not JSON (", e.what(), ")");
      } catch (const Error& e) {
        fail(path, ":", line_no, ": ", e.what(), "\nHINT: each line is {\"text\": ...} or "
             "{\"messages\": [{\"role\", \"content\"}, ...]} ending with an assistant turn");
      }
      if (static_cast<int64_t>(s.ids.size()) > opt.max_length) {
        ++report.skipped_too_long;
        continue;
      }
      if (s.loss_end <= s.loss_start) continue;
      out.push_back(std::move(s));
    }
  }
  report.used = static_cast<int64_t>(out.size());
  C2C_CHECK(!out.empty(), "pretrain: no usable record in ", opt.data.size(), " data file(s) (",
            report.skipped_too_long, " longer than --max-length ", opt.max_length, ")");
  return out;
}

// Epoch order: shuffled, then sorted by length inside windows of 8 batches (little padding).
std::vector<std::vector<int64_t>> epoch_batches(const std::vector<LmSample>& data, int64_t B,
                                                std::mt19937_64& rng) {
  std::vector<int64_t> idx(data.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::shuffle(idx.begin(), idx.end(), rng);
  const int64_t window = 8 * B;
  for (size_t w = 0; w < idx.size(); w += window) {
    auto end = idx.begin() + std::min(idx.size(), w + window);
    std::stable_sort(idx.begin() + w, end, [&](int64_t a, int64_t b) {
      return data[a].ids.size() < data[b].ids.size();
    });
  }
  std::vector<std::vector<int64_t>> batches;
  for (size_t i = 0; i + B <= idx.size(); i += B) batches.emplace_back(idx.begin() + i, idx.begin() + i + B);
  std::shuffle(batches.begin(), batches.end(), rng);
  return batches;
}

}  // namespace

PretrainReport run_pretraining(const PretrainOptions& opt, std::ostream& log) {
  C2C_CHECK(opt.init.empty() != opt.config.empty(), "pretrain: give exactly one of --init MODEL_DIR "
            "or --config CONFIG.json");
  C2C_CHECK(!opt.data.empty(), "pretrain: no --data file");
  C2C_CHECK(!opt.out.empty(), "pretrain: --out is required");
  C2C_CHECK(opt.steps > 0 && opt.batch_size > 0 && opt.max_length > 1 && opt.lr > 0,
            "pretrain: --steps, --batch-size, --lr must be positive and --max-length > 1");
  C2C_CHECK(opt.save_dtype == "float32" || opt.save_dtype == "bfloat16", "pretrain: --save-dtype must be "
            "float32 or bfloat16, got '", opt.save_dtype, "'");
  PretrainReport report;
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = Tokenizer::load(opt.tokenizer);
  std::vector<LmSample> data = read_corpus(opt, *tok, report);

  std::string model_dir = opt.init;
  const std::string work = join_path(opt.out, ".init");
  if (!opt.config.empty()) {
    const auto cfg = read_json(opt.config);
    write_random_model(work, cfg, static_cast<uint64_t>(opt.seed), "float32", opt.init_std);
    model_dir = work;
  }
  auto model = LLM::load(model_dir, LoadOptions{});
  C2C_CHECK(tok->vocab_size() <= model->config().vocab_size, "pretrain: tokenizer '", opt.tokenizer,
            "' has ", tok->vocab_size(), " tokens but the model's vocab_size is ",
            model->config().vocab_size);
  auto params = model->make_trainable();
  int64_t n_params = 0;
  for (const auto& p : params) n_params += p.second.numel();
  log << "pretrain: " << n_params << " parameters, " << report.used << " of " << report.records
      << " records (" << report.skipped_too_long << " longer than " << opt.max_length << " skipped), "
      << opt.steps << " steps of " << opt.batch_size << "\n";

  AdamWOptions ao;
  ao.weight_decay = opt.weight_decay;
  AdamW adam(params, ao);
  torch::manual_seed(static_cast<uint64_t>(opt.seed));
  std::mt19937_64 rng(static_cast<uint64_t>(opt.seed) + 17);
  const int64_t warmup = static_cast<int64_t>(opt.warmup_ratio * static_cast<double>(opt.steps));
  std::vector<std::vector<int64_t>> batches;
  size_t next = 0;
  double loss_acc = 0, first = -1;
  int64_t tokens_acc = 0;
  auto t_log = std::chrono::steady_clock::now();
  std::filesystem::create_directories(opt.out);
  std::ofstream metrics(join_path(opt.out, "pretrain_metrics.jsonl"));
  for (int64_t step = 0; step < opt.steps; ++step) {
    if (next >= batches.size()) {
      batches = epoch_batches(data, std::min<int64_t>(opt.batch_size, static_cast<int64_t>(data.size())), rng);
      next = 0;
    }
    const auto& rows = batches[next++];
    const int64_t B = static_cast<int64_t>(rows.size());
    std::vector<std::vector<int64_t>> ids;
    for (int64_t r : rows) ids.push_back(data[r].ids);
    auto [x, mask] = pad_batch(ids);
    const int64_t T = x.size(1);
    auto labels = torch::full({B, T}, -1, torch::kInt64);
    auto la = labels.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
      const LmSample& s = data[rows[b]];
      for (int64_t t = s.loss_start; t < s.loss_end; ++t) la[b][t - 1] = s.ids[t];
    }
    KVCache cache = model->new_cache(B, 0);
    auto hidden = model->forward_hidden(x, mask, cache);
    const TokenLoss tl = next_token_loss(*model, hidden, labels);  // modules/c2c_forward.h
    auto loss = tl.sum / static_cast<double>(std::max<int64_t>(tl.tokens, 1));
    adam.zero_grad();
    loss.backward();
    adam.clip_grad_norm(opt.max_grad_norm);
    const double lr = scheduled_lr(opt.lr, step, opt.steps, warmup, opt.schedule);
    adam.step(lr);
    const double l = loss.item<double>();
    C2C_CHECK(std::isfinite(l), "pretrain: non-finite loss at step ", step + 1,
              "\nHINT: lower --lr (now ", opt.lr, ")");
    loss_acc += l;
    tokens_acc += mask.sum().item<int64_t>();
    if ((step + 1) % opt.log_every == 0 || step + 1 == opt.steps) {
      const int64_t n = (step + 1) % opt.log_every == 0 ? opt.log_every : (step + 1) % opt.log_every;
      const double mean = loss_acc / static_cast<double>(n);
      if (first < 0) first = mean;
      report.last_loss = mean;
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - t_log).count();
      const double elapsed = std::chrono::duration<double>(now - t0).count();
      const double left = elapsed / static_cast<double>(step + 1) * static_cast<double>(opt.steps - step - 1);
      log << "step " << std::setw(6) << step + 1 << "/" << opt.steps << "  loss " << std::fixed
          << std::setprecision(4) << mean << "  lr " << std::scientific << std::setprecision(2) << lr
          << std::fixed << std::setprecision(0) << "  tok/s " << static_cast<double>(tokens_acc) / dt
          << "  left " << left << "s\n" << std::flush;
      metrics << nlohmann::json{{"step", step + 1}, {"loss", mean}, {"lr", lr}}.dump() << "\n" << std::flush;
      loss_acc = 0;
      tokens_acc = 0;
      t_log = now;
    }
  }
  report.first_loss = first;
  model->save(opt.out, opt.save_dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    const std::string src = join_path(opt.tokenizer, f);
    if (file_exists(src)) write_file_atomic(join_path(opt.out, f), read_file(src));
  }
  std::filesystem::remove_all(work);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace c2c
