#!/usr/bin/env python3
"""Test token issuer for docker-registry's `auth: token` (Docker registry v2 token protocol).

Listens on 127.0.0.1 (port 0 unless --port), prints the port on stdout, and answers
GET /token?service=&scope=... with an RS256 JWT carrying x5c (the signing certificate),
granting every requested action to users that pass Basic auth (--user USER:PASS).
Signing uses the openssl command line (Python's stdlib has no RSA). Test use only.
"""
import argparse
import base64
import http.server
import json
import subprocess
import time
import urllib.parse
import uuid


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--key", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--issuer", default="ferry-test-issuer")
    p.add_argument("--service", default="ferry-test")
    p.add_argument("--user", action="append", default=[])
    p.add_argument("--expires", type=int, default=300)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    der = subprocess.run(["openssl", "x509", "-in", a.cert, "-outform", "DER"], check=True, capture_output=True).stdout
    x5c = base64.b64encode(der).decode()
    users = {u.split(":", 1)[0]: u.split(":", 1)[1] for u in a.user}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            if url.path != "/token":
                return self.reply(404, {"error": "not found"})
            q = urllib.parse.parse_qs(url.query)
            subject = ""
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                if users.get(user) != pw:
                    return self.reply(401, {"error": "bad credentials"})
                subject = user
            elif users:
                return self.reply(401, {"error": "credentials required"})
            access = []
            for scope in q.get("scope", []):
                typ, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": typ, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
            claims = {"iss": a.issuer, "sub": subject, "aud": a.service, "exp": now + a.expires,
                      "nbf": now - 10, "iat": now, "jti": str(uuid.uuid4()), "access": access}
            signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
            sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", a.key], input=signing_input,
                                 check=True, capture_output=True).stdout
            token = signing_input.decode() + "." + b64url(sig)
            self.reply(200, {"token": token, "access_token": token, "expires_in": a.expires})

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
