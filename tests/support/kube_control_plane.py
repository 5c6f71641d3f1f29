#!/usr/bin/python3
"""A real Kubernetes control plane for tests, started the way controller-runtime's envtest does.

etcd and kube-apiserver (built by scripts/test-peers.sh) on free loopback ports, with a CA made
per run, an admin client certificate (O=system:masters), service-account signing keys, RBAC
authorization and an audit log (what a test reads to see which requests the operator made).
Ferry's CRDs are applied and waited for in discovery, and the operator's namespace exists. Every
process is stopped by its PID.

As a library:   cp = ControlPlane(workdir); cp.start(); ...; cp.stop()
As a program:   kube_control_plane.py --dir DIR   prints `READY <kubeconfig>` once usable, then
                runs until SIGTERM (the C++ KubeStore tests start it this way).

FERRY_PEERS_BIN names the folder with the binaries (scripts/test-peers.sh prints it last); by
default it is ${XDG_CACHE_HOME:-~/.cache}/ferry-peers/bin.
"""
import base64
import json
import os
import pathlib
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testproc import free_port, stop_pid  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
NAMESPACE = "ferry-system"


def peers_bin():
    d = os.environ.get("FERRY_PEERS_BIN")
    if not d:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(cache, "ferry-peers", "bin")
    return d


def peer(name):
    path = os.path.join(peers_bin(), name)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: run scripts/test-peers.sh (the README's test command does)")
    return path


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Pki:
    """A throwaway CA that signs the API server's serving certificate and client certificates."""

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.ca_crt, self.ca_key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ferry-test-ca",
                "-keyout", self.ca_key, "-out", self.ca_crt)

    def issue(self, name, subject, san=None, client=False):
        key, csr, crt = (os.path.join(self.dir, f"{name}.{x}") for x in ("key", "csr", "crt"))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", key, "-out", csr)
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            f.write(f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n")
            if san:
                f.write(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key, "-CAcreateserial",
                "-days", "2", "-extfile", ext, "-out", crt)
        return crt, key


class TcpProxy:
    """A TCP proxy in front of a port: `cut()` closes every open connection (watches included),
    `block()` makes the target unreachable (new connections are closed at once) until `unblock()`;
    `delay` (seconds, settable at any time) holds every piece a client sends that long before
    passing it on (a slow or far API server: each request takes at least `delay` longer)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", free_port()))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.accepted = 0
        self.blocked = False
        self.stopped = False
        self.delay = 0.0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.blocked:
                conn.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                conn.close()
                continue
            with self.lock:
                self.accepted += 1
                self.conns.append((conn, up))
            threading.Thread(target=self._pipe, args=(conn, up), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                r = select.select([a, b], [], [], 1.0)[0]
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is a and self.delay:
                        time.sleep(self.delay)
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for pair in conns:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(conns)

    def block(self):
        self.blocked = True
        self.cut()

    def unblock(self):
        self.blocked = False

    def stop(self):
        self.stopped = True
        self.cut()
        self.sock.close()


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""


class ControlPlane:
    """etcd + kube-apiserver for one test (or one suite). `kubeconfig` is the admin's."""

    def __init__(self, workdir, apiserver_args=(), crds=True):
        self.dir = os.path.join(workdir, "control-plane")
        os.makedirs(self.dir, exist_ok=True)
        self.apiserver_args = list(apiserver_args)
        self.crds = crds
        self.etcd = self.apiserver = None
        self.logs = []
        self.kubeconfig = os.path.join(self.dir, "admin.kubeconfig")
        self.audit_log = os.path.join(self.dir, "audit.log")

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name, args):
        log = open(os.path.join(self.dir, f"{name}.log"), "w")
        self.logs.append(log)
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _start(self):
        self.pki = Pki(os.path.join(self.dir, "pki"))
        serving_crt, serving_key = self.pki.issue("apiserver", "/CN=kube-apiserver",
                                                  san="IP:127.0.0.1,DNS:localhost", client=False)
        self.admin_crt, self.admin_key = self.pki.issue("admin", "/O=system:masters/CN=ferry-test-admin", client=True)
        sa_key = os.path.join(self.dir, "pki", "sa.key")
        sa_pub = os.path.join(self.dir, "pki", "sa.pub")
        openssl("genrsa", "-out", sa_key, "2048")
        openssl("rsa", "-in", sa_key, "-pubout", "-out", sa_pub)
        with open(os.path.join(self.dir, "audit-policy.yaml"), "w") as f:
            f.write(AUDIT_POLICY)

        self.etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = self._spawn("etcd", [
            peer("etcd"), "--data-dir", os.path.join(self.dir, "etcd"), "--name", "ferry-test",
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"ferry-test=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn"])
        self._wait(lambda: self._etcd_healthy(), 30, "etcd")

        self.port = free_port()
        self.apiserver = self._spawn("kube-apiserver", [
            peer("kube-apiserver"), "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--secure-port", str(self.port),
            "--advertise-address", "127.0.0.1",
            "--cert-dir", os.path.join(self.dir, "apiserver-certs"),
            "--tls-cert-file", serving_crt, "--tls-private-key-file", serving_key,
            "--client-ca-file", self.pki.ca_crt,
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", sa_pub, "--service-account-signing-key-file", sa_key,
            "--service-cluster-ip-range", "10.0.0.0/24",
            "--disable-admission-plugins", "ServiceAccount",
            "--audit-policy-file", os.path.join(self.dir, "audit-policy.yaml"),
            "--audit-log-path", self.audit_log, "--audit-log-mode", "blocking",
            "--enable-priority-and-fairness=false",
            "--v", "0", *self.apiserver_args])
        self.url = f"https://127.0.0.1:{self.port}"
        self.write_kubeconfig(self.kubeconfig, self.url, cert=(self.admin_crt, self.admin_key))
        self._wait(lambda: self._get("/readyz") == 200, 90, "kube-apiserver /readyz")
        if self.crds:
            self.kubectl("apply", "--server-side", "-f", str(CRDS))
            self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
            self._wait(self._crds_discovered, 30, "Ferry's kinds in discovery")
        self.kubectl("create", "namespace", NAMESPACE)

    def stop(self):
        for p in (self.apiserver, self.etcd):
            if p is not None:
                stop_pid(p, timeout=10)
        self.apiserver = self.etcd = None
        for log in self.logs:
            log.close()
        self.logs = []

    def stop_apiserver(self):
        """Stops only kube-apiserver (etcd keeps the data); `restart_apiserver` starts it again."""
        stop_pid(self.apiserver, timeout=10)

    def _wait(self, fn, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in (("etcd", self.etcd), ("kube-apiserver", self.apiserver)):
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}):\n{self.log_text(name)[-4000:]}")
            try:
                if fn():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.log_text('kube-apiserver')[-4000:]}")

    def log_text(self, name):
        try:
            return pathlib.Path(self.dir, f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ clients
    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        ctx.load_cert_chain(self.admin_crt, self.admin_key)
        return ctx

    def _get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=5, context=self.ssl_context()) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def request(self, method, path, body=None, content_type="application/json"):
        """One request as the admin; returns (status, parsed JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ssl_context()) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def _etcd_healthy(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2) as r:
            return json.loads(r.read()).get("health") == "true"

    def _crds_discovered(self):
        out = self.kubectl("api-resources", "--api-group", "ferry.dev", "-o", "name", check=False).stdout
        # crds/ferry.dev_<plural>.yaml; kubectl prints <plural>.ferry.dev
        wanted = {p[len("ferry.dev_"):-len(".yaml")] for p in os.listdir(CRDS) if p.endswith(".yaml")}
        have = {line.split(".")[0] for line in out.split()}
        return wanted <= have

    def kubectl(self, *args, stdin=None, check=True, kubeconfig=None, timeout=90):
        cmd = [peer("kubectl"), "--kubeconfig", kubeconfig or self.kubeconfig,
               "--cache-dir", os.path.join(self.dir, "kubectl-cache"), *args]
        res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def write_kubeconfig(self, path, server, cert=None, token=None, user="ferry-test"):
        u = {}
        if cert:
            u = {"client-certificate": cert[0], "client-key": cert[1]}
        if token:
            u = {"token": token}
        with open(path, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "test",
                       "clusters": [{"name": "test", "cluster": {"server": server,
                                                                 "certificate-authority": self.pki.ca_crt}}],
                       "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
                       "users": [{"name": user, "user": u}]}, f)
        return path

    def service_account_kubeconfig(self, name, namespace=NAMESPACE, server=None):
        """A kubeconfig that authenticates as system:serviceaccount:NS:NAME by client certificate
        (the groups a ServiceAccount token carries), so RBAC decides what it may do."""
        crt, key = self.pki.issue(f"sa-{namespace}-{name}", f"/O=system:serviceaccounts/O=system:serviceaccounts:{namespace}"
                                  f"/CN=system:serviceaccount:{namespace}:{name}", client=True)
        path = os.path.join(self.dir, f"sa-{namespace}-{name}.kubeconfig")
        return self.write_kubeconfig(path, server or self.url, cert=(crt, key), user=name)

    def proxy(self):
        """A TcpProxy in front of the API server, for cut watches and an unreachable server."""
        return TcpProxy(self.port)

    # ------------------------------------------------------------------ observing
    def audit(self, user_agent_prefix=None, username=None):
        """The API server's audit events (stage ResponseComplete, or ResponseStarted for watches),
        oldest first, filtered by user agent prefix and/or username."""
        out = []
        try:
            lines = pathlib.Path(self.audit_log).read_text().splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line being written
            if e.get("stage") != ("ResponseStarted" if e.get("verb") == "watch" else "ResponseComplete"):
                continue
            if user_agent_prefix and not e.get("userAgent", "").startswith(user_agent_prefix):
                continue
            if username and e.get("user", {}).get("username") != username:
                continue
            out.append(e)
        return out

    def etcd_revision(self):
        body = json.dumps({"key": base64.b64encode(b"/").decode(), "limit": 1}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.etcd_port}/v3/kv/range", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(json.loads(r.read())["header"]["revision"])

    def compact_etcd(self):
        """Compacts etcd to its current revision: watches resumed from an older resourceVersion get
        410 Gone (with the API server's watch cache off, they are served by etcd)."""
        rev = self.etcd_revision()
        body = json.dumps({"revision": str(rev), "physical": True}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.etcd_port}/v3/kv/compaction", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
        return rev


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    cp = ControlPlane(a.dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        cp.start()
        print(f"READY {cp.kubeconfig}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cp.stop()


if __name__ == "__main__":
    main()
