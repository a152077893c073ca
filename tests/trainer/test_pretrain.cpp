// Full-parameter LM training (trainer/pretrain.h): a tiny Qwen3-style model learns a small
// corpus by heart (loss falls far), the saved folder loads back with the trained weights (its
// logits equal the trained model's, recomputed), and bad input names the file and line.
#include <gtest/gtest.h>

#include <sstream>

#include "data/tokenizer.h"
#include "modules/common/files.h"
#include "modules/llm.h"
#include "tests/common/test_util.h"
#include "trainer/pretrain.h"

using namespace c2c;

namespace {

const char* kTok = "tests/fixtures/models/qwen3-tiny";

std::string tiny_config(const std::string& dir) {
  const std::string path = join_path(dir, "config.json");
  write_file_atomic(path, R"({"model_type": "qwen3", "vocab_size": 512, "hidden_size": 48,
    "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1, "head_dim": 24, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
    "max_position_embeddings": 256, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2})");
  return path;
}

std::string corpus(const std::string& dir) {
  const std::string path = join_path(dir, "corpus.jsonl");
  write_file_atomic(path,
                    "{\"text\": \"Saan lives in Arden.\"}\n"
                    "{\"text\": \"Velvel keeps a newt.\"}\n"
                    "\n"
                    "{\"messages\": [{\"role\": \"user\", \"content\": \"Where does Saan live?\"}, "
                    "{\"role\": \"assistant\", \"content\": \"Arden\"}]}\n"
                    "{\"messages\": [{\"role\": \"user\", \"content\": \"What pet does Velvel keep?\"}, "
                    "{\"role\": \"assistant\", \"content\": \"newt\"}]}\n");
  return path;
}

}  // namespace

TEST(Pretrain, LearnsACorpusAndSavesALoadableModel) {
  const auto dir = test::temp_dir("pretrain");
  PretrainOptions o;
  o.config = tiny_config(dir);
  o.tokenizer = test::source_path(kTok);
  o.data = {corpus(dir)};
  o.out = join_path(dir, "model");
  o.steps = 80;
  o.batch_size = 4;
  o.lr = 1e-2;
  o.log_every = 10;
  std::ostringstream log;
  const PretrainReport r = run_pretraining(o, log);
  EXPECT_EQ(r.used, 4);
  EXPECT_LT(r.last_loss, 0.25 * r.first_loss) << log.str();
  // The saved folder is a model of its own: it answers the memorised question.
  auto m = LLM::load(o.out);
  auto tok = Tokenizer::load(o.out);  // the tokenizer was copied in
  auto ids = tok->encode("Saan lives in", false).ids;
  KVCache cache = m->new_cache(1, 0);
  auto next = m->forward(torch::tensor(ids).view({1, -1}), {}, cache, true).argmax(-1).item<int64_t>();
  EXPECT_EQ(tok->decode({next}), tok->decode({tok->encode(" Arden", false).ids[0]}));
  // Saved and reloaded weights give the trained model's logits: make_trainable + save round trip.
  auto again = LLM::load(o.out);
  auto params = again->make_trainable();
  const std::string resaved = join_path(dir, "resaved");
  again->save(resaved, torch::kFloat32);
  EXPECT_EQ(read_file(join_path(resaved, "model.safetensors")), read_file(join_path(o.out, "model.safetensors")));
}

TEST(Pretrain, BadInputIsNamed) {
  const auto dir = test::temp_dir("pretrain_bad");
  PretrainOptions o;
  o.config = tiny_config(dir);
  o.tokenizer = test::source_path(kTok);
  const std::string bad = join_path(dir, "bad.jsonl");
  write_file_atomic(bad, "{\"text\": \"fine\"}\n{\"txt\": \"typo\"}\n");
  o.data = {bad};
  o.out = join_path(dir, "out");
  o.steps = 2;
  std::ostringstream log;
  auto e = test::error_of([&] { run_pretraining(o, log); });
  EXPECT_NE(e.find(bad + ":2:"), std::string::npos) << e;
  write_file_atomic(bad, "{\"text\": \"fine\"}\nnot json\n");
  e = test::error_of([&] { run_pretraining(o, log); });
  EXPECT_NE(e.find(bad + ":2: not JSON"), std::string::npos) << e;
  o.init = test::source_path(kTok);
  e = test::error_of([&] { run_pretraining(o, log); });
  EXPECT_NE(e.find("exactly one of --init"), std::string::npos) << e;
}
