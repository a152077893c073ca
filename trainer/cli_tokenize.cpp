// `c2c tokenize`: ids, tokens and code-point offsets of a text, to check a tokenizer folder by
// hand or against the `tokenizers` Python package (which prints the same offsets).
#include <iostream>
#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "modules/common/error.h"
#include "modules/common/files.h"
#include "trainer/args.h"
#include "trainer/cli.h"

namespace c2c::cli {
namespace {

const char* kUsage =
    "usage: c2c tokenize --tokenizer DIR (--text TEXT | --text-file PATH) [--json]\n"
    "                    [--add-special-tokens]\n\n"
    "  --tokenizer DIR         folder with tokenizer.json (and tokenizer_config.json)\n"
    "  --text TEXT             the text to encode (special tokens written in it are recognised)\n"
    "  --text-file PATH        read the text from a file instead\n"
    "  --json                  print {\"ids\":[...],\"offsets\":[[b,e],...],\"tokens\":[...]}\n"
    "  --add-special-tokens    add BOS etc. as the tokenizer's post-processor asks\n\n"
    "Offsets are [begin, end) in Unicode code points of the text.\n";

// The code points [b, e) of `text`, with control characters escaped for a one-line table.
std::string span_text(const std::vector<std::string>& cps, int64_t b, int64_t e) {
  std::string out;
  for (int64_t i = b; i < e && i < static_cast<int64_t>(cps.size()); ++i) {
    const std::string& c = cps[i];
    if (c == "\n") out += "\\n";
    else if (c == "\t") out += "\\t";
    else if (c == "\r") out += "\\r";
    else out += c;
  }
  return out;
}

std::vector<std::string> split_code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0xF0) n = 4;
    else if (c >= 0xE0) n = 3;
    else if (c >= 0xC0) n = 2;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace

int cmd_tokenize(const std::vector<std::string>& argv) {
  Args args("tokenize", argv, {"json", "add-special-tokens", "help"});
  if (args.flag("help")) {
    std::cout << kUsage;
    return 0;
  }
  const std::string dir = args.str("tokenizer");
  const bool has_text = args.has("text"), has_file = args.has("text-file");
  const std::string text_arg = args.str("text", ""), file_arg = args.str("text-file", "");
  const bool as_json = args.flag("json");
  const bool add_special = args.flag("add-special-tokens");
  args.finish();
  C2C_CHECK(has_text != has_file,
            "tokenize: give exactly one of --text and --text-file\nHINT: run `c2c tokenize --help`");
  const std::string text = has_text ? text_arg : read_file(file_arg);

  const auto tok = Tokenizer::load(dir);
  const Encoding enc = tok->encode(text, add_special);
  if (as_json) {
    nlohmann::json out;
    out["ids"] = enc.ids;
    out["offsets"] = nlohmann::json::array();
    for (const auto& o : enc.offsets) out["offsets"].push_back({o.first, o.second});
    out["tokens"] = nlohmann::json::array();
    for (int64_t id : enc.ids) out["tokens"].push_back(tok->id_to_token(id));
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  const auto cps = split_code_points(text);
  std::cout << enc.ids.size() << " tokens (vocabulary " << tok->vocab_size() << ")\n";
  std::cout << "  #      id  [begin, end)  token  |  text\n";
  for (size_t i = 0; i < enc.ids.size(); ++i) {
    const auto& o = enc.offsets[i];
    std::string token = tok->id_to_token(enc.ids[i]);
    std::cout << "  " << i << "\t" << enc.ids[i] << "\t[" << o.first << ", " << o.second << ")\t"
              << token << (tok->is_special(enc.ids[i]) ? " (special)" : "") << "  |  "
              << span_text(cps, o.first, o.second) << "\n";
  }
  return 0;
}

}  // namespace c2c::cli
