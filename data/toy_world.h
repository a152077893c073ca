// A seeded fictional world for proving that a fuser carries meaning (the embedded demo): entities
// with made-up names built from syllables and closed-list attributes (city, job, pet, colour),
// rendered as biographies with paraphrase templates and as questions whose answer is the
// attribute itself (scored among its closed list by `c2c eval`, mode "choices").
//
// Entities are split four ways: the receiver knows `known` of them; the rest it never reads,
// and of those the fuser trains on `fuser_train`, model selection (the held-out loss of fuser
// training: early stop, best/) uses only `validation`, and the evaluation uses only `eval`, so
// an improvement on eval entities comes neither from the fuser memorising their answers nor from
// choosing the step that happens to suit them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/chat_template.h"

namespace c2c {

struct ToyWorldOptions {
  uint64_t seed = 0;
  int64_t entities = 600;
  int64_t known = 150;          // the receiver reads these; eval and fuser_train are the others
  int64_t eval = 100;           // held out from fuser training and from model selection
  int64_t validation = 50;      // held out from fuser training, for model selection
  std::vector<std::string> attributes = {"city", "job", "pet"};
  int64_t practice = 300;       // fresh entities for the receiver's read-the-context practice
  int64_t bio_copies = 3;       // paraphrased biographies per entity in pretraining
  double known_in_fuser = 0.3;  // fuser data: this share of samples are about known entities
};

struct ToyEntity {
  std::string name;
  std::vector<int> values;  // per attribute, index into its value list
  std::string split;        // known | fuser_train | validation | eval | practice
};

// A single-model pretraining record: plain text (loss on every token) or a chat whose final
// assistant turn carries the loss.
struct LmRecord {
  std::string text;
  std::vector<ChatMessage> messages;
};

class ToyWorld {
 public:
  explicit ToyWorld(const ToyWorldOptions& options);

  const ToyWorldOptions& options() const { return opt_; }
  const std::vector<ToyEntity>& entities() const { return entities_; }
  // The closed list of an attribute's values; throws naming the known attributes.
  static const std::vector<std::string>& values_of(const std::string& attribute);
  static std::vector<std::string> known_attributes();

  // Paraphrase p (any integer) of a biography; `canonical` fixes the order and wording.
  std::string biography(const ToyEntity& e, uint64_t variant, bool canonical = false) const;
  // Question template q about attribute a of e, and its answer (the value itself).
  std::string question(const ToyEntity& e, size_t attribute, int q) const;
  std::string answer(const ToyEntity& e, size_t attribute) const;
  // The T2T background request (data/benchmark.h) wrapping a question.
  static std::string background_request(const std::string& question);

  // Pretraining corpora: the sharer reads every entity; the receiver only `known` ones plus
  // context practice on fresh `practice` entities (a biography in the chat, then a question).
  std::vector<LmRecord> sharer_corpus() const;
  std::vector<LmRecord> receiver_corpus() const;
  // Fuser conversations (JSON Lines for `c2c prepare`) about `split`'s people (fuser_train or
  // validation), both question templates of each attribute, mixed with questions about known
  // people so that they make up `known_in_fuser` of the samples.
  std::vector<std::vector<ChatMessage>> fuser_conversations(const std::string& split = "fuser_train") const;

  // Writes world.json, sharer_corpus.jsonl, receiver_corpus.jsonl, fuser_train.jsonl,
  // validation.jsonl (when validation > 0) and the benchmark files eval_heldout.jsonl,
  // eval_known.jsonl, eval_fuser_train.jsonl, eval_validation.jsonl (the format of
  // data/benchmark.h: question, choices, answer, subject = attribute; plus "entity").
  void write(const std::string& dir) const;

 private:
  ToyWorldOptions opt_;
  std::vector<ToyEntity> entities_;  // world entities first, then practice entities
};

}  // namespace c2c
