"""End-to-end harness: real docker-registry processes as (account, region) registries, skopeo as
the pushing client, and the real `ferry run` binary. Every process started here is stopped by
its PID in cleanup, even when a test fails. Loopback only."""
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SUPPORT = os.path.join(ROOT, "tests", "support")
FERRY = os.environ.get("FERRY_BINARY", os.path.join(ROOT, "build", "operator", "ferry"))
OCI_IMAGE = os.path.join(SUPPORT, "oci_image.py")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
sys.path.insert(0, SUPPORT)
from testproc import free_port, wait_until  # noqa: E402
from kube_control_plane import ControlPlane, peer  # noqa: E402


NOTIFICATION_TYPE = "application/vnd.docker.distribution.events.v1+json"


def post_notification(url, body, authorization=None, content_type=NOTIFICATION_TYPE, timeout=30):
    """POSTs a registry notification body (bytes): (HTTP status, answer text), errors included."""
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    if authorization:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def http_text(url, timeout=5):
    """The body of a GET that answers 2xx (an error status raises)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


class Process:
    """A child process stopped by PID: SIGTERM, then SIGKILL."""

    def __init__(self, args, log_path, env=None):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.log.close()
        return self.proc.returncode

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


# Registry servers a test can stand up: Docker distribution 2.8 (Debian's docker-registry), v3
# (built by scripts/test-peers.sh) and go-containerregistry's registry with the OCI referrers API
# (tests/referrers-registry; in memory, no notifications). Neither distribution has that API.
SERVERS = ("docker-registry", "registry-v3", "referrers")


class Registry:
    """One registry process standing for one (account, region) registry."""

    def __init__(self, workdir, name, registry_id, region, notify_url=None, token=None, htpasswd=None,
                 server="docker-registry"):
        """htpasswd=(user, password): Basic authentication required (an ECR data plane's stand-in)."""
        assert server in SERVERS, server
        assert server != "referrers" or not (notify_url or htpasswd), "the referrers registry has neither"
        self.name, self.registry_id, self.region = name, registry_id, region
        self.server = server
        self.creds = htpasswd
        self.port = free_port()
        self.dir = os.path.join(workdir, "registries", name)
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        lines = [
            "version: 0.1",
            "log: {level: warn}",
            "storage:",
            f"  filesystem: {{rootdirectory: {self.dir}/data}}",
            "  delete: {enabled: true}",
            f"http: {{addr: 127.0.0.1:{self.port}}}",
        ]
        if htpasswd:
            self._write_htpasswd(*htpasswd)
            lines += ["auth:", f"  htpasswd: {{realm: ferry-test, path: {self.dir}/htpasswd}}"]
        if notify_url:
            headers = f"\n    headers: {{Authorization: [Bearer {token}]}}" if token else ""
            lines += [
                "notifications:",
                "  endpoints:",
                f"  - name: ferry\n    url: {notify_url}/registry-events/{name}{headers}",
                "    timeout: 2s\n    threshold: 3\n    backoff: 250ms",
                # Manifest pushes only: without `actions: [pull]` every manifest GET Ferry makes
                # is an event too, queued in the same serial sink (docs/registries.md).
                "    ignore: {mediatypes: [application/octet-stream], actions: [pull]}",
            ]
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._start()

    def _start(self):
        if self.server == "referrers":
            args = [peer("ferry-referrers-registry"), self.host]
        else:
            binary = "docker-registry" if self.server == "docker-registry" else peer("registry-v3")
            args = [binary, "serve", os.path.join(self.dir, "config.yml")]
        self.process = Process(args, os.path.join(self.dir, "registry.log"))
        wait_until(self._up, 10, what=f"registry {self.name} on port {self.port}")

    def _write_htpasswd(self, user, password):
        line = run(["htpasswd", "-nbB", user, password]).stdout.strip()
        with open(os.path.join(self.dir, "htpasswd"), "w") as f:
            f.write(line + "\n")

    def stop(self):
        """Stops the registry process (its data stays); `start_again` brings it back on the same port."""
        self.process.stop()

    def start_again(self, test_procs):
        """Starts the registry again on the same port with the same data; the new process joins
        `test_procs` (stopped by PID at cleanup)."""
        self._start()
        test_procs.append(self.process)

    def restart_with_password(self, password, test_procs):
        """Stops the registry, lets `password` in instead of the old one, starts it on the same port
        with the same data; the new process joins `test_procs` (stopped by PID at cleanup)."""
        self.process.stop()
        self._write_htpasswd(self.creds[0], password)
        self.creds = (self.creds[0], password)
        self._start()
        test_procs.append(self.process)

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def key(self):
        return (self.registry_id, self.region)

    def _up(self):
        try:
            urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
            return True
        except urllib.error.HTTPError as e:
            return e.code == 401 and self.creds is not None
        except Exception:
            return False

    def _skopeo_creds(self, flag="--creds"):
        return [flag, f"{self.creds[0]}:{self.creds[1]}"] if self.creds else []

    def manifest(self, repo, ref):
        """Exact manifest bytes (skopeo inspect --raw), or None when absent."""
        p = run(["skopeo", "inspect", "--raw", "--tls-verify=false", *self._skopeo_creds(),
                 f"docker://{self.host}/{repo}:{ref}"
                 if not ref.startswith("sha256:") else f"docker://{self.host}/{repo}@{ref}"], check=False)
        return p.stdout.encode() if p.returncode == 0 else None

    def _get(self, path):
        req = urllib.request.Request(f"http://{self.host}{path}")
        if self.creds:
            req.add_header("Authorization", "Basic " + base64.b64encode(":".join(self.creds).encode()).decode())
        return urllib.request.urlopen(req, timeout=5)

    def _send(self, method, path_or_url, data=None, headers=None):
        """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
        url = path_or_url if path_or_url.startswith("http") else f"http://{self.host}{path_or_url}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        if self.creds:
            req.add_header("Authorization", "Basic " + base64.b64encode(":".join(self.creds).encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def push_blob(self, repo, data):
        """A monolithic upload (POST, then PUT ?digest=); returns the digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, body = self._send("POST", f"/v2/{repo}/blobs/uploads/")
        assert status == 202, (status, body)
        location = urllib.parse.urljoin(f"http://{self.host}/", headers["Location"])
        location += ("&" if "?" in location else "?") + "digest=" + digest
        status, _, body = self._send("PUT", location, data, {"Content-Type": "application/octet-stream"})
        assert status == 201, (status, body)
        return digest

    def push_manifest(self, repo, ref, body, media_type):
        status, _, answer = self._send("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})
        assert status == 201, (status, answer)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def push_referrer(self, repo, subject, artifact_type, payload, tag_schema=False):
        """An artifact whose subject is the image manifest `subject`, pushed by digest only (no tag),
        as cosign or oras do; with tag_schema, also listed in the sha256-<hex> tag's index (the
        distribution-spec 1.1 fallback for registries without the referrers API). Returns its digest."""
        subject_bytes = self.manifest(repo, subject)
        empty = self.push_blob(repo, b"{}")
        layer = self.push_blob(repo, payload)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(payload)}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_bytes)}}).encode()
        digest = self.push_manifest(repo, "sha256:" + hashlib.sha256(manifest).hexdigest(), manifest, OCI_MANIFEST)
        if tag_schema:
            tag = "sha256-" + subject.split(":", 1)[1]
            existing = self.manifest(repo, tag)
            index = json.loads(existing) if existing else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
            index["manifests"].append({"mediaType": OCI_MANIFEST, "artifactType": artifact_type, "digest": digest,
                                       "size": len(manifest)})
            self.push_manifest(repo, tag, json.dumps(index).encode(), OCI_INDEX)
        return digest

    def referrers(self, repo, digest):
        """The descriptors the referrers API lists for `digest` (None: the registry has no such API)."""
        status, _, body = self._send("GET", f"/v2/{repo}/referrers/{digest}", headers={"Accept": OCI_INDEX})
        return json.loads(body).get("manifests", []) if status == 200 else None

    def tags(self, repo):
        try:
            with self._get(f"/v2/{repo}/tags/list") as r:
                return sorted(json.load(r).get("tags") or [])
        except urllib.error.HTTPError:
            return []

    def catalog(self):
        with self._get("/v2/_catalog") as r:
            return sorted(json.load(r).get("repositories") or [])

    def resource(self, enabled=True, poll="0", endpoint=None, extra=""):
        return (f"apiVersion: ferry.dev/v1alpha1\nkind: Registry\nmetadata: {{name: {self.name}}}\n"
                f"spec:\n  registryId: \"{self.registry_id}\"\n  region: {self.region}\n"
                f"  endpoint: {endpoint or 'http://' + self.host}\n  enabled: {'true' if enabled else 'false'}\n"
                f"  pollInterval: \"{poll}\"\n{extra}")


class Image:
    """An OCI layout written by tests/support/oci_image.py."""

    def __init__(self, workdir, kind="image", tag="v1", seed="s", layer_bytes=4096, **extra):
        self.dir = tempfile.mkdtemp(prefix="img-", dir=workdir)
        self.tag = tag
        args = [sys.executable, OCI_IMAGE, kind, self.dir, tag, "--seed", str(seed), "--layer-bytes", str(layer_bytes)]
        for k, v in extra.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        self.digest = run(args).stdout.strip().split()[-1]

    def push(self, registry, repo, tag=None, all_platforms=False):
        cmd = ["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
               *registry._skopeo_creds("--dest-creds")]
        if all_platforms:
            cmd.append("--all")
        cmd += [f"oci:{self.dir}:{self.tag}", f"docker://{registry.host}/{repo}:{tag or self.tag}"]
        run(cmd)


def replication_config(name, source, destinations, filters=None, rules=None):
    """YAML for a ReplicationConfig; `rules` is a list of (destinations, filters) pairs."""
    rules = rules or [(destinations, filters or [])]
    out = (f"apiVersion: ferry.dev/v1alpha1\nkind: ReplicationConfig\nmetadata: {{name: {name}}}\n"
           f"spec:\n  registryId: \"{source.registry_id}\"\n  region: {source.region}\n  rules:\n")
    for dests, flt in rules:
        out += "  - destinations:\n"
        for d in dests:
            out += f"    - {{region: {d.region}, registryId: \"{d.registry_id}\"}}\n"
        if flt:
            out += "    repositoryFilters:\n" + "".join(f"    - {{filter: {f}, filterType: PREFIX_MATCH}}\n" for f in flt)
    return out


def registry_policy(name, dest, statements):
    return (f"apiVersion: ferry.dev/v1alpha1\nkind: RegistryPolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  registryId: \"{dest.registry_id}\"\n  region: {dest.region}\n"
            f"  policy: '{json.dumps({'Version': '2012-10-17', 'Statement': statements})}'\n")


def allow_statement(source_account, dest, actions=("ecr:CreateRepository", "ecr:ReplicateImage"), sid="Repl"):
    return {"Sid": sid, "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{source_account}:root"},
            "Action": list(actions), "Resource": f"arn:aws:ecr:{dest.region}:{dest.registry_id}:repository/*"}


class Ferry:
    """`ferry run` over a manifests directory and a state directory."""

    def __init__(self, workdir, port=None):
        self.workdir = workdir
        self.manifests = os.path.join(workdir, "manifests")
        self.state = os.path.join(workdir, "state")
        os.makedirs(self.manifests, exist_ok=True)
        self.port = port or free_port()
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def write(self, name, text):
        path = os.path.join(self.manifests, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)

    def remove(self, name):
        os.remove(os.path.join(self.manifests, name))

    def start(self, env=None, args=()):
        self.process = Process([FERRY, "run", "--manifests", self.manifests, "--state-dir", self.state,
                                "--listen", f"127.0.0.1:{self.port}", *args], os.path.join(self.workdir, "ferry.log"),
                               env=env)
        wait_until(self._ready, 15, what="ferry /readyz")
        return self

    def _ready(self):
        if not self.process.alive():
            raise AssertionError("ferry run exited:\n" + self.process.output())
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def stop(self, sig=signal.SIGTERM):
        return self.process.stop(sig) if self.process else None

    def wait_reload(self, marker_count):
        """Waits until the log shows `marker_count` manifest loads."""
        wait_until(lambda: self.process.output().count("manifests loaded") >= marker_count, 10,
                   what=f"{marker_count} manifest loads")

    def status(self, repo, image, registry=None):
        args = [FERRY, "status", "--state-dir", self.state, "--repository", repo, "--image", image]
        if registry:
            args += ["--registry-id", registry.registry_id, "--region", registry.region]
        p = run(args, check=False)
        # Exit 0 all COMPLETE, 1 one FAILED (or nothing recorded: no output), 3 one IN_PROGRESS.
        return json.loads(p.stdout) if p.returncode in (0, 1, 3) and p.stdout else None

    def backfill_status(self, name):
        """`ferry status --backfill NAME` as JSON, or None while there is none."""
        res = run([FERRY, "status", "--state-dir", self.state, "--backfill", name], check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def wait_backfill(self, name, phases=("COMPLETE", "FAILED"), timeout=60):
        def reached():
            st = self.backfill_status(name)
            return st if st and st.get("phase") in phases else None
        return wait_until(reached, timeout, interval=0.2, what=f"backfill {name} in {phases}")

    def wait_status(self, repo, image, expected, timeout=30):
        """Waits until every destination is finished; returns {(registryId, region): status entry}."""
        def done():
            st = self.status(repo, image)
            if not st:
                return None
            entries = {(s["registryId"], s["region"]): s for s in st["replicationStatuses"]}
            if len(entries) == expected and all(s["status"] != "IN_PROGRESS" for s in entries.values()):
                return entries
            return None
        return wait_until(done, timeout, what=f"replication of {repo}:{image} to {expected} destinations")

    def records(self, kind):
        d = os.path.join(self.state, kind)
        out = []
        for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if f.endswith(".json"):
                with open(os.path.join(d, f)) as fh:
                    out.append(json.load(fh))
        return out

    def post_events(self, registry_name, body, content_type=NOTIFICATION_TYPE, token=None):
        return post_notification(f"{self.url}/registry-events/{registry_name}", body.encode(),
                                 f"Bearer {token}" if token else None, content_type)


class Cluster:
    """Cluster mode: a real kube-apiserver and etcd (tests/support/kube_control_plane.py) with
    Ferry's CRDs and the operator's namespace, real kubectl against it, and `ferry operator` on it,
    serving registry notifications on `events_port`. Every process goes into `procs` (stopped by
    PID by the owner); the operator is stopped by `stop_operator`."""

    NS = "ferry-system"

    def __init__(self, workdir, procs):
        self.workdir, self.procs = workdir, procs
        self.control_plane = ControlPlane(workdir)
        procs.append(self.control_plane)
        self.control_plane.start()
        self.kubeconfig = self.control_plane.kubeconfig
        self.events_port = free_port()
        self.operator = None

    @property
    def url(self):
        """Where registries send notifications."""
        return f"http://127.0.0.1:{self.events_port}"

    def kubectl(self, *args, stdin=None, check=True):
        return run([peer("kubectl"), "--kubeconfig", self.kubeconfig, "--cache-dir",
                    os.path.join(self.workdir, "kcache"), *args], check=check, input=stdin)

    def apply(self, text):
        self.kubectl("apply", "-f", "-", stdin=text)

    def get(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def records(self):
        return self.get("imagereplications")["items"]

    def kstatus(self, resources):
        """Health as Flux and Argo CD compute it (sigs.k8s.io/cli-utils kstatus, tests/kstatus):
        {"Kind/name": "Current" | "InProgress" | "Failed" | ...}."""
        objs = self.kubectl("get", resources, "-o", "json").stdout
        res = subprocess.run([peer("ferry-kstatus")], input=objs, capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise AssertionError("ferry-kstatus failed: " + res.stderr)
        return {line.split(" ")[0]: line.split(" ")[1] for line in res.stdout.splitlines()}

    def start_operator(self, *extra, events_port=None, wait_engine=True, kubeconfig=None, metrics_port=None,
                       env=None):
        """Starts `ferry operator` (the latest one started is `self.operator`); by default waits
        until its replication engine runs. `kubeconfig` defaults to the admin's; `env`, if given,
        is the operator's whole environment."""
        health = free_port()
        self.metrics_port = metrics_port or free_port()
        op = Process([FERRY, "operator", "--kubeconfig", kubeconfig or self.kubeconfig, "--webhook-port", "0",
                      "--health-probe-bind-address", f"127.0.0.1:{health}",
                      "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}",
                      "--registry-events-bind-address", f"127.0.0.1:{events_port or self.events_port}",
                      "--leader-election-namespace", self.NS, *extra],
                     os.path.join(self.workdir, f"operator-{health}.log"), env=env)
        self.operator = op
        if wait_engine:
            self.wait_engine(op)
        return op

    def wait_engine(self, op, timeout=20):
        def engine_started():
            if not op.alive():
                raise AssertionError("ferry operator exited:\n" + op.output())
            return "engine started" in op.output()
        wait_until(engine_started, timeout, what="the replication engine to start")

    def stop_operator(self, sig=signal.SIGTERM, timeout=15):
        return self.operator.stop(sig, timeout) if self.operator else None


class E2ETest(unittest.TestCase):
    """Gives each test a work dir, and stops every registry and Ferry it started."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="ferry-e2e-")
        self.ferry = Ferry(self.workdir)
        self._procs = []
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        if self.ferry.process:
            self.ferry.stop()
            if self._outcome_failed():
                sys.stderr.write("\n--- ferry log ---\n" + self.ferry.process.output()[-6000:])
        for p in self._procs:
            p.stop()
        if os.environ.get("FERRY_KEEP_WORKDIR"):  # debugging: the logs stay
            sys.stderr.write(f"\nwork dir kept: {self.workdir}\n")
            return
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        errors = getattr(getattr(outcome, "result", None), "errors", []) + \
            getattr(getattr(outcome, "result", None), "failures", [])
        return any(t is self for t, _ in errors)

    def registry(self, name, registry_id, region, notify=True, token=None, htpasswd=None, server="docker-registry"):
        r = Registry(self.workdir, name, registry_id, region, self.ferry.url if notify else None, token, htpasswd,
                     server)
        self._procs.append(r.process)
        return r

    def process(self, args, log_name):
        p = Process(args, os.path.join(self.workdir, log_name))
        self._procs.append(p)
        return p

    def image(self, **kw):
        return Image(self.workdir, **kw)

    def same_account_pair(self, registry_id="111111111111"):
        """Registries a (us-east-1) and b (us-west-2) of one account, and a ReplicationConfig a→b
        written to the manifests (Ferry not started)."""
        self.a = self.registry("a", registry_id, "us-east-1")
        self.b = self.registry("b", registry_id, "us-west-2")
        self.ferry.write("regs.yaml", self.a.resource() + "---\n" + self.b.resource())
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.b]))

    def slow_endpoint(self, registry, delay_ms=40, request_log=None, name="proxy", extra=()):
        """An endpoint URL for `registry` through tests/support/fault_proxy.py, which sleeps
        `delay_ms` per 64 KiB of body: copies from it stay in flight long enough to act on.
        With `request_log` (a path), the proxy appends "START END METHOD PATH" per request."""
        args = [sys.executable, os.path.join(SUPPORT, "fault_proxy.py"), "--upstream",
                registry.host, "--delay-ms", str(delay_ms)]
        if request_log:
            args += ["--request-log", request_log]
        args += list(extra)  # more fault_proxy.py flags
        proxy = self.process(args, name + ".log")

        def port():
            lines = [line.strip() for line in proxy.output().splitlines()]
            return next((int(line) for line in lines if line.isdigit()), None)
        return f"http://127.0.0.1:{wait_until(port, 10, what='proxy port')}"

    def wait_copy_in_flight(self):
        """Waits until some destination is authorized (authorizedBy recorded) and still IN_PROGRESS."""
        def started():
            return any(s.get("authorizedBy") and s["status"] == "IN_PROGRESS"
                       for r in self.ferry.records("imagereplications")
                       for s in r.get("status", {}).get("replicationStatuses", []))
        wait_until(started, 20, interval=0.02, what="an authorized copy in flight")
