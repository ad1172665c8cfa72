// Downloads from a Hugging Face-style hub with libcurl.
//
// What the hub does (huggingface_hub's file_download.py reads the same headers):
//  * GET/HEAD https://huggingface.co/{repo}/resolve/{revision}/{file}. For an LFS file (every
//    GGUF) the hub answers 302 to a CDN URL and sends `X-Linked-Etag: "<sha256>"` (quoted) and
//    `X-Linked-Size: <bytes>` on that redirect; a small non-LFS file answers 200 with `ETag`
//    (a git sha1, not a sha256) and `Content-Length`.
//  * The CDN honours `Range: bytes=N-` (206 Partial Content).
// We HEAD the resolve URL without following the CDN redirect (relative redirects such as a
// renamed repo are followed), require a sha256 and a size, then GET with redirects followed and
// append to `<blob>.partial`, resuming with Range. The file becomes the blob only after its
// size and SHA-256 match; a hash mismatch deletes the .partial.
//
// Thread-safety: free functions; concurrent downloads of the same blob are not coordinated.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace qwenmux::orchestrator {

struct HubOptions {
  std::string base_url = "https://huggingface.co";  // --hub-url (tests point it at 127.0.0.1)
  std::string revision = "main";
  int max_redirects = 8;
  long connect_timeout_s = 30;
  long stall_timeout_s = 60;  // abort when under 1 KiB/s for this long
  // Called during a download with (bytes in the file so far, total); may be empty.
  std::function<void(uint64_t done, uint64_t total)> on_progress;
};

// Repo "owner/name" and file (may have '/'-separated folders): checked before any request.
// Refuses "..", ".", empty parts, absolute paths, backslashes, control and other unsafe bytes.
Status CheckRepoAndFile(std::string_view repo, std::string_view file);

struct HubFileInfo {
  std::string url;     // the resolve URL
  std::string sha256;  // from X-Linked-Etag
  uint64_t size = 0;   // from X-Linked-Size (or Content-Length of a 200)
};

Result<HubFileInfo> HeadHubFile(const HubOptions& opt, std::string_view repo, std::string_view file);

struct DownloadStats {
  uint64_t resumed_from = 0;  // bytes already in the .partial when we started
  uint64_t downloaded = 0;    // bytes received now
};

// Downloads info.url into `partial_path` (resuming it), verifies size and SHA-256, then
// `check_file` (if given) on the complete .partial, and renames it to `final_path`. On a hash
// mismatch or a failed check the .partial is deleted; on a dropped connection it is kept for the
// next call.
Result<DownloadStats> DownloadVerified(const HubOptions& opt, const HubFileInfo& info,
                                       const std::string& partial_path, const std::string& final_path,
                                       const std::function<Status(const std::string&)>& check_file = {});

}  // namespace qwenmux::orchestrator
