// The dashboard page's files (web/), embedded in the binary at build time: cmake/embed_web.cmake
// writes them into a generated source (build/generated/dashboard_assets.cc) whenever a file under
// web/ changes, so the page needs no build step and no network on the user's side.
#pragma once

#include <cstddef>
#include <string>

namespace qwenmux::server {

struct DashboardAsset {
  const char* name;          // file name under web/: "index.html", "app.js", "app.css"
  const char* content_type;  // from the extension
  const unsigned char* data;
  size_t size;
};

// Every embedded file; *count is set to their number.
const DashboardAsset* DashboardAssets(size_t* count);
// The file of that name, else nullptr.
const DashboardAsset* FindDashboardAsset(const std::string& name);

}  // namespace qwenmux::server
