#!/usr/bin/python3
"""Drives tests/support/kube_apiserver_double.py with real kubectl 1.32 so the double keeps speaking kube-apiserver's dialect."""
import json
import os
import pathlib
import queue
import shutil
import signal
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
from testproc import stop_pid  # noqa: E402
DOUBLE = ROOT / "tests" / "support" / "kube_apiserver_double.py"
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
KUBECTL = "/usr/bin/kubectl"
PYTHON = "/usr/bin/python3"
RCFG = "/apis/ferry.dev/v1alpha1/replicationconfigs"


class DoubleTestCase(unittest.TestCase):
    """Starts one double per test on a free loopback port; stops it by PID even when the test fails."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferry-kube-double-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig")
        self.stderr_path = os.path.join(self.tmp, "double.stderr")
        self.stderr_file = open(self.stderr_path, "w")
        self.addCleanup(self.stderr_file.close)
        self.proc = subprocess.Popen(
            [PYTHON, str(DOUBLE), "--port", "0", "--kubeconfig-out", self.kubeconfig, "--bookmark-interval", "0.3"],
            stdout=subprocess.PIPE, stderr=self.stderr_file, text=True)
        self.addCleanup(self.stop_pid, self.proc)
        line = self.proc.stdout.readline()
        self.assertTrue(line.startswith("LISTENING 127.0.0.1:"), f"double did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.children = []

    stop_pid = staticmethod(stop_pid)

    def double_stderr(self):
        self.stderr_file.flush()
        return pathlib.Path(self.stderr_path).read_text()

    # -------------------------------------------------------------- clients
    def kubectl(self, *args, check=True, stdin=None, timeout=30):
        cmd = [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", os.path.join(self.tmp, "cache"), *args]
        res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            self.fail(f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}\n"
                      f"double stderr:\n{self.double_stderr()}")
        return res

    def kubectl_bg(self, *args):
        """Starts a long-running kubectl (a watch); its stdout lines arrive on the returned queue."""
        cmd = [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", os.path.join(self.tmp, "cache"), *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.stop_pid, proc)
        lines = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
        return proc, lines

    def http(self, method, path, body=None, content_type="application/json", accept="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": accept})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def watch_events(self, path, until, timeout=10):
        """Reads a raw watch stream until until(events) is true; returns the events."""
        events = []
        with urllib.request.urlopen(self.base + path, timeout=timeout) as resp:
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.headers.get("Transfer-Encoding"), "chunked")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                line = resp.readline()
                if not line:
                    break
                events.append(json.loads(line))
                if until(events):
                    return events
        return events

    def wait_for_watches(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.http("GET", "/__double/watches")[1]) < n:
            self.assertLess(time.monotonic(), deadline, "watches did not start")
            time.sleep(0.05)

    def requests(self):
        return self.http("GET", "/__double/requests")[1]

    # -------------------------------------------------------------- fixtures
    def install_crds(self):
        self.kubectl("create", "-f", str(CRDS))

    def install_configs(self):
        """CRDs plus the three ReplicationConfigs and the RegistryPolicy of examples/ (create: no GET first)."""
        self.install_crds()
        self.kubectl("create", "--save-config", *(a for f in ("cross-region", "cross-account", "prefix-filters")
                                 for a in ("-f", str(EXAMPLES / f"{f}.yaml"))))

    def install_examples(self):
        self.kubectl("apply", "-f", str(CRDS))
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ferry-system"}}
        self.kubectl("create", "-f", "-", stdin=json.dumps(ns))
        self.kubectl("apply", "-f", str(EXAMPLES))

    def get_json(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def write_status(self, name, status):
        code, body = self.http("PATCH", f"{RCFG}/{name}/status", {"status": status},
                               content_type="application/merge-patch+json")
        self.assertEqual(code, 200, body)
        return body


READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": "ok",
                         "lastTransitionTime": "2024-05-01T00:00:00Z", "observedGeneration": 1}],
         "effectiveSince": "2024-05-01T00:00:00Z"}


class DiscoveryAndCrdTest(DoubleTestCase):
    def test_version_and_discovery(self):
        out = self.kubectl("version", "-o", "json").stdout
        self.assertEqual(json.loads(out)["serverVersion"]["minor"], "32")
        res = self.kubectl("api-resources", "--api-group=coordination.k8s.io").stdout
        self.assertIn("leases", res)

    def test_apply_crds_registers_all_five(self):
        self.kubectl("apply", "-f", str(CRDS))
        names = sorted(i["metadata"]["name"] for i in self.get_json("crd")["items"])
        self.assertEqual(names, ["imagereplications.ferry.dev", "registries.ferry.dev", "registrypolicies.ferry.dev",
                                 "replicationconfigs.ferry.dev", "repositories.ferry.dev"])
        table = self.kubectl("get", "crd").stdout
        self.assertRegex(table.splitlines()[0], r"NAME\s+CREATED AT")
        established = self.kubectl("get", "crd", "replicationconfigs.ferry.dev", "-o",
                                   'jsonpath={.status.conditions[?(@.type=="Established")].status}').stdout
        self.assertEqual(established, "True")
        resources = self.kubectl("api-resources", "--api-group=ferry.dev", "-o", "wide").stdout
        for short in ("rcfg", "freg", "rpol", "frepo", "imgrep"):
            self.assertIn(short, resources)
        self.assertIn("ferry", resources)        # category
        _, rl = self.http("GET", "/apis/ferry.dev/v1alpha1")
        names = {r["name"]: r for r in rl["resources"]}
        self.assertIn("replicationconfigs/status", names)
        self.assertFalse(names["replicationconfigs"]["namespaced"])
        # Re-applying unchanged CRDs is a no-op.
        again = self.kubectl("apply", "-f", str(CRDS)).stdout
        self.assertEqual(again.count("unchanged"), 5, again)

    def test_deleting_a_crd_stops_serving_its_kind(self):
        self.install_configs()
        self.kubectl("delete", "crd", "registrypolicies.ferry.dev")
        code, body = self.http("GET", "/apis/ferry.dev/v1alpha1/registrypolicies")
        self.assertEqual(code, 404)
        self.assertIn("not modelled by the double", body["message"])
        self.assertEqual(len(self.get_json("rcfg")["items"]), 3)


class ApplyTest(DoubleTestCase):
    def test_apply_examples_creates_every_example(self):
        self.install_examples()
        counts = {kind: len(self.get_json(kind)["items"]) for kind in ("freg", "rcfg", "rpol", "frepo")}
        self.assertEqual(counts, {"freg": 7, "rcfg": 3, "rpol": 1, "frepo": 1})
        secrets = self.get_json("secrets", "-n", "ferry-system")["items"]
        self.assertEqual(sorted(s["metadata"]["name"] for s in secrets), ["team-a-registry-auth", "team-b-registry-auth"])
        team_b = next(s for s in secrets if s["metadata"]["name"] == "team-b-registry-auth")
        self.assertNotIn("stringData", team_b)          # folded into base64 data, as kube-apiserver does
        self.assertEqual(team_b["data"]["username"], "ZmVycnktZXhhbXBsZQ==")
        # The schema default for filterType was applied.
        prefix = self.get_json("rcfg", "acct-b-us-east-2")
        self.assertEqual(prefix["spec"]["rules"][1]["repositoryFilters"][0]["filterType"], "PREFIX_MATCH")
        # kubectl create sends fieldValidation=Strict because /openapi/v3 says it is supported.
        posts = [r for r in self.requests() if r["method"] == "POST" and r["path"] == RCFG]
        self.assertTrue(posts)
        self.assertEqual(posts[0]["query"].get("fieldValidation"), "Strict")
        self.assertEqual(posts[0]["query"].get("fieldManager"), "kubectl-client-side-apply")
        # Re-applying the Secrets: kubectl sends a strategic merge patch for built-in kinds.
        self.kubectl("apply", "-f", str(EXAMPLES / "secrets.yaml"))
        smp = [r for r in self.requests() if r["method"] == "PATCH" and "/secrets/" in r["path"]]
        self.assertTrue(smp and all(r["contentType"] == "application/strategic-merge-patch+json" for r in smp), smp)
        self.assertEqual(self.get_json("secret", "-n", "ferry-system", "team-b-registry-auth")["data"], team_b["data"])

    def test_reapply_is_a_noop_and_an_edit_is_a_merge_patch(self):
        self.install_crds()
        self.kubectl("apply", "-f", str(EXAMPLES / "cross-region.yaml"))
        before = self.get_json("rcfg", "acct-a-us-east-1")["metadata"]
        again = self.kubectl("apply", "-f", str(EXAMPLES / "cross-region.yaml")).stdout
        self.assertIn("unchanged", again)
        edited = (EXAMPLES / "cross-region.yaml").read_text().replace("region: us-west-2", "region: eu-north-1")
        self.assertIn("configured", self.kubectl("apply", "-f", "-", stdin=edited).stdout)
        patches = [r for r in self.requests() if r["method"] == "PATCH" and r["path"] == f"{RCFG}/acct-a-us-east-1"]
        self.assertEqual(len(patches), 1)
        self.assertEqual(patches[0]["contentType"], "application/merge-patch+json")
        # Like kube-apiserver, a strategic merge patch on a custom resource is refused.
        code, status = self.http("PATCH", f"{RCFG}/acct-a-us-east-1", {"metadata": {"labels": {"a": "b"}}},
                                 content_type="application/strategic-merge-patch+json")
        self.assertEqual((code, status["reason"]), (415, "UnsupportedMediaType"))
        after = self.get_json("rcfg", "acct-a-us-east-1")
        self.assertEqual(after["spec"]["rules"][0]["destinations"][0]["region"], "eu-north-1")
        self.assertEqual(after["metadata"]["generation"], before["generation"] + 1)
        last = json.loads(after["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
        self.assertEqual(last["spec"]["rules"][0]["destinations"][0]["region"], "eu-north-1")
        # Removing a field from the manifest removes it from the object (three-way merge via last-applied).
        no_rules = edited.split("  rules:")[0]
        self.kubectl("apply", "-f", "-", stdin=no_rules)
        self.assertNotIn("rules", self.get_json("rcfg", "acct-a-us-east-1")["spec"])

    def test_unknown_field_is_refused_with_its_path(self):
        self.install_crds()
        bad = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig", "metadata": {"name": "typo"},
               "spec": {"registryId": "123456789012", "region": "us-east-1", "rulez": []}}
        res = self.kubectl("apply", "-f", "-", stdin=json.dumps(bad), check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('unknown field "spec.rulez"', res.stderr)
        # --validate=warn: the server prunes the field and says so in a Warning header kubectl prints.
        res = self.kubectl("apply", "--validate=warn", "-f", "-", stdin=json.dumps(bad))
        self.assertIn('Warning: unknown field "spec.rulez"', res.stderr)
        self.assertNotIn("rulez", self.get_json("rcfg", "typo")["spec"])
        # --validate=false sends fieldValidation=Ignore: pruned silently.
        bad["metadata"]["name"] = "typo-2"
        res = self.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(bad))
        self.assertNotIn("unknown field", res.stderr)
        self.assertNotIn("rulez", self.get_json("rcfg", "typo-2")["spec"])
        modes = [r["query"].get("fieldValidation") for r in self.requests() if r["method"] == "POST" and r["path"] == RCFG]
        self.assertEqual(modes, ["Strict", "Warn", "Ignore"])

    def test_schema_violation_is_422_invalid(self):
        self.install_crds()
        bad = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig", "metadata": {"name": "short-id"},
               "spec": {"registryId": "1234", "region": "us-east-1"}}
        res = self.kubectl("apply", "-f", "-", stdin=json.dumps(bad), check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("is invalid", res.stderr)
        self.assertIn("spec.registryId", res.stderr)
        code, status = self.http("POST", RCFG, bad)
        self.assertEqual((code, status["reason"]), (422, "Invalid"))
        self.assertEqual(status["details"]["causes"][0]["field"], "spec.registryId")


class PrinterColumnTest(DoubleTestCase):
    def test_get_shows_printer_columns(self):
        self.install_configs()
        self.kubectl("create", "-f", str(EXAMPLES / "registries.yaml"))
        for resource in ("replicationconfigs", "rcfg"):
            header = self.kubectl("get", resource).stdout.splitlines()[0].split()
            self.assertEqual(header, ["NAME", "REGISTRYID", "REGION", "READY", "EFFECTIVESINCE", "AGE"])
        self.write_status("acct-a-us-east-1", READY)
        rows = {l.split()[0]: l.split() for l in self.kubectl("get", "rcfg").stdout.splitlines()[1:]}
        self.assertEqual(rows["acct-a-us-east-1"][1:4], ["123456789012", "us-east-1", "True"])
        self.assertRegex(rows["acct-a-us-east-1"][-1], r"^\d+s$")        # Age, rendered like kube-apiserver
        header = self.kubectl("get", "freg").stdout.splitlines()[0].split()
        self.assertEqual(header, ["NAME", "REGISTRYID", "REGION", "ENDPOINT", "ENABLED", "READY", "AGE"])
        table_gets = [r for r in self.requests() if r["path"] == RCFG and "as=Table" in r["accept"]]
        self.assertTrue(table_gets)


class GenerationAndStatusTest(DoubleTestCase):
    def test_spec_edit_bumps_generation_status_write_does_not(self):
        self.install_configs()
        obj = self.get_json("rcfg", "acct-a-us-east-1")
        self.assertEqual(obj["metadata"]["generation"], 1)
        rv0 = int(obj["metadata"]["resourceVersion"])
        self.kubectl("patch", "rcfg", "acct-a-us-east-1", "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": READY}))
        obj = self.get_json("rcfg", "acct-a-us-east-1")
        self.assertEqual(obj["metadata"]["generation"], 1)
        self.assertGreater(int(obj["metadata"]["resourceVersion"]), rv0)
        self.assertEqual(obj["status"]["conditions"][0]["type"], "Ready")
        edited = (EXAMPLES / "cross-region.yaml").read_text().replace("us-west-2", "ap-south-1")
        self.kubectl("apply", "-f", "-", stdin=edited)
        obj = self.get_json("rcfg", "acct-a-us-east-1")
        self.assertEqual(obj["metadata"]["generation"], 2)
        self.assertIn("status", obj)                      # apply did not wipe status
        # A status write through the main resource is ignored; a spec write through /status too.
        self.kubectl("patch", "rcfg", "acct-a-us-east-1", "--type=merge", "-p", '{"status":{"effectiveSince":null}}')
        self.kubectl("patch", "rcfg", "acct-a-us-east-1", "--subresource=status", "--type=merge",
                     "-p", '{"spec":{"region":"eu-west-3"}}')
        obj = self.get_json("rcfg", "acct-a-us-east-1")
        self.assertEqual(obj["status"]["effectiveSince"], READY["effectiveSince"])
        self.assertEqual(obj["spec"]["region"], "us-east-1")
        self.assertEqual(obj["metadata"]["generation"], 2)
        # Metadata-only changes do not bump generation either.
        self.kubectl("label", "rcfg", "acct-a-us-east-1", "team=a")
        self.assertEqual(self.get_json("rcfg", "acct-a-us-east-1")["metadata"]["generation"], 2)
        self.assertEqual(self.kubectl("get", "rcfg", "-l", "team=a", "-o", "name").stdout.strip(),
                         "replicationconfig.ferry.dev/acct-a-us-east-1")

    def test_wait_returns_when_ready_is_written(self):
        self.install_configs()
        timer = threading.Timer(1.0, self.write_status, ("acct-a-eu-central-1", READY))
        timer.start()
        self.addCleanup(timer.cancel)
        start = time.monotonic()
        res = self.kubectl("wait", "--for=condition=Ready", "rcfg/acct-a-eu-central-1", "--timeout=10s")
        elapsed = time.monotonic() - start
        timer.join()
        self.assertIn("condition met", res.stdout)
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 8)
        out = self.kubectl("get", "rcfg", "acct-a-eu-central-1", "-o",
                           'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.effectiveSince}').stdout
        self.assertEqual(out, "True 2024-05-01T00:00:00Z")
        res = self.kubectl("wait", "--for=condition=Ready", "rcfg/acct-a-us-east-1", "--timeout=1s", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("timed out", res.stderr)


class ConflictAndErrorsTest(DoubleTestCase):
    def test_stale_update_is_409_conflict(self):
        self.install_configs()
        stale = self.get_json("rcfg", "acct-a-us-east-1")
        self.write_status("acct-a-us-east-1", READY)            # moves resourceVersion on
        stale["spec"]["region"] = "us-east-2"
        res = self.kubectl("replace", "-f", "-", stdin=json.dumps(stale), check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("the object has been modified", res.stderr)
        code, status = self.http("PUT", f"{RCFG}/acct-a-us-east-1", stale)
        self.assertEqual((code, status["kind"], status["reason"]), (409, "Status", "Conflict"))
        fresh = self.get_json("rcfg", "acct-a-us-east-1")
        fresh["spec"]["region"] = "us-east-2"
        self.kubectl("replace", "-f", "-", stdin=json.dumps(fresh))
        self.assertEqual(self.get_json("rcfg", "acct-a-us-east-1")["spec"]["region"], "us-east-2")
        # A merge patch carrying a stale resourceVersion is a precondition and conflicts too.
        code, status = self.http("PATCH", f"{RCFG}/acct-a-us-east-1",
                                 {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}},
                                 content_type="application/merge-patch+json")
        self.assertEqual((code, status["reason"]), (409, "Conflict"))

    def test_already_exists_and_not_found(self):
        self.install_configs()
        res = self.kubectl("create", "-f", str(EXAMPLES / "cross-region.yaml"), check=False)
        self.assertIn("AlreadyExists", res.stderr)
        res = self.kubectl("get", "rcfg", "no-such-config", check=False)
        self.assertIn('replicationconfigs.ferry.dev "no-such-config" not found', res.stderr)
        code, status = self.http("GET", f"{RCFG}/no-such-config")
        self.assertEqual((code, status["reason"], status["details"]["kind"]), (404, "NotFound", "replicationconfigs"))
        self.kubectl("delete", "rcfg", "acct-a-us-east-1")
        self.assertEqual(self.http("GET", f"{RCFG}/acct-a-us-east-1")[0], 404)

    def test_finalizers_hold_deletion_until_removed(self):
        self.install_crds()
        obj = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig",
               "metadata": {"name": "held", "finalizers": ["ferry.dev/cleanup"]},
               "spec": {"registryId": "123456789012", "region": "us-east-1"}}
        self.kubectl("create", "-f", "-", stdin=json.dumps(obj))
        self.kubectl("delete", "rcfg", "held", "--wait=false")
        held = self.get_json("rcfg", "held")
        self.assertIn("deletionTimestamp", held["metadata"])
        self.assertEqual(held["metadata"]["generation"], 2)
        self.kubectl("patch", "rcfg", "held", "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
        self.assertEqual(self.http("GET", f"{RCFG}/held")[0], 404)

    def test_unknown_path_is_not_modelled(self):
        res = self.kubectl("get", "--raw", "/apis/nothing.example/v1/widgets", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("not modelled by the double", res.stderr)
        code, status = self.http("GET", "/apis/nothing.example/v1/widgets")
        self.assertEqual((code, status["kind"]), (404, "Status"))
        self.assertIn("not modelled by the double: GET /apis/nothing.example/v1/widgets", status["message"])
        code, status = self.http("DELETE", "/api/v1/namespaces/default/secrets")      # deletecollection
        self.assertEqual(code, 405)
        self.assertIn("not modelled by the double: DELETE /api/v1/namespaces/default/secrets", status["message"])
        self.assertIn("not modelled by the double: GET /apis/nothing.example/v1/widgets", self.double_stderr())

    def test_injected_failures_hit_the_next_n_requests(self):
        self.install_configs()
        code, _ = self.http("POST", "/__double/fail", {"pathPrefix": RCFG, "method": "GET", "status": 500, "count": 1})
        self.assertEqual(code, 200)
        res = self.kubectl("get", "rcfg", "acct-a-us-east-1", "-o", "name", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("injected failure", res.stderr)
        self.assertEqual(self.kubectl("get", "rcfg", "acct-a-us-east-1", "-o", "name").stdout.strip(),
                         "replicationconfig.ferry.dev/acct-a-us-east-1")


class ListAndWatchTest(DoubleTestCase):
    def test_pagination_with_chunk_size_returns_all_items(self):
        self.install_crds()
        self.kubectl("create", "-f", str(EXAMPLES / "registries.yaml"))
        names = self.kubectl("get", "freg", "--chunk-size=2", "-o", "name").stdout.split()
        self.assertEqual(len(names), 7)
        table = self.kubectl("get", "freg", "--chunk-size=2").stdout.splitlines()
        self.assertEqual(len(table), 8)
        lists = [r for r in self.requests() if r["method"] == "GET" and r["path"] == "/apis/ferry.dev/v1alpha1/registries"]
        self.assertTrue(all(r["query"].get("limit") == "2" for r in lists))
        self.assertGreaterEqual(sum(1 for r in lists if r["query"].get("continue")), 6)
        # The raw protocol: remainingItemCount and a continue token, a stale token after expiry is 410.
        code, page = self.http("GET", "/apis/ferry.dev/v1alpha1/registries?limit=3")
        self.assertEqual((len(page["items"]), page["metadata"]["remainingItemCount"]), (3, 4))
        self.http("POST", "/__double/expire", {})
        code, status = self.http("GET", "/apis/ferry.dev/v1alpha1/registries?limit=3&continue=" + page["metadata"]["continue"])
        self.assertEqual((code, status["reason"]), (410, "Expired"))

    def test_kubectl_watch_sees_modified_events(self):
        self.install_configs()
        proc, lines = self.kubectl_bg("get", "rcfg", "acct-a-us-east-1", "--watch", "--output-watch-events", "-o", "json")
        first = self.read_json_event(lines)
        self.assertEqual(first["type"], "ADDED")
        self.wait_for_watches(1)
        self.write_status("acct-a-us-east-1", READY)
        event = self.read_json_event(lines)
        self.assertEqual(event["type"], "MODIFIED")
        self.assertEqual(event["object"]["status"]["conditions"][0]["status"], "True")
        # The default (table) printer gets Table-shaped watch events and prints rows.
        proc2, rows = self.kubectl_bg("get", "rcfg", "--watch")
        self.assertIn("REGISTRYID", rows.get(timeout=10))
        self.wait_for_watches(2)
        self.kubectl("label", "rcfg", "acct-b-us-east-2", "seen=yes")
        got = [rows.get(timeout=10) for _ in range(4)]
        self.assertTrue(any(l.startswith("acct-b-us-east-2") for l in got[3:]), got)

    @staticmethod
    def read_json_event(lines, timeout=10):
        buf = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = lines.get(timeout=deadline - time.monotonic())
            if line is None:
                raise AssertionError(f"watch ended; partial output {buf!r}")
            buf += line
            try:
                return json.loads(buf)
            except ValueError:
                continue
        raise AssertionError("no watch event")

    def test_raw_watch_bookmarks_replay_and_410_after_expiry(self):
        self.install_configs()
        listing = self.http("GET", RCFG)[1]
        rv = listing["metadata"]["resourceVersion"]
        self.write_status("acct-a-us-east-1", READY)
        events = self.watch_events(f"{RCFG}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}",
                                   lambda ev: any(e["type"] == "BOOKMARK" for e in ev))
        self.assertEqual(events[0]["type"], "MODIFIED")         # replayed from rv
        self.assertEqual(events[0]["object"]["metadata"]["name"], "acct-a-us-east-1")
        bookmark = next(e for e in events if e["type"] == "BOOKMARK")
        self.assertEqual(bookmark["object"]["kind"], "ReplicationConfig")
        self.assertGreater(int(bookmark["object"]["metadata"]["resourceVersion"]), int(rv))
        # A watch from "0" starts with synthetic ADDED events for what exists.
        added = self.watch_events(f"{RCFG}?watch=1&resourceVersion=0", lambda ev: len(ev) == 3)
        self.assertEqual([e["type"] for e in added], ["ADDED"] * 3)
        # After expiry the same version is too old: an ERROR event with a 410 Expired Status.
        self.assertEqual(self.http("POST", "/__double/expire", {})[0], 200)
        events = self.watch_events(f"{RCFG}?watch=true&resourceVersion={rv}", lambda ev: True)
        self.assertEqual(events[0]["type"], "ERROR")
        self.assertEqual((events[0]["object"]["code"], events[0]["object"]["reason"]), (410, "Expired"))
        # kubectl sees the same error.
        res = self.kubectl("get", "--raw", f"{RCFG}?watch=true&resourceVersion={rv}", check=False)
        self.assertIn("too old resource version", res.stdout + res.stderr)

    def test_drop_watches_ends_streams_and_deleted_events(self):
        self.install_configs()
        rv = self.http("GET", RCFG)[1]["metadata"]["resourceVersion"]
        results = {}

        def watch():
            results["events"] = self.watch_events(f"{RCFG}?watch=true&resourceVersion={rv}", lambda ev: False)
        t = threading.Thread(target=watch)
        t.start()
        self.wait_for_watches(1)
        self.kubectl("delete", "rcfg", "acct-b-us-east-2")
        deadline = time.monotonic() + 5
        while not any(r["method"] == "DELETE" for r in self.requests()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        self.assertEqual(self.http("POST", "/__double/drop-watches", {})[1]["dropped"], 1)
        t.join(10)
        self.assertFalse(t.is_alive())
        self.assertEqual([e["type"] for e in results["events"]], ["DELETED"])
        self.assertEqual(results["events"][0]["object"]["metadata"]["name"], "acct-b-us-east-2")


class BuiltinKindsTest(DoubleTestCase):
    def test_leases_and_events(self):
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "ferry-operator", "namespace": "default"},
                 "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15,
                          "renewTime": "2024-05-01T00:00:00.000000Z"}}
        self.kubectl("create", "-f", "-", stdin=json.dumps(lease))
        self.assertIn("pod-a", self.kubectl("get", "leases").stdout)
        current = self.get_json("lease", "ferry-operator")
        code, updated = self.http("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/ferry-operator",
                                  dict(current, spec=dict(current["spec"], holderIdentity="pod-b")))
        self.assertEqual(code, 200)
        code, status = self.http("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/ferry-operator",
                                 dict(current, spec=dict(current["spec"], holderIdentity="pod-c")))
        self.assertEqual((code, status["reason"]), (409, "Conflict"))
        self.assertEqual(self.kubectl("get", "lease", "ferry-operator", "-o", "jsonpath={.spec.holderIdentity}").stdout, "pod-b")
        event = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"generateName": "acct-a.", "namespace": "default"},
                 "eventTime": "2024-05-01T00:00:00.000000Z", "reportingController": "ferry.dev/operator",
                 "reportingInstance": "pod-a", "action": "Reconcile", "reason": "Ready", "type": "Normal",
                 "note": "ReplicationConfig is ready",
                 "regarding": {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig", "name": "acct-a"}}
        code, created = self.http("POST", "/apis/events.k8s.io/v1/namespaces/default/events", event)
        self.assertEqual(code, 201)
        self.assertTrue(created["metadata"]["name"].startswith("acct-a."))
        out = self.kubectl("get", "events.events.k8s.io").stdout
        self.assertIn("ReplicationConfig is ready", out)
        code, status = self.http("POST", "/apis/events.k8s.io/v1/namespaces/default/events",
                                 dict(event, reportingController=""))
        self.assertEqual((code, status["reason"]), (422, "Invalid"))
        event["metadata"]["namespace"] = "nowhere"
        code, status = self.http("POST", "/apis/events.k8s.io/v1/namespaces/nowhere/events", event)
        self.assertEqual((code, status["reason"]), (404, "NotFound"))

    def test_config_maps(self):
        path = "/api/v1/namespaces/default/configmaps"
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                           "metadata": {"name": "state"}, "data": {"state.json": "{}"}}))
        self.assertEqual(self.kubectl("get", "cm", "state", "-o", "jsonpath={.data.state\\.json}").stdout, "{}")
        # An update without resourceVersion is allowed for ConfigMaps, as in kube-apiserver.
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "state", "namespace": "default"},
              "data": {"state.json": '{"a":1}'}}
        code, _ = self.http("PUT", path + "/state", cm)
        self.assertEqual(code, 200)
        code, status = self.http("POST", path, dict(cm, metadata={"name": "bad", "namespace": "default"},
                                                    data={"n": 1}))
        self.assertEqual((code, status["reason"]), (400, "BadRequest"))
        code, status = self.http("POST", path, dict(cm, metadata={"name": "big", "namespace": "default"},
                                                    data={"x": "y" * (1 << 20)}))
        self.assertEqual((code, status["reason"]), (422, "Invalid"))
        self.assertIn("must have at most 1048576 bytes", status["message"])
        self.assertEqual(self.kubectl("get", "cm", "-o", "name").stdout.split(), ["configmap/state"])

    def test_sigterm_exits_cleanly(self):
        proc, _ = self.kubectl_bg("get", "secrets", "-A", "--watch")
        time.sleep(0.5)
        os.kill(self.proc.pid, signal.SIGTERM)
        start = time.monotonic()
        self.assertEqual(self.proc.wait(10), 0)          # an open watch does not hold the shutdown up
        self.assertLess(time.monotonic() - start, 5)


if __name__ == "__main__":
    unittest.main()
