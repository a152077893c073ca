// `c2c import-official SRC_DIR DST_DIR`: converts a published C2C fuser (projector_{i}.json/.pt +
// projector_config.json) into our checkpoint format (fuser.safetensors + fuser.json), strictly.
#include <iostream>

#include "modules/common/error.h"
#include "modules/official_checkpoint.h"
#include "trainer/args.h"
#include "trainer/cli.h"

namespace c2c::cli {
namespace {

const char* kUsage = R"(usage: c2c import-official SRC_DIR DST_DIR [options]

  SRC_DIR                 the official <pair>_Fuser folder, or its final/ subfolder
  DST_DIR                 our checkpoint folder to write (fuser.safetensors + fuser.json)
  --receiver NAME         receiver model name/path to record (default: the recipe's base_model)
  --sharer NAME           sharer model name/path to record (default: the recipe's teacher_model)
  --dtype float32|bfloat16  stored dtype (default: the projectors' own, bf16 for the published)
)";

}  // namespace

int cmd_import_official(const std::vector<std::string>& argv) {
  Args args("import-official", argv, {"help"});
  if (args.flag("help")) {
    std::cout << kUsage;
    return 0;
  }
  C2C_CHECK(args.positional().size() == 2, "import-official: expected SRC_DIR DST_DIR, got ",
            args.positional().size(), " positional arguments\n", kUsage);
  const std::string src = args.positional()[0], dst = args.positional()[1];
  const std::string receiver = args.str("receiver", ""), sharer = args.str("sharer", "");
  const std::string dtype = args.str("dtype", "");
  args.finish();

  FuserCheckpoint ckpt = import_official_checkpoint(src);
  if (!receiver.empty()) ckpt.receiver_model = receiver;
  if (!sharer.empty())
    for (auto& set : ckpt.sharers) set.sharer_model = sharer;
  if (!dtype.empty())
    for (auto& set : ckpt.sharers) set.fuser->to(parse_dtype_name(dtype));
  save_fuser_checkpoint(dst, ckpt);
  for (size_t j = 0; j < ckpt.sharers.size(); ++j) {
    const auto& set = ckpt.sharers[j];
    std::cout << "sharer " << j << " (" << (set.sharer_model.empty() ? "?" : set.sharer_model)
              << "): " << set.fuser->num_fusers() << " fusers, "
              << set.config.parameters_per_layer() << " parameters each, "
              << dtype_name(set.fuser->dtype()) << "\n";
  }
  std::cout << "wrote " << dst << "/fuser.safetensors and fuser.json\n";
  return 0;
}

}  // namespace c2c::cli
