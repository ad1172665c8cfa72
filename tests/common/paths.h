// Where the tests find the checkout, the shared test data and the qwenmux program of this build.
// Only tests/common/paths.cc is compiled with these absolute paths (CMake defines them for that
// file alone), so every other test object is the same whichever folder the checkout is in, and
// a compiler cache filled by one clone serves the next.
#pragma once

#include <string>

namespace qwenmux::testing {

const std::string& SourceDir();      // the checkout
const std::string& TestdataDir();    // ../shared/testdata; QWENMUX_TESTDATA in the environment overrides
const std::string& QwenmuxBinary();  // BUILD_DIR/qwenmux

}  // namespace qwenmux::testing
