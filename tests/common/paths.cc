#include "common/paths.h"

#include <cstdlib>

namespace qwenmux::testing {

const std::string& SourceDir() {
  static const std::string dir = QWENMUX_SOURCE_DIR;
  return dir;
}

// QWENMUX_TESTDATA in the environment overrides the compiled-in folder (the device test script
// runs the test binary away from the checkout it was built in).
const std::string& TestdataDir() {
  static const std::string dir = [] {
    const char* env = std::getenv("QWENMUX_TESTDATA");
    return std::string(env && *env ? env : QWENMUX_TESTDATA_DIR);
  }();
  return dir;
}

const std::string& QwenmuxBinary() {
  static const std::string bin = QWENMUX_BINARY;
  return bin;
}

}  // namespace qwenmux::testing
