// Paths to the shared test data (../shared/testdata, never copied into the project).
#pragma once

#include <cstdlib>
#include <string>

namespace qwenmux::testing {

// QWENMUX_TESTDATA in the environment overrides the compiled-in folder (the device test script
// runs the test binary away from the checkout it was built in).
inline std::string TestdataPath(const std::string& rel) {
  const char* env = std::getenv("QWENMUX_TESTDATA");
  return std::string(env && *env ? env : QWENMUX_TESTDATA_DIR) + "/" + rel;
}
inline std::string ModelPath(const std::string& name) { return TestdataPath("models/" + name); }
inline std::string RefPath(const std::string& name) { return TestdataPath("refs/" + name); }

}  // namespace qwenmux::testing
