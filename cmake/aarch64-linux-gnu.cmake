# Cross build for 64-bit ARM Linux on a Debian x86-64 host (scripts/install-deps-aarch64.sh
# installs what it needs): Debian's g++-aarch64-linux-gnu, arm64 libraries through multiarch
# (/usr/lib/aarch64-linux-gnu), and qemu-user to run what was built (tests, gtest discovery).
# Used by the `aarch64` preset: cmake --preset aarch64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Multiarch: arm64 -dev packages put their libraries, CMake package files and .pc files under
# /usr/lib/aarch64-linux-gnu; with the library architecture set, find_package/find_library look
# there (and in the architecture-independent /usr/share, /usr/include) but never in the host's
# /usr/lib/x86_64-linux-gnu. /usr/aarch64-linux-gnu is the cross compiler's own libc/libstdc++.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config (utf8proc) must read the arm64 .pc files, not the host's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# Built programs run under qemu-user: gtest_discover_tests and ctest go through this. The CPU
# model comes from QEMU_CPU (scripts/test.sh sets `max`, which has SVE/SVE2), else qemu's default.
# The run-time libraries are the multiarch arm64 ones (libc6:arm64, libstdc++6:arm64, pulled in by
# the -dev packages), found at their real paths: `-L /`. Not `-L /usr/aarch64-linux-gnu`: that
# takes the cross toolchain's ld-linux-aarch64.so.1 but, since its search path falls through to
# /lib/aarch64-linux-gnu, the multiarch libc.so.6 of a different build, and a mismatched loader and
# libc hang the first std::thread.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /)
