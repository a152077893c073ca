// The `c2c` command line: dispatches sub-commands, catches errors once, exits non-zero on failure.
#include <iostream>

#include "modules/common/error.h"
#include "trainer/cli.h"

int main(int argc, char** argv) {
  try {
    return c2c::cli::run(argc, argv);
  } catch (const c2c::Error& e) {
    std::cerr << "c2c: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "c2c: error: " << e.what() << "\n";
    return 1;
  }
}
