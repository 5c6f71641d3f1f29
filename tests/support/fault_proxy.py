#!/usr/bin/env python3
"""Fault-injecting HTTP proxy in front of a real registry, for Ferry's registry tests.

Listens on 127.0.0.1 (port 0), prints the port on stdout, forwards every request to
--upstream HOST:PORT (Host header kept, so the registry's Location URLs point back here),
and injects the faults it was told to:
  --fail-first N --fail-status S [--retry-after SECS]   first N requests answered with S
  --cut-blob-gets N        the first N blob GETs are cut (connection closed) mid-body
  --delay-ms MS            sleep MS before forwarding each 64 KiB of any body (slow peer)
  --request-log FILE       appends "START END METHOD PATH" (Unix seconds) per forwarded request
  --corrupt-blobs          blob GET bodies have one byte flipped (same length)
  --huge-manifest          manifest GETs answered with a 5 MiB body
  --immutable-tags         manifest PUTs by tag answered 400 TAG_INVALID (ECR's answer when an
                           immutable tag already exists); PUTs by digest go through
  --redirect-blobs USER:PASS  blob GETs answered with 307 to http://localhost:PORT/...?redirected=1
                           (like object storage); a redirected request that carries an
                           Authorization header is refused with 400, otherwise it is
                           forwarded with Basic USER:PASS added (a presigned URL's stand-in)
Test use only.
"""
import argparse
import base64
import http.client
import http.server
import threading
import time

CHUNK = 64 * 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=500)
    p.add_argument("--retry-after")
    p.add_argument("--cut-blob-gets", type=int, default=0)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--corrupt-blobs", action="store_true")
    p.add_argument("--huge-manifest", action="store_true")
    p.add_argument("--immutable-tags", action="store_true")
    p.add_argument("--redirect-blobs")
    p.add_argument("--request-log")
    a = p.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    lock = threading.Lock()
    counters = {"failed": 0, "cut": 0}

    def take(name, limit):
        with lock:
            if counters[name] < limit:
                counters[name] += 1
                return True
            return False

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_any(self):
            start = time.time()
            try:
                self.forward()
            finally:
                if a.request_log:
                    with lock, open(a.request_log, "a") as f:
                        f.write("%.6f %.6f %s %s\n" % (start, time.time(), self.command, self.path))

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            if take("failed", a.fail_first):
                # Drain the request body so the connection stays usable.
                left = length
                while left > 0:
                    left -= len(self.rfile.read(min(left, CHUNK)))
                body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
                self.send_response(a.fail_status)
                if a.retry_after:
                    self.send_header("Retry-After", a.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if (a.immutable_tags and self.command == "PUT" and "/manifests/" in self.path
                    and not self.path.rsplit("/", 1)[1].startswith("sha256:")):
                left = length
                while left > 0:
                    left -= len(self.rfile.read(min(left, CHUNK)))
                tag = self.path.rsplit("/", 1)[1]
                body = ('{"errors":[{"code":"TAG_INVALID","message":"The image tag \'%s\' already exists and '
                        'cannot be overwritten because the tag is immutable."}]}' % tag).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            is_blob_get = self.command == "GET" and "/blobs/sha256:" in self.path
            extra_headers = []
            if a.redirect_blobs and is_blob_get:
                if not self.path.endswith("?redirected=1"):
                    self.send_response(307)
                    self.send_header("Location", "http://localhost:%d%s?redirected=1" % (self.server.server_address[1], self.path))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Authorization"):
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.path = self.path[: -len("?redirected=1")]
                extra_headers.append(("Authorization", "Basic " + base64.b64encode(a.redirect_blobs.encode()).decode()))
            if self.command == "GET" and "/manifests/" in self.path and a.huge_manifest:
                body = b"{" + b" " * (5 * 1024 * 1024) + b"}"
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            up = http.client.HTTPConnection(host, int(port), timeout=60)
            up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in ("connection", "keep-alive"):
                    up.putheader(k, v)
            for k, v in extra_headers:
                up.putheader(k, v)
            up.endheaders()
            left = length
            while left > 0:
                data = self.rfile.read(min(left, CHUNK))
                if not data:
                    break
                if a.delay_ms:
                    time.sleep(a.delay_ms / 1000)
                up.send(data)
                left -= len(data)
            resp = up.getresponse()
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding"):
                    self.send_header(k, v)
            body_len = resp.getheader("Content-Length")
            chunked = body_len is None and self.command != "HEAD" and resp.status not in (204, 304)
            if chunked:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command == "HEAD":
                resp.read()
                up.close()
                return
            cut = is_blob_get and resp.status == 200 and take("cut", a.cut_blob_gets)
            sent = 0
            total = int(body_len) if body_len else -1
            flipped = False
            while True:
                data = resp.read(CHUNK)
                if not data:
                    break
                if a.corrupt_blobs and is_blob_get and resp.status == 200 and not flipped:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                    flipped = True
                if a.delay_ms:
                    time.sleep(a.delay_ms / 1000)
                if cut and total > 0 and sent + len(data) > total // 2:
                    self.wfile.write(data[: max(0, total // 2 - sent)])
                    self.wfile.flush()
                    self.close_connection = True
                    up.close()
                    return
                self.wfile.write(data)
                sent += len(data)
            up.close()

        # No DELETE: Ferry never sends one (SPEC S10); the default handler answers 501.
        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = handle_any

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
