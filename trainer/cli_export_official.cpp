// `c2c export-official FUSER_DIR OUT_DIR`: writes a fuser of our format (a run's final/ or any
// checkpoint's fuser/) in the official C2C layout (modules/official_checkpoint.h), so the
// reference code and the published tooling can run it.
#include <filesystem>
#include <iostream>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/official_checkpoint.h"
#include "trainer/args.h"
#include "trainer/cli.h"

namespace c2c::cli {
namespace {

const char* kUsage = R"(usage: c2c export-official FUSER_DIR OUT_DIR [options]

  FUSER_DIR               our fuser checkpoint (fuser.safetensors + fuser.json), e.g. RUN/final
  OUT_DIR                 the official <pair>_Fuser folder to write (must not exist, or be empty)
  --dtype bfloat16|float32  stored dtype of the projectors (default bfloat16, as published)
  --recipe FILE           the recipe that trained it, for config.json and README.md
                          (default: FUSER_DIR/../recipe.yaml when there is one)
  --eval-report FILE      a `c2c eval` report.json whose accuracies go in README.md
)";

}  // namespace

int cmd_export_official(const std::vector<std::string>& argv) {
  Args args("export-official", argv, {"help"});
  if (args.flag("help")) {
    std::cout << kUsage;
    return 0;
  }
  C2C_CHECK(args.positional().size() == 2, "export-official: expected FUSER_DIR OUT_DIR, got ",
            args.positional().size(), " positional arguments\n", kUsage);
  const std::string src = args.positional()[0], dst = args.positional()[1];
  OfficialExportOptions options;
  options.dtype = parse_dtype_name(args.str("dtype", "bfloat16"));
  std::string recipe = args.str("recipe", "");
  options.eval_report = args.str("eval-report", "");
  args.finish();
  if (recipe.empty()) {
    const std::string beside = join_path(join_path(src, ".."), "recipe.yaml");
    if (file_exists(beside)) recipe = beside;
  }
  if (!recipe.empty()) options.recipe_yaml = read_file(recipe);

  const FuserCheckpoint ckpt = load_fuser_checkpoint(src, torch::kFloat32);
  for (const auto& w : export_official_checkpoint(ckpt, dst, options)) std::cerr << "warning: " << w << "\n";
  int64_t n = 0;
  for (const auto& set : ckpt.sharers) n += set.fuser->num_fusers();
  std::cout << "wrote " << dst << ": " << n << " projectors (" << dtype_name(options.dtype)
            << ") in final/, projector_config.json, config.json, README.md\n";
  return 0;
}

}  // namespace c2c::cli
