#!/usr/bin/python3
"""End-to-end tests of `ferry operator` against the Kubernetes API server double, driven by real kubectl.

Each test starts the double and the operator (`ferry operator --kubeconfig`) as subprocesses on free
loopback ports and stops them by PID, even when the test fails. FERRY_BINARY names the binary.
"""
import base64
import http.server
import json
import os
import pathlib
import shutil
import signal
import socket
import select
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from testproc import free_port, stop_pid  # noqa: E402
DOUBLE = ROOT / "tests" / "support" / "kube_apiserver_double.py"
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
KUBECTL = "/usr/bin/kubectl"
PYTHON = "/usr/bin/python3"
FERRY = os.environ.get("FERRY_BINARY", str(ROOT / "build-op" / "operator" / "ferry"))
GROUP = "/apis/ferry.dev/v1alpha1"


class StubRegistry(http.server.ThreadingHTTPServer):
    """An OCI endpoint that answers GET /v2/ with 200, or 401 without the right Basic credentials."""

    def __init__(self, basic_auth=None):
        expected = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode() if basic_auth else None

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                code = 200 if self.path == "/v2/" else 404
                body = b"{}"
                if expected and self.headers.get("Authorization") != expected:
                    code = 401
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
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()


class TlsProxy:
    """TLS in front of the (plain HTTP) double, so the operator's client is tested with TLS verification."""

    def __init__(self, target_port, certfile, keyfile):
        self.target_port = target_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            while not self.stopped:
                readable = [tls] if tls.pending() else select.select([tls, upstream], [], [], 0.5)[0]
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    (upstream if src is tls else tls).sendall(data)
        except OSError:
            pass
        finally:
            tls.close()
            upstream.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


class Operator:
    def __init__(self, test, *extra, kubeconfig=None):
        self.health = free_port()
        self.metrics = free_port()
        self.log_path = os.path.join(test.tmp, f"operator-{self.health}.log")
        self.log = open(self.log_path, "w")
        test.addCleanup(self.log.close)
        self.proc = subprocess.Popen(
            [FERRY, "operator", "--kubeconfig", kubeconfig or test.kubeconfig,
             "--health-probe-bind-address", f"127.0.0.1:{self.health}",
             "--metrics-bind-address", f"127.0.0.1:{self.metrics}",
             "--registry-events-bind-address", f"127.0.0.1:{free_port()}", *extra],
            stdout=subprocess.DEVNULL, stderr=self.log)
        test.addCleanup(stop_pid, self.proc)

    def text(self):
        self.log.flush()
        return pathlib.Path(self.log_path).read_text()

    def get(self, port, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""


class OperatorTestCase(unittest.TestCase):
    def setUp(self):
        self.assertTrue(os.access(FERRY, os.X_OK), f"no ferry binary at {FERRY}; set FERRY_BINARY")
        self.tmp = tempfile.mkdtemp(prefix="ferry-operator-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig")
        self.double_log = open(os.path.join(self.tmp, "double.stderr"), "w")
        self.addCleanup(self.double_log.close)
        self.double = subprocess.Popen(
            [PYTHON, str(DOUBLE), "--port", "0", "--kubeconfig-out", self.kubeconfig, "--bookmark-interval", "0.5"],
            stdout=subprocess.PIPE, stderr=self.double_log, text=True)
        self.addCleanup(stop_pid, self.double)
        line = self.double.stdout.readline()
        self.assertTrue(line.startswith("LISTENING 127.0.0.1:"), f"double did not start: {line!r}")
        self.base = "http://127.0.0.1:" + line.strip().rsplit(":", 1)[1]
        self.stub = StubRegistry()
        self.addCleanup(self.stub.stop)
        self.kubectl("apply", "-f", str(CRDS))
        self.kubectl("create", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ferry-system"}}))

    # ------------------------------------------------------------------ helpers
    def kubectl(self, *args, check=True, stdin=None, timeout=60):
        cmd = [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", os.path.join(self.tmp, "cache"), *args]
        res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            self.fail(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def apply(self, *objects):
        self.kubectl("apply", "-f", "-", stdin="\n".join(json.dumps(o) for o in objects))

    def jsonpath(self, resource, path):
        return self.kubectl("get", resource, "-o", f"jsonpath={path}").stdout

    def eventually(self, fn, what, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.2)
        self.fail(f"timed out waiting for {what} (last: {last!r})")

    def http(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def start_operator(self, *extra, kubeconfig=None):
        op = Operator(self, "--webhook-port", "0", *extra, kubeconfig=kubeconfig)
        self.eventually(lambda: op.get(op.health, "/readyz")[0] == 200 or op.proc.poll() is not None, "readyz")
        self.assertIsNone(op.proc.poll(), op.text())
        return op

    def registry(self, name, account, region, **spec):
        return {"apiVersion": "ferry.dev/v1alpha1", "kind": "Registry", "metadata": {"name": name},
                "spec": {"registryId": account, "region": region,
                         "endpoint": f"http://127.0.0.1:{self.stub.server_address[1]}", **spec}}

    def config(self, name, account, region, destinations, filters=None):
        rule = {"destinations": [{"region": r, "registryId": a} for a, r in destinations]}
        if filters:
            rule["repositoryFilters"] = [{"filter": f, "filterType": "PREFIX_MATCH"} for f in filters]
        return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig", "metadata": {"name": name},
                "spec": {"registryId": account, "region": region, "rules": [rule]}}

    def policy(self, name, account, region, statement):
        return {"apiVersion": "ferry.dev/v1alpha1", "kind": "RegistryPolicy", "metadata": {"name": name},
                "spec": {"registryId": account, "region": region,
                         "policy": {"Version": "2012-10-17", "Statement": [statement]}}}

    def allow_policy(self, name, account, region, principal="111111111111"):
        return self.policy(name, account, region, {
            "Sid": "AllowReplication", "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{principal}:root"},
            "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
            "Resource": f"arn:aws:ecr:{region}:{account}:repository/*"})

    def requests(self):
        return self.http("GET", "/__double/requests")

    def validate_output(self, obj):
        path = os.path.join(self.tmp, "invalid.json")
        with open(path, "w") as f:
            json.dump(obj, f)
        res = subprocess.run([FERRY, "validate", "-f", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        # `FILE: Kind/name: path: message` per line; the operator reports them without the file, joined by "; ".
        return "; ".join(line[len(path) + 2:] for line in res.stdout.splitlines())


class StatusConditions(OperatorTestCase):
    def test_examples_and_conditions_follow_the_spec(self):
        self.kubectl("apply", "-f", str(EXAMPLES))
        self.apply(self.registry("src", "111111111111", "us-east-1"),
                   self.registry("dst", "111111111111", "us-west-2"),
                   self.registry("other", "222222222222", "eu-west-1"),
                   self.allow_policy("other-policy", "222222222222", "eu-west-1"),
                   self.config("cfg", "111111111111", "us-east-1",
                               [("111111111111", "us-west-2"), ("222222222222", "eu-west-1"),
                                ("333333333333", "us-east-2")], ["prod"]))
        op = self.start_operator()
        self.kubectl("wait", "--for=condition=Ready", "registry/src", "registry/dst", "registrypolicy/other-policy",
                     "replicationconfig/cfg", "--timeout=30s")
        self.assertEqual(self.jsonpath("replicationconfig/cfg", "{.status.observedGeneration}"), "1")
        states = json.loads(self.jsonpath("replicationconfig/cfg", "{.status.destinations}"))
        self.assertEqual([(d["registryId"], d["state"]) for d in states],
                         [("111111111111", "Ready"), ("222222222222", "Ready"), ("333333333333", "RegionNotEnabled")])
        self.assertTrue(self.jsonpath("replicationconfig/cfg", "{.status.effectiveSince}"))
        self.eventually(lambda: self.jsonpath(
            "replicationconfig/cfg", '{.status.conditions[?(@.type=="CredentialsReady")].status}') == "True",
            "CredentialsReady")
        # Examples: valid objects become Ready; registries at unreachable example.com endpoints do not.
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy", "--all", "--timeout=30s")
        self.kubectl("wait", "--for=condition=Ready", "replicationconfig", "--all", "--timeout=30s")
        self.eventually(lambda: self.jsonpath(
            "registry/acct-a-us-east-1", '{.status.conditions[?(@.type=="Reconciling")].status}') == "True",
            "unreachable example registry reported Reconciling")
        # Printer columns come from the CRDs (the double answers kubectl's Table request).
        table = self.kubectl("get", "replicationconfigs").stdout
        self.assertIn("READY", table.splitlines()[0])
        self.assertRegex(table, r"(?m)^cfg\s+111111111111\s+us-east-1\s+True")

        # A spec edit bumps the generation; status follows.
        self.kubectl("patch", "replicationconfig/cfg", "--type=merge", "-p", json.dumps(
            {"spec": {"rules": [{"destinations": [{"region": "us-west-2", "registryId": "111111111111"}]}]}}))
        self.assertEqual(self.jsonpath("replicationconfig/cfg", "{.metadata.generation}"), "2")
        self.eventually(lambda: self.jsonpath("replicationconfig/cfg", "{.status.observedGeneration}") == "2",
                        "observedGeneration 2")
        states = json.loads(self.jsonpath("replicationconfig/cfg", "{.status.destinations}"))
        self.assertEqual([(d["registryId"], d["state"]) for d in states], [("111111111111", "Ready")])
        self.assertEqual(self.jsonpath(
            "replicationconfig/cfg", '{.status.conditions[?(@.type=="Ready")].observedGeneration}'), "2")
        # Status writes only when something changed: no status PUT while nothing changes.
        time.sleep(1)
        before = [r for r in self.requests() if r["method"] == "PUT" and r["path"].endswith("/status")]
        time.sleep(2)
        after = [r for r in self.requests() if r["method"] == "PUT" and r["path"].endswith("/status")]
        self.assertEqual(len(before), len(after), "status rewritten without a change")
        # Events were recorded through events.k8s.io/v1.
        self.assertTrue(any(r["method"] == "POST" and r["path"].startswith("/apis/events.k8s.io/v1/namespaces/default/events")
                            for r in self.requests()))
        self.assertNotIn("password", op.text())

    def test_registry_credentials_are_checked_and_never_logged(self):
        locked = StubRegistry(basic_auth=("ferry", "s3cret-Pa55"))
        self.addCleanup(locked.stop)
        endpoint = f"http://127.0.0.1:{locked.server_address[1]}"
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "ferry-system"},
                  "stringData": {"username": "ferry", "password": "wrong-Pa55"}}
        self.apply(secret,
                   self.registry("locked", "111111111111", "us-east-1", endpoint=endpoint,
                                 credentialsSecretRef={"namespace": "ferry-system", "name": "creds"}),
                   self.registry("dst", "111111111111", "us-west-2"),
                   self.config("cfg", "111111111111", "us-east-1", [("111111111111", "us-west-2")]))
        op = self.start_operator()
        ready = '{.status.conditions[?(@.type=="Ready")].reason}'
        self.eventually(lambda: self.jsonpath("registry/locked", ready) == "CredentialsRejected", "credentials rejected")
        self.eventually(lambda: self.jsonpath(
            "replicationconfig/cfg", '{.status.conditions[?(@.type=="CredentialsReady")].status}') == "False",
            "CredentialsReady False")
        # The right password in the Secret: the Registry becomes Ready, and so do the credentials (S14).
        secret["stringData"]["password"] = "s3cret-Pa55"
        self.apply(secret)
        self.kubectl("wait", "--for=condition=Ready", "registry/locked", "--timeout=30s")
        self.eventually(lambda: self.jsonpath(
            "replicationconfig/cfg", '{.status.conditions[?(@.type=="CredentialsReady")].status}') == "True",
            "CredentialsReady True")
        for leaked in ("s3cret-Pa55", "wrong-Pa55", base64.b64encode(b"ferry:s3cret-Pa55").decode()):
            self.assertNotIn(leaked, op.text())
            self.assertNotIn(leaked, self.kubectl("get", "registries,replicationconfigs", "-o", "json").stdout)

    def test_status_write_retries_on_conflict(self):
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        self.http("POST", "/__double/fail", {"pathPrefix": f"{GROUP}/registrypolicies/p/status", "method": "PUT",
                                             "status": 409, "reason": "Conflict", "count": 2,
                                             "message": "the object has been modified"})
        self.start_operator()
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")
        puts = [r["status"] for r in self.requests()
                if r["method"] == "PUT" and r["path"] == f"{GROUP}/registrypolicies/p/status"]
        self.assertEqual(puts[:3], [409, 409, 200])

    def test_invalid_resource_is_stalled_with_the_validation_message(self):
        bad = self.policy("conditional", "222222222222", "eu-west-1", {
            "Sid": "WithCondition", "Effect": "Allow", "Principal": "*", "Action": "ecr:ReplicateImage",
            "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}})
        expected = self.validate_output(bad)
        self.apply(bad)
        self.start_operator()
        self.kubectl("wait", "--for=condition=Stalled", "registrypolicy/conditional", "--timeout=30s")
        self.assertEqual(self.jsonpath("registrypolicy/conditional",
                                       '{.status.conditions[?(@.type=="Stalled")].message}'), expected)
        self.assertEqual(self.jsonpath("registrypolicy/conditional",
                                       '{.status.conditions[?(@.type=="Ready")].status}'), "False")
        # Fixing it makes it Ready and clears Stalled.
        fixed = self.allow_policy("conditional", "222222222222", "eu-west-1")
        self.kubectl("replace", "-f", "-", stdin=json.dumps(
            {**fixed, "metadata": {"name": "conditional", "resourceVersion": self.jsonpath(
                "registrypolicy/conditional", "{.metadata.resourceVersion}")}}))
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/conditional", "--timeout=30s")
        self.assertEqual(self.jsonpath("registrypolicy/conditional",
                                       '{.status.conditions[?(@.type=="Stalled")].status}'), "")


class Watches(OperatorTestCase):
    # Only the operator's requests: kubectl wait lists and watches too.
    def list_calls(self, plural):
        return [r for r in self.requests() if r["method"] == "GET" and r["path"] == f"{GROUP}/{plural}"
                and r["userAgent"].startswith("ferry-operator/") and r["query"].get("watch") not in ("true", "1")]

    def watch_calls(self, plural):
        return [r for r in self.requests() if r["method"] == "GET" and r["path"] == f"{GROUP}/{plural}"
                and r["userAgent"].startswith("ferry-operator/") and r["query"].get("watch") in ("true", "1")]

    def wait_watches(self, n=4):
        self.eventually(lambda: len(self.http("GET", "/__double/watches")) >= n, "operator watches")

    def test_dropped_watch_resumes_without_missing_an_update(self):
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        self.start_operator()
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")
        self.wait_watches()
        lists = len(self.list_calls("registrypolicies"))
        watches = len(self.watch_calls("registrypolicies"))
        self.assertEqual(self.http("POST", "/__double/drop-watches", {"mode": "close"})["dropped"] >= 4, True)
        # Changed while no watch is open: the resumed watch must replay it.
        self.kubectl("patch", "registrypolicy/p", "--type=merge", "-p",
                     json.dumps({"spec": {"policy": {"Statement": [{"Effect": "Allow", "Principal": "*",
                                                                    "Action": "ecr:*", "Resource": "*",
                                                                    "NotAction": "x"}]}}}))
        self.kubectl("wait", "--for=condition=Stalled", "registrypolicy/p", "--timeout=30s")
        self.assertEqual(self.jsonpath("registrypolicy/p", "{.status.observedGeneration}"), "2")
        resumed = self.watch_calls("registrypolicies")[watches:]
        self.assertTrue(resumed, "no new watch after the drop")
        self.assertTrue(resumed[0]["query"].get("resourceVersion"), "the watch did not resume from a version")
        self.assertEqual(len(self.list_calls("registrypolicies")), lists, "a closed watch must not re-list")

    def test_expired_resource_version_makes_the_operator_relist(self):
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        self.start_operator()
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")
        self.wait_watches()
        lists = len(self.list_calls("registrypolicies"))
        self.http("POST", "/__double/expire", {})
        self.http("POST", "/__double/drop-watches", {"mode": "close"})
        self.eventually(lambda: len(self.list_calls("registrypolicies")) > lists, "a re-list after 410")
        self.apply(self.allow_policy("q", "333333333333", "eu-west-1", principal="222222222222"))
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/q", "--timeout=30s")


class Tls(OperatorTestCase):
    def test_api_server_over_tls_is_verified(self):
        certs = os.path.join(self.tmp, "apiserver")
        os.makedirs(certs)
        crt, key = os.path.join(certs, "tls.crt"), os.path.join(certs, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=apiserver-double", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", crt], check=True, capture_output=True)
        proxy = TlsProxy(int(self.base.rsplit(":", 1)[1]), crt, key)
        self.addCleanup(proxy.stop)

        def kubeconfig(name, cluster):
            path = os.path.join(self.tmp, name)
            with open(path, "w") as f:
                json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "tls",
                           "clusters": [{"name": "tls", "cluster": {"server": f"https://127.0.0.1:{proxy.port}", **cluster}}],
                           "contexts": [{"name": "tls", "context": {"cluster": "tls", "user": "u"}}],
                           "users": [{"name": "u", "user": {"token": "double-token"}}]}, f)
            return path
        trusted = kubeconfig("trusted", {"certificate-authority": crt})
        untrusted = kubeconfig("untrusted", {})  # system roots only: the self-signed server must be refused

        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        bad = Operator(self, "--webhook-port", "0", kubeconfig=untrusted)
        self.eventually(lambda: "certificate verify failed" in bad.text(), "a TLS verification failure")
        self.assertNotEqual(bad.get(bad.health, "/readyz")[0], 200)
        self.assertEqual(self.jsonpath("registrypolicy/p", "{.status}"), "")
        stop_pid(bad.proc)

        self.start_operator(kubeconfig=trusted)
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")


class Webhook(OperatorTestCase):
    def test_webhook_refuses_invalid_resources_with_the_validate_message(self):
        certs = os.path.join(self.tmp, "certs")
        os.makedirs(certs)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=ferry-webhook", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", os.path.join(certs, "tls.key"), "-out", os.path.join(certs, "tls.crt")],
                       check=True, capture_output=True)
        port = free_port()
        op = Operator(self, "--webhook-port", str(port), "--webhook-host", "127.0.0.1", "--webhook-cert-dir", certs)
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "tls.crt"))  # verification on

        def post(body):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            req = urllib.request.Request(f"https://127.0.0.1:{port}/validate", data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        def review(obj, uid="3f5d1c2a"):
            return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": {"uid": uid, "operation": "CREATE",
                                "kind": {"group": "ferry.dev", "version": "v1alpha1", "kind": obj["kind"]},
                                "object": obj}}

        def reachable():
            try:
                return post(b"{}")[0] == 400
            except OSError:
                return op.proc.poll() is not None
        self.eventually(reachable, "the webhook")
        self.assertIsNone(op.proc.poll(), op.text())

        bad = self.config("too-many", "111111111111", "us-east-1", [("111111111111", "us-west-2")],
                          [f"prod{i}" for i in range(101)])
        bad["spec"]["rules"][0]["destinations"].append({"region": "us-east-1", "registryId": "111111111111"})
        expected = self.validate_output(bad)
        status, body = post(review(bad))
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["apiVersion"], "admission.k8s.io/v1")
        self.assertEqual(answer["response"]["uid"], "3f5d1c2a")
        self.assertFalse(answer["response"]["allowed"])
        self.assertEqual(answer["response"]["status"]["message"], expected)
        self.assertIn("101 filters, at most 100 allowed", expected)

        good = self.config("fine", "111111111111", "us-east-1", [("111111111111", "us-west-2")])
        status, body = post(review(good, uid="u2"))
        self.assertEqual(status, 200)
        self.assertTrue(json.loads(body)["response"]["allowed"])
        for malformed in (b"not json", b"[]", json.dumps({"kind": "AdmissionReview"}).encode(),
                          json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                      "request": {"operation": "CREATE"}}).encode()):
            self.assertEqual(post(malformed)[0], 400, malformed)
        self.assertIsNone(op.proc.poll(), "the webhook crashed on a malformed body")


    def test_renewed_certificate_is_served_to_new_connections(self):
        certs = os.path.join(self.tmp, "certs")
        os.makedirs(certs)

        def make_pair(cn, directory):
            os.makedirs(directory, exist_ok=True)
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", f"/CN={cn}", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", os.path.join(directory, "tls.key"),
                            "-out", os.path.join(directory, "tls.crt")], check=True, capture_output=True)
            return ssl.PEM_cert_to_DER_cert(pathlib.Path(directory, "tls.crt").read_text())

        def install(directory):  # as kubelet updates a Secret volume: new files, renamed into place
            for name in ("tls.key", "tls.crt"):
                shutil.copy(os.path.join(directory, name), os.path.join(certs, name + ".new"))
                os.replace(os.path.join(certs, name + ".new"), os.path.join(certs, name))

        first = make_pair("ferry-webhook-1", certs)
        port = free_port()
        op = Operator(self, "--webhook-port", str(port), "--webhook-host", "127.0.0.1", "--webhook-cert-dir", certs)
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE

        def served():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    with unverified.wrap_socket(raw) as tls:
                        return tls.getpeercert(binary_form=True)
            except OSError:
                self.assertIsNone(op.proc.poll(), op.text())
                return None
        self.assertEqual(self.eventually(served, "the webhook"), first)
        second = make_pair("ferry-webhook-2", os.path.join(self.tmp, "renewed"))
        time.sleep(0.01)  # a distinct modification time
        install(os.path.join(self.tmp, "renewed"))
        self.assertEqual(served(), second)
        # A certificate and key that do not belong together are refused; the renewed pair stays.
        make_pair("ferry-webhook-3", os.path.join(self.tmp, "third"))
        shutil.copy(os.path.join(self.tmp, "third", "tls.crt"), os.path.join(certs, "tls.crt.new"))
        os.replace(os.path.join(certs, "tls.crt.new"), os.path.join(certs, "tls.crt"))
        self.assertEqual(served(), second)
        self.assertIn("TLS certificate not reloaded", op.text())


class Lifecycle(OperatorTestCase):
    def test_leader_election_failover_within_20s(self):
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        args = ("--leader-elect", "--leader-election-namespace", "ferry-system", "--leader-election-id", "ferry-leader")
        a = self.start_operator(*args)
        b = self.start_operator(*args)
        ops = self.eventually(lambda: [o for o in (a, b) if "acquired leadership" in o.text()] or None, "a leader")
        self.assertEqual(len(ops), 1, "two leaders")
        leader = ops[0]
        follower = b if leader is a else a
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")
        holder = self.kubectl("get", "lease", "ferry-leader", "-n", "ferry-system", "-o",
                         "jsonpath={.spec.holderIdentity}").stdout
        self.assertIn(holder, leader.text())
        time.sleep(3)
        self.assertNotIn("acquired leadership", follower.text())
        os.kill(leader.proc.pid, signal.SIGKILL)
        leader.proc.wait()
        killed_at = time.monotonic()
        self.eventually(lambda: "acquired leadership" in follower.text(), "failover", timeout=25)
        self.assertLess(time.monotonic() - killed_at, 20)
        # The new leader reconciles.
        self.apply(self.allow_policy("q", "333333333333", "eu-west-1", principal="222222222222"))
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/q", "--timeout=30s")
        new_holder = self.kubectl("get", "lease", "ferry-leader", "-n", "ferry-system", "-o",
                                  "jsonpath={.spec.holderIdentity}").stdout
        self.assertIn(new_holder, follower.text())

    def test_bad_flags_and_configuration_fail_clearly(self):
        res = subprocess.run([FERRY, "operator", "--bogus"], capture_output=True, text=True, timeout=10)
        self.assertEqual(res.returncode, 2)
        self.assertIn("unknown flag --bogus", res.stderr)
        res = subprocess.run([FERRY, "operator", "--workers", "many"], capture_output=True, text=True, timeout=10)
        self.assertEqual(res.returncode, 2)
        missing = os.path.join(self.tmp, "missing-kubeconfig")
        res = subprocess.run([FERRY, "operator", "--kubeconfig", missing], capture_output=True, text=True, timeout=10)
        self.assertEqual(res.returncode, 1)
        self.assertIn("cannot read " + missing, res.stderr)
        res = subprocess.run([FERRY, "operator", "--kubeconfig", self.kubeconfig, "--context", "nope"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(res.returncode, 1)
        self.assertIn('context "nope" not found', res.stderr)

    def test_sigterm_exits_zero_within_the_grace_period_and_metrics(self):
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        op = self.start_operator("--graceful-shutdown-timeout", "10")
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")
        self.assertEqual(op.get(op.health, "/healthz")[0], 200)
        status, metrics = op.get(op.metrics, "/metrics")
        self.assertEqual(status, 200)
        self.assertRegex(metrics, r'ferry_reconcile_total\{controller="registrypolicy",result="requeue"\} [1-9]')
        self.assertIn("ferry_reconcile_duration_seconds_bucket", metrics)
        self.assertIn("ferry_workqueue_depth", metrics)
        self.assertIn('ferry_workqueue_adds_total{name="registrypolicy"}', metrics)
        start = time.monotonic()
        os.kill(op.proc.pid, signal.SIGTERM)
        self.assertEqual(op.proc.wait(timeout=12), 0, op.text())
        self.assertLess(time.monotonic() - start, 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
