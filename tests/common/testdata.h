// Paths to the shared test data (../shared/testdata, never copied into the project).
#pragma once

#include <string>

namespace qwenmux::testing {

inline std::string TestdataPath(const std::string& rel) {
  return std::string(QWENMUX_TESTDATA_DIR) + "/" + rel;
}
inline std::string ModelPath(const std::string& name) { return TestdataPath("models/" + name); }
inline std::string RefPath(const std::string& name) { return TestdataPath("refs/" + name); }

}  // namespace qwenmux::testing
