#!/usr/bin/python3
"""Proves charts/ferry with real Helm, a real kube-apiserver and the real operator.

Helm v3 (built by scripts/test-peers.sh) lints the chart (`helm lint --strict`), renders it
(`helm template` with `-f` and `--set` values, checked by Helm against values.schema.json), and
installs, upgrades and uninstalls it against a real kube-apiserver + etcd
(tests/support/kube_control_plane.py), where `lookup` and `.Capabilities` work as on a cluster.
Every rendered object and every example in examples/ is applied with
`kubectl apply --server-side --validate=strict` (fieldValidation=Strict). `ferry operator` (FERRY_BINARY) runs with
the installed Deployment's args as the chart's ServiceAccount, so the API server's RBAC decides
every request it makes; the audit log shows them.

No kubelet runs here: the Deployment is stored but no Pod starts; the operator runs as a process.
The test classes are CTest entries of their own (tests/chart/CMakeLists.txt); each class with a
cluster shares one control plane between its tests.
"""
import base64
import hashlib
import http.client
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
import time
import unittest
import unittest.mock
import urllib.error
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.dont_write_bytecode = True   # nothing written under the source tree
sys.path.insert(0, str(ROOT / "tests" / "support"))
from testproc import free_port, stop_pid  # noqa: E402
from kube_control_plane import ControlPlane, NAMESPACE as NS, peer  # noqa: E402
from stub_registry import StubRegistry  # noqa: E402

CHART = ROOT / "charts" / "ferry"
EXAMPLES = ROOT / "examples"
GEN_CRDS = ROOT / "scripts" / "gen-chart-crds.py"
CRD_DIR = ROOT / "crds"
THIRD_PARTY_CRDS = pathlib.Path(__file__).resolve().parent / "third-party-crds.yaml"
FERRY = os.environ.get("FERRY_BINARY", str(ROOT / "build" / "operator" / "ferry"))
FERRY_KINDS = ["registries", "replicationconfigs", "registrypolicies", "repositories", "imagereplications",
               "repositorycreationtemplates", "replicationbackfills"]
CERT_DIR = "/tmp/k8s-webhook-server/serving-certs"
SA_USER = f"system:serviceaccount:{NS}:ferry"

FULL_VALUES = {  # webhook (chart-made certificate), ServiceMonitor, two replicas
    "replicaCount": 2,
    "webhook": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
}
CERT_MANAGER_VALUES = {
    "replicaCount": 2,
    "webhook": {"enabled": True, "certManager": {"enabled": True}},
    "metrics": {"serviceMonitor": {"enabled": True}},
}
SCOPED_VALUES = {"rbac": {"secrets": {"namespaces": [NS, "team-b"]}}}
EXTRA_CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": '{{ include "ferry.fullname" . }}-extra', "namespace": "{{ .Release.Namespace }}"},
                   "data": {"lease": '{{ include "ferry.leaderElectionID" . }}'}}
EXTRA_TEXT = ('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ include "ferry.fullname" . }}-extra-text\n'
              '  namespace: {{ .Release.Namespace }}\ndata:\n  replicas: {{ .Values.replicaCount | quote }}\n')
HA_VALUES = {  # three replicas, PDB, NetworkPolicy with closed egress, PodMonitor, webhook, extraObjects, logs
    "replicaCount": 3,
    "global": {"logLevel": "debug", "logFormat": "json"},
    "podDisruptionBudget": {"minAvailable": 2},
    "webhook": {"enabled": True},
    "networkPolicy": {"enabled": True,
                      "ingress": {"metrics": {"from": [{"namespaceSelector": {"matchLabels": {
                          "kubernetes.io/metadata.name": "monitoring"}}}]}},
                      "egress": {"allowAll": False, "rules": [
                          {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                          {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}]}},
    "metrics": {"podMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "extraObjects": [EXTRA_CONFIGMAP, EXTRA_TEXT],
}
RECREATE_VALUES = {"strategy": {"type": "Recreate"}, "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"}}
MONITORING = ("--api-versions", "monitoring.coreos.com/v1")

# The operator's RBAC contract: what `ferry operator` requests, and so exactly what the chart lets
# its ServiceAccount do (change both together; docs/install.md#rbac has the table). Checked against
# what the real API server says the ServiceAccount may do (SelfSubjectRulesReview), beyond what
# every ServiceAccount may, in OperatorRbacTest.
CLUSTER_RULES = [
    ("ferry.dev", FERRY_KINDS, ["get", "list", "watch"]),
    ("ferry.dev", [k + "/status" for k in FERRY_KINDS], ["get", "update", "patch"]),
    ("ferry.dev", ["repositories", "imagereplications"], ["create", "update", "patch", "delete"]),
    ("events.k8s.io", ["events"], ["create", "patch"]),
]
SECRETS_RULE = ("", ["secrets"], ["get", "list", "watch"])
# In the leader-election namespace: the Lease by name (create cannot be limited by resourceNames:
# RBAC does not know the name of an object before it exists) and the engine's ferry-state-*
# ConfigMaps, by get/create/update only (never listed, watched or deleted).
LEADER_RULES = [("coordination.k8s.io", ["leases"], ["get", "create", "update"], ["ferry-leader"]),
                ("coordination.k8s.io", ["leases"], ["create"])]
STATE_RULES = [("", ["configmaps"], ["get", "create", "update"])]

_tmp = None
KUBE_VERSION = None


def setUpModule():
    global _tmp, KUBE_VERSION
    _tmp = tempfile.mkdtemp(prefix="ferry-chart-test-")
    # The Kubernetes version `helm template` and `helm lint` assume: the peers' release (kubectl and
    # kube-apiserver are built from one), not Helm's built-in default.
    out = subprocess.run([peer("kubectl"), "version", "--client", "-o", "json"], capture_output=True, text=True,
                         check=True).stdout
    KUBE_VERSION = json.loads(out)["clientVersion"]["gitVersion"]


def tearDownModule():
    if _tmp:
        shutil.rmtree(_tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------- helpers
class _KubeLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: timestamps stay strings."""


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_docs(text):
    return [d for d in yaml.load_all(text, Loader=_KubeLoader) if d is not None]


def helm(*args, kubeconfig=None, check=True):
    """Runs helm with its cache, config and data in the test's temporary directory. Without a
    kubeconfig it has no cluster (KUBECONFIG names a file that does not exist)."""
    home = os.path.join(_tmp, "helm-home")
    env = dict(os.environ, HELM_CACHE_HOME=os.path.join(home, "cache"), HELM_CONFIG_HOME=os.path.join(home, "config"),
               HELM_DATA_HOME=os.path.join(home, "data"),
               KUBECONFIG=kubeconfig or os.path.join(_tmp, "no-cluster.kubeconfig"))
    env.pop("HELM_NAMESPACE", None)
    env.pop("HELM_KUBECONTEXT", None)
    res = subprocess.run([peer("helm"), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def values_file(values):
    fd, path = tempfile.mkstemp(suffix=".yaml", dir=_tmp)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    return path


def values_args(values):
    return ["-f", values_file(values)] if values is not None else []


def template(values=None, *extra, name="ferry", namespace=NS, check=True):
    """`helm template` of the chart: -f VALUES, then extra args (--set ..., --api-versions ...)."""
    return helm("template", name, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION,
                *values_args(values), *extra, check=check)


def render(values=None, *extra, **kw):
    return load_docs(template(values, *extra, **kw).stdout)


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def deep_merge(base, over):
    out = json.loads(json.dumps(base))
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def container(deploy):
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def is_subset(want, got, path=""):
    """Paths where `want` (a rendered object) differs from `got` (what the API server stored,
    with its defaults added): every field the chart set must be stored as set."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [path]
        return [p for k, v in want.items() for p in is_subset(v, got.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(want) != len(got):
            return [path]
        return [p for i, (a, b) in enumerate(zip(want, got)) for p in is_subset(a, b, f"{path}[{i}]")]
    return [] if want == got else [f"{path}: {want!r} != {got!r}"]


def expand(rules):
    """RBAC rules as a set of (group, resource, verb, resourceName or '') tuples."""
    out = set()
    for rule in rules:
        if isinstance(rule, tuple):
            group, resources, verbs, *names = rule
            rule = {"apiGroups": [group], "resources": resources, "verbs": verbs,
                    "resourceNames": names[0] if names else []}
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                for v in rule.get("verbs", []):
                    for n in rule.get("resourceNames") or [""]:
                        out.add((g, r, v, n))
    return out


class ClusterTestCase(unittest.TestCase):
    """One real control plane per class; crds=False: Ferry's CRDs come from the chart."""
    crds = False

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix=f"ferry-chart-{cls.__name__}-", dir=_tmp)
        cls.cp = ControlPlane(cls.tmp, crds=cls.crds)
        cls.addClassCleanup(cls.cp.stop)
        cls.cp.start()

    def kubectl(self, *args, check=True, stdin=None, kubeconfig=None, timeout=90):
        res = self.cp.kubectl(*args, stdin=stdin, check=False, kubeconfig=kubeconfig, timeout=timeout)
        if check and res.returncode != 0:
            self.fail(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def helm(self, *args, check=True):
        return helm(*args, kubeconfig=self.cp.kubeconfig, check=check)

    def get(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def exists(self, *args):
        return self.kubectl("get", *args, "-o", "name", check=False).returncode == 0

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        pathlib.Path(path).write_text(text, encoding="utf-8")
        return path

    def apply_strict(self, path_or_text, check=True, kubeconfig=None):
        """kubectl apply --server-side with strict field validation (unknown or duplicate fields refused):
        kubectl's --validate=strict sends the API server fieldValidation=Strict."""
        if not os.path.exists(str(path_or_text)):
            path_or_text = self.write(f"apply-{time.monotonic_ns()}.yaml", path_or_text)
        return self.kubectl("apply", "--server-side", "--validate=strict", "-f", str(path_or_text),
                            check=check, kubeconfig=kubeconfig)

    def namespace(self, name):
        if not self.exists("namespace", name):
            self.kubectl("create", "namespace", name)

    def third_party_crds(self):
        self.apply_strict(THIRD_PARTY_CRDS)
        self.kubectl("wait", "--for=condition=Established", "-f", str(THIRD_PARTY_CRDS), "--timeout=60s")
        self.eventually(lambda: "servicemonitors.monitoring.coreos.com" in self.kubectl(
            "api-resources", "-o", "name", check=False).stdout, "the third-party kinds in discovery")

    def eventually(self, fn, what, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.2)
        self.fail(f"timed out waiting for {what} (last: {last!r})")

    def wait_for(self, condition, *refs, op=None, timeout=60):
        """kubectl wait --for=condition=...; on failure, the objects' conditions and the operator's log."""
        res = self.kubectl("wait", f"--for=condition={condition}", *refs, f"--timeout={timeout}s", check=False)
        if res.returncode != 0:
            conditions = self.kubectl("get", *refs, "-o", "jsonpath={range .items[*]}{.metadata.name}: "
                                      "{.status.conditions}{'\\n'}{end}", check=False).stdout
            self.fail(f"{res.stderr}\n{conditions}\n" + (op.text()[-4000:] if op else ""))

    def release_objects(self, release, namespace=NS):
        return load_docs(self.helm("get", "manifest", release, "-n", namespace).stdout)


# ------------------------------------------------------------------------------- without a cluster
class LintTest(unittest.TestCase):
    def lint(self, values=None, *extra, check=True):
        return helm("lint", "--strict", "--kube-version", KUBE_VERSION, "--namespace", NS, str(CHART),
                    *values_args(values), *extra, check=check)

    def test_strict_lint_passes_for_every_values_set(self):
        for label, values in (("default", None), ("full", FULL_VALUES), ("cert-manager", CERT_MANAGER_VALUES),
                              ("scoped secrets", SCOPED_VALUES), ("ha", HA_VALUES), ("recreate", RECREATE_VALUES)):
            with self.subTest(values=label):
                out = self.lint(values).stdout
                self.assertIn("1 chart(s) linted, 0 chart(s) failed", out)
                self.assertNotIn("[WARNING]", out)
                self.assertNotIn("[ERROR]", out)

    def test_lint_refuses_what_the_schema_refuses(self):
        res = self.lint(None, "--set", "replicaCount=0", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("at '/replicaCount'", res.stdout + res.stderr)

    def test_chart_refuses_an_old_kubernetes(self):
        res = template(None, "--kube-version", "v1.23.0", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("chart requires kubeVersion: >= 1.24.0-0 which is incompatible with Kubernetes v1.23.0",
                      res.stderr)
        template(None, "--kube-version", "v1.24.0")


class ValuesTest(unittest.TestCase):
    """Helm's own value typing (-f files, --set, --set-string) and values.schema.json checking."""

    SCHEMA_ERROR = "values don't meet the specifications of the schema(s) in the following chart(s):\nferry:\n"

    def refused(self, values, *extra):
        res = template(values, *extra, check=False)
        self.assertNotEqual(res.returncode, 0, f"accepted: {values} {extra}")
        self.assertIn(self.SCHEMA_ERROR, res.stderr)
        return res.stderr

    def test_set_values_are_typed_by_helm(self):
        deploy = one(render(None, "--set", "replicaCount=2"), "Deployment")
        self.assertEqual(deploy["spec"]["replicas"], 2)
        self.assertIn("--leader-elect", container(deploy)["args"])
        self.assertIn("- at '/replicaCount': got string, want integer",
                      self.refused(None, "--set-string", "replicaCount=2"))
        self.assertIn("- at '/replicaCount': got string, want integer", self.refused(None, "--set", "replicaCount=two"))
        self.assertIn("- at '/crds/keep': got string, want boolean", self.refused(None, "--set", "crds.keep=yes"))
        for doc in by_kind(render(None, "--set", "crds.keep=false"), "CustomResourceDefinition"):
            self.assertNotIn("annotations", doc["metadata"])
        # A tag that looks like a number stays the string it is (--set only types integers and booleans).
        self.assertEqual(container(one(render(None, "--set", "image.tag=1.10"), "Deployment"))["image"], "ferry:1.10")
        docs = render(None, "--set", f"rbac.secrets.namespaces={{{NS},team-b}}")
        self.assertIn(f"--secret-namespaces={NS},team-b", container(one(docs, "Deployment"))["args"])
        self.assertIn("'Team_B' does not match pattern", self.refused(None, "--set", "rbac.secrets.namespaces={Team_B}"))

    def test_bad_values_are_refused_by_helm(self):
        cases = {
            "replicaCount": ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
            "replicaCount/zero": ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
            "image/pullPolicy": ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
            "replicas (unknown key)": ({"replicas": 2}, "additional properties 'replicas' not allowed"),
            "webhook/port": ({"webhook": {"port": 70000}}, "at '/webhook/port': maximum: got 70,000, want 65,535"),
            "webhook/enable (misspelled)": ({"webhook": {"enable": True}}, "additional properties 'enable' not allowed"),
            "crds/keep": ({"crds": {"keep": "yes"}}, "at '/crds/keep': got string, want boolean"),
            "rbac/secrets/namespaces": ({"rbac": {"secrets": {"namespaces": ["Team_B"]}}},
                                        "at '/rbac/secrets/namespaces/0': 'Team_B' does not match pattern"),
            "image/digest": ({"image": {"digest": "latest"}}, "at '/image/digest': 'latest' does not match pattern"),
            "registryEvents/port": ({"registryEvents": {"port": 0}}, "at '/registryEvents/port': minimum: got 0"),
            "registryEvents/service/type": ({"registryEvents": {"service": {"type": "External"}}},
                                            "at '/registryEvents/service/type': value must be one of"),
            "registryEvents/service/enable (misspelled)": ({"registryEvents": {"service": {"enable": False}}},
                                                           "additional properties 'enable' not allowed"),
            "global/logLevel": ({"global": {"logLevel": "verbose"}}, "at '/global/logLevel': value must be one of"),
            "global/logFormat": ({"global": {"logFormat": "logfmt"}}, "at '/global/logFormat': value must be one of"),
            "strategy/type": ({"strategy": {"type": "BlueGreen"}}, "at '/strategy/type': value must be one of"),
            "strategy/rollingUpdate/maxSurge": ({"strategy": {"rollingUpdate": {"maxSurge": "one"}}},
                                                "at '/strategy/rollingUpdate/maxSurge': 'one' does not match pattern"),
            "terminationGracePeriodSeconds": ({"terminationGracePeriodSeconds": "45s"},
                                              "at '/terminationGracePeriodSeconds': got string, want integer"),
            "gracefulShutdownTimeoutSeconds": ({"gracefulShutdownTimeoutSeconds": 0},
                                               "at '/gracefulShutdownTimeoutSeconds': minimum: got 0, want 1"),
            "podDisruptionBudget/minAvailable": ({"podDisruptionBudget": {"minAvailable": "half"}},
                                                 "at '/podDisruptionBudget/minAvailable': 'half' does not match pattern"),
            "podDisruptionBudget/maxUnavailable": ({"podDisruptionBudget": {"maxUnavailable": -1}},
                                                   "at '/podDisruptionBudget/maxUnavailable': minimum: got -1, want 0"),
            "networkPolicy/enable (misspelled)": ({"networkPolicy": {"enable": True}},
                                                  "additional properties 'enable' not allowed"),
            "networkPolicy/egress/allowAll": ({"networkPolicy": {"egress": {"allowAll": "yes"}}},
                                              "at '/networkPolicy/egress/allowAll': got string, want boolean"),
            "metrics/podMonitor/interval": ({"metrics": {"podMonitor": {"interval": "1 minute"}}},
                                            "at '/metrics/podMonitor/interval': '1 minute' does not match pattern"),
            "extraObjects": ({"extraObjects": [["not", "a", "manifest"]]}, "at '/extraObjects/0': got array, want"),
        }
        for name, (values, message) in cases.items():
            with self.subTest(case=name):
                self.assertIn(message, self.refused(values))

    def test_every_default_is_described(self):
        schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
        defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

        def walk(values, schema, path):
            for key, value in values.items():
                self.assertIn(key, schema.get("properties", {}), f"{path}{key} is not in values.schema.json")
                sub = schema["properties"][key]
                self.assertTrue(sub.get("description"), f"{path}{key} has no description")
                if isinstance(value, dict) and "properties" in sub:
                    walk(value, sub, f"{path}{key}.")
        walk(defaults, schema, "")

    def test_existing_service_account_needs_a_name(self):
        res = template(None, "--set", "serviceAccount.create=false", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("serviceAccount.name is required when serviceAccount.create is false", res.stderr)
        docs = render({"serviceAccount": {"create": False, "name": "platform-ferry"}})
        self.assertEqual(by_kind(docs, "ServiceAccount"), [])
        self.assertEqual(one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"], "platform-ferry")
        self.assertEqual(one(docs, "ClusterRoleBinding")["subjects"][0]["name"], "platform-ferry")


class TemplateTest(unittest.TestCase):
    """What `helm template` renders, value by value."""

    @classmethod
    def setUpClass(cls):
        cls.default = render()
        cls.full = render(FULL_VALUES, *MONITORING)
        cls.cm = render(CERT_MANAGER_VALUES, *MONITORING)

    def test_default_objects(self):
        kinds = sorted((d["kind"], d["metadata"]["name"]) for d in self.default)
        self.assertEqual(kinds, sorted([
            ("ServiceAccount", "ferry"),
            ("ClusterRole", "ferry-operator"), ("ClusterRoleBinding", "ferry-operator"),
            ("ClusterRole", "ferry-view"), ("ClusterRole", "ferry-edit"),
            ("Role", "ferry-leaderelection"), ("RoleBinding", "ferry-leaderelection"),
            ("Role", "ferry-state"), ("RoleBinding", "ferry-state"),
            ("Service", "ferry-metrics"), ("Service", "ferry-registry-events"), ("Deployment", "ferry"),
        ] + [("CustomResourceDefinition", f"{k}.ferry.dev") for k in FERRY_KINDS]))
        for d in self.default:
            with self.subTest(kind=d["kind"], name=d["metadata"]["name"]):
                labels = d["metadata"]["labels"]
                self.assertEqual(labels["app.kubernetes.io/managed-by"], "Helm")
                self.assertEqual(labels["app.kubernetes.io/instance"], "ferry")
                self.assertEqual(labels["app.kubernetes.io/part-of"], "ferry")
                if d["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
                    self.assertEqual(d["metadata"]["namespace"], NS)

    def test_full_objects(self):
        kinds = {d["kind"] for d in self.full}
        self.assertTrue({"ValidatingWebhookConfiguration", "ServiceMonitor", "Secret"} <= kinds, kinds)
        self.assertEqual(len(by_kind(self.full, "Service")), 3)
        cm_kinds = {d["kind"] for d in self.cm}
        self.assertTrue({"Certificate", "Issuer", "ValidatingWebhookConfiguration"} <= cm_kinds, cm_kinds)
        self.assertNotIn("Secret", cm_kinds, "cert-manager writes the serving Secret")

    def test_helm_install_order_puts_crds_and_rbac_before_the_deployment(self):
        order = [d["kind"] for d in self.full]   # helm template prints in Helm's install order
        self.assertLess(max(i for i, k in enumerate(order) if k == "CustomResourceDefinition"), order.index("Deployment"))
        self.assertLess(order.index("ClusterRoleBinding"), order.index("Deployment"))
        self.assertLess(order.index("Secret"), order.index("Deployment"))
        self.assertLess(order.index("Deployment"), order.index("ValidatingWebhookConfiguration"))

    def test_names_follow_the_release(self):
        docs = render(None, name="prod")
        self.assertEqual(one(docs, "Deployment")["metadata"]["name"], "prod-ferry")
        self.assertEqual(one(docs, "ClusterRoleBinding")["subjects"][0]["name"], "prod-ferry")
        self.assertEqual(one(docs, "ClusterRole", "prod-ferry-operator")["metadata"]["labels"]["app.kubernetes.io/instance"],
                         "prod")
        docs = render(None, "--set", "fullnameOverride=repl", name="prod")
        self.assertEqual(one(docs, "Deployment")["metadata"]["name"], "repl")
        self.assertEqual(one(render(None, name="ferry-prod"), "Deployment")["metadata"]["name"], "ferry-prod",
                         "a release name holding the chart name is used as it is")

    def test_default_args(self):
        self.assertEqual(container(one(self.default, "Deployment"))["args"], [
            "operator", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
            "--registry-events-bind-address=:8082", "--leader-elect", f"--leader-election-namespace={NS}",
            "--leader-election-id=ferry-leader", "--graceful-shutdown-timeout=30s", "--webhook-port=0"])
        self.assertEqual(one(self.default, "Deployment")["spec"]["replicas"], 1)

    def test_one_engine_at_a_time(self):
        # One replica still elects a leader: a rolling update runs the old and the new pod together.
        deploy = one(self.default, "Deployment")
        self.assertIn("--leader-elect", container(deploy)["args"])
        self.assertEqual(deploy["spec"]["strategy"],
                         {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
        # The kubelet's SIGKILL comes after the operator's own shutdown deadline.
        self.assertEqual(deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 45)
        self.assertIn("--graceful-shutdown-timeout=30s", container(deploy)["args"])
        deploy = one(render({"gracefulShutdownTimeoutSeconds": 100, "terminationGracePeriodSeconds": 120}), "Deployment")
        self.assertEqual(deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 120)
        self.assertIn("--graceful-shutdown-timeout=100s", container(deploy)["args"])
        for values in ({"gracefulShutdownTimeoutSeconds": 60}, {"terminationGracePeriodSeconds": 30}):
            with self.subTest(values=values):
                res = template(values, check=False)
                self.assertNotEqual(res.returncode, 0)
                self.assertIn("terminationGracePeriodSeconds (", res.stderr)
                self.assertIn("must be larger than gracefulShutdownTimeoutSeconds", res.stderr)
        # Recreate: no rollingUpdate (the API server refuses one with Recreate), even though the
        # default values carry it.
        deploy = one(render(None, "--set", "strategy.type=Recreate"), "Deployment")
        self.assertEqual(deploy["spec"]["strategy"], {"type": "Recreate"})
        deploy = one(render({"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}}), "Deployment")
        self.assertEqual(deploy["spec"]["strategy"]["rollingUpdate"], {"maxSurge": "25%", "maxUnavailable": 1})

    def test_pod_disruption_budget(self):
        self.assertEqual(by_kind(self.default, "PodDisruptionBudget"), [], "not for a single replica by default")
        deploy = one(self.full, "Deployment")
        pdb = one(self.full, "PodDisruptionBudget", "ferry")
        self.assertEqual(pdb["apiVersion"], "policy/v1")
        self.assertEqual(pdb["metadata"]["namespace"], NS)
        self.assertEqual(pdb["spec"], {"maxUnavailable": 1, "selector": deploy["spec"]["selector"]})
        self.assertEqual(by_kind(render(None, "--set", "replicaCount=2", "--set", "podDisruptionBudget.enabled=false"),
                                 "PodDisruptionBudget"), [])
        self.assertEqual(one(render(None, "--set", "podDisruptionBudget.enabled=true"), "PodDisruptionBudget")["spec"]
                         ["maxUnavailable"], 1)
        spec = one(render({"replicaCount": 3, "podDisruptionBudget": {"minAvailable": "50%"}}), "PodDisruptionBudget")["spec"]
        self.assertEqual((spec.get("minAvailable"), spec.get("maxUnavailable")), ("50%", None))
        spec = one(render({"replicaCount": 3, "podDisruptionBudget": {"maxUnavailable": 2}}), "PodDisruptionBudget")["spec"]
        self.assertEqual((spec.get("minAvailable"), spec.get("maxUnavailable")), (None, 2))
        res = template({"replicaCount": 2, "podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}, check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("podDisruptionBudget: set minAvailable or maxUnavailable, not both", res.stderr)

    def test_extra_objects_are_rendered_with_tpl(self):
        docs = render({"replicaCount": 2, "extraObjects": [EXTRA_CONFIGMAP, EXTRA_TEXT]}, name="prod")
        cm = one(docs, "ConfigMap", "prod-ferry-extra")
        self.assertEqual((cm["metadata"]["namespace"], cm["data"]), (NS, {"lease": "ferry-leader"}))
        text = one(docs, "ConfigMap", "prod-ferry-extra-text")
        self.assertEqual((text["metadata"]["namespace"], text["data"]), (NS, {"replicas": "2"}))
        self.assertEqual(by_kind(self.default, "ConfigMap"), [])
        res = template({"extraObjects": ["kind: ConfigMap\nmetadata: {name: {{ .Values.noSuchValue.name }}}\n"]},
                       check=False)
        self.assertNotEqual(res.returncode, 0, "a broken template in extraObjects fails the render")
        self.assertIn("nil pointer evaluating interface {}.name", res.stderr)

    def test_network_policy(self):
        self.assertEqual(by_kind(self.default, "NetworkPolicy"), [], "off by default")
        self.assertEqual(by_kind(self.full, "NetworkPolicy"), [], "off by default")
        docs = render(deep_merge(FULL_VALUES, {"networkPolicy": {"enabled": True}}))
        deploy = one(docs, "Deployment")
        np = one(docs, "NetworkPolicy", "ferry")
        self.assertEqual(np["spec"]["podSelector"], deploy["spec"]["selector"])
        self.assertEqual(np["spec"]["policyTypes"], ["Ingress", "Egress"])
        self.assertEqual(np["spec"]["egress"], [{}], "egress open by default")
        allowed = {p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]}
        self.assertTrue(all("from" not in rule for rule in np["spec"]["ingress"]), "from anyone by default")
        # Every Service's target port, resolved by name in the pod, is open; nothing else is.
        ports = {p["name"]: p["containerPort"] for p in container(deploy)["ports"]}
        targets = {ports[p["targetPort"]] for svc in by_kind(docs, "Service") for p in svc["spec"]["ports"]}
        self.assertEqual(targets, {8080, 8082, 9443})
        self.assertEqual(allowed, targets)
        # Ports follow the values; the webhook port only with the webhook.
        docs = render({"networkPolicy": {"enabled": True}, "registryEvents": {"port": 9000}, "metrics": {"port": 9090}})
        np = one(docs, "NetworkPolicy")
        self.assertEqual(sorted(p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]), [9000, 9090])
        # Sources per port, extra rules, closed egress.
        np = one(render(HA_VALUES), "NetworkPolicy")
        metrics_rule = next(r for r in np["spec"]["ingress"] if r["ports"] == [{"port": 8080, "protocol": "TCP"}])
        self.assertEqual(metrics_rule["from"], HA_VALUES["networkPolicy"]["ingress"]["metrics"]["from"])
        self.assertEqual(np["spec"]["egress"], HA_VALUES["networkPolicy"]["egress"]["rules"])
        extra = {"from": [{"podSelector": {}}], "ports": [{"port": 8081, "protocol": "TCP"}]}
        np = one(render({"networkPolicy": {"enabled": True, "ingress": {"extraRules": [extra]}}}), "NetworkPolicy")
        self.assertEqual(np["spec"]["ingress"][-1], extra)

    def test_pod_monitor_only_where_its_api_is_served(self):
        self.assertEqual(by_kind(render(None, *MONITORING), "PodMonitor"), [], "off by default")
        self.assertEqual(by_kind(render(HA_VALUES), "PodMonitor"), [], "rendered without monitoring.coreos.com/v1")
        docs = render(HA_VALUES, *MONITORING)
        self.assertEqual(by_kind(docs, "ServiceMonitor"), [])
        pm = one(docs, "PodMonitor", "ferry")
        deploy = one(docs, "Deployment")
        pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
        for k, v in pm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(pod_labels.get(k), v, k)
        endpoint = pm["spec"]["podMetricsEndpoints"][0]
        self.assertIn({"name": endpoint["port"], "containerPort": 8080, "protocol": "TCP"}, container(deploy)["ports"])
        self.assertEqual((endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]), ("/metrics", "60s", "30s"))
        self.assertEqual(pm["spec"]["namespaceSelector"], {"matchNames": [NS]})
        self.assertEqual(pm["metadata"]["labels"]["release"], "prometheus")
        # The Service is not needed for a PodMonitor.
        docs = render({"metrics": {"service": {"enabled": False}, "podMonitor": {"enabled": True}}}, *MONITORING)
        self.assertEqual(len(by_kind(docs, "PodMonitor")), 1)
        for extra in ((), MONITORING):
            res = template({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}, *extra,
                           check=False)
            self.assertNotEqual(res.returncode, 0)
            self.assertIn("metrics.serviceMonitor.enabled and metrics.podMonitor.enabled: choose one", res.stderr)

    def test_log_level_and_format(self):
        args = container(one(self.default, "Deployment"))["args"]
        self.assertFalse([a for a in args if a.startswith(("--log-level", "--log-format"))], "the operator's defaults")
        args = container(one(render(None, "--set", "global.logLevel=debug", "--set", "global.logFormat=json"),
                             "Deployment"))["args"]
        self.assertIn("--log-level=debug", args)
        self.assertIn("--log-format=json", args)

    def test_sharding_passes_shards_replicas_and_the_pod_ip_and_names_the_shard_leases(self):
        docs = render(None, "--set", "sharding.shards=4", "--set", "replicaCount=3",
                      "--set", "extraEnv[0].name=X", "--set-string", "extraEnv[0].value=1")
        c = container(one(docs, "Deployment"))
        self.assertIn("--shards=4", c["args"])
        self.assertIn("--replicas=3", c["args"])
        self.assertIn("--leader-elect", c["args"])
        self.assertEqual(c["env"], [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                    {"name": "X", "value": "1"}])
        role = one(docs, "Role", "ferry-leaderelection")
        self.assertEqual(role["rules"][0]["resourceNames"], ["ferry-leader"] + [f"ferry-shard-{i}" for i in range(4)])
        default = container(one(self.default, "Deployment"))
        self.assertEqual([a for a in default["args"] if a.startswith(("--shards", "--replicas"))], [])
        self.assertNotIn("env", default)
        self.assertEqual(one(self.default, "Role", "ferry-leaderelection")["rules"][0]["resourceNames"], ["ferry-leader"])
        res = template(None, "--set", "sharding.shards=-1", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("/sharding/shards", res.stderr)

    def test_leader_election_namespace_moves_the_lease_and_state_roles(self):
        docs = render(None, "--set", "leaderElection.namespace=ferry-coord")
        for name in ("ferry-leaderelection", "ferry-state"):
            with self.subTest(role=name):
                self.assertEqual(one(docs, "Role", name)["metadata"]["namespace"], "ferry-coord")
                binding = one(docs, "RoleBinding", name)
                self.assertEqual(binding["metadata"]["namespace"], "ferry-coord")
                self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "ferry", "namespace": NS}])
        self.assertIn("--leader-election-namespace=ferry-coord", container(one(docs, "Deployment"))["args"])

    def test_secrets_only_in_listed_namespaces(self):
        docs = render(SCOPED_VALUES)
        self.assertIn(f"--secret-namespaces={NS},team-b", container(one(docs, "Deployment"))["args"])
        operator = one(docs, "ClusterRole", "ferry-operator")
        self.assertNotIn("secrets", [r for rule in operator["rules"] for r in rule["resources"]])
        roles = {r["metadata"]["namespace"] for r in by_kind(docs, "Role") if r["metadata"]["name"] == "ferry-secrets"}
        self.assertEqual(roles, {NS, "team-b"})
        bindings = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == "ferry-secrets"]
        self.assertEqual(sorted(b["metadata"]["namespace"] for b in bindings), sorted([NS, "team-b"]))

    def test_aggregated_roles_and_no_rbac(self):
        view = one(self.default, "ClusterRole", "ferry-view")
        self.assertEqual(view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"], "true")
        edit = one(self.default, "ClusterRole", "ferry-edit")
        self.assertEqual(edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"], "true")
        self.assertNotIn("imagereplications", edit["rules"][0]["resources"], "records are Ferry's own")
        self.assertEqual([r for r in by_kind(render(None, "--set", "rbac.aggregateClusterRoles=false"), "ClusterRole")
                          if r["metadata"]["name"] in ("ferry-view", "ferry-edit")], [])
        self.assertEqual([d for d in render(None, "--set", "rbac.create=false") if d["apiVersion"].startswith("rbac.")], [])

    def test_webhook_args_and_mount(self):
        deploy = one(self.full, "Deployment")
        c = container(deploy)
        self.assertIn("--webhook-port=9443", c["args"])
        self.assertIn(f"--webhook-cert-dir={CERT_DIR}", c["args"])
        self.assertIn("--leader-elect", c["args"])
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == CERT_DIR)
        self.assertTrue(mount["readOnly"])
        volume = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        self.assertEqual(volume["secret"]["secretName"], "ferry-webhook-tls")
        self.assertEqual(sorted(i["path"] for i in volume["secret"]["items"]), ["tls.crt", "tls.key"])
        self.assertIn({"name": "webhook", "containerPort": 9443, "protocol": "TCP"}, c["ports"])

    def test_security_context_probes_resources(self):
        deploy = one(self.default, "Deployment")
        pod = deploy["spec"]["template"]["spec"]
        c = container(deploy)
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertEqual(pod["securityContext"]["runAsUser"], 65532)
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertEqual(c["securityContext"], {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "capabilities": {"drop": ["ALL"]}})
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "healthz"})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "healthz"})
        self.assertIn({"name": "healthz", "containerPort": 8081, "protocol": "TCP"}, c["ports"])
        self.assertEqual(set(c["resources"]["requests"]), {"cpu", "memory"})
        self.assertEqual(c["image"], "ferry:0.1.0")
        self.assertEqual(pod["serviceAccountName"], "ferry")
        self.assertEqual(deploy["spec"]["selector"]["matchLabels"],
                         {k: v for k, v in deploy["spec"]["template"]["metadata"]["labels"].items()
                          if k in deploy["spec"]["selector"]["matchLabels"]})

    def test_image_digest_wins(self):
        c = container(one(render({"image": {"repository": "registry.example.com/ferry", "tag": "9.9",
                                             "digest": "sha256:" + "a" * 64}}), "Deployment"))
        self.assertEqual(c["image"], "registry.example.com/ferry@sha256:" + "a" * 64)

    def test_registry_events_service(self):
        deploy = one(self.default, "Deployment")
        c = container(deploy)
        self.assertIn({"name": "registry-events", "containerPort": 8082, "protocol": "TCP"}, c["ports"])
        svc = one(self.default, "Service", "ferry-registry-events")
        self.assertEqual(svc["metadata"]["labels"]["app.kubernetes.io/component"], "registry-events")
        self.assertNotIn("annotations", svc["metadata"])
        self.assertEqual(svc["spec"]["type"], "ClusterIP")
        self.assertEqual(svc["spec"]["selector"], deploy["spec"]["selector"]["matchLabels"])
        self.assertEqual(svc["spec"]["ports"], [{"name": "http-registry-events", "port": 8082,
                                                 "targetPort": "registry-events", "protocol": "TCP"}])
        docs = render({"registryEvents": {"port": 9000, "service": {
            "type": "LoadBalancer", "port": 80, "annotations": {"example.com/lb": "internal"}}}})
        c = container(one(docs, "Deployment"))
        self.assertIn("--registry-events-bind-address=:9000", c["args"])
        self.assertIn({"name": "registry-events", "containerPort": 9000, "protocol": "TCP"}, c["ports"])
        svc = one(docs, "Service", "ferry-registry-events")
        self.assertEqual((svc["spec"]["type"], svc["spec"]["ports"][0]["port"], svc["spec"]["ports"][0]["targetPort"]),
                         ("LoadBalancer", 80, "registry-events"))
        self.assertEqual(svc["metadata"]["annotations"], {"example.com/lb": "internal"})
        docs = render(None, "--set", "registryEvents.service.enabled=false")
        self.assertEqual([s["metadata"]["name"] for s in by_kind(docs, "Service")], ["ferry-metrics"])
        self.assertIn("--registry-events-bind-address=:8082", container(one(docs, "Deployment"))["args"],
                      "the endpoint still runs in the pod")

    def test_service_monitor_only_where_its_api_is_served(self):
        self.assertEqual(by_kind(render(None, *MONITORING), "ServiceMonitor"), [], "off by default")
        without_api = render(FULL_VALUES)
        self.assertEqual(by_kind(without_api, "ServiceMonitor"), [], "rendered without monitoring.coreos.com/v1")
        sm = one(self.full, "ServiceMonitor")
        svc = one(self.full, "Service", "ferry-metrics")
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(svc["metadata"]["labels"].get(k), v, k)
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], svc["spec"]["ports"][0]["name"])
        self.assertEqual(sm["spec"]["endpoints"][0]["path"], "/metrics")
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": [NS]})
        self.assertEqual(sm["metadata"]["labels"]["release"], "prometheus")
        self.assertEqual(svc["spec"]["ports"][0]["targetPort"], "http-metrics")
        for extra in ((), MONITORING):   # an impossible combination fails with or without the API
            res = template({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, *extra,
                           check=False)
            self.assertNotEqual(res.returncode, 0)
            self.assertIn("metrics.serviceMonitor.enabled needs metrics.service.enabled", res.stderr)

    def test_webhook_off_by_default(self):
        self.assertEqual([d for d in self.default if "Webhook" in d["kind"] or d["kind"] in ("Secret", "Certificate")],
                         [])

    def check_webhook(self, docs):
        vwc = one(docs, "ValidatingWebhookConfiguration")
        self.assertEqual(len(vwc["webhooks"]), 1)
        hook = vwc["webhooks"][0]
        self.assertEqual((hook["failurePolicy"], hook["sideEffects"], hook["admissionReviewVersions"]),
                         ("Fail", "None", ["v1"]))
        self.assertEqual(hook["clientConfig"]["service"],
                         {"name": "ferry-webhook", "namespace": NS, "path": "/validate", "port": 443})
        self.assertEqual(hook["rules"], [{"apiGroups": ["ferry.dev"], "apiVersions": ["v1alpha1"],
                                          "operations": ["CREATE", "UPDATE"],
                                          "resources": ["registries", "replicationconfigs", "registrypolicies",
                                                        "repositories", "repositorycreationtemplates",
                                                        "replicationbackfills"], "scope": "Cluster"}])
        svc = one(docs, "Service", "ferry-webhook")
        self.assertEqual(svc["spec"]["ports"], [{"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}])
        self.assertEqual(svc["spec"]["selector"], one(docs, "Deployment")["spec"]["selector"]["matchLabels"])
        return vwc, hook

    def test_chart_made_certificate(self):
        vwc, hook = self.check_webhook(self.full)
        self.assertNotIn("annotations", vwc["metadata"])
        secret = one(self.full, "Secret", "ferry-webhook-tls")
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        self.assertEqual(base64.b64decode(secret["data"]["ca.crt"]), base64.b64decode(hook["clientConfig"]["caBundle"]))
        check_certificate(self, secret["data"], f"ferry-webhook.{NS}.svc")
        # The pod template's checksum is of this very pair (webhook.yaml and deployment.yaml share it).
        self.assertEqual(one(self.full, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/webhook-tls"],
                         tls_checksum(secret["data"]))
        # Without a cluster, `lookup` finds nothing: every render makes a new pair and rolls the pods.
        again = render(FULL_VALUES)
        self.assertNotEqual(one(again, "Secret")["data"], secret["data"])
        annotations = [one(d, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/webhook-tls"]
                       for d in (self.full, again)]
        self.assertNotEqual(annotations[0], annotations[1])

    def test_cert_manager(self):
        vwc, hook = self.check_webhook(self.cm)
        cert = one(self.cm, "Certificate")
        self.assertEqual(vwc["metadata"]["annotations"],
                         {"cert-manager.io/inject-ca-from": f"{NS}/{cert['metadata']['name']}"})
        self.assertNotIn("caBundle", hook["clientConfig"])
        self.assertEqual(cert["metadata"]["namespace"], NS)
        self.assertEqual(cert["spec"]["secretName"], "ferry-webhook-tls")
        self.assertIn(f"ferry-webhook.{NS}.svc", cert["spec"]["dnsNames"])
        issuer = one(self.cm, "Issuer")
        self.assertEqual(issuer["spec"], {"selfSigned": {}})
        self.assertEqual(cert["spec"]["issuerRef"], {"name": issuer["metadata"]["name"], "kind": "Issuer",
                                                     "group": "cert-manager.io"})
        self.assertNotIn("checksum/webhook-tls",
                         one(self.cm, "Deployment")["spec"]["template"]["metadata"].get("annotations", {}))
        docs = render(deep_merge(CERT_MANAGER_VALUES, {"webhook": {"certManager": {
            "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}}))
        self.assertEqual(by_kind(docs, "Issuer"), [])
        self.assertEqual(one(docs, "Certificate")["spec"]["issuerRef"]["name"], "corp-ca")


def tls_checksum(data):
    """checksum/webhook-tls of a chart-made pair: sha256 of {"ca","crt","key"} as Helm's toJson writes it."""
    doc = json.dumps({"ca": data["ca.crt"], "crt": data["tls.crt"], "key": data["tls.key"]}, sort_keys=True,
                     separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


def check_certificate(test, data, dns):
    """data: the Secret's tls.crt, tls.key, ca.crt (base64). The certificate verifies against the
    CA, is valid for the webhook Service's names and belongs to the key."""
    d = tempfile.mkdtemp(dir=_tmp)
    for key in ("tls.crt", "tls.key", "ca.crt"):
        pathlib.Path(d, key).write_bytes(base64.b64decode(data[key]))
    verify = subprocess.run(["openssl", "verify", "-CAfile", f"{d}/ca.crt", f"{d}/tls.crt"], capture_output=True, text=True)
    test.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
    text = subprocess.run(["openssl", "x509", "-in", f"{d}/tls.crt", "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout
    svc = dns.split(".")[0]
    ns = dns.split(".")[1]
    for name in (svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"):
        test.assertIn(f"DNS:{name}", text)
    pub_cert = subprocess.run(["openssl", "x509", "-in", f"{d}/tls.crt", "-noout", "-pubkey"], capture_output=True,
                              text=True, check=True).stdout
    pub_key = subprocess.run(["openssl", "pkey", "-in", f"{d}/tls.key", "-pubout"], capture_output=True, text=True,
                             check=True).stdout
    test.assertEqual(pub_cert, pub_key, "tls.key belongs to tls.crt")


class CrdTemplateTest(unittest.TestCase):
    def test_templates_are_generated_from_crds(self):
        check = subprocess.run([sys.executable, str(GEN_CRDS), "--check"], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_rendered_crds_equal_crds_dir(self):
        source = {d["metadata"]["name"]: d for p in sorted(CRD_DIR.glob("*.yaml"))
                  for d in load_docs(p.read_text(encoding="utf-8"))}
        rendered = {d["metadata"]["name"]: d for d in by_kind(render(), "CustomResourceDefinition")}
        self.assertEqual(sorted(rendered), sorted(source))
        for name, doc in rendered.items():
            with self.subTest(crd=name):
                self.assertEqual(doc["metadata"]["annotations"], {"helm.sh/resource-policy": "keep"})
                stripped = json.loads(json.dumps(doc))
                stripped["metadata"].pop("labels")
                stripped["metadata"].pop("annotations")
                self.assertEqual(stripped, source[name])

    def test_crds_enabled(self):
        self.assertEqual(by_kind(render(None, "--set", "crds.enabled=false"), "CustomResourceDefinition"), [])


# --------------------------------------------------------------------------- against a real cluster
class ApplyTest(ClusterTestCase):
    """Rendered objects and examples/ applied server-side with strict field validation."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for ns in ("team-b", "argocd", "flux-system"):
            cls.cp.kubectl("create", "namespace", ns)

    def test_every_rendered_object_applies_strictly(self):
        self.third_party_crds()
        for label, values, extra in (("default", None, ()), ("full", FULL_VALUES, MONITORING),
                                     ("cert-manager", CERT_MANAGER_VALUES, MONITORING),
                                     ("scoped secrets", SCOPED_VALUES, ()), ("ha", HA_VALUES, MONITORING),
                                     ("recreate", RECREATE_VALUES, ())):
            with self.subTest(values=label):
                text = template(values, *extra).stdout
                docs = load_docs(text)
                path = self.write(f"rendered-{label}.yaml", text)
                out = self.apply_strict(path).stdout
                self.assertEqual(len([line for line in out.splitlines() if "serverside-applied" in line]), len(docs), out)
                stored = self.get("-f", path)["items"]
                self.assertEqual(len(stored), len(docs))
                versions = {}
                for doc, got in zip(docs, stored):
                    kind, name = doc["kind"], doc["metadata"]["name"]
                    self.assertEqual((got["kind"], got["metadata"]["name"]), (kind, name))
                    self.assertEqual(is_subset(doc, got), [], f"{kind}/{name}: stored differently than rendered")
                    versions[(kind, name)] = got["metadata"]["resourceVersion"]
                # Applying the same objects again writes nothing.
                self.apply_strict(path)
                again = {(g["kind"], g["metadata"]["name"]): g["metadata"]["resourceVersion"]
                         for g in self.get("-f", path)["items"]}
                self.assertEqual(again, versions, f"{label}: a second apply changed something")
                self.kubectl("delete", "validatingwebhookconfiguration", "--all")
        applies = [e for e in self.cp.audit(user_agent_prefix="kubectl") if e["verb"] == "patch"]
        self.assertTrue(applies)
        self.assertEqual([e["requestURI"] for e in applies if "fieldValidation=Strict" not in e["requestURI"]], [])

    def test_misspelled_fields_are_refused_by_the_server(self):
        deploy = one(render(), "Deployment")
        container(deploy)["imagePullPolcy"] = "Always"
        res = self.apply_strict(json.dumps(deploy), check=False)
        self.assertNotEqual(res.returncode, 0)
        # Server-side apply names the container by its merge key.
        self.assertIn('.spec.template.spec.containers[name="operator"].imagePullPolcy: field not declared in schema',
                      res.stderr)
        vwc = one(render(FULL_VALUES), "ValidatingWebhookConfiguration")
        vwc["webhooks"][0]["sideEffect"] = vwc["webhooks"][0].pop("sideEffects")
        res = self.apply_strict(json.dumps(vwc), check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('.webhooks[name="validate.ferry.dev"].sideEffect: field not declared in schema', res.stderr)
        vwc["webhooks"][0]["sideEffects"] = vwc["webhooks"][0].pop("sideEffect")
        vwc["webhooks"][0]["timeoutSeconds"] = "10"
        res = self.apply_strict(json.dumps(vwc), check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("timeoutSeconds", res.stderr)
        self.assertFalse(self.exists("validatingwebhookconfiguration", "ferry"))

    def test_every_example_applies_strictly(self):
        self.apply_strict(template().stdout)   # the chart's CRDs serve Ferry's kinds
        self.kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=ferry",
                     "--timeout=60s")
        self.third_party_crds()
        files = sorted(p for p in EXAMPLES.rglob("*.yaml"))
        self.assertGreaterEqual(len(files), 10, files)
        applied = set()
        for path in files:
            with self.subTest(example=str(path.relative_to(ROOT))):
                text = path.read_text(encoding="utf-8")
                self.assertTrue(text.startswith("# "), "starts with a comment saying what it is for")
                self.apply_strict(path)
                for doc in load_docs(text):
                    ns = doc["metadata"].get("namespace")
                    ref = [f"{doc['kind']}.{doc['apiVersion'].split('/')[0]}" if "/" in doc["apiVersion"]
                           else doc["kind"], doc["metadata"]["name"]] + (["-n", ns] if ns else [])
                    self.assertTrue(self.exists(*ref), ref)
                    applied.add((doc["apiVersion"].split("/")[0], doc["kind"]))
        self.assertTrue({("ferry.dev", "Registry"), ("ferry.dev", "ReplicationConfig"), ("ferry.dev", "RegistryPolicy"),
                         ("argoproj.io", "Application"), ("kustomize.toolkit.fluxcd.io", "Kustomization"),
                         ("source.toolkit.fluxcd.io", "GitRepository"), ("v1", "Secret")} <= applied, applied)
        self.assertIn("registry.ferry.dev/acct-a-us-east-1", self.kubectl("get", "ferry", "-o", "name").stdout)
        bad = self.apply_strict("apiVersion: ferry.dev/v1alpha1\nkind: Registry\nmetadata: {name: bad}\n"
                                "spec: {registryId: '123456789012', region: us-east-1, endpiont: https://x}\n", check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn(".spec.endpiont: field not declared in schema", bad.stderr)

    def test_registry_config_sample_wires_notifications_to_ferry(self):
        files = sorted((EXAMPLES / "registry").glob("*"))
        self.assertTrue(files)
        for path in files:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
            endpoint = config["notifications"]["endpoints"][0]
            self.assertRegex(endpoint["url"], r"/registry-events/[a-z0-9-]+$")
            self.assertTrue(endpoint["headers"]["Authorization"][0].startswith("Bearer "))
            self.assertIn("application/octet-stream", endpoint["ignore"]["mediatypes"])
            self.assertIn("pull", endpoint["ignore"]["actions"], "Ferry's own reads would queue before pushes")
            self.assertEqual(config["version"], 0.1)


class ReleaseTest(ClusterTestCase):
    """helm install, upgrade and uninstall against the real API server."""

    def test_install_upgrade_uninstall_and_crds_kept(self):
        out = self.helm("install", "ferry", str(CHART), "-n", NS).stdout
        self.assertIn("STATUS: deployed", out)
        self.assertIn(f"kubectl -n {NS} rollout status deployment/ferry", out)
        # The objects Helm reports are in the cluster, stored as rendered.
        for doc in self.release_objects("ferry"):
            ns = ["-n", doc["metadata"]["namespace"]] if "namespace" in doc["metadata"] else []
            got = self.get(f"{doc['kind']}.{doc['apiVersion'].split('/')[0]}" if "/" in doc["apiVersion"] else doc["kind"],
                           doc["metadata"]["name"], *ns)
            self.assertEqual(is_subset(doc, got), [], f"{doc['kind']}/{doc['metadata']['name']}")
        # What NOTES tells the user to run works: the CRDs are found by that label, and are served.
        crds = self.kubectl("get", "crd", "-l", "app.kubernetes.io/part-of=ferry", "-o", "name").stdout.split()
        self.assertEqual(sorted(crds), sorted(f"customresourcedefinition.apiextensions.k8s.io/{k}.ferry.dev"
                                              for k in FERRY_KINDS))
        self.kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=ferry",
                     "--timeout=60s")
        self.eventually(lambda: "registries.ferry.dev" in self.kubectl("api-resources", "-o", "name").stdout,
                        "Ferry's kinds in discovery")
        for example in ("secrets.yaml", "registries.yaml", "cross-region.yaml"):
            self.apply_strict(EXAMPLES / example)
        # One replica: leader election all the same, and no PodDisruptionBudget.
        first = self.get("deployment", "ferry", "-n", NS)
        self.assertIn("--leader-elect", container(first)["args"])
        self.assertEqual(first["spec"]["strategy"]["rollingUpdate"], {"maxSurge": 1, "maxUnavailable": 0})
        self.assertFalse(self.exists("poddisruptionbudget", "ferry", "-n", NS))

        # A second release cannot take over the first one's CRDs: that is what crds.enabled=false is for.
        res = self.helm("install", "second", str(CHART), "-n", NS, check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('exists and cannot be imported into the current release: invalid ownership metadata', res.stderr)
        self.assertIn('key "meta.helm.sh/release-name" must equal "second": current value is "ferry"', res.stderr)
        self.helm("install", "second", str(CHART), "-n", NS, "--set", "crds.enabled=false")
        self.helm("uninstall", "second", "-n", NS)
        self.assertFalse(self.exists("deployment", "second-ferry", "-n", NS))
        self.assertEqual(len(self.kubectl("get", "crd", "-l", "app.kubernetes.io/part-of=ferry", "-o", "name")
                             .stdout.split()), len(FERRY_KINDS), "uninstalling the second release left the first one's CRDs alone")

        # Upgrade with a values change: the stored Deployment follows; the Role is updated in place.
        before = self.get("deployment", "ferry", "-n", NS)
        out = self.helm("upgrade", "ferry", str(CHART), "-n", NS, "--reuse-values", "--set", "replicaCount=2",
                        "--set", "leaderElection.namespace=ferry-coord", check=False)
        self.assertNotEqual(out.returncode, 0, "the Roles' namespace does not exist yet")
        self.assertIn('namespaces "ferry-coord" not found', out.stderr)
        self.namespace("ferry-coord")
        out = self.helm("upgrade", "ferry", str(CHART), "-n", NS, "--reuse-values", "--set", "replicaCount=2",
                        "--set", "leaderElection.namespace=ferry-coord").stdout
        self.assertIn("REVISION: 3", out, "a failed upgrade is a revision too")
        self.assertIn("2 replicas with leader election (Lease ferry-coord/ferry-leader)", out)
        after = self.get("deployment", "ferry", "-n", NS)
        self.assertEqual(after["spec"]["replicas"], 2)
        self.assertIn("--leader-elect", container(after)["args"])
        self.assertIn("--leader-election-namespace=ferry-coord", container(after)["args"])
        self.assertGreater(after["metadata"]["generation"], before["metadata"]["generation"])
        self.assertTrue(self.exists("role", "ferry-leaderelection", "-n", "ferry-coord"))
        pdb = self.get("poddisruptionbudget", "ferry", "-n", NS)   # two replicas: a budget of one pod at a time
        self.assertEqual((pdb["spec"]["maxUnavailable"], pdb["spec"]["selector"]), (1, after["spec"]["selector"]))
        self.assertFalse(self.exists("role", "ferry-leaderelection", "-n", NS), "Helm deletes what left the chart")
        history = json.loads(self.helm("history", "ferry", "-n", NS, "-o", "json").stdout)
        self.assertEqual([h["status"] for h in history], ["superseded", "failed", "deployed"])
        # The same values again: nothing in the pod template changes, so no rollout.
        self.helm("upgrade", "ferry", str(CHART), "-n", NS, "--reuse-values")
        self.assertEqual(self.get("deployment", "ferry", "-n", NS)["metadata"]["generation"],
                         after["metadata"]["generation"])

        # Uninstall: everything but the kept CRDs goes; with them stay the Ferry objects.
        out = self.helm("uninstall", "ferry", "-n", NS).stdout
        self.assertIn("These resources were kept due to the resource policy:", out)
        for k in FERRY_KINDS:
            self.assertIn(f"[CustomResourceDefinition] {k}.ferry.dev", out)
        for ref in (("deployment", "ferry", "-n", NS), ("serviceaccount", "ferry", "-n", NS),
                    ("clusterrole", "ferry-operator"), ("clusterrolebinding", "ferry-operator"),
                    ("role", "ferry-state", "-n", "ferry-coord"), ("service", "ferry-metrics", "-n", NS),
                    ("poddisruptionbudget", "ferry", "-n", NS)):
            self.assertFalse(self.exists(*ref), ref)
        self.assertTrue(self.exists("registry", "acct-a-us-east-1"))
        self.assertTrue(self.kubectl("get", "replicationconfigs", "-o", "name").stdout.split())
        self.assertEqual(self.helm("list", "-n", NS, "-q").stdout.split(), [])

        # Installed again (the kept CRDs are taken over: same release name and namespace) with
        # crds.keep=false, then uninstalled: now the CRDs go, and every Ferry object with them.
        self.helm("install", "ferry", str(CHART), "-n", NS, "--set", "crds.keep=false")
        annotations = self.get("crd", "registries.ferry.dev")["metadata"]["annotations"]
        # Helm does not remove an annotation it did not write in this release: the live CRD still
        # says keep, but Helm decides from the release's manifest.
        self.assertEqual(annotations.get("helm.sh/resource-policy"), "keep")
        # Read every kind once, as a running operator's informers do: kube-apiserver creates a
        # custom resource's storage at its first request, and the deletion of a CRD whose storage
        # was never used waits minutes ("could not list instances: storage is (re)initializing").
        for k in FERRY_KINDS:
            self.kubectl("get", k)
        out = self.helm("uninstall", "ferry", "-n", NS).stdout
        self.assertNotIn("kept due to the resource policy", out)
        self.kubectl("wait", "--for=delete", "crd", *[f"{k}.ferry.dev" for k in FERRY_KINDS], "--timeout=60s")
        self.assertNotIn("ferry.dev", self.kubectl("api-resources", "-o", "name").stdout)

    def test_service_monitor_follows_the_cluster_api(self):
        release = ["monitored", str(CHART), "-n", NS, "--set", "crds.enabled=false",
                   "--set", "metrics.serviceMonitor.enabled=true"]
        out = self.helm("install", *release).stdout
        self.addCleanup(self.helm, "uninstall", "monitored", "-n", NS, check=False)
        self.assertIn("this cluster does not serve monitoring.coreos.com/v1:\nno ServiceMonitor was created", out)
        self.assertNotIn("ServiceMonitor", [d["kind"] for d in self.release_objects("monitored")])
        # prometheus-operator's CRD arrives; the next upgrade renders and installs the ServiceMonitor.
        self.third_party_crds()
        self.addCleanup(self.kubectl, "delete", "-f", str(THIRD_PARTY_CRDS), "--wait=false", check=False)
        out = self.helm("upgrade", *release).stdout
        self.assertNotIn("no ServiceMonitor was created", out)
        sm = self.get("servicemonitor", "monitored-ferry", "-n", NS)
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], "http-metrics")
        self.assertEqual(sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], "monitored")
        # Switched to a PodMonitor: the ServiceMonitor goes, the PodMonitor scrapes the pods' port.
        self.helm("upgrade", *release, "--set", "metrics.serviceMonitor.enabled=false",
                  "--set", "metrics.podMonitor.enabled=true")
        self.assertFalse(self.exists("servicemonitor", "monitored-ferry", "-n", NS))
        pm = self.get("podmonitor", "monitored-ferry", "-n", NS)
        self.assertEqual(pm["spec"]["podMetricsEndpoints"][0]["port"], "http-metrics")
        self.assertEqual(pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"], "monitored")
        self.helm("uninstall", "monitored", "-n", NS)
        self.assertFalse(self.exists("servicemonitor", "monitored-ferry", "-n", NS))
        self.assertFalse(self.exists("podmonitor", "monitored-ferry", "-n", NS))

    def test_notes(self):
        def notes(*extra):
            out = self.helm("install", "notes", str(CHART), "-n", NS, "--dry-run=client", "--set", "crds.enabled=false",
                            *extra).stdout
            return out.split("NOTES:\n", 1)[1]
        out = notes("--set", "replicaCount=2", "--set", "webhook.enabled=true")
        self.assertIn(f"kubectl -n {NS} rollout status deployment/notes-ferry", out)
        self.assertIn("crds.enabled is false: install the CRDs yourself", out)
        self.assertIn("2 replicas with leader election", out)
        self.assertIn(f"1 replica with leader election (Lease {NS}/ferry-leader)", notes())
        self.assertIn("no PodMonitor was created", notes("--set", "metrics.podMonitor.enabled=true"))
        self.assertIn("The validating webhook is on (failurePolicy: Fail)", out)
        self.assertIn(f"http://notes-ferry-registry-events.{NS}.svc:8082/registry-events/<Registry name>", out)
        self.assertIn(f"http://notes-ferry-metrics.{NS}.svc:8080/metrics", out)
        self.assertNotIn("<no value>", out)
        off = notes("--set", "registryEvents.service.enabled=false")
        self.assertNotIn("notes-ferry-registry-events", off)
        self.assertIn("expose port 8082", off)
        self.assertIn("get service notes-ferry-registry-events", notes("--set", "registryEvents.service.type=NodePort"))
        self.assertNotIn("notes", self.helm("list", "-n", NS, "-q").stdout.split(), "a dry run installs nothing")


# ------------------------------------------------------------------------ the operator, for real
class OperatorProcess:
    """`ferry operator` with a Deployment's container args (ports moved to free loopback ones, the
    certificate directory to a temporary one) and a kubeconfig."""

    def __init__(self, test, deploy, kubeconfig, cert_dir=None):
        self.health, self.metrics, self.webhook, self.events = (free_port() for _ in range(4))
        replace = {"--metrics-bind-address=:8080": f"--metrics-bind-address=127.0.0.1:{self.metrics}",
                   "--health-probe-bind-address=:8081": f"--health-probe-bind-address=127.0.0.1:{self.health}",
                   "--webhook-port=9443": f"--webhook-port={self.webhook}",
                   "--registry-events-bind-address=:8082": f"--registry-events-bind-address=127.0.0.1:{self.events}",
                   f"--webhook-cert-dir={CERT_DIR}": f"--webhook-cert-dir={cert_dir}"}
        args = container(deploy)["args"]
        test.assertEqual(args[0], "operator", "args follow ENTRYPOINT [/usr/local/bin/ferry]")
        self.args = [replace.get(a, a) for a in args]
        test.assertFalse([a for a in self.args if a.endswith((":8080", ":8081", ":8082", CERT_DIR))], self.args)
        if cert_dir:
            self.args.append("--webhook-host=127.0.0.1")
        self.log_path = os.path.join(test.tmp, f"operator-{self.health}.log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen([FERRY, *self.args, "--kubeconfig", kubeconfig], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        test.addCleanup(stop_pid, self.proc, 20)
        deadline = time.monotonic() + 30
        while True:
            test.assertIsNone(self.proc.poll(), self.text())
            if self.status(self.health, "/readyz")[0] == 200:
                break
            if time.monotonic() > deadline:
                test.fail("the operator did not become ready:\n" + self.text())
            time.sleep(0.2)

    def text(self):
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def status(self, port, path, data=None, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def stop(self, test):
        os.kill(self.proc.pid, signal.SIGTERM)
        test.assertEqual(self.proc.wait(timeout=40), 0, self.text()[-3000:])


class OperatorRbacTest(ClusterTestCase):
    """The operator as the chart's ServiceAccount, with only the chart's RBAC: every request it makes
    is allowed, and it may do no more than the RBAC contract above."""

    def audit_events(self, since=0):
        events = self.cp.audit(username=SA_USER)
        return [e for e in events[since:] if e.get("userAgent", "").startswith("ferry-operator/")]

    def rules_review(self, kubeconfig, namespace):
        """What the API server says the kubeconfig's user may do in a namespace (cluster-wide rules included)."""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                  "spec": {"namespace": namespace}}
        # --validate=false: kubectl's client-side check would list CRDs, which a ServiceAccount may not.
        out = self.kubectl("create", "--validate=false", "-f", "-", "-o", "json", stdin=json.dumps(review),
                           kubeconfig=kubeconfig).stdout
        status = json.loads(out)["status"]
        self.assertFalse(status.get("incomplete"), status)
        return expand(status["resourceRules"])

    def granted(self, kubeconfig, namespace):
        """The rules the chart adds for the operator: its review minus what any ServiceAccount may do."""
        baseline = self.rules_review(self.nobody, namespace)
        return self.rules_review(kubeconfig, namespace) - baseline

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nobody = cls.cp.service_account_kubeconfig("nobody", NS)

    def test_operator_runs_as_the_chart_service_account(self):
        self.assertTrue(os.access(FERRY, os.X_OK), f"no ferry binary at {FERRY}; set FERRY_BINARY")
        stub = StubRegistry(("ferry-example", "not-a-real-password"))   # examples/secrets.yaml's team B
        self.addCleanup(stub.stop)
        self.helm("install", "ferry", str(CHART), "-n", NS)
        sa = self.cp.service_account_kubeconfig("ferry", NS)

        # ---- cluster-wide Secrets (the default): exactly the contract, nothing more.
        contract = expand(CLUSTER_RULES + [SECRETS_RULE])
        self.assertEqual(self.granted(sa, "default"), contract)
        self.assertEqual(self.granted(sa, NS), contract | expand(LEADER_RULES + STATE_RULES))
        self.assertEqual(self.kubectl("auth", "can-i", "delete", "registries", f"--as={SA_USER}", check=False)
                         .stdout.strip(), "no")

        self.apply_strict(EXAMPLES / "secrets.yaml")
        self.apply_strict(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            self.registry("src", "us-east-1", stub, NS),
            self.registry("dst", "us-west-2", stub, NS),
            {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig", "metadata": {"name": "cfg"},
             "spec": {"registryId": "111111111111", "region": "us-east-1",
                      "rules": [{"destinations": [{"region": "us-west-2", "registryId": "111111111111"}]}]}}]}))
        op = OperatorProcess(self, self.get("deployment", "ferry", "-n", NS), sa)
        # Ready needs the Secret (the stub refuses without its credentials), status writes, events.
        self.wait_for("Ready", "registry/src", "registry/dst", "replicationconfig/cfg", op=op)
        wanted = {("update", "replicationconfigs", "status"), ("create", "events", ""), ("watch", "secrets", ""),
                  ("list", "secrets", ""), ("create", "configmaps", ""), ("update", "configmaps", "")}
        self.eventually(lambda: self.working(wanted), "the operator's requests", timeout=60)
        status, body = op.status(op.events, "/registry-events/no-such-registry", json.dumps({"events": []}).encode(),
                                 {"Content-Type": "application/vnd.docker.distribution.events.v1+json"})
        self.assertEqual(status, 404, body)
        self.assertIn("no-such-registry", body)
        self.assertIn("ferry_leader", op.status(op.metrics, "/metrics")[1])
        op.stop(self)
        events = self.audit_events()
        self.assertTrue(events)
        self.assertEqual(self.denied(events), [], "requests the chart's RBAC refused")
        self.assertEqual({e["objectRef"].get("namespace") for e in events
                          if e.get("objectRef", {}).get("resource") == "secrets"}, {None},
                         "Secrets are watched cluster-wide")
        seen = len(self.cp.audit(username=SA_USER))

        # ---- rbac.secrets.namespaces, two replicas: upgraded in place. The namespaces must exist.
        upgrade = ["upgrade", "ferry", str(CHART), "-n", NS, "--reuse-values", "--set", "replicaCount=2",
                   "--set", f"rbac.secrets.namespaces={{{NS},team-b}}"]
        res = self.helm(*upgrade, check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('namespaces "team-b" not found', res.stderr)
        for ns in ("team-b", "team-c"):
            self.namespace(ns)
        self.helm(*upgrade)
        contract = expand(CLUSTER_RULES)
        self.assertEqual(self.granted(sa, "team-c"), contract, "no Secrets outside the listed namespaces")
        self.assertEqual(self.granted(sa, "team-b"), contract | expand([SECRETS_RULE]))
        self.assertEqual(self.granted(sa, NS), contract | expand([SECRETS_RULE] + LEADER_RULES + STATE_RULES))
        self.assertEqual(self.kubectl("auth", "can-i", "list", "secrets", "--all-namespaces", f"--as={SA_USER}",
                                      check=False).stdout.strip(), "no")
        self.assertEqual(self.kubectl("auth", "can-i", "get", "secrets", "-n", "team-b", f"--as={SA_USER}").stdout.strip(),
                         "yes")
        # Credentials in team-b are read; credentials in team-c are refused by the API server to the
        # ServiceAccount, and the operator does not even ask: it says why in the Registry's status.
        for ns in ("team-b", "team-c"):
            self.kubectl("create", "secret", "generic", "creds", "-n", ns, "--from-literal=username=ferry-example",
                         "--from-literal=password=not-a-real-password")
        direct = self.kubectl("get", "secret", "creds", "-n", "team-c", kubeconfig=sa, check=False)
        self.assertNotEqual(direct.returncode, 0)
        self.assertIn(f'secrets "creds" is forbidden: User "{SA_USER}" cannot get resource "secrets" in API group "" '
                      f'in the namespace "team-c"', direct.stderr)
        self.apply_strict(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            self.registry("team-b", "eu-west-1", stub, "team-b", account="222222222222", secret="creds"),
            self.registry("team-c", "eu-west-2", stub, "team-c", account="333333333333", secret="creds")]}))
        deploy = self.get("deployment", "ferry", "-n", NS)
        self.assertIn(f"--secret-namespaces={NS},team-b", container(deploy)["args"])
        op = OperatorProcess(self, deploy, sa)
        self.wait_for("Ready", "registry/team-b", "registry/src", op=op)
        self.wait_for("Ready=False", "registry/team-c", op=op)
        message = self.kubectl("get", "registry", "team-c", "-o",
                               "jsonpath={.status.conditions[?(@.type=='Ready')].message}").stdout
        self.assertIn("is outside the namespaces whose Secrets Ferry reads", message)
        # --leader-elect (always passed): the Lease the Role names is the one taken.
        holder = self.eventually(lambda: self.kubectl("get", "lease", "ferry-leader", "-n", NS, "-o",
                                                      "jsonpath={.spec.holderIdentity}", check=False).stdout.strip(),
                                 "the Lease", timeout=40)
        self.assertTrue(holder)
        self.assertEqual(self.kubectl("get", "lease", "-n", NS, "-o", "name").stdout.split(),
                         ["lease.coordination.k8s.io/ferry-leader"])
        self.eventually(lambda: self.working({("update", "leases", "")}, seen), "a Lease renewal")
        op.stop(self)
        events = self.audit_events(seen)
        self.assertEqual(self.denied(events), [], "requests the chart's RBAC refused")
        secret_namespaces = {e["objectRef"].get("namespace") for e in events
                             if e.get("objectRef", {}).get("resource") == "secrets"}
        self.assertEqual(secret_namespaces, {NS, "team-b"})

    def test_sharded_operator_holds_its_shard_leases_with_only_the_chart_rbac(self):
        self.helm("upgrade", "--install", "ferry", str(CHART), "-n", NS, "--set", "sharding.shards=2",
                  "--set", "replicaCount=2")
        sa = self.cp.service_account_kubeconfig("ferry", NS)
        self.assertEqual({g for g in self.granted(sa, NS) if g[1] == "leases" and g[2] == "update"},
                         expand([("coordination.k8s.io", ["leases"], ["update"], ["ferry-leader", "ferry-shard-0",
                                                                                   "ferry-shard-1"])]))
        seen = len(self.cp.audit(username=SA_USER))
        deploy = self.get("deployment", "ferry", "-n", NS)
        self.assertIn("--shards=2", container(deploy)["args"])
        with unittest.mock.patch.dict(os.environ, {"POD_IP": "127.0.0.1"}):  # the chart's downward API
            op = OperatorProcess(self, deploy, sa)

        def holders():
            out = {}
            for i in range(2):
                lease = self.kubectl("get", "lease", f"ferry-shard-{i}", "-n", NS, "-o", "json", check=False)
                if lease.returncode == 0:
                    item = json.loads(lease.stdout)
                    out[i] = (item["spec"].get("holderIdentity", ""),
                              item["metadata"].get("annotations", {}).get("ferry.dev/notifications-url"))
            return out if len(out) == 2 and all(h for h, _ in out.values()) else None
        held = self.eventually(holders, "both shard Leases held", timeout=40)
        self.assertEqual(len({h for h, _ in held.values()}), 1, held)
        self.assertEqual({url for _, url in held.values()}, {f"http://127.0.0.1:{op.events}"})
        op.stop(self)
        self.assertEqual(self.denied(self.audit_events(seen)), [], "requests the chart's RBAC refused")
        released = [self.kubectl("get", "lease", f"ferry-shard-{i}", "-n", NS, "-o",
                                 "jsonpath={.spec.holderIdentity}").stdout for i in range(2)]
        self.assertEqual(released, ["", ""], "a replica that stops gives its shards up")

    def working(self, wanted, since=0):
        """Whether the operator made the wanted (verb, resource, subresource) requests; fails at once
        on a request RBAC refused."""
        events = self.audit_events(since)
        self.assertEqual(self.denied(events), [], "requests the chart's RBAC refused")
        return wanted <= self.verbs(events)

    @staticmethod
    def registry(name, region, stub, secret_ns, account="111111111111", secret="team-b-registry-auth"):
        return {"apiVersion": "ferry.dev/v1alpha1", "kind": "Registry", "metadata": {"name": name},
                "spec": {"registryId": account, "region": region, "endpoint": stub.url,
                         "credentialsSecretRef": {"namespace": secret_ns, "name": secret}}}

    @staticmethod
    def verbs(events):
        return {(e["verb"], e.get("objectRef", {}).get("resource", ""), e.get("objectRef", {}).get("subresource", ""))
                for e in events}

    @staticmethod
    def denied(events):
        return sorted({f"{e['verb']} {e.get('requestURI')}" for e in events
                       if e.get("responseStatus", {}).get("code") == 403})


class WebhookReleaseTest(ClusterTestCase):
    """The chart-made webhook certificate across install and upgrades (`lookup` against the real
    API server), the API server's failurePolicy, and the operator serving the certificate."""

    def webhook_state(self):
        secret = self.get("secret", "ferry-webhook-tls", "-n", NS)
        vwc = self.get("validatingwebhookconfiguration", "ferry")
        deploy = self.get("deployment", "ferry", "-n", NS)
        return secret["data"], vwc["webhooks"][0]["clientConfig"].get("caBundle"), \
            deploy["spec"]["template"]["metadata"]["annotations"]["checksum/webhook-tls"], deploy

    def test_webhook_lifecycle(self):
        self.helm("install", "ferry", str(CHART), "-n", NS, "--set", "webhook.enabled=true")
        data, ca_bundle, checksum, deploy = self.webhook_state()
        self.assertEqual(ca_bundle, data["ca.crt"])
        self.assertEqual(checksum, tls_checksum(data))
        check_certificate(self, data, f"ferry-webhook.{NS}.svc")
        # No operator pod can run here, so the API server cannot reach the webhook, and with
        # failurePolicy Fail it refuses Ferry's kinds, as the NOTES warn.
        self.kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=ferry",
                     "--timeout=60s")
        registry = json.dumps({"apiVersion": "ferry.dev/v1alpha1", "kind": "Registry", "metadata": {"name": "r"},
                               "spec": {"registryId": "111111111111", "region": "us-east-1",
                                        "endpoint": "http://127.0.0.1:1"}})
        res = self.eventually(lambda: (lambda r: r if "registries.ferry.dev" not in r.stderr or "webhook" in r.stderr
                                       else None)(self.apply_strict(registry, check=False)), "Ferry's kinds served")
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('failed calling webhook "validate.ferry.dev"', res.stderr)

        # The operator, with the installed Deployment's args and the installed Secret's pair, serves
        # a certificate that verifies under the installed caBundle for the Service's name.
        certs = os.path.join(self.tmp, "certs")
        os.makedirs(certs)
        for key in ("tls.crt", "tls.key"):
            pathlib.Path(certs, key).write_bytes(base64.b64decode(data[key]))
        op = OperatorProcess(self, deploy, self.cp.service_account_kubeconfig("ferry", NS), cert_dir=certs)
        answer = self.admission_review(op.webhook, ca_bundle, f"ferry-webhook.{NS}.svc")
        self.assertEqual(answer["response"]["uid"], "c0ffee")
        self.assertFalse(answer["response"]["allowed"])
        op.stop(self)

        # Upgrade with a values change: `lookup` finds the Secret, so the pair, the caBundle and the
        # pod template's checksum stay (no rollout for the certificate).
        self.helm("upgrade", "ferry", str(CHART), "-n", NS, "--reuse-values", "--set", "replicaCount=2")
        data2, ca_bundle2, checksum2, deploy2 = self.webhook_state()
        self.assertEqual((data2, ca_bundle2, checksum2), (data, ca_bundle, checksum))
        self.assertEqual(deploy2["spec"]["replicas"], 2)
        self.assertIn("--leader-elect", container(deploy2)["args"])
        # A Secret lacking a key is replaced: a new pair, the new CA in the caBundle, the pods roll.
        self.kubectl("patch", "secret", "ferry-webhook-tls", "-n", NS, "--type=json",
                     "-p", '[{"op": "remove", "path": "/data/ca.crt"}]')
        self.helm("upgrade", "ferry", str(CHART), "-n", NS, "--reuse-values")
        data3, ca_bundle3, checksum3, _ = self.webhook_state()
        self.assertNotEqual(data3["tls.crt"], data["tls.crt"])
        self.assertEqual(ca_bundle3, data3["ca.crt"])
        self.assertEqual(checksum3, tls_checksum(data3))
        check_certificate(self, data3, f"ferry-webhook.{NS}.svc")

        # To cert-manager: the chart's Secret goes (cert-manager would write it), the caBundle is
        # removed from the live configuration (cainjector fills it in).
        self.third_party_crds()
        self.helm("upgrade", "ferry", str(CHART), "-n", NS, "--reuse-values", "--set", "webhook.certManager.enabled=true")
        self.assertFalse(self.exists("secret", "ferry-webhook-tls", "-n", NS))
        cert = self.get("certificate", "ferry-webhook", "-n", NS)
        self.assertEqual(cert["spec"]["issuerRef"], {"name": "ferry-selfsigned", "kind": "Issuer", "group": "cert-manager.io"})
        self.assertTrue(self.exists("issuer", "ferry-selfsigned", "-n", NS))
        vwc = self.get("validatingwebhookconfiguration", "ferry")
        self.assertEqual(vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"], f"{NS}/ferry-webhook")
        self.assertNotIn("caBundle", vwc["webhooks"][0]["clientConfig"])
        self.assertNotIn("checksum/webhook-tls",
                         self.get("deployment", "ferry", "-n", NS)["spec"]["template"]["metadata"].get("annotations", {}))

        # Uninstalled, the webhook configuration goes and Ferry's kinds are accepted again.
        self.helm("uninstall", "ferry", "-n", NS)
        self.assertFalse(self.exists("validatingwebhookconfiguration", "ferry"))
        self.apply_strict(registry)

    def admission_review(self, port, ca_bundle, server_name):
        ctx = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": "c0ffee", "operation": "CREATE",
                              "kind": {"group": "ferry.dev", "version": "v1alpha1", "kind": "ReplicationConfig"},
                              "object": {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig",
                                         "metadata": {"name": "to-itself"},
                                         "spec": {"registryId": "111111111111", "region": "us-east-1", "rules": [
                                             {"destinations": [{"region": "us-east-1",
                                                                "registryId": "111111111111"}]}]}}}}
        raw = self.eventually(lambda: self._connect(port), "the webhook port", timeout=20)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        conn.request("POST", "/validate", json.dumps(review), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        self.assertEqual(resp.status, 200, answer)
        return answer

    @staticmethod
    def _connect(port):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            return None


# ------------------------------------------------------------------------------------ Dockerfile
class DockerfileTest(unittest.TestCase):
    def test_shape(self):
        text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
        froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
        self.assertEqual(froms, ["debian:12", "debian:12-slim"])
        self.assertIn("scripts/install-deps.sh", text)
        self.assertIn("--target ferry", text)
        self.assertIn("USER 65532:65532", text)
        self.assertIn('ENTRYPOINT ["/usr/local/bin/ferry"]', text)
        self.assertIn('CMD ["operator"]', text)

    def runtime_packages(self):
        text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
        line = next(l for l in text.splitlines() if "RUNTIME_PACKAGES=" in l)
        return line.split("RUNTIME_PACKAGES=", 1)[1].strip().strip('"').split()

    def test_runtime_packages_exist_in_debian_12(self):
        packages = self.runtime_packages()
        self.assertTrue(packages)
        for p in packages:
            with self.subTest(package=p):
                out = subprocess.run(["apt-cache", "policy", p], capture_output=True, text=True).stdout
                self.assertIn("Candidate:", out, f"{p} is not a Debian package known here")
                self.assertNotIn("Candidate: (none)", out)

    def test_runtime_packages_cover_what_ferry_links(self):
        """Every shared library of the built binary comes from RUNTIME_PACKAGES or debian:12-slim
        itself. The Dockerfile builds without sanitizers, so this speaks for such a build only
        (tests/chart/CMakeLists.txt registers it only when FERRY_SANITIZE is off)."""
        self.assertTrue(os.access(FERRY, os.X_OK), f"no ferry binary at {FERRY}; set FERRY_BINARY")
        packages = set(self.runtime_packages())
        base = {"libc6", "libgcc-s1", "libstdc++6"}   # in debian:12-slim already
        out = subprocess.run(["ldd", FERRY], capture_output=True, text=True, check=True).stdout
        self.assertNotIn("libasan", out, "a FERRY_SANITIZE=ON binary links differently than the Dockerfile's build")
        checked = 0
        for line in out.splitlines():
            if "=>" not in line:
                continue
            path = line.split("=>")[1].split("(")[0].strip()
            self.assertTrue(path and path != "not", line)
            real = os.path.realpath(path)
            package = f"? ({path})"
            # usrmerge: dpkg may know the file under /lib or /usr/lib, by its link name or its target.
            for candidate in dict.fromkeys([real, path, real.replace("/usr/lib/", "/lib/", 1),
                                            os.path.join(os.path.dirname(real).replace("/usr/lib/", "/lib/", 1),
                                                         os.path.basename(real))]):
                owner = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
                if owner.returncode == 0:
                    package = owner.stdout.split(":")[0]
                    break
            checked += 1
            with self.subTest(library=path):
                self.assertIn(package, packages | base, f"{path} comes from {package}, not in RUNTIME_PACKAGES")
        self.assertGreater(checked, 3, out)


if __name__ == "__main__":
    unittest.main()
