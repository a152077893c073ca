// `c2c train RECIPE.yaml [--set key=value ...]`: trains a fuser from a YAML recipe.
#include <iostream>

#include "modules/common/error.h"
#include "modules/fuser_checkpoint.h"
#include "trainer/args.h"
#include "trainer/cli.h"
#include "trainer/recipe.h"
#include "trainer/trainer.h"

namespace c2c::cli {

int cmd_train(const std::vector<std::string>& argv) {
  Args args("train", argv, {"help", "print-recipe"});
  const std::string export_init = args.str("export-init", "");
  if (args.positional().size() > 1 && !args.flag("help")) {
    std::string extra;
    for (size_t i = 1; i < args.positional().size(); ++i) extra += " '" + args.positional()[i] + "'";
    fail("train: one recipe file expected, got the extra argument(s)", extra,
         "\nHINT: overrides are --set key=value (with '='), e.g. --set train.lr=3e-4");
  }
  if (args.flag("help") || args.positional().size() != 1) {
    std::cout << "usage: c2c train RECIPE.yaml [--set key=value ...] [--print-recipe]\n"
                 "  --set train.lr=3e-4   override any recipe key (dotted), repeatable\n"
                 "  --print-recipe        print the resolved recipe and exit\n"
                 "  --export-init DIR     write the freshly initialised fuser (seeded by train.seed) to DIR\n"
                 "                        and exit, without training (benchmarks, latency checks)\n"
                 "See recipes/ and the README for the keys.\n";
    return args.flag("help") ? 0 : 2;
  }
  const auto overrides = args.all("set");
  const bool print_only = args.flag("print-recipe");
  args.finish();
  Recipe recipe = Recipe::load(args.positional()[0], overrides);
  if (print_only) {
    std::cout << recipe.to_yaml();
    return 0;
  }
  if (!export_init.empty()) {
    FuserTrainer trainer(recipe);
    save_fuser_checkpoint(export_init, trainer.fusers());
    std::cout << "c2c train: initial fuser written to " << export_init << "\n";
    return 0;
  }
  run_training(recipe);
  return 0;
}

}  // namespace c2c::cli
