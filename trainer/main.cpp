// The `c2c` command line: dispatches sub-commands, catches errors once, exits non-zero on failure.
#include <iostream>

#include "modules/common/error.h"
#include "modules/common/torch_compat.h"
#include "trainer/cli.h"

int main(int argc, char** argv) {
  try {
    c2c::compat::keep_freed_host_memory();
    c2c::compat::set_threads(0);
    return c2c::cli::run(argc, argv);
  } catch (const c2c::Error& e) {
    std::cerr << "c2c: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "c2c: error: " << e.what() << "\n";
    return 1;
  }
}
