#!/usr/bin/env python3
"""A local stand-in for the Hugging Face hub, for the model store tests (no internet here).

Serves the files under --root the way huggingface.co serves LFS files:
  HEAD/GET /{owner}/{repo}/resolve/{rev}/{file}
      -> 302 to /cdn/{sha256}, with X-Linked-Etag: "<sha256>", X-Linked-Size, X-Repo-Commit
  GET /cdn/{sha256}  -> the bytes, honouring "Range: bytes=N-" (206 + Content-Range)
Modes (--mode): normal, wrong-hash (X-Linked-Etag of other bytes), wrong-size (X-Linked-Size
announces half the file; the CDN still sends all of it), redirect-loop (the CDN redirects to
itself forever), drop (the first full GET sends half the bytes and closes the connection),
slow (sends 1 KiB every 0.2 s), no-etag (no X-Linked-Etag; a 302 without a hash).
Every request is appended to --log as one JSON line {method, path, range}.
Binds 127.0.0.1 on a free port, writes the port to --port-file, exits after --lifetime seconds.
"""
import argparse
import hashlib
import http.server
import json
import os
import re
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--mode", default="normal")
    ap.add_argument("--lifetime", type=float, default=60.0)
    args = ap.parse_args()

    files = {}  # "owner/repo/file" -> path
    blobs = {}  # sha256 -> path
    for dirpath, _, names in os.walk(args.root):
        for n in names:
            path = os.path.join(dirpath, n)
            rel = os.path.relpath(path, args.root).replace(os.sep, "/")
            files[rel] = path
            with open(path, "rb") as f:
                blobs[hashlib.sha256(f.read()).hexdigest()] = path
    state = {"dropped": False}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def record(self):
            with lock, open(args.log, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "range": self.headers.get("Range")}) + "\n")

        def do_HEAD(self):
            self.handle_any(head=True)

        def do_GET(self):
            self.handle_any(head=False)

        def empty(self, code, headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def handle_any(self, head):
            self.record()
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path)
            if m:
                key = m.group(1) + "/" + m.group(3)
                if key not in files:
                    return self.empty(404, [("X-Error-Code", "EntryNotFound")])
                path = files[key]
                data = open(path, "rb").read()
                sha = hashlib.sha256(data).hexdigest()
                size = len(data)
                etag = sha
                if args.mode == "wrong-hash":
                    etag = hashlib.sha256(b"other bytes").hexdigest()
                if args.mode == "wrong-size":
                    size = size // 2
                hdrs = [("Location", "/cdn/" + sha), ("X-Linked-Size", str(size)),
                        ("X-Repo-Commit", "0" * 40), ("ETag", '"' + "1" * 40 + '"')]
                if args.mode != "no-etag":
                    hdrs.append(("X-Linked-Etag", '"' + etag + '"'))
                return self.empty(302, hdrs)
            m = re.fullmatch(r"/cdn/([0-9a-f]{64})", self.path)
            if m and args.mode == "redirect-loop":
                return self.empty(302, [("Location", self.path)])
            if not m or m.group(1) not in blobs:
                return self.empty(404)
            data = open(blobs[m.group(1)], "rb").read()
            start = 0
            rng = self.headers.get("Range")
            if rng:
                r = re.fullmatch(r"bytes=(\d+)-", rng)
                if not r or int(r.group(1)) >= len(data):
                    return self.empty(416, [("Content-Range", "bytes */%d" % len(data))])
                start = int(r.group(1))
                self.send_response(206)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if head:
                return
            if args.mode == "drop" and not state["dropped"] and start == 0:
                state["dropped"] = True
                self.close_connection = True
                try:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # SHUT_RDWR: the client sees a short body
                except OSError:
                    pass
                return
            if args.mode == "slow":
                for i in range(0, len(body), 1024):
                    self.wfile.write(body[i:i + 1024])
                    self.wfile.flush()
                    time.sleep(0.2)
                return
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
