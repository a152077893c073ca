// `c2c make-random-model`: a random-weight model folder with published shapes, for benchmarks.
#include <iostream>

#include "modules/common/error.h"
#include "modules/random_model.h"
#include "trainer/args.h"
#include "trainer/cli.h"

namespace c2c::cli {

int cmd_make_random_model(const std::vector<std::string>& argv) {
  Args args("make-random-model", argv, {"help"});
  if (args.flag("help") || args.positional().size() != 1) {
    std::cout << "usage: c2c make-random-model --preset NAME [--seed S] [--dtype float32|bfloat16] OUT_DIR\n"
                 "  presets:";
    for (const auto& p : random_model_presets()) std::cout << " " << p;
    std::cout << "\n";
    return args.flag("help") ? 0 : 2;
  }
  const auto config = random_model_preset(args.str("preset"));
  const auto seed = static_cast<uint64_t>(args.integer("seed", 0));
  const std::string dtype = args.str("dtype", "float32");
  args.finish();
  const int64_t n = write_random_model(args.positional()[0], config, seed, dtype);
  std::cout << "wrote " << args.positional()[0] << " (" << n / 1e6 << "M parameters, " << dtype << ")\n";
  return 0;
}

}  // namespace c2c::cli
