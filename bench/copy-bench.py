#!/usr/bin/env python3
"""Copy benchmarks of SPEC §5 (W1–W3): Ferry side by side with skopeo, crane and regsync, on
docker-registry 2.8 and on distribution v3, medians over --rounds rounds. One command from a clone:

  python3 bench/copy-bench.py [--json FILE] [--registry dist2|dist3|both] [--rounds 3]
      [--workloads W1,W2,W3] [--big-mib 256] [--fleet-images 50] [--fleet-repos 10]
      [--base-mib 20] [--unique-kib 512] [--index-layer-mib 8] [--ferry PATH] [--ferry-args ARGS]
      [--rtt-ms MS] [--keep]

Ferry is $FERRY / --ferry, else a Release build in build-bench/ (built here when missing). crane,
regsync and distribution v3 (`registry-v3`) come from $FERRY_PEERS_BIN (default
~/.cache/ferry-peers/bin), built by `bash scripts/test-peers.sh` (run here when one is missing);
skopeo, docker-registry and curl are Debian packages (scripts/install-deps.sh, run here when one
is missing).

Every measurement starts a fresh source registry (hard-linked copy of a seed registry's storage)
and a fresh empty destination of the same implementation, times one tool, checks that every
destination manifest has the source's bytes, and stops both. Tools are interleaved per round.

JSON (--json FILE): with one registry, one document
  {"registry": ..., "workloads": {"W1": {...}, "W2": {...}, "W3": {...}}}
(the shape of issue 17); with --registry both (the default) a JSON array of the two documents,
docker-registry 2.8 first. Seconds are medians; W1.ferry_rss_mib is Ferry's peak RSS (max over
rounds); W2.saturation is the CPU seconds of the two registries and Ferry ÷ (cores × wall) during
Ferry's W2 copy; W2.requests_per_image is the HTTP requests both registries logged during that
copy (their access logs) per image, next to min_requests_per_image (see minimum_requests()).
"""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "tests", "support", "oci_image.py")
PROXY = os.path.join(ROOT, "bench", "delay-proxy.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3})')

# Tools per workload, in the order they run in a round.
TOOLS = {
    "W1": ["ferry", "raw", "skopeo", "crane"],
    "W2": ["ferry", "skopeo_sync", "regsync", "crane"],
    "W3": ["ferry", "skopeo", "crane"],
}


def log(msg):
    print(f"copy-bench: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a live process (every thread), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, dict(r.headers), r.read()


class Registry:
    """One registry process (docker-registry 2.8 or distribution v3) on a free loopback port, its
    access log (stdout) apart from its own log (stderr)."""

    def __init__(self, bench, kind, directory, seed_data=None):
        self.bench, self.kind, self.dir = bench, kind, directory
        os.makedirs(directory)
        data = os.path.join(directory, "data")
        if seed_data:
            subprocess.run(["cp", "-al", seed_data, data], check=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = os.path.join(directory, "config.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\n"
                    "log: {level: error}\n"
                    f"storage: {{filesystem: {{rootdirectory: {data}}}, delete: {{enabled: false}}}}\n"
                    f"http: {{addr: {self.host}}}\n")
        self.access_log = os.path.join(directory, "access.log")
        self.proc = subprocess.Popen([bench.registry_bin[kind], "serve", config],
                                     stdout=open(self.access_log, "wb"),
                                     stderr=open(os.path.join(directory, "log"), "wb"))
        bench.procs.append(self.proc)
        deadline = time.monotonic() + 20
        while True:
            try:
                http("GET", f"http://{self.host}/v2/")
                break
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    die(f"{kind} registry in {directory} did not start (see {directory}/log)")
                time.sleep(0.05)
        # What the tools are given: the registry itself, or a delay proxy in front of it (--rtt-ms).
        self.addr = self.host
        if bench.a.rtt_ms > 0:
            port = free_port()
            self.proxy = subprocess.Popen([sys.executable, PROXY, str(port), str(self.port), str(bench.a.rtt_ms / 2)],
                                          stdout=subprocess.PIPE, stderr=open(os.path.join(directory, "proxy.log"), "wb"))
            bench.procs.append(self.proxy)
            if self.proxy.stdout.readline().strip() != b"ready":
                die(f"the delay proxy for {directory} did not start (see {directory}/proxy.log)")
            self.addr = f"127.0.0.1:{port}"

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def requests(self):
        """(method, path, status) of every request in the access log so far."""
        with open(self.access_log, errors="replace") as f:
            return [m.groups() for m in map(ACCESS_LINE.search, f) if m]

    def manifest(self, repo, ref, via_proxy=False):
        return http("GET", f"http://{self.addr if via_proxy else self.host}/v2/{repo}/manifests/{ref}",
                    headers={"Accept": ACCEPT})

    def stop(self):
        self.bench.stop(self.proc)
        if getattr(self, "proxy", None):
            self.bench.stop(self.proxy)


class Bench:
    def __init__(self, args):
        self.a = args
        self.procs = []
        self.work = tempfile.mkdtemp(prefix="ferry-bench-")
        self.registry_bin = {}
        self.seed_data = {}
        self.results = {}  # (registry kind, workload, tool) -> list of seconds
        self.ferry_stats = {}  # (kind, workload) -> list of dicts (rss, saturation, requests)

    # ---- processes
    def stop(self, proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p)
        if self.a.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def run(self, cmds, name):
        """Runs each command of `cmds` one after another (each a list, or a list of lists run at
        once); returns (wall seconds, CPU seconds, peak RSS KiB) from wait4 of every process."""
        err = os.path.join(self.work, f"{name}.err")
        cpu, rss = 0.0, 0
        t0 = time.monotonic()
        for step in cmds:
            group = step if isinstance(step[0], list) else [step]
            started = []
            for cmd in group:
                p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(err, "ab"))
                self.procs.append(p)
                started.append((p, cmd))
            for p, cmd in started:
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                self.procs.remove(p)
                cpu += ru.ru_utime + ru.ru_stime
                rss = max(rss, ru.ru_maxrss)
                if p.returncode != 0:
                    with open(err, errors="replace") as f:
                        tail = f.read()[-2000:]
                    die(f"{name}: {' '.join(cmd[:3])} ... exited {p.returncode}\n{tail}")
        return time.monotonic() - t0, cpu, rss

    # ---- setup
    def find_tools(self):
        a = self.a
        # From a fresh clone the one command gets what it needs: Debian's tools, then the peers.
        if not all(shutil.which(t) for t in ("skopeo", "curl", "docker-registry")):
            log("installing skopeo, curl and docker-registry (scripts/install-deps.sh)")
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-deps.sh")], check=True)
        peers = os.environ.get("FERRY_PEERS_BIN", os.path.expanduser("~/.cache/ferry-peers/bin"))
        if not all(os.access(os.path.join(peers, t), os.X_OK) for t in ("crane", "regsync", "registry-v3")):
            log("building crane, regsync and distribution v3 (scripts/test-peers.sh; the first time takes about 16 min)")
            out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "test-peers.sh")], check=True,
                                 stdout=subprocess.PIPE, text=True).stdout
            peers = out.strip().splitlines()[-1]
        hint = f"build them with `bash scripts/test-peers.sh` (FERRY_PEERS_BIN={peers})"
        self.crane = os.path.join(peers, "crane")
        self.regsync = os.path.join(peers, "regsync")
        for tool in (self.crane, self.regsync):
            if not os.access(tool, os.X_OK):
                die(f"{tool} is missing: {hint}")
        for tool in ("skopeo", "curl", "bash"):
            if not shutil.which(tool):
                die(f"{tool} is required (bash scripts/install-deps.sh)")
        if "dist2" in a.kinds:
            self.registry_bin["dist2"] = shutil.which("docker-registry") or die(
                "docker-registry (Distribution 2.8) is required (bash scripts/install-deps.sh)")
        if "dist3" in a.kinds:
            for name in ("registry-v3", "registry"):
                path = os.path.join(peers, name)
                if os.access(path, os.X_OK):
                    self.registry_bin["dist3"] = path
                    break
            else:
                die(f"distribution v3 ({peers}/registry-v3) is missing: {hint}")
        self.ferry_args = a.ferry_args
        self.ferry = a.ferry or os.environ.get("FERRY")
        if not self.ferry:
            self.ferry = os.path.join(ROOT, "build-bench", "operator", "ferry")
            if not os.access(self.ferry, os.X_OK):
                log("building a Release ferry into build-bench/")
                subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-deps.sh")], check=True)
                subprocess.run(["cmake", "-S", ROOT, "-B", os.path.join(ROOT, "build-bench"), "-G", "Ninja",
                                "-DCMAKE_BUILD_TYPE=Release", "-DFERRY_TESTS=OFF"], check=True,
                               stdout=subprocess.DEVNULL)
                subprocess.run(["cmake", "--build", os.path.join(ROOT, "build-bench"), "-j2", "--target", "ferry"],
                               check=True, stdout=subprocess.DEVNULL)
        if not os.access(self.ferry, os.X_OK):
            die(f"no ferry binary at {self.ferry}")

    def version(self, kind):
        binary = self.registry_bin[kind]
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
        v = out[2] if len(out) > 2 else "?"
        marker = os.path.join(os.path.dirname(binary), f".{os.path.basename(binary)}.version")
        if kind == "dist3" and ("unknown" in v or v == "?") and os.path.exists(marker):
            with open(marker) as f:  # scripts/test-peers.sh records the version it built
                v = f.read().strip()
        return ("docker-registry " if kind == "dist2" else "distribution ") + v

    def fleet(self):
        """(repo, tag) of the W2 images, in order."""
        a = self.a
        return [(f"team{i % a.fleet_repos}/svc", f"v{i}") for i in range(a.fleet_images)]

    def generate(self):
        a = self.a
        log(f"generating workloads in {self.work} (W1 {a.big_mib} MiB; W2 {a.fleet_images} images/"
            f"{a.fleet_repos} repos, {a.base_mib} MiB base + {a.unique_kib} KiB unique; W3 4-platform index, "
            f"{a.index_layer_mib} MiB per platform)")
        gen = [sys.executable, GEN]
        q = {"stdout": subprocess.DEVNULL, "check": True}
        if "W1" in a.workloads:
            subprocess.run(gen + ["image", f"{self.work}/oci-big", "v1", "--layer-bytes", str(a.big_mib << 20),
                                  "--seed", "big"], **q)
        if "W2" in a.workloads:
            subprocess.run(gen + ["image", f"{self.work}/oci-fleet", "img", "--count", str(a.fleet_images),
                                  "--base-bytes", str(a.base_mib << 20), "--layer-bytes", str(a.unique_kib << 10),
                                  "--seed", "fleet"], **q)
        if "W3" in a.workloads:
            subprocess.run(gen + ["index", f"{self.work}/oci-index", "v1", "--layer-bytes",
                                  str(a.index_layer_mib << 20), "--seed", "index"], **q)

    def seed(self, kind):
        reg = Registry(self, kind, os.path.join(self.work, f"seed-{kind}"))
        pushes = []
        if "W1" in self.a.workloads:
            pushes.append((f"{self.work}/oci-big:v1", "big/app:v1"))
        if "W2" in self.a.workloads:
            pushes += [(f"{self.work}/oci-fleet:img{i}", f"{repo}:{tag}") for i, (repo, tag) in enumerate(self.fleet())]
        if "W3" in self.a.workloads:
            pushes.append((f"{self.work}/oci-index:v1", "multi/arch:v1"))
        for src, dst in pushes:
            subprocess.run(["skopeo", "copy", "-q", "--all", "--preserve-digests", "--dest-tls-verify=false",
                            f"oci:{src}", f"docker://{reg.host}/{dst}"], check=True)
        if "W2" in self.a.workloads:
            self.min_requests = minimum_requests(reg, self.fleet())
        reg.stop()
        self.seed_data[kind] = os.path.join(reg.dir, "data")

    # ---- one measurement
    def images(self, workload):
        if workload == "W1":
            return [("big/app", "v1")]
        if workload == "W3":
            return [("multi/arch", "v1")]
        return self.fleet()

    def commands(self, workload, tool, src, dst):
        s, d = src.addr, dst.addr
        ferry = [self.ferry, "copy", "--src-insecure", "--dest-insecure", "-q"] + shlex.split(self.ferry_args)
        sk = ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests"]
        crane = [self.crane, "copy", "--insecure"]
        repo, tag = self.images(workload)[0]
        one = (f"{s}/{repo}:{tag}", f"{d}/{repo}:{tag}")
        if workload in ("W1", "W3"):
            return {
                "ferry": [ferry + list(one)],
                "skopeo": [sk + (["--all"] if workload == "W3" else []) + [f"docker://{x}" for x in one]],
                "crane": [crane + list(one)],  # crane copies every child of an index
            }[tool]
        repos = sorted({r for r, _ in self.fleet()}, key=lambda r: int(r[4:].split("/")[0]))
        if tool == "ferry":
            listing = os.path.join(self.work, "ferry-list")
            with open(listing, "w") as f:
                for r, t in self.fleet():
                    f.write(f"{s}/{r}:{t} {d}/{r}:{t}\n")
            return [ferry + ["--from-file", listing]]
        if tool == "skopeo_sync":
            conf = os.path.join(self.work, "sync.yaml")
            with open(conf, "w") as f:
                f.write(f"{s}:\n  tls-verify: false\n  images-by-tag-regex:\n")
                for r in repos:
                    f.write(f"    {r}: '.*'\n")
            return [["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
                     "--preserve-digests", conf, d]]
        if tool == "regsync":
            conf = os.path.join(self.work, "regsync.yaml")
            with open(conf, "w") as f:
                f.write(f"version: 1\ncreds:\n  - registry: {s}\n    tls: disabled\n"
                        f"  - registry: {d}\n    tls: disabled\nsync:\n")
                for r in repos:
                    f.write(f"  - source: {s}/{r}\n    target: {d}/{r}\n    type: repository\n")
            return [[self.regsync, "once", "-c", conf, "-v", "error"]]
        if tool == "crane":  # crane copy --all-tags, one repository after another
            return [crane + ["--all-tags", f"{s}/{r}", f"{d}/{r}"] for r in repos]
        raise KeyError(tool)

    def raw(self, src, dst, repo, tag):
        """The floor of W1: the manifest, then every blob as curl GET | curl -T - PUT (chunked,
        monolithic upload), all blobs at once, then the manifest PUT. Returns (wall, cpu)."""
        t0 = time.monotonic()
        _, headers, body = src.manifest(repo, tag, via_proxy=True)
        m = json.loads(body)
        script = ('loc=$(curl -sf -X POST -D - -o /dev/null "http://$2/v2/$3/blobs/uploads/" | tr -d "\\r" |'
                  ' awk \'tolower($1)=="location:" {print $2}\')\n'
                  'case $loc in http*) ;; *) loc="http://$2$loc" ;; esac\n'
                  'curl -sf "http://$1/v2/$3/blobs/$4" | curl -sf -X PUT -T - '
                  '-H "Content-Type: application/octet-stream" -o /dev/null "$loc&digest=$4"\n')
        blobs = [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]
        _, cpu, _ = self.run([[["bash", "-ec", script, "raw", src.addr, dst.addr, repo, dg] for dg in blobs]], "raw")
        http("PUT", f"http://{dst.addr}/v2/{repo}/manifests/{tag}", data=body,
             headers={"Content-Type": headers.get("Content-Type", m.get("mediaType", ""))})
        return time.monotonic() - t0, cpu

    def check(self, workload, tool, src, dst):
        for repo, tag in self.images(workload):
            drepo = repo.rsplit("/", 1)[-1] if tool == "skopeo_sync" else repo  # sync drops the path
            _, _, want = src.manifest(repo, tag)
            try:
                _, _, got = dst.manifest(drepo, tag)
            except urllib.error.HTTPError as e:
                die(f"{workload}/{tool}: {dst.host}/{drepo}:{tag} missing ({e.code})")
            if got != want:
                die(f"{workload}/{tool}: {drepo}:{tag} has different manifest bytes")
            for child in json.loads(want).get("manifests", []):
                _, _, g = dst.manifest(drepo, child["digest"])

    def measure(self, kind, workload, tool):
        rdir = os.path.join(self.work, "round")
        shutil.rmtree(rdir, ignore_errors=True)
        src = Registry(self, kind, os.path.join(rdir, "src"), self.seed_data[kind])
        dst = Registry(self, kind, os.path.join(rdir, "dst"))
        before_req = (len(src.requests()), len(dst.requests()))
        before_cpu = src.cpu() + dst.cpu()
        if tool == "raw":
            wall, cpu = self.raw(src, dst, *self.images(workload)[0])
            rss = 0
        else:
            wall, cpu, rss = self.run(self.commands(workload, tool, src, dst), f"{workload}-{tool}")
        registries_cpu = src.cpu() + dst.cpu() - before_cpu
        time.sleep(0.2)  # the access log line is written after the response
        reqs = src.requests()[before_req[0]:] + dst.requests()[before_req[1]:]
        self.check(workload, tool, src, dst)
        src.stop()
        dst.stop()
        self.results.setdefault((kind, workload, tool), []).append(wall)
        if tool == "ferry":
            self.ferry_stats.setdefault((kind, workload), []).append({
                "rss_mib": rss / 1024,
                "saturation": (registries_cpu + cpu) / (CORES * wall),
                "requests": reqs,
            })
        log(f"{kind} {workload} {tool}: {wall:.3f} s")


def minimum_requests(reg, fleet):
    """The fewest HTTP requests a copy of the fleet into an empty registry needs, over both
    registries: per image one manifest GET (source), one HEAD per blob at the destination and one
    manifest PUT; per blob the first time it is copied an upload (a source blob GET, then POST and
    PUT at the destination: Distribution has no single-request upload), and per later repository
    that needs it one cross-repository mount (one POST). This is SPEC §5's formula; a client that
    remembers what it pushed in the same run can skip some of those HEADs and land below it."""
    total, seen, in_repo = 0, set(), set()
    for repo, tag in fleet:
        m = json.loads(reg.manifest(repo, tag)[2])
        blobs = [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]
        total += 2 + len(blobs)
        for b in blobs:
            if (repo, b) in in_repo:
                continue
            in_repo.add((repo, b))
            total += 1 if b in seen else 3
            seen.add(b)
    return total / len(fleet)


def kind_of(path):
    """A request's kind for the breakdown: 'HEAD blob', 'POST mount', 'GET manifest', ..."""
    method, path, _ = path
    if "/blobs/uploads/" in path:
        what = "mount" if "mount=" in path else "upload"
    elif "/blobs/" in path:
        what = "blob"
    elif "/manifests/" in path:
        what = "manifest"
    elif "/tags/list" in path:
        what = "tags"
    else:
        what = path.split("?")[0]
    return f"{method} {what}"


def median(values):
    return round(statistics.median(values), 3) if values else None


def report(bench, kind):
    a = bench.a
    res = lambda w, t: median(bench.results.get((kind, w, t), []))  # noqa: E731
    doc = {"registry": bench.version(kind), "workloads": {}}
    if a.rtt_ms > 0:
        doc["rtt_ms"] = a.rtt_ms
    rows = []
    for w in a.workloads:
        entry = {t: res(w, t) for t in TOOLS[w]}
        stats = bench.ferry_stats.get((kind, w), [])
        f = entry["ferry"]
        if w == "W1":
            entry["ferry_rss_mib"] = round(max(s["rss_mib"] for s in stats), 1)
            rows.append((w, "ferry", f, None, f"peak RSS {entry['ferry_rss_mib']} MiB <= 64",
                         entry["ferry_rss_mib"] <= 64))
            for t, lim in (("raw", 1.05), ("skopeo", 0.9), ("crane", 1.0)):
                rows.append((w, t, entry[t], entry[t] / f, f"ferry <= {lim} x {t}", f <= lim * entry[t]))
        elif w == "W2":
            entry["saturation"] = round(statistics.median(s["saturation"] for s in stats), 3)
            per = [len(s["requests"]) / a.fleet_images for s in stats]
            entry["requests_per_image"] = round(statistics.median(per), 2)
            entry["min_requests_per_image"] = round(bench.min_requests, 2)
            rows.append((w, "ferry", f, None, f"saturation {entry['saturation']:.2f} >= 0.90",
                         entry["saturation"] >= 0.9))
            rows.append((w, "", None, None, f"requests/image {entry['requests_per_image']} vs min "
                         f"{entry['min_requests_per_image']}",
                         entry["requests_per_image"] <= entry["min_requests_per_image"]))
            for t, lim in (("skopeo_sync", 5), ("regsync", 1.5), ("crane", 1.5)):
                rows.append((w, t, entry[t], entry[t] / f, f"{t}/ferry >= {lim}", entry[t] >= lim * f))
        else:
            rows.append((w, "ferry", f, None, "", None))
            for t, lim in (("skopeo", 3), ("crane", 1)):
                rows.append((w, t, entry[t], entry[t] / f, f"{t}/ferry >= {lim}", entry[t] >= lim * f))
        doc["workloads"][w] = entry
    sizes = {"W1": f"W1 {a.big_mib} MiB", "W2": f"W2 {a.fleet_images} images/{a.fleet_repos} repos, {a.base_mib} MiB "
             f"base + {a.unique_kib} KiB", "W3": f"W3 4 platforms x {a.index_layer_mib} MiB"}
    where = f"loopback + {a.rtt_ms:g} ms round trip (delay proxy)" if a.rtt_ms > 0 else "loopback"
    print(f"\n{doc['registry']}: {a.rounds} round(s), medians in seconds, {CORES} CPUs, {where}, load average "
          f"{os.getloadavg()[0]:.1f} ({'; '.join(sizes[w] for w in a.workloads)})")
    print(f"{'workload':<9}{'tool':<12}{'seconds':>9}{'peer/ferry':>12}  {'target':<40}{'met'}")
    for w, t, sec, ratio, target, ok in rows:
        print(f"{w:<9}{t:<12}{'' if sec is None else f'{sec:.3f}':>9}"
              f"{'' if ratio is None else f'{ratio:.2f}':>12}  {target:<40}{'' if ok is None else ('yes' if ok else 'NO')}")
    if "W2" in a.workloads:
        stats = bench.ferry_stats[(kind, "W2")]
        counts = {}
        for r in stats[len(stats) // 2]["requests"]:
            counts[kind_of(r)] = counts.get(kind_of(r), 0) + 1
        print("W2 ferry requests: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    return doc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", choices=["dist2", "dist3", "both"], default="both",
                   help="docker-registry 2.8, distribution v3, or both (default)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workloads", default="W1,W2,W3")
    p.add_argument("--big-mib", type=int, default=256)
    p.add_argument("--fleet-images", type=int, default=50)
    p.add_argument("--fleet-repos", type=int, default=10)
    p.add_argument("--base-mib", type=int, default=20)
    p.add_argument("--unique-kib", type=int, default=512)
    p.add_argument("--index-layer-mib", type=int, default=8)
    p.add_argument("--ferry", help="ferry binary (default $FERRY, else build-bench/operator/ferry)")
    p.add_argument("--ferry-args", default="", help="more `ferry copy` flags, e.g. \"--jobs 32 --blob-jobs 16\"")
    p.add_argument("--rtt-ms", type=float, default=0,
                   help="put a delay proxy (bench/delay-proxy.py) between the tools and each registry, adding "
                        "this round trip (loopback has none; replication between regions has tens of ms)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args()
    a.kinds = ["dist2", "dist3"] if a.registry == "both" else [a.registry]
    a.workloads = [w.strip().upper() for w in a.workloads.split(",") if w.strip()]
    if not a.workloads or any(w not in TOOLS for w in a.workloads):
        p.error("--workloads is a list of W1, W2, W3")
    bench = Bench(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bench.find_tools()
        bench.generate()
        for kind in a.kinds:
            bench.seed(kind)
        for d in os.listdir(bench.work):
            if d.startswith("oci-"):
                shutil.rmtree(os.path.join(bench.work, d))
        for kind in a.kinds:
            for w in a.workloads:
                for _ in range(a.rounds):
                    for tool in TOOLS[w]:  # interleaved, so drift hits every tool alike
                        bench.measure(kind, w, tool)
        docs = [report(bench, kind) for kind in a.kinds]
        if a.json:
            with open(a.json, "w") as f:
                json.dump(docs[0] if len(docs) == 1 else docs, f, indent=2)
                f.write("\n")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
