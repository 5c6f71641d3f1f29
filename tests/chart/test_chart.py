#!/usr/bin/python3
"""Proves charts/ferry: rendered with Helm's own template engine, checked against schemas, applied with real kubectl.

The renderer (tests/chart/render/main.go) is Go text/template + sprig, the engine Helm uses, built
offline from Debian's golang-go and golang-github-masterminds-sprig-dev. The rendered objects are
checked against values.schema.json, the upstream Kubernetes OpenAPI documents (unknown fields
rejected) and what the operator requests, then applied with /usr/bin/kubectl to the API server
double (tests/support/kube_apiserver_double.py). With FERRY_BINARY set (CTest sets it), the real
`ferry operator` is started with the rendered Deployment's args against the double.
"""
import base64
import copy
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.dont_write_bytecode = True   # nothing written under the source tree
sys.path.insert(0, str(ROOT / "tests" / "support"))
import k8s_openapi  # noqa: E402
from testproc import free_port  # noqa: E402

CHART = ROOT / "charts" / "ferry"
RENDER_SRC = ROOT / "tests" / "chart" / "render"
DOUBLE = ROOT / "tests" / "support" / "kube_apiserver_double.py"
GEN_CRDS = ROOT / "scripts" / "gen-chart-crds.py"
CRD_DIR = ROOT / "crds"
KUBECTL = "/usr/bin/kubectl"
GOCODE = "/usr/share/gocode"
NS = "ferry-system"

# What `ferry operator` requests from the API server, and so exactly what its ClusterRole grants
# (the operator's RBAC contract; change both together): read/watch the ferry.dev kinds, write
# their status, write its own records (Repository, ImageReplication), read Secrets (cluster-wide
# unless rbac.secrets.namespaces lists namespaces), and create/patch events.k8s.io Events.
FERRY_KINDS = ["registries", "replicationconfigs", "registrypolicies", "repositories", "imagereplications"]
EXPECTED_OPERATOR_RULES = [
    {"apiGroups": ["ferry.dev"], "resources": FERRY_KINDS, "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["ferry.dev"], "resources": [k + "/status" for k in FERRY_KINDS], "verbs": ["get", "update", "patch"]},
    {"apiGroups": ["ferry.dev"], "resources": ["repositories", "imagereplications"],
     "verbs": ["create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
# Leader election (controller-runtime style Lease lock, --leader-election-id=ferry-leader) in the
# release namespace; create without resourceNames because RBAC cannot name an object before it exists.
EXPECTED_LEADER_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["ferry-leader"],
     "verbs": ["get", "create", "update"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
]
# The replication engine's bookkeeping ConfigMaps (ferry-state-<key>, plus chunk ConfigMaps when
# large) in the leader-election namespace (--state-namespace defaults to it): the operator GETs,
# POSTs and PUTs them by name, and never lists, watches or deletes them.
EXPECTED_STATE_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
]
SECRETS_RULE = EXPECTED_OPERATOR_RULES[3]
CERT_DIR = "/tmp/k8s-webhook-server/serving-certs"

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

# Stand-ins for third-party CRDs the full values need (prometheus-operator, cert-manager): the
# double serves a kind only once its CRD exists, as a cluster does.
THIRD_PARTY_CRDS = [
    ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", "Namespaced"),
    ("cert-manager.io", "v1", "Certificate", "certificates", "Namespaced"),
    ("cert-manager.io", "v1", "Issuer", "issuers", "Namespaced"),
]

_tmp = None
_renderer = None


def setUpModule():
    global _tmp, _renderer
    _tmp = tempfile.mkdtemp(prefix="ferry-chart-test-")
    go = shutil.which("go") or "/usr/lib/go/bin/go"
    if not os.path.exists(go) or not (pathlib.Path(GOCODE) / "src/github.com/Masterminds/sprig").is_dir():
        raise RuntimeError("golang-go and golang-github-masterminds-sprig-dev are required: run scripts/install-deps.sh")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOCODE, GOFLAGS="",
               GOCACHE=os.environ.get("GOCACHE") or os.path.join(tempfile.gettempdir(), "ferry-chart-gocache"))
    _renderer = os.path.join(_tmp, "render")
    subprocess.run([go, "build", "-o", _renderer, "."], cwd=RENDER_SRC, env=env, check=True)


def tearDownModule():
    if _tmp:
        shutil.rmtree(_tmp, ignore_errors=True)


class _KubeLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: timestamps stay strings."""


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_docs(text):
    return [d for d in yaml.load_all(text, Loader=_KubeLoader) if d is not None]


def render_text(values=None, name="ferry", namespace=NS, notes=False, check=True, cluster=None):
    """Renders the chart; cluster lists the objects Helm's `lookup` finds (as on `helm upgrade`)."""
    args = [_renderer, "--chart", str(CHART), "--name", name, "--namespace", namespace]
    if cluster is not None:
        fd, path = tempfile.mkstemp(suffix=".yaml", dir=_tmp)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump_all(cluster, f)
        args += ["--lookup-objects", path]
    if values is not None:
        fd, path = tempfile.mkstemp(suffix=".yaml", dir=_tmp)
        with os.fdopen(fd, "w") as f:
            json.dump(values, f)
        args += ["-f", path]
    if notes:
        args.append("--notes")
    return subprocess.run(args, capture_output=True, text=True, check=check)


def render(values=None, **kw):
    return load_docs(render_text(values, **kw).stdout)



def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def normalize_rules(rules):
    return sorted(json.dumps({k: sorted(v) for k, v in r.items()}, sort_keys=True) for r in rules)


def load_gen_module():
    spec = importlib.util.spec_from_file_location("gen_chart_crds", GEN_CRDS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def container(deploy):
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


class RenderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.default = render()
        cls.full = render(FULL_VALUES)
        cls.cm = render(CERT_MANAGER_VALUES)

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
                if d["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
                    self.assertEqual(d["metadata"]["namespace"], NS)

    def test_full_objects(self):
        kinds = {d["kind"] for d in self.full}
        self.assertTrue({"ValidatingWebhookConfiguration", "ServiceMonitor", "Secret"} <= kinds, kinds)
        self.assertEqual(len([d for d in self.full if d["kind"] == "Service"]), 3)
        cm_kinds = {d["kind"] for d in self.cm}
        self.assertTrue({"Certificate", "Issuer", "ValidatingWebhookConfiguration"} <= cm_kinds, cm_kinds)
        self.assertNotIn("Secret", cm_kinds, "cert-manager writes the serving Secret")

    def test_install_order_puts_crds_and_rbac_before_the_deployment(self):
        order = [d["kind"] for d in self.full]
        self.assertLess(max(i for i, k in enumerate(order) if k == "CustomResourceDefinition"), order.index("Deployment"))
        self.assertLess(order.index("ClusterRoleBinding"), order.index("Deployment"))
        self.assertLess(order.index("Deployment"), order.index("ValidatingWebhookConfiguration"))

    def test_names_follow_the_release(self):
        docs = render(name="prod")
        self.assertEqual(one(docs, "Deployment")["metadata"]["name"], "prod-ferry")
        self.assertEqual(one(docs, "ClusterRoleBinding")["subjects"][0]["name"], "prod-ferry")
        docs = render({"fullnameOverride": "repl"}, name="prod")
        self.assertEqual(one(docs, "Deployment")["metadata"]["name"], "repl")

    def test_existing_service_account_needs_a_name(self):
        result = render_text({"serviceAccount": {"create": False}}, check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("serviceAccount.name is required when serviceAccount.create is false", result.stderr)
        docs = render({"serviceAccount": {"create": False, "name": "platform-ferry"}})
        self.assertEqual(by_kind(docs, "ServiceAccount"), [])
        self.assertEqual(one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"], "platform-ferry")
        self.assertEqual(one(docs, "ClusterRoleBinding")["subjects"][0]["name"], "platform-ferry")

    def test_notes_render(self):
        out = render_text(FULL_VALUES, notes=True).stdout
        self.assertIn(f"kubectl -n {NS} rollout status deployment/ferry", out)
        self.assertIn("leader election", out)
        self.assertIn(f"http://ferry-registry-events.{NS}.svc:8082/registry-events/<Registry name>", out)
        self.assertNotIn("<no value>", out)
        off = render_text({"registryEvents": {"service": {"enabled": False}}}, notes=True).stdout
        self.assertNotIn("ferry-registry-events", off)
        self.assertIn("expose port 8082", off)


class RendererTest(unittest.TestCase):
    """The renderer behaves like `helm template` where the chart relies on it."""

    def chart(self, templates, values="a: {b: 1, c: 2}\nlist: [1, 2]\ns: x\n"):
        root = pathlib.Path(tempfile.mkdtemp(dir=_tmp))
        (root / "templates").mkdir()
        (root / "Chart.yaml").write_text("apiVersion: v2\nname: t\nversion: 1.0.0\nappVersion: '2'\n"
                                         "kubeVersion: '>= 1.24.0-0'\n")
        (root / "values.yaml").write_text(values)
        (root / "templates" / "_helpers.tpl").write_text('{{- define "t.name" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end }}')
        for name, text in templates.items():
            (root / "templates" / name).write_text(text)
        return root

    def run_chart(self, root, values=None, *extra):
        args = [_renderer, "--chart", str(root), "--name", "rel", "--namespace", "ns", *extra]
        if values is not None:
            path = root / "user-values.yaml"
            path.write_text(json.dumps(values))
            args += ["-f", str(path)]
        return subprocess.run(args, capture_output=True, text=True)

    def test_helm_semantics(self):
        root = self.chart({"cm.yaml": """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "t.name" . }}
  namespace: {{ .Release.Namespace }}
data:
  b: {{ .Values.a.b | quote }}
  c: {{ .Values.a.c | default "gone" | quote }}
  missing: "{{ .Values.nope }}"
  tpl: {{ tpl "{{ .Values.s }}-y" . | quote }}
  yaml: {{ toYaml .Values.list | quote }}
  kind: {{ kindOf .Values.a.b | quote }}
  template: {{ .Template.Name | quote }}
  app: {{ .Chart.AppVersion | quote }}
  kube: {{ .Capabilities.KubeVersion.Minor | quote }}
  has: {{ .Capabilities.APIVersions.Has "apps/v1" | quote }}
  file: {{ .Files.Get "crds/x.yaml" | quote }}
  globbed: {{ len (.Files.Glob "crds/*.yaml") | quote }}
""", "empty.yaml": "{{- if false }}\nkind: Nothing\n{{- end }}\n"})
        (root / "crds").mkdir()
        (root / "crds" / "x.yaml").write_text("kind: X\n")
        result = self.run_chart(root, {"a": {"c": None}, "s": "z"})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith("---\n# Source: t/templates/cm.yaml\n"), result.stdout)
        docs = load_docs(result.stdout)
        self.assertEqual(len(docs), 1, "whitespace-only output is dropped")
        self.assertEqual(docs[0]["metadata"], {"name": "rel-t", "namespace": "ns"})
        self.assertEqual(docs[0]["data"], {"b": "1", "c": "gone", "missing": "", "tpl": "z-y", "yaml": "- 1\n- 2",
                                           "kind": "float64", "template": "t/templates/cm.yaml", "app": "2",
                                           "kube": "32", "has": "true", "file": "kind: X\n", "globbed": "1"})

    def test_required_fail_and_kube_version(self):
        root = self.chart({"x.yaml": "x: {{ required \"x is required\" .Values.x }}\n"})
        result = self.run_chart(root)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("x is required", result.stderr)
        self.assertEqual(self.run_chart(root, {"x": "1"}).returncode, 0)
        old = self.run_chart(root, {"x": "1"}, "--kube-version", "v1.23.0")
        self.assertNotEqual(old.returncode, 0)
        self.assertIn("incompatible with Kubernetes", old.stderr)


class CrdTemplateTest(unittest.TestCase):
    def test_templates_are_generated_from_crds(self):
        check = subprocess.run([sys.executable, str(GEN_CRDS), "--check"], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_templates_carry_the_crds_unchanged(self):
        gen = load_gen_module()
        files = sorted(p.name for p in CRD_DIR.glob("*.yaml"))
        self.assertEqual(sorted(p.name for p in (CHART / "templates" / "crds").glob("*.yaml")), files)
        for name in files:
            with self.subTest(file=name):
                template = (CHART / "templates" / "crds" / name).read_text(encoding="utf-8")
                self.assertEqual(gen.unwrap(template), (CRD_DIR / name).read_text(encoding="utf-8"))

    def test_rendered_crds_equal_crds_dir(self):
        source = {d["metadata"]["name"]: d for p in sorted(CRD_DIR.glob("*.yaml"))
                  for d in load_docs(p.read_text(encoding="utf-8"))}
        rendered = {d["metadata"]["name"]: d for d in by_kind(render(), "CustomResourceDefinition")}
        self.assertEqual(sorted(rendered), sorted(source))
        for name, doc in rendered.items():
            with self.subTest(crd=name):
                self.assertEqual(doc["metadata"]["annotations"], {"helm.sh/resource-policy": "keep"})
                stripped = copy.deepcopy(doc)
                stripped["metadata"].pop("labels")
                stripped["metadata"].pop("annotations")
                self.assertEqual(stripped, source[name])

    def test_crds_enabled_and_keep(self):
        self.assertEqual(by_kind(render({"crds": {"enabled": False}}), "CustomResourceDefinition"), [])
        for doc in by_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition"):
            self.assertNotIn("annotations", doc["metadata"])


class DeploymentTest(unittest.TestCase):
    def args(self, values=None):
        return container(one(render(values), "Deployment"))["args"]

    def test_default_args(self):
        self.assertEqual(self.args(), [
            "operator", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
            "--registry-events-bind-address=:8082", f"--leader-election-namespace={NS}",
            "--leader-election-id=ferry-leader", "--webhook-port=0"])

    def test_leader_elect_only_with_more_than_one_replica(self):
        self.assertNotIn("--leader-elect", self.args({"replicaCount": 1}))
        args = self.args({"replicaCount": 2})
        self.assertIn("--leader-elect", args)
        self.assertEqual(one(render({"replicaCount": 2}), "Deployment")["spec"]["replicas"], 2)

    def test_webhook_args_and_mount(self):
        deploy = one(render(FULL_VALUES), "Deployment")
        c = container(deploy)
        self.assertIn("--webhook-port=9443", c["args"])
        self.assertIn(f"--webhook-cert-dir={CERT_DIR}", c["args"])
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == CERT_DIR)
        self.assertTrue(mount["readOnly"])
        volume = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        self.assertEqual(volume["secret"]["secretName"], "ferry-webhook-tls")
        self.assertEqual(sorted(i["path"] for i in volume["secret"]["items"]), ["tls.crt", "tls.key"])
        self.assertIn({"name": "webhook", "containerPort": 9443, "protocol": "TCP"}, c["ports"])

    def test_security_context_probes_resources(self):
        deploy = one(render(), "Deployment")
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
        c = container(one(render({"image": {"repository": "registry.example.com/ferry", "digest": "sha256:" + "a" * 64}}),
                          "Deployment"))
        self.assertEqual(c["image"], "registry.example.com/ferry@sha256:" + "a" * 64)


class RbacTest(unittest.TestCase):
    def test_operator_cluster_role_is_exactly_what_the_operator_requests(self):
        role = one(render(), "ClusterRole", "ferry-operator")
        self.assertEqual(normalize_rules(role["rules"]), normalize_rules(EXPECTED_OPERATOR_RULES))
        binding = one(render(), "ClusterRoleBinding", "ferry-operator")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                              "name": "ferry-operator"})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "ferry", "namespace": NS}])

    def test_leader_election_role_names_its_lease(self):
        docs = render({"replicaCount": 2})
        role = one(docs, "Role", "ferry-leaderelection")
        self.assertEqual(role["metadata"]["namespace"], NS)
        self.assertEqual(normalize_rules(role["rules"]), normalize_rules(EXPECTED_LEADER_RULES))
        binding = one(docs, "RoleBinding", "ferry-leaderelection")
        self.assertEqual(binding["roleRef"]["name"], "ferry-leaderelection")
        self.assertEqual(binding["subjects"][0]["namespace"], NS)

    def test_state_role_is_exactly_the_engine_configmaps(self):
        docs = render()
        role = one(docs, "Role", "ferry-state")
        self.assertEqual(role["metadata"]["namespace"], NS)
        self.assertEqual(normalize_rules(role["rules"]), normalize_rules(EXPECTED_STATE_RULES))
        binding = one(docs, "RoleBinding", "ferry-state")
        self.assertEqual(binding["metadata"]["namespace"], NS)
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                              "name": "ferry-state"})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "ferry", "namespace": NS}])

    def test_leader_election_namespace_moves_the_lease_and_state_roles(self):
        docs = render({"leaderElection": {"namespace": "ferry-coord"}})
        for name in ("ferry-leaderelection", "ferry-state"):
            with self.subTest(role=name):
                self.assertEqual(one(docs, "Role", name)["metadata"]["namespace"], "ferry-coord")
                binding = one(docs, "RoleBinding", name)
                self.assertEqual(binding["metadata"]["namespace"], "ferry-coord")
                self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "ferry", "namespace": NS}])
        self.assertIn("--leader-election-namespace=ferry-coord", container(one(docs, "Deployment"))["args"])

    def test_secrets_only_in_listed_namespaces(self):
        docs = render({"rbac": {"secrets": {"namespaces": [NS, "team-b"]}}})
        role = one(docs, "ClusterRole", "ferry-operator")
        self.assertEqual(normalize_rules(role["rules"]),
                         normalize_rules([r for r in EXPECTED_OPERATOR_RULES if r is not SECRETS_RULE]))
        roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "ferry-secrets"}
        self.assertEqual(sorted(roles), sorted([NS, "team-b"]))
        for ns, r in roles.items():
            self.assertEqual(normalize_rules(r["rules"]), normalize_rules([SECRETS_RULE]))
            binding = one([b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == ns],
                          "RoleBinding", "ferry-secrets")
            self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "ferry", "namespace": NS}])

    def test_aggregated_roles(self):
        docs = render()
        view = one(docs, "ClusterRole", "ferry-view")
        self.assertEqual(view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"], "true")
        self.assertEqual(normalize_rules(view["rules"]), normalize_rules([EXPECTED_OPERATOR_RULES[0]]))
        edit = one(docs, "ClusterRole", "ferry-edit")
        self.assertEqual(edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"], "true")
        self.assertNotIn("imagereplications", edit["rules"][0]["resources"], "records are Ferry's own")
        self.assertEqual([r for r in by_kind(render({"rbac": {"aggregateClusterRoles": False}}), "ClusterRole")
                          if r["metadata"]["name"] in ("ferry-view", "ferry-edit")], [])

    def test_no_rbac(self):
        docs = render({"rbac": {"create": False}})
        self.assertEqual([d for d in docs if d["apiVersion"].startswith("rbac.")], [])


class RbacAuthorizerTest(unittest.TestCase):
    """The RBAC evaluation OperatorRunsWithChartArgsTest relies on refuses what the chart does not grant."""

    def test_allows_and_refuses(self):
        docs = render()

        def allowed(method, path, query=None):
            return rbac_allows(docs, request_attributes({"method": method, "path": path, "query": query or {}}))
        self.assertTrue(allowed("GET", "/api/v1/secrets", {"watch": "true"}))
        self.assertTrue(allowed("PUT", "/apis/ferry.dev/v1alpha1/registries/r/status"))
        self.assertTrue(allowed("POST", "/apis/ferry.dev/v1alpha1/imagereplications"))
        self.assertTrue(allowed("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/ferry-leader"))
        self.assertTrue(allowed("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"))
        self.assertTrue(allowed("GET", f"/api/v1/namespaces/{NS}/configmaps/ferry-state-effective"))
        self.assertTrue(allowed("POST", f"/api/v1/namespaces/{NS}/configmaps"))
        self.assertTrue(allowed("PUT", f"/api/v1/namespaces/{NS}/configmaps/ferry-state-known-a-1"))
        self.assertFalse(allowed("PUT", "/apis/ferry.dev/v1alpha1/registries/r"), "spec writes")
        self.assertFalse(allowed("DELETE", "/apis/ferry.dev/v1alpha1/replicationconfigs/c"))
        self.assertFalse(allowed("POST", f"/api/v1/namespaces/{NS}/secrets"))
        self.assertFalse(allowed("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/other"))
        self.assertFalse(allowed("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/ferry-leader"))
        self.assertFalse(allowed("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases", {"watch": "1"}))
        self.assertFalse(allowed("POST", "/api/v1/namespaces/default/events"), "core v1 events are not granted")
        self.assertFalse(allowed("GET", f"/api/v1/namespaces/{NS}/configmaps"), "no list of ConfigMaps")
        self.assertFalse(allowed("GET", f"/api/v1/namespaces/{NS}/configmaps", {"watch": "true"}))
        self.assertFalse(allowed("DELETE", f"/api/v1/namespaces/{NS}/configmaps/ferry-state-effective"))
        self.assertFalse(allowed("GET", "/api/v1/namespaces/default/configmaps/ferry-state-effective"))
        scoped = render({"rbac": {"secrets": {"namespaces": ["team-b"]}}})
        self.assertTrue(rbac_allows(scoped, ("get", "", "secrets", "team-b", "creds")))
        self.assertFalse(rbac_allows(scoped, ("get", "", "secrets", NS, "creds")))
        self.assertFalse(rbac_allows(scoped, ("watch", "", "secrets", "", "")), "cluster-wide watch")


class WebhookTest(unittest.TestCase):
    def webhook(self, docs):
        vwc = one(docs, "ValidatingWebhookConfiguration")
        self.assertEqual(len(vwc["webhooks"]), 1)
        return vwc, vwc["webhooks"][0]

    def check_common(self, docs):
        vwc, hook = self.webhook(docs)
        self.assertEqual(hook["failurePolicy"], "Fail")
        self.assertEqual(hook["sideEffects"], "None")
        self.assertEqual(hook["admissionReviewVersions"], ["v1"])
        self.assertEqual(hook["clientConfig"]["service"],
                         {"name": "ferry-webhook", "namespace": NS, "path": "/validate", "port": 443})
        self.assertEqual(hook["rules"], [{"apiGroups": ["ferry.dev"], "apiVersions": ["v1alpha1"],
                                          "operations": ["CREATE", "UPDATE"],
                                          "resources": ["registries", "replicationconfigs", "registrypolicies",
                                                        "repositories"], "scope": "Cluster"}])
        svc = one(docs, "Service", "ferry-webhook")
        self.assertEqual(svc["spec"]["ports"], [{"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}])
        self.assertEqual(svc["spec"]["selector"], one(docs, "Deployment")["spec"]["selector"]["matchLabels"])
        return vwc, hook

    def test_default_has_no_webhook(self):
        docs = render()
        self.assertEqual([d for d in docs if "Webhook" in d["kind"] or d["kind"] in ("Secret", "Certificate")], [])

    def test_chart_made_certificate(self):
        docs = render(FULL_VALUES)
        vwc, hook = self.check_common(docs)
        self.assertNotIn("annotations", vwc["metadata"])
        secret = one(docs, "Secret", "ferry-webhook-tls")
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        ca = base64.b64decode(hook["clientConfig"]["caBundle"])
        self.assertEqual(base64.b64decode(secret["data"]["ca.crt"]), ca)
        tmp = tempfile.mkdtemp(dir=_tmp)
        for key in ("tls.crt", "tls.key", "ca.crt"):
            pathlib.Path(tmp, key).write_bytes(base64.b64decode(secret["data"][key]))
        verify = subprocess.run(["openssl", "verify", "-CAfile", f"{tmp}/ca.crt", f"{tmp}/tls.crt"],
                                capture_output=True, text=True)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        text = subprocess.run(["openssl", "x509", "-in", f"{tmp}/tls.crt", "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout
        for dns in ("ferry-webhook", f"ferry-webhook.{NS}", f"ferry-webhook.{NS}.svc",
                    f"ferry-webhook.{NS}.svc.cluster.local"):
            self.assertIn(f"DNS:{dns}", text)
        pub_cert = subprocess.run(["openssl", "x509", "-in", f"{tmp}/tls.crt", "-noout", "-pubkey"],
                                  capture_output=True, text=True, check=True).stdout
        pub_key = subprocess.run(["openssl", "pkey", "-in", f"{tmp}/tls.key", "-pubout"],
                                 capture_output=True, text=True, check=True).stdout
        self.assertEqual(pub_cert, pub_key, "tls.key belongs to tls.crt")

    def test_chart_made_certificate_is_reused_on_upgrade(self):
        def pod_annotations(docs):
            return one(docs, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})

        first = render(FULL_VALUES)
        second = render(FULL_VALUES)
        self.assertNotEqual(one(first, "Secret")["data"], one(second, "Secret")["data"],
                            "without a cluster every render makes a new certificate")
        self.assertNotEqual(pod_annotations(first)["checksum/webhook-tls"],
                            pod_annotations(second)["checksum/webhook-tls"], "and rolls the pods, which read it at start")
        installed = [one(first, "Secret")]
        upgrades = [render(FULL_VALUES, cluster=installed) for _ in range(2)]
        for docs in upgrades:
            self.assertEqual(one(docs, "Secret")["data"], installed[0]["data"], "the installed certificate is kept")
            self.assertEqual(self.webhook(docs)[1]["clientConfig"]["caBundle"], installed[0]["data"]["ca.crt"])
        self.assertEqual(pod_annotations(upgrades[0]), pod_annotations(upgrades[1]), "no rollout when nothing changed")
        partial = copy.deepcopy(installed[0])
        del partial["data"]["ca.crt"]
        self.assertNotEqual(one(render(FULL_VALUES, cluster=[partial]), "Secret")["data"]["tls.crt"],
                            installed[0]["data"]["tls.crt"], "an incomplete Secret is replaced")
        self.assertNotIn("checksum/webhook-tls", pod_annotations(render(CERT_MANAGER_VALUES)))

    def test_cert_manager(self):
        docs = render(CERT_MANAGER_VALUES)
        vwc, hook = self.check_common(docs)
        cert = one(docs, "Certificate")
        self.assertEqual(vwc["metadata"]["annotations"],
                         {"cert-manager.io/inject-ca-from": f"{NS}/{cert['metadata']['name']}"})
        self.assertNotIn("caBundle", hook["clientConfig"])
        self.assertEqual(cert["metadata"]["namespace"], NS)
        self.assertEqual(cert["spec"]["secretName"], "ferry-webhook-tls")
        self.assertIn(f"ferry-webhook.{NS}.svc", cert["spec"]["dnsNames"])
        issuer = one(docs, "Issuer")
        self.assertEqual(issuer["spec"], {"selfSigned": {}})
        self.assertEqual(cert["spec"]["issuerRef"], {"name": issuer["metadata"]["name"], "kind": "Issuer",
                                                     "group": "cert-manager.io"})
        docs = render(deep_merge(CERT_MANAGER_VALUES, {"webhook": {"certManager": {
            "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}}))
        self.assertEqual(by_kind(docs, "Issuer"), [])
        self.assertEqual(one(docs, "Certificate")["spec"]["issuerRef"]["name"], "corp-ca")


class MetricsTest(unittest.TestCase):
    def test_service_monitor_off_by_default(self):
        self.assertEqual(by_kind(render(), "ServiceMonitor"), [])

    def test_service_monitor_selects_the_metrics_service(self):
        docs = render(FULL_VALUES)
        sm = one(docs, "ServiceMonitor")
        svc = one(docs, "Service", "ferry-metrics")
        labels = svc["metadata"]["labels"]
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(labels.get(k), v, k)
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], svc["spec"]["ports"][0]["name"])
        self.assertEqual(sm["spec"]["endpoints"][0]["path"], "/metrics")
        self.assertEqual(sm["metadata"]["labels"]["release"], "prometheus")
        self.assertEqual(svc["spec"]["ports"][0]["targetPort"], "http-metrics")

    def test_service_monitor_without_service_fails(self):
        result = render_text({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
                             check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("metrics.serviceMonitor.enabled needs metrics.service.enabled", result.stderr)


class RegistryEventsTest(unittest.TestCase):
    """The Service registries post their push notifications to (POST /registry-events/{Registry name})."""

    def test_service_targets_the_registry_events_port(self):
        docs = render()
        deploy = one(docs, "Deployment")
        c = container(deploy)
        self.assertIn("--registry-events-bind-address=:8082", c["args"])
        self.assertIn({"name": "registry-events", "containerPort": 8082, "protocol": "TCP"}, c["ports"])
        svc = one(docs, "Service", "ferry-registry-events")
        self.assertEqual(svc["metadata"]["namespace"], NS)
        self.assertEqual(svc["metadata"]["labels"]["app.kubernetes.io/component"], "registry-events")
        self.assertNotIn("annotations", svc["metadata"])
        self.assertEqual(svc["spec"]["type"], "ClusterIP")
        self.assertEqual(svc["spec"]["selector"], deploy["spec"]["selector"]["matchLabels"])
        self.assertEqual(svc["spec"]["ports"], [{"name": "http-registry-events", "port": 8082,
                                                 "targetPort": "registry-events", "protocol": "TCP"}])
        self.assertIn(svc["spec"]["ports"][0]["targetPort"], [p["name"] for p in c["ports"]])

    def test_ports_type_and_annotations_follow_the_values(self):
        docs = render({"registryEvents": {"port": 9000, "service": {
            "type": "LoadBalancer", "port": 80, "annotations": {"example.com/lb": "internal"}}}})
        c = container(one(docs, "Deployment"))
        self.assertIn("--registry-events-bind-address=:9000", c["args"])
        self.assertIn({"name": "registry-events", "containerPort": 9000, "protocol": "TCP"}, c["ports"])
        svc = one(docs, "Service", "ferry-registry-events")
        self.assertEqual(svc["spec"]["type"], "LoadBalancer")
        self.assertEqual(svc["spec"]["ports"][0]["port"], 80)
        self.assertEqual(svc["spec"]["ports"][0]["targetPort"], "registry-events")
        self.assertEqual(svc["metadata"]["annotations"], {"example.com/lb": "internal"})
        notes = render_text({"registryEvents": {"service": {"type": "NodePort"}}}, notes=True).stdout
        self.assertIn("get service ferry-registry-events", notes)

    def test_service_can_be_turned_off(self):
        docs = render({"registryEvents": {"service": {"enabled": False}}})
        self.assertEqual([s["metadata"]["name"] for s in by_kind(docs, "Service")], ["ferry-metrics"])
        self.assertIn("--registry-events-bind-address=:8082", container(one(docs, "Deployment"))["args"],
                      "the endpoint still runs in the pod")


class ValuesSchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
        jsonschema.Draft7Validator.check_schema(cls.schema)
        cls.validator = jsonschema.Draft7Validator(cls.schema)
        cls.defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

    def errors(self, values):
        return sorted("/".join(str(p) for p in e.absolute_path) + ": " + e.message
                      for e in self.validator.iter_errors(values))

    def test_defaults_and_test_values_are_valid(self):
        self.assertEqual(self.errors(self.defaults), [])
        for values in (FULL_VALUES, CERT_MANAGER_VALUES, {"rbac": {"secrets": {"namespaces": [NS]}}}):
            with self.subTest(values=values):
                self.assertEqual(self.errors(deep_merge(self.defaults, values)), [])

    def test_every_default_is_described(self):
        def walk(values, schema, path):
            for key, value in values.items():
                self.assertIn(key, schema.get("properties", {}), f"{path}{key} is not in values.schema.json")
                sub = schema["properties"][key]
                self.assertTrue(sub.get("description"), f"{path}{key} has no description")
                if isinstance(value, dict) and "properties" in sub:
                    walk(value, sub, f"{path}{key}.")
        walk(self.defaults, self.schema, "")

    def test_bad_values_are_rejected(self):
        cases = {
            "replicaCount": {"replicaCount": "two"},
            "replicaCount/zero": {"replicaCount": 0},
            "image/pullPolicy": {"image": {"pullPolicy": "Sometimes"}},
            "replicas (unknown key)": {"replicas": 2},
            "webhook/port": {"webhook": {"port": 70000}},
            "webhook/enable (misspelled)": {"webhook": {"enable": True}},
            "crds/keep": {"crds": {"keep": "yes"}},
            "rbac/secrets/namespaces": {"rbac": {"secrets": {"namespaces": ["Team_B"]}}},
            "image/digest": {"image": {"digest": "latest"}},
            "registryEvents/port": {"registryEvents": {"port": 0}},
            "registryEvents/service/type": {"registryEvents": {"service": {"type": "External"}}},
            "registryEvents/service/enable (misspelled)": {"registryEvents": {"service": {"enable": False}}},
        }
        for name, values in cases.items():
            with self.subTest(case=name):
                self.assertNotEqual(self.errors(deep_merge(self.defaults, values)), [], f"{name} was accepted")


class OpenApiTest(unittest.TestCase):
    """Rendered objects of the kinds the upstream OpenAPI documents define, unknown fields rejected."""

    @classmethod
    def setUpClass(cls):
        cls.kinds = k8s_openapi.KindValidators()

    def test_rendered_objects_match_upstream_schemas(self):
        checked = set()
        for label, values in (("default", None), ("full", FULL_VALUES), ("cert-manager", CERT_MANAGER_VALUES)):
            for doc in render(values):
                if not self.kinds.covers(doc["apiVersion"], doc["kind"]):
                    continue
                checked.add(doc["kind"])
                with self.subTest(values=label, kind=doc["kind"], name=doc["metadata"]["name"]):
                    self.assertEqual(self.kinds.errors(doc), [])
        self.assertEqual(checked, {"CustomResourceDefinition", "ValidatingWebhookConfiguration"})

    def test_misspelled_fields_are_rejected(self):
        vwc = one(render(FULL_VALUES), "ValidatingWebhookConfiguration")
        cases = {
            "sideEffect": lambda d: d["webhooks"][0].update(sideEffect=d["webhooks"][0].pop("sideEffects")),
            "clientConfig.service.paht": lambda d: d["webhooks"][0]["clientConfig"]["service"].update(paht="/x"),
            "rules[0].operation": lambda d: d["webhooks"][0]["rules"][0].update(operation=["CREATE"]),
            "timeoutSeconds as string": lambda d: d["webhooks"][0].update(timeoutSeconds="10"),
        }
        for name, change in cases.items():
            doc = copy.deepcopy(vwc)
            change(doc)
            with self.subTest(case=name):
                self.assertNotEqual(self.kinds.errors(doc), [], f"{name} was accepted")
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "ferry-leader", "namespace": NS},
                 "spec": {"holderIdentity": "ferry-0", "leaseDurationSeconds": 15}}
        self.assertEqual(self.kinds.errors(lease), [])
        lease["spec"]["holder"] = "x"
        self.assertNotEqual(self.kinds.errors(lease), [])


def free_port_double(tmp):
    kubeconfig = os.path.join(tmp, "kubeconfig")
    log = open(os.path.join(tmp, "double.log"), "w")
    proc = subprocess.Popen([sys.executable, str(DOUBLE), "--port", "0", "--kubeconfig-out", kubeconfig],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    line = proc.stdout.readline()
    if not line.startswith("LISTENING"):
        stop_by_pid(proc)
        raise RuntimeError(f"the API server double did not start: {line!r}")
    return proc, kubeconfig


def stop_by_pid(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


class KubectlApplyTest(unittest.TestCase):
    """Applies rendered charts with real kubectl to the API server double."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=_tmp)
        self.proc, self.kubeconfig = free_port_double(self.tmp)
        self.addCleanup(stop_by_pid, self.proc)

    def kubectl(self, *args, check=True, stdin=None):
        result = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", self.tmp + "/cache", *args],
                                capture_output=True, text=True, input=stdin, timeout=120)
        if check and result.returncode != 0:
            log = pathlib.Path(self.tmp, "double.log").read_text()
            self.fail(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                      f"double log:\n{log[-3000:]}")
        return result

    def apply_text(self, text, check=True):
        path = tempfile.mktemp(suffix=".yaml", dir=self.tmp)
        pathlib.Path(path).write_text(text, encoding="utf-8")
        return self.kubectl("apply", "-f", path, check=check)

    def namespaces(self, *names):
        self.apply_text("".join(f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n" for n in names))

    def third_party_crds(self):
        docs = []
        for group, version, kind, plural, scope in THIRD_PARTY_CRDS:
            docs.append({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                         "metadata": {"name": f"{plural}.{group}"},
                         "spec": {"group": group, "scope": scope,
                                  "names": {"kind": kind, "listKind": kind + "List", "plural": plural,
                                            "singular": kind.lower()},
                                  "versions": [{"name": version, "served": True, "storage": True,
                                                "schema": {"openAPIV3Schema": {
                                                    "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
        self.apply_text(yaml.safe_dump_all(docs))

    def check_applied(self, text, values_label):
        path = os.path.join(self.tmp, f"{values_label}.yaml")
        pathlib.Path(path).write_text(text, encoding="utf-8")
        first = self.kubectl("apply", "-f", path)
        docs = load_docs(text)
        lines = [line for line in first.stdout.splitlines() if line.strip()]
        self.assertEqual(len(lines), len(docs), first.stdout)
        self.assertTrue(all(line.endswith(" created") for line in lines), first.stdout)
        again = self.kubectl("apply", "-f", path)
        self.assertTrue(all(line.endswith(" unchanged") for line in again.stdout.splitlines() if line.strip()),
                        f"{values_label}: a second apply changed something:\n{again.stdout}")
        stored = json.loads(self.kubectl("get", "-f", path, "-o", "json").stdout)["items"]
        self.assertEqual(len(stored), len(docs))
        for doc, got in zip(docs, stored):
            kind, name = doc["kind"], doc["metadata"]["name"]
            with self.subTest(values=values_label, kind=kind, name=name):
                self.assertEqual((got["kind"], got["metadata"]["name"]), (kind, name))
                self.assertEqual(got["metadata"].get("labels"), doc["metadata"].get("labels"))
                for key in ("spec", "rules", "roleRef", "subjects", "webhooks", "data", "type"):
                    if key in doc:
                        if kind == "CustomResourceDefinition" and key == "spec":
                            continue   # the double applies schema defaults to CRDs
                        self.assertEqual(got.get(key), doc[key], key)

    def test_default_install(self):
        self.namespaces(NS)
        text = render_text().stdout
        self.check_applied(text, "default")
        crds = self.kubectl("get", "crd", "-l", "app.kubernetes.io/instance=ferry", "-o", "name").stdout.split()
        self.assertEqual(sorted(crds), sorted(f"customresourcedefinition.apiextensions.k8s.io/{k}.ferry.dev"
                                              for k in FERRY_KINDS))
        # The chart's CRDs serve Ferry's kinds: the repository's examples apply with strict validation.
        for example in ("secrets.yaml", "registries.yaml", "cross-region.yaml", "cross-account.yaml",
                        "prefix-filters.yaml", "immutable-repository.yaml"):
            self.kubectl("apply", "-f", str(ROOT / "examples" / example))
        out = self.kubectl("get", "ferry", "-o", "name").stdout
        self.assertIn("registry.ferry.dev/acct-a-us-east-1", out)
        bad = self.apply_text("apiVersion: ferry.dev/v1alpha1\nkind: Registry\nmetadata: {name: bad}\n"
                              "spec: {registryId: '123456789012', region: us-east-1, endpiont: https://x}\n",
                              check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn('unknown field "spec.endpiont"', bad.stderr)

    def test_full_install(self):
        self.namespaces(NS)
        self.third_party_crds()
        text = render_text(FULL_VALUES).stdout
        self.check_applied(text, "full")
        deploy = json.loads(self.kubectl("get", "deployment", "ferry", "-n", NS, "-o", "json").stdout)
        self.assertIn("--leader-elect", container(deploy)["args"])
        vwc = json.loads(self.kubectl("get", "validatingwebhookconfiguration", "ferry", "-o", "json").stdout)
        self.assertEqual(vwc["webhooks"][0]["failurePolicy"], "Fail")

    def test_cert_manager_install_and_secret_roles(self):
        self.namespaces(NS, "team-b")
        self.third_party_crds()
        values = deep_merge(CERT_MANAGER_VALUES, {"rbac": {"secrets": {"namespaces": [NS, "team-b"]}}})
        self.check_applied(render_text(values).stdout, "cert-manager")
        role = json.loads(self.kubectl("get", "role", "ferry-secrets", "-n", "team-b", "-o", "json").stdout)
        self.assertEqual(normalize_rules(role["rules"]), normalize_rules([SECRETS_RULE]))

    def test_service_monitor_needs_its_crd(self):
        self.namespaces(NS)
        text = render_text(FULL_VALUES).stdout
        sm = next(d for d in load_docs(text) if d["kind"] == "ServiceMonitor")
        path = os.path.join(self.tmp, "servicemonitor.yaml")
        pathlib.Path(path).write_text(yaml.safe_dump(sm), encoding="utf-8")
        result = self.kubectl("apply", "--validate=false", "-f", path, check=False)
        self.assertNotEqual(result.returncode, 0, "a ServiceMonitor applied without the prometheus-operator CRDs")
        self.assertIn('no matches for kind "ServiceMonitor" in version "monitoring.coreos.com/v1"', result.stderr)


class OperatorRunsWithChartArgsTest(unittest.TestCase):
    """The real `ferry operator` started with the chart's container args (ports moved to free
    loopback ones), against the double: the flags are accepted, the probes answer, the Lease the
    leader-election Role names is the one taken, and the chart-made certificate is served and
    verifies against the caBundle for the Service's DNS name. Needs FERRY_BINARY (set by CTest)."""

    def setUp(self):
        self.binary = os.environ.get("FERRY_BINARY", "")
        if not (self.binary and os.access(self.binary, os.X_OK)):
            self.skipTest("FERRY_BINARY is not set to a built ferry (CTest sets it)")
        self.tmp = tempfile.mkdtemp(dir=_tmp)
        self.proc, self.kubeconfig = free_port_double(self.tmp)
        self.addCleanup(stop_by_pid, self.proc)

    def kubectl(self, *args):
        return subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", self.tmp + "/cache", *args],
                              capture_output=True, text=True, timeout=120, check=True)

    def start(self, docs, certs=None):
        ports = [free_port() for _ in range(4)]
        replace = {"--metrics-bind-address=:8080": f"--metrics-bind-address=127.0.0.1:{ports[0]}",
                   "--health-probe-bind-address=:8081": f"--health-probe-bind-address=127.0.0.1:{ports[1]}",
                   "--webhook-port=9443": f"--webhook-port={ports[2]}",
                   "--registry-events-bind-address=:8082": f"--registry-events-bind-address=127.0.0.1:{ports[3]}",
                   f"--webhook-cert-dir={CERT_DIR}": f"--webhook-cert-dir={certs}"}
        args = container(one(docs, "Deployment"))["args"]
        self.assertEqual(args[0], "operator", "args follow ENTRYPOINT [/usr/local/bin/ferry]")
        args = [replace.get(a, a) for a in args]
        self.assertFalse([a for a in args if a.endswith((":8080", ":8081", ":8082", CERT_DIR))], args)
        if certs:
            args.append("--webhook-host=127.0.0.1")
        log = open(os.path.join(self.tmp, "operator.log"), "w")
        proc = subprocess.Popen([self.binary, *args, "--kubeconfig", self.kubeconfig],
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.addCleanup(stop_by_pid, proc)
        return proc, ports

    def wait_ready(self, proc, port):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.assertIsNone(proc.poll(), pathlib.Path(self.tmp, "operator.log").read_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.fail("the operator did not become ready:\n" + pathlib.Path(self.tmp, "operator.log").read_text())

    def test_full_values(self):
        import http.client
        import ssl
        docs = render(FULL_VALUES)
        text = "".join("---\n" + yaml.safe_dump(d) for d in docs
                       if d["kind"] in ("CustomResourceDefinition", "Namespace"))
        path = os.path.join(self.tmp, "crds.yaml")
        pathlib.Path(path).write_text(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n" + text)
        self.kubectl("apply", "-f", path)
        secret = one(docs, "Secret", "ferry-webhook-tls")
        certs = os.path.join(self.tmp, "certs")
        os.makedirs(certs)
        for key in ("tls.crt", "tls.key"):
            pathlib.Path(certs, key).write_bytes(base64.b64decode(secret["data"][key]))
        proc, (metrics, health, webhook, events) = self.start(docs, certs)
        self.wait_ready(proc, health)
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=5) as r:
            self.assertEqual(r.status, 200)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
            self.assertIn("ferry_leader", r.read().decode())
        # --leader-elect with the chart's namespace and id: the Lease the Role's resourceNames allow.
        role = one(docs, "Role", "ferry-leaderelection")
        deadline = time.monotonic() + 20
        holder = ""
        while not holder and time.monotonic() < deadline:
            holder = self.kubectl("get", "lease", "-n", role["metadata"]["namespace"], "-o",
                                  "jsonpath={.items[*].spec.holderIdentity}").stdout.strip()
            time.sleep(0.2)
        self.assertTrue(holder, "no Lease was taken")
        names = self.kubectl("get", "lease", "-n", role["metadata"]["namespace"], "-o", "name").stdout.split()
        self.assertEqual(names, [f"lease.coordination.k8s.io/{role['rules'][0]['resourceNames'][0]}"])
        # The webhook serves the chart-made certificate, valid for the Service name under the caBundle.
        hook = one(docs, "ValidatingWebhookConfiguration")["webhooks"][0]
        ctx = ssl.create_default_context(cadata=base64.b64decode(hook["clientConfig"]["caBundle"]).decode())
        service = hook["clientConfig"]["service"]
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": "c0ffee", "operation": "CREATE",
                              "kind": {"group": "ferry.dev", "version": "v1alpha1", "kind": "ReplicationConfig"},
                              "object": {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig",
                                         "metadata": {"name": "to-itself"},
                                         "spec": {"registryId": "111111111111", "region": "us-east-1", "rules": [
                                             {"destinations": [{"region": "us-east-1",
                                                                "registryId": "111111111111"}]}]}}}}
        deadline = time.monotonic() + 20
        while True:
            try:
                raw = socket.create_connection(("127.0.0.1", webhook), timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", webhook, timeout=10)
        conn.sock = ctx.wrap_socket(raw, server_hostname=f"{service['name']}.{service['namespace']}.svc")
        conn.request("POST", service["path"], json.dumps(review), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        self.assertEqual(resp.status, 200, answer)
        self.assertEqual(answer["response"]["uid"], "c0ffee")
        self.assertFalse(answer["response"]["allowed"])
        # Give it work (Secrets to read, status to write, events to record), then check that every
        # request it made is one the chart's RBAC allows its ServiceAccount.
        for example in ("secrets.yaml", "registries.yaml", "cross-region.yaml", "cross-account.yaml"):
            self.kubectl("apply", "-f", str(ROOT / "examples" / example))
        server = json.loads(pathlib.Path(self.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]

        def operator_requests():
            with urllib.request.urlopen(server + "/__double/requests", timeout=5) as r:
                return [q for q in json.load(r) if not q["userAgent"].startswith("kubectl")]
        wanted = {("update", "ferry.dev", "replicationconfigs/status"), ("create", "events.k8s.io", "events"),
                  ("watch", "", "secrets"), ("update", "coordination.k8s.io", "leases"),
                  ("update", "", "configmaps"), ("create", "", "configmaps")}
        deadline = time.monotonic() + 30
        seen = set()
        while not wanted <= seen and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = {request_attributes(q)[:3] for q in operator_requests() if request_attributes(q)}
        self.assertLessEqual(wanted, seen, "the operator did not get to work")
        # The chart's --registry-events-bind-address serves the notification path (the engine
        # answers for a Registry it does not know; a standby or starting operator answers 503).
        deadline = time.monotonic() + 20
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", events, timeout=10)
            conn.request("POST", "/registry-events/no-such-registry", json.dumps({"events": []}),
                         {"Content-Type": "application/vnd.docker.distribution.events.v1+json"})
            resp = conn.getresponse()
            body = resp.read().decode()
            conn.close()
            if resp.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(resp.status, 404, body)
        self.assertIn("no-such-registry", body)
        os.kill(proc.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=40), 0)
        requests = operator_requests()
        self.assertTrue(requests)
        denied = sorted({f"{q['method']} {q['path']} {q['query']}" for q in requests
                         if request_attributes(q) and not rbac_allows(docs, request_attributes(q))})
        self.assertEqual(denied, [], "requests the chart's RBAC would refuse")

    def test_secrets_watched_only_where_the_chart_grants_them(self):
        docs = render({"rbac": {"secrets": {"namespaces": [NS, "team-b"]}}})
        self.assertIn(f"--secret-namespaces={NS},team-b", container(one(docs, "Deployment"))["args"])
        crds = by_kind(docs, "CustomResourceDefinition")
        path = os.path.join(self.tmp, "crds.yaml")
        pathlib.Path(path).write_text("".join(f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n"
                                              for n in (NS, "team-b"))
                                      + "".join("---\n" + yaml.safe_dump(d) for d in crds))
        self.kubectl("apply", "-f", path)
        proc, (_, health, _, _) = self.start(docs)
        self.wait_ready(proc, health)  # ready: every informer, one per Secret namespace, has listed
        self.kubectl("apply", "-f", str(ROOT / "examples" / "secrets.yaml"))
        self.kubectl("apply", "-f", str(ROOT / "examples" / "registries.yaml"))
        os.kill(proc.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=40), 0)
        server = json.loads(pathlib.Path(self.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
        with urllib.request.urlopen(server + "/__double/requests", timeout=5) as r:
            requests = [q for q in json.load(r) if not q["userAgent"].startswith("kubectl")]
        secret_paths = {q["path"] for q in requests if "/secrets" in q["path"]}
        self.assertEqual(secret_paths, {f"/api/v1/namespaces/{NS}/secrets", "/api/v1/namespaces/team-b/secrets"})
        denied = sorted({f"{q['method']} {q['path']} {q['query']}" for q in requests
                         if request_attributes(q) and not rbac_allows(docs, request_attributes(q))})
        self.assertEqual(denied, [], "requests the chart's RBAC would refuse")

    def test_default_values(self):
        docs = render()
        crds = by_kind(docs, "CustomResourceDefinition")
        path = os.path.join(self.tmp, "crds.yaml")
        pathlib.Path(path).write_text(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
                                      + "".join("---\n" + yaml.safe_dump(d) for d in crds))
        self.kubectl("apply", "-f", path)
        proc, (_, health, _, _) = self.start(docs)
        self.wait_ready(proc, health)
        os.kill(proc.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=40), 0)


def request_attributes(request):
    """(verb, group, resource[/subresource], namespace, name) of an API request, as kube-apiserver's
    RBAC authorizer sees it; None for non-resource paths (discovery, /version, /openapi)."""
    parts = request["path"].strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + ("/" + rest[2] if len(rest) > 2 else "")
    name = rest[1] if len(rest) > 1 else ""
    method = request["method"]
    if method == "GET":
        verb = "get" if name else ("watch" if request["query"].get("watch") in ("true", "1") else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}[method]
    return verb, group, resource, namespace, name


def rbac_allows(docs, attrs, sa_name="ferry", sa_namespace=NS):
    """Whether the rendered (Cluster)Roles bound to the ServiceAccount allow the request (RBAC rules)."""
    verb, group, resource, namespace, name = attrs
    subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding") or subject not in binding.get("subjects", []):
            continue
        if binding["kind"] == "RoleBinding" and binding["metadata"]["namespace"] != namespace:
            continue
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], binding["metadata"]["namespace"] if ref["kind"] == "Role" else "", ref["name"]))
        for rule in (role or {}).get("rules", []):
            if (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) \
                    and (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) \
                    and (verb in rule["verbs"] or "*" in rule["verbs"]) \
                    and (not rule.get("resourceNames") or (name and name in rule["resourceNames"])):
                return True
    return False


class ExamplesTest(unittest.TestCase):
    """examples/gitops and examples/registry hold non-Ferry configuration; they must at least parse."""

    def test_gitops_examples_parse(self):
        files = sorted((ROOT / "examples" / "gitops").rglob("*.yaml"))
        self.assertTrue(files)
        kinds = set()
        for path in files:
            with self.subTest(file=str(path.relative_to(ROOT))):
                text = path.read_text(encoding="utf-8")
                self.assertTrue(text.startswith("# "), "starts with a comment saying what it is for")
                for doc in load_docs(text):
                    self.assertIn("apiVersion", doc)
                    kinds.add((doc["apiVersion"].split("/")[0], doc["kind"]))
        self.assertTrue({("argoproj.io", "Application"), ("kustomize.toolkit.fluxcd.io", "Kustomization"),
                         ("source.toolkit.fluxcd.io", "GitRepository")} <= kinds, kinds)

    def test_registry_config_wires_notifications_to_ferry(self):
        files = sorted((ROOT / "examples" / "registry").glob("*"))
        self.assertTrue(files)
        for path in files:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
            endpoint = config["notifications"]["endpoints"][0]
            self.assertRegex(endpoint["url"], r"/registry-events/[a-z0-9-]+$")
            self.assertTrue(endpoint["headers"]["Authorization"][0].startswith("Bearer "))
            self.assertIn("application/octet-stream", endpoint["ignoredmediatypes"])
            self.assertEqual(config["version"], 0.1)


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

    def test_runtime_packages_exist_in_debian_12(self):
        text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
        marker = "RUNTIME_PACKAGES="
        line = next(l for l in text.splitlines() if marker in l)
        packages = line.split(marker, 1)[1].strip().strip('"').split()
        self.assertTrue(packages)
        if not shutil.which("apt-cache"):
            self.skipTest("apt-cache not available")
        probe = subprocess.run(["apt-cache", "policy", "libc6"], capture_output=True, text=True)
        if "Candidate: (none)" in probe.stdout or "Candidate" not in probe.stdout:
            self.skipTest("no apt package lists here")
        for p in packages:
            with self.subTest(package=p):
                out = subprocess.run(["apt-cache", "policy", p], capture_output=True, text=True).stdout
                self.assertIn("Candidate:", out, f"{p} is not a Debian package known here")
                self.assertNotIn("Candidate: (none)", out)


class DockerfileLibrariesTest(unittest.TestCase):
    def test_runtime_packages_cover_what_ferry_links(self):
        """Every shared library of the built binary comes from RUNTIME_PACKAGES or debian:12-slim itself."""
        binary = os.environ.get("FERRY_BINARY", "")
        if not (binary and os.access(binary, os.X_OK) and shutil.which("ldd") and shutil.which("dpkg")):
            self.skipTest("needs FERRY_BINARY (set by CTest), ldd and dpkg")
        text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
        line = next(l for l in text.splitlines() if "RUNTIME_PACKAGES=" in l)
        packages = set(line.split("RUNTIME_PACKAGES=", 1)[1].strip().strip('"').split())
        base = {"libc6", "libgcc-s1", "libstdc++6"}   # in debian:12-slim already
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        if "libasan" in out:
            # FERRY_SANITIZE=ON links the sanitizer runtimes (and so pulls in more of Boost); the
            # Dockerfile builds without them, and that binary is what this test speaks for.
            self.skipTest("sanitizer build: the Dockerfile's Release build links differently")
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
            with self.subTest(library=path):
                self.assertIn(package, packages | base, f"{path} comes from {package}, not in RUNTIME_PACKAGES")


if __name__ == "__main__":
    unittest.main()
