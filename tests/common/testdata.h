// Paths to the shared test data (../shared/testdata, never copied into the project).
#pragma once

#include <string>

#include "common/paths.h"

namespace qwenmux::testing {

inline std::string TestdataPath(const std::string& rel) { return TestdataDir() + "/" + rel; }
inline std::string ModelPath(const std::string& name) { return TestdataPath("models/" + name); }
inline std::string RefPath(const std::string& name) { return TestdataPath("refs/" + name); }

}  // namespace qwenmux::testing
