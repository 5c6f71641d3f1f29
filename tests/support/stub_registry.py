"""The smallest OCI endpoint, for credential checks: GET /v2/ answers 200 (with the right Basic
credentials when some are required, else 401 with a Basic challenge); every other path is 404.
Serves on 127.0.0.1, a free port, in a thread; `stop()` ends it."""
import base64
import http.server
import threading


class StubRegistry(http.server.ThreadingHTTPServer):
    def __init__(self, basic_auth=None):
        expected = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode() if basic_auth else None

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                code = 200 if self.path.split("?")[0] == "/v2/" else 404
                if expected and self.headers.get("Authorization") != expected:
                    code = 401
                body = b"{}"
                self.send_response(code)
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="stub"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()
