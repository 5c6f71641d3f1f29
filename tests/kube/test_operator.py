#!/usr/bin/python3
"""End-to-end tests of `ferry operator` against a real kube-apiserver and etcd, driven by real kubectl.

Each test starts a control plane (tests/support/kube_control_plane.py) and the operator
(`ferry operator --kubeconfig`) as processes on free loopback ports and stops them by PID, even when
the test fails. Which requests the operator made is read from the API server's audit log.
FERRY_BINARY names the binary.
"""
import base64
import http.server
import json
import os
import pathlib
import shutil
import signal
import socket
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
from kube_control_plane import ControlPlane, Pki, peer  # noqa: E402
from stub_registry import StubRegistry  # noqa: E402
from testproc import wait_until  # noqa: E402
EXAMPLES = ROOT / "examples"
FERRY = os.environ.get("FERRY_BINARY", str(ROOT / "build-op" / "operator" / "ferry"))
GROUP = "/apis/ferry.dev/v1alpha1"


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


def served_certificate(port, op):
    """The certificate (DER) the webhook on `port` serves to a new connection, unverified; None
    while nothing answers (and the operator is still running)."""
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with unverified.wrap_socket(raw) as tls:
                return tls.getpeercert(binary_form=True)
    except OSError:
        assert op.proc.poll() is None, op.text()
        return None


class OperatorTestCase(unittest.TestCase):
    apiserver_args = ()

    def setUp(self):
        self.assertTrue(os.access(FERRY, os.X_OK), f"no ferry binary at {FERRY}; set FERRY_BINARY")
        self.tmp = tempfile.mkdtemp(prefix="ferry-operator-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cp = ControlPlane(self.tmp, apiserver_args=self.apiserver_args)
        self.addCleanup(self.cp.stop)
        self.cp.start()
        self.kubeconfig = self.cp.kubeconfig
        self.stub = StubRegistry()
        self.addCleanup(self.stub.stop)

    # ------------------------------------------------------------------ helpers
    def kubectl(self, *args, check=True, stdin=None, timeout=60):
        res = self.cp.kubectl(*args, stdin=stdin, check=False, timeout=timeout)
        if check and res.returncode != 0:
            self.fail(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def apply(self, *objects):
        self.kubectl("apply", "-f", "-", stdin="\n".join(json.dumps(o) for o in objects))

    def jsonpath(self, resource, path):
        return self.kubectl("get", resource, "-o", f"jsonpath={path}").stdout

    def eventually(self, fn, what, timeout=30):
        return wait_until(fn, timeout, interval=0.2, what=what)

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

    def operator_requests(self, verb=None, resource=None, name=None, subresource=None):
        """The operator's requests as the API server's audit log has them."""
        out = []
        for e in self.cp.audit(user_agent_prefix="ferry-operator/"):
            ref = e.get("objectRef", {})
            if (verb and e["verb"] != verb) or (resource and ref.get("resource") != resource) or \
                    (name and ref.get("name") != name) or (subresource is not None and ref.get("subresource", "") != subresource):
                continue
            out.append(e)
        return out

    def kstatus(self, resources):
        """Health as Flux and Argo CD compute it (sigs.k8s.io/cli-utils kstatus, tests/kstatus):
        {"Kind/name": "Current" | "InProgress" | "Failed" | ...}."""
        objs = self.kubectl("get", resources, "-o", "json").stdout
        res = subprocess.run([peer("ferry-kstatus")], input=objs, capture_output=True, text=True, timeout=30)
        self.assertEqual(res.returncode, 0, res.stderr)
        return {line.split(" ")[0]: line.split(" ")[1] for line in res.stdout.splitlines()}

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
                     "--timeout=30s")
        # A destination without an enabled Registry: the configuration is not Ready (it used to be), the
        # reason names the problem and the message the destination; not Stalled, since it may heal.
        self.kubectl("wait", "--for=condition=Ready=False", "replicationconfig/cfg", "--timeout=30s")
        self.assertEqual(self.jsonpath("replicationconfig/cfg", '{.status.conditions[?(@.type=="Ready")].reason}'),
                         "DestinationRegionNotEnabled")
        self.assertIn("333333333333/us-east-2 RegionNotEnabled", self.jsonpath(
            "replicationconfig/cfg", '{.status.conditions[?(@.type=="Ready")].message}'))
        self.assertEqual(self.jsonpath("replicationconfig/cfg", '{.status.conditions[?(@.type=="Stalled")].status}'), "")
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
        # Creation templates (S16): Ready, the message saying what they shape; printer columns from the CRD.
        self.kubectl("wait", "--for=condition=Ready", "repositorycreationtemplate", "--all", "--timeout=30s")
        self.assertEqual(self.jsonpath("repositorycreationtemplate/acct-a-us-west-2.prod",
                                       '{.status.conditions[?(@.type=="Ready")].message}'),
                         "shapes repositories under prod/ that replication creates in 123456789012/us-west-2")
        self.assertRegex(self.kubectl("get", "repositorycreationtemplates").stdout,
                         r"(?m)^acct-a-us-west-2\.prod\s+123456789012\s+us-west-2\s+prod\s+IMMUTABLE_WITH_EXCLUSION\s+True")
        # The example configurations replicate into example.com registries nobody can reach: not Ready.
        self.kubectl("wait", "--for=jsonpath={.status.observedGeneration}=1", "replicationconfig", "--all",
                     "--timeout=30s")
        # An unreachable Registry: Ready False (Unreachable, naming the endpoint) and Stalled True after the
        # first failed probe, never Reconciling forever; the operator keeps re-probing.
        self.kubectl("wait", "--for=condition=Stalled", "registry/acct-a-us-east-1", "--timeout=30s")
        cond = '{.status.conditions[?(@.type=="%s")].%s}'
        self.assertEqual(self.jsonpath("registry/acct-a-us-east-1", cond % ("Ready", "status")), "False")
        self.assertEqual(self.jsonpath("registry/acct-a-us-east-1", cond % ("Ready", "reason")), "Unreachable")
        endpoint = self.jsonpath("registry/acct-a-us-east-1", "{.spec.endpoint}")
        self.assertTrue(self.jsonpath("registry/acct-a-us-east-1", cond % ("Ready", "message")).startswith(
            f"endpoint {endpoint}: "))
        self.assertEqual(self.jsonpath("registry/acct-a-us-east-1", cond % ("Reconciling", "status")), "")
        # GitOps health (kstatus, as Flux and Argo CD compute it): Ready objects are Current; a configuration
        # with a bad destination is Ready=False without Stalled, which kstatus reports as InProgress (it may
        # heal); an unreachable Registry is Stalled, which kstatus reports as Failed (not InProgress forever).
        health = self.kstatus("registries,registrypolicies,replicationconfigs")
        for name in ("Registry/src", "Registry/dst", "RegistryPolicy/other-policy"):
            self.assertEqual(health[name], "Current", health)
        self.assertEqual(health["ReplicationConfig/cfg"], "InProgress", health)
        self.assertEqual(health["Registry/acct-a-us-east-1"], "Failed", health)
        # Printer columns come from the CRDs (the API server answers kubectl's Table request).
        table = self.kubectl("get", "replicationconfigs").stdout
        self.assertIn("READY", table.splitlines()[0])
        self.assertRegex(table, r"(?m)^cfg\s+111111111111\s+us-east-1\s+False")
        wide = self.kubectl("get", "registry/acct-a-us-east-1", "-o", "wide").stdout
        self.assertIn("MESSAGE", wide.splitlines()[0])
        self.assertRegex(wide, r"False\s+Unreachable\s+endpoint ")
        columns = self.kubectl("get", "crd", "imagereplications.ferry.dev", "-o",
                               "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}").stdout.split()
        self.assertEqual(columns[columns.index("Complete") + 1], "Failed", columns)

        # A spec edit bumps the generation; status follows.
        self.kubectl("patch", "replicationconfig/cfg", "--type=merge", "-p", json.dumps(
            {"spec": {"rules": [{"destinations": [{"region": "us-west-2", "registryId": "111111111111"}]}]}}))
        self.assertEqual(self.jsonpath("replicationconfig/cfg", "{.metadata.generation}"), "2")
        self.eventually(lambda: self.jsonpath("replicationconfig/cfg", "{.status.observedGeneration}") == "2",
                        "observedGeneration 2")
        states = json.loads(self.jsonpath("replicationconfig/cfg", "{.status.destinations}"))
        self.assertEqual([(d["registryId"], d["state"]) for d in states], [("111111111111", "Ready")])
        # Every destination Ready: the configuration is Ready again.
        self.kubectl("wait", "--for=condition=Ready", "replicationconfig/cfg", "--timeout=30s")
        self.assertEqual(self.kstatus("replicationconfigs")["ReplicationConfig/cfg"], "Current")
        self.assertEqual(self.jsonpath(
            "replicationconfig/cfg", '{.status.conditions[?(@.type=="Ready")].observedGeneration}'), "2")
        # The example backfill's source (registry.us-east-1.example.com) cannot be listed: it stays
        # PREPARING and says why (the operator retries the listing with a growing pause).
        backfill = "replicationbackfill/acct-a-prod-to-us-west-2"
        self.eventually(lambda: self.jsonpath(backfill, "{.status.message}").startswith(
            "cannot list the source yet, retrying: catalog of registry.us-east-1.example.com: "), "backfill retrying")
        self.assertEqual(self.jsonpath(backfill, "{.status.phase}"), "PREPARING")
        self.assertEqual(self.jsonpath(backfill, cond % ("Ready", "reason")), "Preparing")
        # Status writes only when something changed: no status PUT while nothing changes.
        time.sleep(1)
        before = self.operator_requests("update", subresource="status") + self.operator_requests("patch", subresource="status")
        time.sleep(2)
        after = self.operator_requests("update", subresource="status") + self.operator_requests("patch", subresource="status")
        self.assertTrue(before, "no status write seen in the audit log")
        rewritten = [f"{e['objectRef'].get('resource')}/{e['objectRef'].get('name')}" for e in after[len(before):]]
        self.assertEqual(len(before), len(after), f"status rewritten without a change: {rewritten}")
        # Events were recorded through events.k8s.io/v1, and the API server accepted them.
        events = [e for e in self.operator_requests("create", resource="events")
                  if e["objectRef"].get("apiGroup") == "events.k8s.io"]
        self.assertTrue(events, "no events.k8s.io Event created")
        self.assertTrue(all(e["responseStatus"]["code"] == 201 for e in events),
                        [e["responseStatus"] for e in events])
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
        # A concurrent writer, made deterministic: a validating admission webhook on
        # registrypolicies/status which, the first time the operator writes status,
        # changes the object's labels before it answers "allowed". The API server then finds the
        # object changed under the write it is admitting and answers 409 Conflict. The operator must
        # re-read and write again (and the second write goes through).
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        self.start_operator()
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")
        path = f"{GROUP}/registrypolicies/p"
        merge = "application/merge-patch+json"
        pki = Pki(os.path.join(self.tmp, "conflict-pki"))
        crt, key = pki.issue("hook", "/CN=conflict-webhook", san="IP:127.0.0.1")
        interfered = threading.Event()
        cp = self.cp

        class Hook(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                req = review["request"]
                if not interfered.is_set():
                    interfered.set()
                    cp.request("PATCH", path, {"metadata": {"labels": {"writer": "concurrent"}}}, content_type=merge)
                body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                   "response": {"uid": req["uid"], "allowed": True}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(crt, key)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        with open(pki.ca_crt, "rb") as f:
            ca_bundle = base64.b64encode(f.read()).decode()
        self.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                    "metadata": {"name": "ferry-test-conflict"},
                    "webhooks": [{"name": "conflict.ferry.dev",
                                  "clientConfig": {"url": f"https://127.0.0.1:{server.server_address[1]}/",
                                                   "caBundle": ca_bundle},
                                  "rules": [{"apiGroups": ["ferry.dev"], "apiVersions": ["v1alpha1"],
                                             "operations": ["UPDATE"], "resources": ["registrypolicies/status"],
                                             "scope": "Cluster"}],
                                  "admissionReviewVersions": ["v1"], "sideEffects": "None",
                                  "failurePolicy": "Fail", "timeoutSeconds": 10}]})
        # Registration takes effect a moment after the create: new generations until a status write
        # reaches the hook.
        for generation in range(2, 30):
            code, _ = self.cp.request("PATCH", path, {"spec": {"policy": {"Statement": [{
                "Sid": f"Gen{generation}", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": "arn:aws:ecr:eu-west-1:222222222222:repository/*"}]}}}, content_type=merge)
            self.assertEqual(code, 200)
            self.eventually(lambda: self.jsonpath("registrypolicy/p", "{.status.observedGeneration}") == str(generation),
                            f"observedGeneration {generation}")
            if interfered.is_set():
                break
            time.sleep(0.3)
        self.assertTrue(interfered.is_set(), "the operator's status writes never reached the webhook")
        self.assertEqual(self.jsonpath("registrypolicy/p", "{.metadata.labels.writer}"), "concurrent")

        def status_codes():
            return [e["responseStatus"]["code"] for e in self.operator_requests(
                resource="registrypolicies", name="p", subresource="status") if e["verb"] in ("update", "patch")]
        codes = self.eventually(lambda: (lambda c: c if 409 in c and 200 in c[c.index(409):] else None)(status_codes()),
                                "a 409 then a successful status write in the audit log", timeout=10)
        self.assertIn(409, codes)

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
        self.assertEqual(self.kstatus("registrypolicy/conditional"), {"RegistryPolicy/conditional": "Failed"})
        # Fixing it makes it Ready and clears Stalled.
        fixed = self.allow_policy("conditional", "222222222222", "eu-west-1")
        self.kubectl("replace", "-f", "-", stdin=json.dumps(
            {**fixed, "metadata": {"name": "conditional", "resourceVersion": self.jsonpath(
                "registrypolicy/conditional", "{.metadata.resourceVersion}")}}))
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/conditional", "--timeout=30s")
        self.assertEqual(self.jsonpath("registrypolicy/conditional",
                                       '{.status.conditions[?(@.type=="Stalled")].status}'), "")


    def test_invalid_creation_template_is_stalled_with_the_validation_message(self):
        # What the CRD schema cannot say: exclusion filters only with the *_WITH_EXCLUSION modes.
        bad = {"apiVersion": "ferry.dev/v1alpha1", "kind": "RepositoryCreationTemplate", "metadata": {"name": "bad"},
               "spec": {"registryId": "222222222222", "region": "eu-west-1", "prefix": "prod",
                        "imageTagMutability": "IMMUTABLE",
                        "imageTagMutabilityExclusionFilters": [{"filter": "latest"}]}}
        expected = self.validate_output(bad)
        self.assertIn("only allowed with imageTagMutability", expected)
        self.apply(bad)
        self.start_operator()
        self.kubectl("wait", "--for=condition=Stalled", "repositorycreationtemplate/bad", "--timeout=30s")
        self.assertEqual(self.jsonpath("repositorycreationtemplate/bad",
                                       '{.status.conditions[?(@.type=="Stalled")].message}'), expected)
        # The schema itself refuses a prefix outside the grammar.
        bad["metadata"]["name"] = "worse"
        bad["spec"]["prefix"] = "Prod"
        res = self.kubectl("apply", "-f", "-", stdin=json.dumps(bad), check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("spec.prefix", res.stderr)

class Watches(OperatorTestCase):
    # The operator talks to the API server through a TCP proxy, so a test can cut its watches.
    def setUp(self):
        super().setUp()
        self.proxy = self.cp.proxy()
        self.addCleanup(self.proxy.stop)
        self.proxied = self.cp.write_kubeconfig(os.path.join(self.tmp, "proxied.kubeconfig"),
                                                f"https://127.0.0.1:{self.proxy.port}",
                                                cert=(self.cp.admin_crt, self.cp.admin_key))

    def list_calls(self, plural):
        return self.operator_requests("list", resource=plural)

    def watch_calls(self, plural):
        return self.operator_requests("watch", resource=plural)

    def wait_watches(self, plural="registrypolicies"):
        self.eventually(lambda: self.watch_calls(plural), f"the operator's watch on {plural}")

    def test_dropped_watch_resumes_without_missing_an_update(self):
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        self.start_operator(kubeconfig=self.proxied)
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")
        self.wait_watches()
        lists = len(self.list_calls("registrypolicies"))
        watches = len(self.watch_calls("registrypolicies"))
        self.assertGreaterEqual(self.proxy.cut(), 1)
        # Changed right after the cut: the resumed watch must deliver it.
        self.kubectl("patch", "registrypolicy/p", "--type=merge", "-p",
                     json.dumps({"spec": {"policy": {"Statement": [{"Effect": "Allow", "Principal": "*",
                                                                    "Action": "ecr:*", "Resource": "*",
                                                                    "NotAction": "x"}]}}}))
        self.kubectl("wait", "--for=condition=Stalled", "registrypolicy/p", "--timeout=30s")
        self.assertEqual(self.jsonpath("registrypolicy/p", "{.status.observedGeneration}"), "2")
        resumed = self.watch_calls("registrypolicies")[watches:]
        self.assertTrue(resumed, "no new watch after the cut")
        self.assertIn("resourceVersion=", resumed[0]["requestURI"], "the watch did not resume from a version")
        self.assertNotIn("resourceVersion=0&", resumed[0]["requestURI"] + "&")
        self.assertEqual(len(self.list_calls("registrypolicies")), lists, "a cut watch must not re-list")


class ExpiredWatch(OperatorTestCase):
    # With the watch cache off, watches are served by etcd, so compacting etcd makes a watch that
    # resumes from an older resourceVersion fail with 410 Gone.
    apiserver_args = ("--watch-cache=false",)

    def test_expired_resource_version_makes_the_operator_relist(self):
        proxy = self.cp.proxy()
        self.addCleanup(proxy.stop)
        proxied = self.cp.write_kubeconfig(os.path.join(self.tmp, "proxied.kubeconfig"),
                                           f"https://127.0.0.1:{proxy.port}",
                                           cert=(self.cp.admin_crt, self.cp.admin_key))
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        self.start_operator(kubeconfig=proxied)
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/p", "--timeout=30s")
        self.eventually(lambda: self.operator_requests("watch", resource="registrypolicies"), "a watch")
        lists = len(self.operator_requests("list", resource="registrypolicies"))
        proxy.block()  # the API server is unreachable for the operator
        self.apply(self.allow_policy("q", "333333333333", "eu-west-1", principal="222222222222"))
        self.cp.compact_etcd()
        proxy.unblock()
        self.eventually(lambda: len(self.operator_requests("list", resource="registrypolicies")) > lists,
                        "a re-list after 410 Gone")
        self.kubectl("wait", "--for=condition=Ready", "registrypolicy/q", "--timeout=30s")


class Tls(OperatorTestCase):
    def test_api_server_certificate_is_verified(self):
        untrusted = os.path.join(self.tmp, "untrusted.kubeconfig")
        with open(self.kubeconfig) as f:
            cfg = json.load(f)
        del cfg["clusters"][0]["cluster"]["certificate-authority"]  # system roots only: refused
        with open(untrusted, "w") as f:
            json.dump(cfg, f)
        self.apply(self.allow_policy("p", "222222222222", "eu-west-1"))
        bad = Operator(self, "--webhook-port", "0", kubeconfig=untrusted)
        self.eventually(lambda: "certificate verify failed" in bad.text(), "a TLS verification failure")
        self.assertNotEqual(bad.get(bad.health, "/readyz")[0], 200)
        self.assertEqual(self.jsonpath("registrypolicy/p", "{.status}"), "")
        stop_pid(bad.proc)

        self.start_operator()  # the test CA in the kubeconfig: verified and trusted
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

        def served():
            return served_certificate(port, op)
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


class ApiServerWebhook(OperatorTestCase):
    def test_the_api_server_calls_the_webhook_which_refuses_with_the_validate_message(self):
        pki = Pki(os.path.join(self.tmp, "webhook-pki"))
        certs = os.path.join(self.tmp, "webhook-certs")
        os.makedirs(certs)

        def install(n):  # a certificate from the CA in caBundle, renamed into place as kubelet does
            crt, key = pki.issue(f"webhook{n}", f"/CN=ferry-webhook-{n}", san="IP:127.0.0.1")
            for src, name in ((key, "tls.key"), (crt, "tls.crt")):
                shutil.copy(src, os.path.join(certs, name + ".new"))
                os.replace(os.path.join(certs, name + ".new"), os.path.join(certs, name))
            return ssl.PEM_cert_to_DER_cert(pathlib.Path(crt).read_text())
        first = install(1)
        port = free_port()
        op = Operator(self, "--webhook-port", str(port), "--webhook-host", "127.0.0.1", "--webhook-cert-dir", certs)

        def served():
            return served_certificate(port, op)
        self.assertEqual(self.eventually(served, "the webhook"), first)
        with open(pki.ca_crt, "rb") as f:
            ca_bundle = base64.b64encode(f.read()).decode()
        self.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                    "metadata": {"name": "ferry-test"},
                    "webhooks": [{"name": "validate.ferry.dev",
                                  "clientConfig": {"url": f"https://127.0.0.1:{port}/validate", "caBundle": ca_bundle},
                                  "rules": [{"apiGroups": ["ferry.dev"], "apiVersions": ["v1alpha1"],
                                             "operations": ["CREATE", "UPDATE"], "resources": ["*"],
                                             "scope": "Cluster"}],
                                  "admissionReviewVersions": ["v1"], "sideEffects": "None",
                                  "failurePolicy": "Fail", "timeoutSeconds": 10}]})
        # What the CRD schema cannot say (it runs before the webhook and refuses e.g. 101 filters or
        # a destination equal to the source itself): a destination across partitions (a Registry
        # may set its partition, so only Ferry knows), more than 25 unique destinations in all.
        bad = self.config("cross-partition", "111111111111", "us-east-1", [("111111111111", "cn-north-1")])
        expected = self.validate_output(bad)

        def refused():
            res = self.kubectl("apply", "-f", "-", stdin=json.dumps(bad), check=False)
            self.assertNotEqual(res.returncode, 0, "the API server accepted an invalid ReplicationConfig")
            return res.stderr
        # Registration takes effect a moment after the create; until then the schema's own check answers.
        message = self.eventually(lambda: (lambda e: e if "denied the request" in e else None)(refused()),
                                  "the webhook's refusal")
        self.assertIn('admission webhook "validate.ferry.dev" denied the request: ' + expected, message)
        self.assertIn("replication cannot cross partitions", message)
        # A valid object goes through the webhook too (as the API server sends it: managedFields, uid...).
        self.apply(self.config("fine", "111111111111", "us-east-1", [("111111111111", "us-west-2")]))
        self.kubectl("patch", "replicationconfig/fine", "--type=merge", "-p",
                     json.dumps({"metadata": {"labels": {"team": "a"}}}))
        # The certificate is renewed: the API server's next connections meet the new one, still trusted.
        second = install(2)
        self.assertEqual(self.eventually(lambda: (lambda c: c if c == second else None)(served()),
                                         "the renewed certificate"), second)
        bad = self.config("too-wide", "111111111111", "us-east-1",
                          [(f"{100000000000 + i}", "us-west-2") for i in range(13)])
        bad["spec"]["rules"].append({"destinations": [{"region": "us-west-2", "registryId": f"{200000000000 + i}"}
                                                      for i in range(13)]})
        self.assertIn("26 unique destinations across all rules, at most 25", self.validate_output(bad))
        self.assertIn("26 unique destinations across all rules, at most 25", refused())
        self.apply(self.config("fine-too", "111111111111", "us-east-2", [("111111111111", "us-west-2")]))
        self.assertIsNone(op.proc.poll(), op.text())


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
        # A healthy reconcile followed by the periodic resync is a success, not a requeue.
        self.assertRegex(metrics, r'ferry_reconcile_total\{controller="registrypolicy",result="success"\} [1-9]')
        self.assertRegex(metrics, r'ferry_reconcile_total\{controller="registrypolicy",result="requeue_after"\} 0\n')
        self.assertRegex(metrics, r'ferry_workqueue_queue_duration_seconds_count\{name="registrypolicy"\} [1-9]')
        self.assertIn("process_resident_memory_bytes", metrics)
        self.assertIn("ferry_reconcile_duration_seconds_bucket", metrics)
        self.assertIn("ferry_workqueue_depth", metrics)
        self.assertIn('ferry_workqueue_adds_total{name="registrypolicy"}', metrics)
        start = time.monotonic()
        os.kill(op.proc.pid, signal.SIGTERM)
        self.assertEqual(op.proc.wait(timeout=12), 0, op.text())
        self.assertLess(time.monotonic() - start, 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
