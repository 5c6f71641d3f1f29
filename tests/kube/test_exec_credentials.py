#!/usr/bin/python3
"""Kubeconfig `exec` credential plugins end to end: `ferry status` and `ferry operator` against a real
kube-apiserver (tests/support/kube_control_plane.py) that authenticates static tokens
(--token-auth-file) and ServiceAccount tokens, with a shell-script plugin that logs every run.

The plugin (PLUGIN below) appends one line per run to a log file: the time, what its stdin is, and
the KUBERNETES_EXEC_INFO it was given. It prints line N of its tokens file on its N-th run (the last
line once past the end), with an expirationTimestamp LIFETIME seconds ahead when that is set.
What the tests read: how often it ran (caching, expiry, a 401), the API server's audit log (who
made the requests), and that no token reaches Ferry's output.
"""
import base64
import calendar
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from kube_control_plane import NAMESPACE, ControlPlane  # noqa: E402
from testproc import free_port, stop_pid, wait_until  # noqa: E402

FERRY = os.environ.get("FERRY_BINARY", str(ROOT / "build" / "operator" / "ferry"))
EXEC_V1 = "client.authentication.k8s.io/v1"

PLUGIN = r"""#!/bin/sh
# An exec credential plugin double: logs each run, prints the token of this run.
set -eu
printf '%s %s %s\n' "$(date +%s.%N)" "$(readlink /proc/self/fd/0 || echo closed)" "$KUBERNETES_EXEC_INFO" \
  >> "$FERRY_TEST_RUNS"
n=$(wc -l < "$FERRY_TEST_RUNS")
token=$(sed -n "${n}p" "$1")
[ -n "$token" ] || token=$(tail -n 1 "$1")
if [ -n "${FERRY_TEST_LIFETIME:-}" ]; then
  expiry=$(date -u -d "@$(( $(date +%s) + FERRY_TEST_LIFETIME ))" +%Y-%m-%dT%H:%M:%SZ)
  printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' \
    "$FERRY_TEST_API_VERSION" "$token" "$expiry"
else
  printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"%s"}}\n' "$FERRY_TEST_API_VERSION" "$token"
fi
"""

# token,user,uid,"groups" (kube-apiserver --token-auth-file); each test authenticates as its own user.
STATIC_TOKENS = {
    "alpha": "alpha-0d5c1e7b9a",
    "beta": "beta-6f2e8c4d1b",
    "gamma": "gamma-93a7b5c2e0",
}


class ExecCredentials(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="ferry-exec-credentials-")
        token_file = os.path.join(cls.work, "tokens.csv")
        with open(token_file, "w") as f:
            for user, token in STATIC_TOKENS.items():
                f.write(f'{token},exec-{user},uid-{user},"system:masters"\n')
        cls.cp = ControlPlane(cls.work, apiserver_args=["--token-auth-file", token_file])
        try:
            cls.cp.start()
        except BaseException:
            shutil.rmtree(cls.work, True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cp.stop()
        shutil.rmtree(cls.work, True)

    def setUp(self):
        self.assertTrue(os.access(FERRY, os.X_OK), f"no ferry binary at {FERRY}; set FERRY_BINARY")
        self.tmp = tempfile.mkdtemp(prefix=f"{self._testMethodName}-", dir=self.work)
        # The kubeconfig's folder holds the plugin; the command is relative to it ("./plugin.sh")
        # while Ferry runs from another folder.
        self.plugin = os.path.join(self.tmp, "plugin.sh")
        with open(self.plugin, "w") as f:
            f.write(PLUGIN)
        os.chmod(self.plugin, 0o755)
        self.runs_file = os.path.join(self.tmp, "runs.log")
        self.tokens_file = os.path.join(self.tmp, "tokens.txt")

    # ------------------------------------------------------------------ helpers
    def kubeconfig(self, tokens, lifetime=None, api_version=EXEC_V1, install_hint=None, command="./plugin.sh"):
        with open(self.tokens_file, "w") as f:
            f.write("".join(t + "\n" for t in tokens))
        env = [{"name": "FERRY_TEST_RUNS", "value": self.runs_file},
               {"name": "FERRY_TEST_API_VERSION", "value": api_version}]
        if lifetime:
            env.append({"name": "FERRY_TEST_LIFETIME", "value": str(lifetime)})
        exec_ = {"apiVersion": api_version, "command": command, "args": [self.tokens_file], "env": env,
                 "interactiveMode": "Never", "provideClusterInfo": True}
        if install_hint:
            exec_["installHint"] = install_hint
        path = os.path.join(self.tmp, "kubeconfig")
        with open(path, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "exec",
                       "clusters": [{"name": "cp", "cluster": {"server": self.cp.url,
                                                               "certificate-authority": self.cp.pki.ca_crt}}],
                       "contexts": [{"name": "exec", "context": {"cluster": "cp", "user": "plugin-user"}}],
                       "users": [{"name": "plugin-user", "user": {"exec": exec_}}]}, f)
        return path

    def runs(self):
        """(time, stdin, ExecCredential given in KUBERNETES_EXEC_INFO) per plugin run."""
        try:
            lines = pathlib.Path(self.runs_file).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            t, stdin, info = line.split(" ", 2)
            out.append((float(t), stdin, json.loads(info)))
        return out

    def eventually(self, fn, what, timeout=60):
        return wait_until(fn, timeout, interval=0.2, what=what)

    def requests_by(self, username):
        return self.cp.audit(username=username)

    def status(self, kubeconfig):
        return subprocess.run([FERRY, "status", "--kubeconfig", kubeconfig, "--repository", "exec/app",
                               "--image", self._testMethodName.replace("_", "-")[:60]],
                              input="", capture_output=True, text=True, timeout=120, cwd=ROOT)

    def record(self):
        """An ImageReplication for `status` to find (written as the admin)."""
        tag = self._testMethodName.replace("_", "-")[:60]
        obj = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ImageReplication",
               "metadata": {"name": f"exec-{tag}"},
               "spec": {"source": {"registryId": "111111111111", "region": "us-east-1",
                                   "repositoryName": "exec/app", "imageTag": tag,
                                   "imageDigest": "sha256:" + "ab" * 32,
                                   "pushedAt": "2030-01-01T00:00:00Z"},
                        "destinations": [{"region": "eu-west-1", "registryId": "222222222222"}]}}
        self.cp.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
        self.addCleanup(self.cp.kubectl, "delete", "imagereplication", f"exec-{tag}", "--ignore-not-found",
                        check=False)

    def start_operator(self, kubeconfig):
        health = free_port()
        log_path = os.path.join(self.tmp, "operator.log")
        log = open(log_path, "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [FERRY, "operator", "--kubeconfig", kubeconfig, "--leader-elect",
             "--leader-election-id", f"exec-{self._testMethodName.replace('_', '-')}",
             "--health-probe-bind-address", f"127.0.0.1:{health}",
             "--metrics-bind-address", f"127.0.0.1:{free_port()}",
             "--registry-events-bind-address", f"127.0.0.1:{free_port()}", "--webhook-port", "0"],
            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT)
        self.addCleanup(stop_pid, proc)

        def ready():
            if proc.poll() is not None:
                return "exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=5) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False
        self.assertEqual(self.eventually(ready, "the operator's /readyz", timeout=90), True,
                         pathlib.Path(log_path).read_text())
        proc.log_path = log_path
        return proc

    def assertNoTokenIn(self, text):
        for token in [*STATIC_TOKENS.values(), *getattr(self, "extra_tokens", [])]:
            self.assertNotIn(token, text)

    # ------------------------------------------------------------------ tests
    def test_status_authenticates_with_the_plugin_token(self):
        self.record()
        kcfg = self.kubeconfig([STATIC_TOKENS["alpha"]], lifetime=3600)
        res = self.status(kcfg)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(json.loads(res.stdout)["repositoryName"], "exec/app")
        self.assertNoTokenIn(res.stdout + res.stderr)
        self.assertTrue(any(e["verb"] == "list" and e["objectRef"]["resource"] == "imagereplications"
                            for e in self.requests_by("exec-alpha")), "no list by the plugin's user")
        runs = self.runs()
        self.assertEqual(len(runs), 1)
        self.assertEqual(runs[0][1], "/dev/null")  # stdin not connected (Ferry's own is a pipe)
        info = runs[0][2]
        self.assertEqual(info["apiVersion"], EXEC_V1)
        self.assertEqual(info["kind"], "ExecCredential")
        self.assertIs(info["spec"]["interactive"], False)
        cluster = info["spec"]["cluster"]  # provideClusterInfo
        self.assertEqual(cluster["server"], self.cp.url)
        self.assertEqual(base64.b64decode(cluster["certificate-authority-data"]),
                         pathlib.Path(self.cp.pki.ca_crt).read_bytes())

    def test_status_authenticates_with_the_plugin_client_certificate(self):
        # The plugin prints the admin's certificate and key (PEM) instead of a token.
        self.record()
        cred = os.path.join(self.tmp, "credential.json")
        with open(cred, "w") as f:
            json.dump({"apiVersion": EXEC_V1, "kind": "ExecCredential",
                       "status": {"clientCertificateData": pathlib.Path(self.cp.admin_crt).read_text(),
                                  "clientKeyData": pathlib.Path(self.cp.admin_key).read_text()}}, f)
        with open(self.plugin, "w") as f:
            f.write(f'#!/bin/sh\necho run >> "$FERRY_TEST_RUNS"\ncat {cred}\n')
        kcfg = self.kubeconfig(["unused"])
        before = len(self.cp.audit(user_agent_prefix="ferry", username="ferry-test-admin"))
        res = self.status(kcfg)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(json.loads(res.stdout)["repositoryName"], "exec/app")
        self.assertGreater(len(self.cp.audit(user_agent_prefix="ferry", username="ferry-test-admin")), before)
        self.assertEqual(pathlib.Path(self.runs_file).read_text(), "run\n")

    def test_operator_runs_the_plugin_once_for_many_requests(self):
        kcfg = self.kubeconfig([STATIC_TOKENS["alpha"]], lifetime=3600)
        before = len(self.requests_by("exec-alpha"))
        op = self.start_operator(kcfg)
        # Lists, watches, and a Lease renewal every 2 s: all with the one credential.
        self.eventually(lambda: len(self.requests_by("exec-alpha")) - before >= 25, "25 requests by exec-alpha")
        self.assertEqual(len(self.runs()), 1)
        self.assertIsNone(op.poll())
        self.assertNoTokenIn(pathlib.Path(op.log_path).read_text())

    def test_operator_runs_the_plugin_again_before_expiry(self):
        # 24 s of validity: refreshed 10 s before the end, on the next request after that (the Lease
        # is renewed every 2 s).
        kcfg = self.kubeconfig([STATIC_TOKENS["beta"]], lifetime=24)
        op = self.start_operator(kcfg)
        runs = self.eventually(lambda: len(self.runs()) >= 3 and self.runs(), "three plugin runs", timeout=90)
        first, second, third = (t for t, _, _ in runs[:3])
        for a, b in ((first, second), (second, third)):
            self.assertGreaterEqual(b - a, 12, f"ran again after {b - a:.1f}s")
            self.assertLessEqual(b - a, 22, f"ran again after {b - a:.1f}s")
        # The new credential is used: a request after the third run reaches the audit log (the Lease
        # is renewed every 2 s; the log is written a moment after each request, in whole seconds).
        def last():
            return max(calendar.timegm(time.strptime(e["stageTimestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
                       for e in self.requests_by("exec-beta"))
        self.eventually(lambda: last() > third - 1, "a request after the refresh", timeout=10)
        self.assertIsNone(op.poll())
        self.assertNoTokenIn(pathlib.Path(op.log_path).read_text())

    def test_a_refused_token_runs_the_plugin_again_and_the_request_is_retried(self):
        # The first run prints a token the API server does not know (401); the second a good one.
        self.record()
        self.extra_tokens = ["stale-token-5b1d9e"]
        kcfg = self.kubeconfig(["stale-token-5b1d9e", STATIC_TOKENS["gamma"]])
        res = self.status(kcfg)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(json.loads(res.stdout)["repositoryName"], "exec/app")
        self.assertEqual(len(self.runs()), 2)
        self.assertNoTokenIn(res.stdout + res.stderr)

    def test_a_token_refused_twice_is_an_error_after_two_runs(self):
        self.extra_tokens = ["bad-token-1f3e", "bad-token-7a2c"]
        kcfg = self.kubeconfig(self.extra_tokens)
        res = self.status(kcfg)
        self.assertNotEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("401", res.stderr)
        self.assertEqual(len(self.runs()), 2)  # once more after the 401, and no more
        self.assertNoTokenIn(res.stdout + res.stderr)

    def test_a_revoked_token_is_replaced_while_the_operator_runs(self):
        # ServiceAccount tokens: deleting the ServiceAccount revokes its token at once.
        sa = ["exec-revoked-1", "exec-revoked-2"]
        for name in sa:
            self.cp.kubectl("create", "serviceaccount", name, "-n", NAMESPACE)
            self.cp.kubectl("create", "clusterrolebinding", name, "--clusterrole", "cluster-admin",
                            f"--serviceaccount={NAMESPACE}:{name}")
            self.addCleanup(self.cp.kubectl, "delete", "clusterrolebinding", name, "--ignore-not-found", check=False)
        tokens = [self.cp.kubectl("create", "token", name, "-n", NAMESPACE, "--duration", "1h").stdout.strip()
                  for name in sa]
        self.extra_tokens = tokens
        users = [f"system:serviceaccount:{NAMESPACE}:{name}" for name in sa]
        kcfg = self.kubeconfig(tokens[:1])
        op = self.start_operator(kcfg)
        self.eventually(lambda: len(self.requests_by(users[0])) >= 5, "requests by the first ServiceAccount")
        self.assertEqual(len(self.runs()), 1)
        with open(self.tokens_file, "a") as f:  # the plugin's next run prints the second token
            f.write(tokens[1] + "\n")
        time.sleep(3)
        self.assertEqual(len(self.runs()), 1, "ran again while its token was still good")
        self.cp.kubectl("delete", "serviceaccount", sa[0], "-n", NAMESPACE)
        self.eventually(lambda: len(self.requests_by(users[1])) >= 3, "requests by the second ServiceAccount")
        self.assertEqual(len(self.runs()), 2)
        # Still the leader and ready, still renewing its Lease with the new token.
        n = len(self.requests_by(users[1]))
        self.eventually(lambda: len(self.requests_by(users[1])) > n + 2, "more requests with the new token")
        self.assertIsNone(op.poll())
        self.assertEqual(len(self.runs()), 2)
        self.assertNoTokenIn(pathlib.Path(op.log_path).read_text())

    def test_a_failing_plugin_names_user_command_and_install_hint(self):
        fail = os.path.join(self.tmp, "fail.sh")
        with open(fail, "w") as f:
            f.write("#!/bin/sh\necho 'no credentials configured' >&2\nexit 7\n")
        os.chmod(fail, 0o755)
        kcfg = self.kubeconfig(["unused"], command="./fail.sh", install_hint="install the ferry-test plugin")
        res = self.status(kcfg)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('kubeconfig user "plugin-user": exec plugin "' + fail + '": exited with status 7; '
                      "install the ferry-test plugin", res.stderr)
        self.assertIn("no credentials configured", res.stderr)  # the plugin's stderr passes through

        kcfg = self.kubeconfig(["unused"], api_version="client.authentication.k8s.io/v1beta1")
        with open(self.plugin, "w") as f:  # prints v1 while v1beta1 is configured
            f.write(PLUGIN.replace('"$FERRY_TEST_API_VERSION"', '"client.authentication.k8s.io/v1"'))
        res = self.status(kcfg)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("configured to use API version client.authentication.k8s.io/v1beta1 and printed version "
                      '"client.authentication.k8s.io/v1"', res.stderr)


if __name__ == "__main__":
    unittest.main()
