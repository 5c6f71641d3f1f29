#!/usr/bin/env python3
"""Replication benchmarks for SPEC §5 (issue 5): push → COMPLETE latency with notifications over
N small pushes (p50, p99), and one resync of R repositories × T tags with nothing to copy, with
Ferry's memory. Real docker-registry processes on loopback, skopeo pushing, the real `ferry run`.

  bench/replication-bench.py [--pushes 200] [--repos 1000] [--tags 10] [--cluster-pushes 50]
                             [--cluster-records 0]
                             [--burst 1000] [--burst-destinations 3]

--burst N (0 skips it) pushes N tiny distinct images as fast as one keep-alive connection can PUT
them (the registry notifies Ferry of each) to a source with --burst-destinations destinations,
and reports when the last copy was COMPLETE relative to the last push (target: within 10 s) and
Ferry's CPU per image-destination.

--cluster-pushes N (0 skips it) repeats the latency measurement in cluster mode: `ferry operator`
against a real kube-apiserver and etcd (tests/support/kube_control_plane.py, binaries from
scripts/test-peers.sh), records as ImageReplication objects; the API server's audit log gives the
operator's writes per push. --cluster-records N first creates N finished ImageReplication
objects (COMPLETE, spec and status, through the API as the operator writes them), then starts the
operator and reports its start-up time, threads and memory with them, and the push latency.

Latency is the registry's push timestamp (the notification's event time, kept as pushedAt) to
completedAt in the record; both are written by the processes involved, no client timing."""
import argparse
import hashlib
import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
from harness import Cluster, Ferry, Image, Registry, replication_config, wait_until  # noqa: E402
from datetime import datetime  # noqa: E402


def ts(s):
    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".")
        s = head + "." + (frac + "000000")[:6]
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").timestamp()
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").timestamp()


def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


def threads(pid):
    """How many threads the process runs now (/proc/PID/task)."""
    return len(os.listdir(f"/proc/{pid}/task"))


def cpu_seconds(pid):
    """User + system CPU of a process so far (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies():
    """(busy, total) jiffies of all CPUs from /proc/stat: busy is everything but idle and iowait."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


def push_and_measure(workdir, source, pushes, records, pid):
    """Pushes `pushes` small images to `source` with skopeo; waits until `records()` shows each
    COMPLETE; returns the latencies (registry push time → completedAt) and Ferry's memory."""
    img = Image(workdir, tag="t", seed="lat", count=pushes)
    for i in range(pushes):
        harness.run(["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                     f"oci:{img.dir}:t{i}", f"docker://{source.host}/bench/app:t{i}"])

    def complete():
        done = [r for r in records() if r.get("status", {}).get("progress") == "1/1"]
        return done if len(done) >= pushes else None
    recs = wait_until(complete, 120, interval=0.2, what=f"{pushes} replications")
    lat = [ts(r["status"]["replicationStatuses"][0]["completedAt"]) - ts(r["spec"]["source"]["pushedAt"])
           for r in recs]
    after = rss_kib(pid)
    return {"pushes": pushes, "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat),
            "rss_after_kib": after["VmRSS"], "peak_kib": after["VmHWM"]}


def latency_bench(work, pushes):
    ferry = Ferry(os.path.join(work, "lat"))
    os.makedirs(ferry.workdir, exist_ok=True)
    a = Registry(ferry.workdir, "a", "111111111111", "us-east-1", ferry.url)
    b = Registry(ferry.workdir, "b", "111111111111", "us-west-2", None)
    procs = [a.process, b.process]
    try:
        ferry.write("regs.yaml", a.resource() + "---\n" + b.resource())
        ferry.write("config.yaml", replication_config("a", a, [b]))
        ferry.start()
        idle = rss_kib(ferry.process.pid)
        out = push_and_measure(ferry.workdir, a, pushes, lambda: ferry.records("imagereplications"),
                               ferry.process.pid)
        return dict(out, idle_rss_kib=idle["VmRSS"])
    finally:
        ferry.stop()
        for p in procs:
            p.stop()


def create_finished_records(control_plane, n, workers=8):
    """n COMPLETE ImageReplication objects (create, then the status subresource), over `workers`
    keep-alive connections; returns the seconds it took."""
    now = datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.000Z")  # recent: the TTL sweep keeps them
    base = "/apis/ferry.dev/v1alpha1/imagereplications"
    host = control_plane.url.split("//")[1]

    def obj(i):
        digest = "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()
        return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ImageReplication",
                "metadata": {"name": f"bench-old-{i:07d}", "labels": {"bench": "old"}},
                "spec": {"source": {"registryId": "111111111111", "region": "us-east-1",
                                    "repositoryName": f"old/app-{i % 1000}", "imageDigest": digest,
                                    "imageTag": f"v{i}", "pushedAt": now},
                         "destinations": [{"registryId": "111111111111", "region": "us-west-2"}]}}

    def status(o):
        o["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Replicated",
                                       "message": "every destination is COMPLETE", "lastTransitionTime": now}],
                       "replicationStatuses": [{"region": "us-west-2", "registryId": "111111111111",
                                                "status": "COMPLETE", "startedAt": now, "completedAt": now,
                                                "authorizedBy": "same-account", "tagged": True}],
                       "digestShort": o["spec"]["source"]["imageDigest"][7:19], "progress": "1/1"}
        return o
    errors = []

    def worker(start):
        conn = http.client.HTTPSConnection(host, context=control_plane.ssl_context(), timeout=60)

        def call(method, path, body):
            conn.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {data[:200]}")
            return json.loads(data)
        try:
            for i in range(start, n, workers):
                created = call("POST", base, obj(i))
                call("PUT", f"{base}/{created['metadata']['name']}/status", status(created))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    began = time.monotonic()
    ts_ = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in ts_:
        t.start()
    for t in ts_:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - began


def cluster_latency_bench(work, pushes, existing=0):
    workdir = os.path.join(work, "cluster")
    os.makedirs(workdir, exist_ok=True)
    procs = []
    try:
        cluster = Cluster(workdir, procs)
        a = Registry(workdir, "a", "111111111111", "us-east-1", cluster.url)
        b = Registry(workdir, "b", "111111111111", "us-west-2", None)
        procs += [a.process, b.process]
        cluster.apply(a.resource() + "---\n" + b.resource())
        cluster.apply(replication_config("a", a, [b]))
        populate_s = create_finished_records(cluster.control_plane, existing) if existing else 0.0
        started = time.monotonic()
        op = cluster.start_operator(wait_engine=False)
        cluster.wait_engine(op, timeout=600)
        start_s = time.monotonic() - started
        idle = rss_kib(op.pid)
        idle_threads = threads(op.pid)

        def writes():
            return sum(1 for e in cluster.control_plane.audit(user_agent_prefix="ferry-operator/")
                       if e["verb"] in ("create", "update", "patch"))
        before = writes()
        # The API server filters the pre-created records out (they carry the label bench=old).
        out = push_and_measure(workdir, a, pushes, lambda: cluster.get("imagereplications", "-l", "!bench")["items"],
                               op.pid)
        return dict(out, idle_rss_kib=idle["VmRSS"], writes_per_push=(writes() - before) / pushes,
                    idle_threads=idle_threads, threads=threads(op.pid), existing=existing,
                    populate_s=populate_s, start_s=start_s)
    finally:
        if procs:
            cluster.stop_operator()
        for p in procs:
            p.stop()


def populate(registry, repos, tags):
    """R repositories × T tags of tiny distinct manifests sharing two blobs, over keep-alive HTTP."""
    conn = http.client.HTTPConnection("127.0.0.1", registry.port)

    def req(method, path, body=b"", headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]}")
        return r
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = os.urandom(1024)
    blobs = []
    for blob in (config, layer):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        loc = req("POST", "/v2/seed/blobs/uploads/").getheader("Location")
        path = loc.split("127.0.0.1:%d" % registry.port)[-1]
        req("PUT", f"{path}{'&' if '?' in path else '?'}digest={d}", blob, {"Content-Type": "application/octet-stream"})
        blobs.append((d, len(blob)))
    for i in range(repos):
        repo = f"fleet/r{i:04d}"
        for d, _ in blobs:
            req("POST", f"/v2/{repo}/blobs/uploads/?mount={d}&from=seed")
        for t in range(tags):
            m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                       "digest": blobs[0][0], "size": blobs[0][1]},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                        "digest": blobs[1][0], "size": blobs[1][1]}],
                            "annotations": {"n": f"{i}-{t}"}}).encode()
            req("PUT", f"/v2/{repo}/manifests/t{t}", m, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    conn.close()


def burst_bench(work, pushes, destinations):
    ferry = Ferry(os.path.join(work, "burst"))
    os.makedirs(ferry.workdir, exist_ok=True)
    a = Registry(ferry.workdir, "a", "111111111111", "us-east-1", ferry.url)
    regions = ["us-west-2", "eu-west-1", "ap-south-1", "sa-east-1", "ca-central-1"][:destinations]
    ds = [Registry(ferry.workdir, f"d{i}", "111111111111", region, None) for i, region in enumerate(regions)]
    procs = [a.process] + [d.process for d in ds]
    try:
        ferry.write("regs.yaml", "---\n".join([a.resource()] + [d.resource() for d in ds]))
        ferry.write("config.yaml", replication_config("a", a, ds))
        ferry.start()
        time.sleep(1)  # the configuration applies from now on (S3)
        cpu0, t0, m0 = cpu_seconds(ferry.process.pid), time.time(), machine_jiffies()
        populate(a, 1, pushes)
        last_push = time.time()
        want = f"{destinations}/{destinations}"

        def settled():
            recs = [r for r in ferry.records("imagereplications")
                    if r["spec"]["source"].get("imageTag", "").startswith("t")]
            done = [r for r in recs if r.get("status", {}).get("progress") == want]
            return done if len(done) >= pushes else None
        recs = wait_until(settled, 600, interval=2, what=f"{pushes} pushes × {destinations} destinations")
        cpu = cpu_seconds(ferry.process.pid) - cpu0
        m1 = machine_jiffies()
        busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
        statuses = [st for r in recs for st in r["status"]["replicationStatuses"]]
        last = max(ts(st["completedAt"]) for st in statuses)
        mem = rss_kib(ferry.process.pid)
        # Where the time goes: the registry's notification to the record (intake), the record to
        # its last destination COMPLETE (copies).
        intake = [ts(r["metadata"]["creationTimestamp"]) - ts(r["spec"]["source"]["pushedAt"]) for r in recs]
        copies = [max(ts(st["completedAt"]) for st in r["status"]["replicationStatuses"])
                  - ts(r["metadata"]["creationTimestamp"]) for r in recs]
        return {"pushes": pushes, "destinations": destinations, "push_s": last_push - t0, "machine_busy": busy,
                "intake_p50": percentile(intake, 50), "intake_max": max(intake),
                "copies_p50": percentile(copies, 50), "copies_max": max(copies),
                "after_last_push_s": last - last_push, "complete": sum(st["status"] == "COMPLETE" for st in statuses),
                "cpu_ms_per_copy": cpu * 1000 / (pushes * destinations), "peak_kib": mem["VmHWM"]}
    finally:
        ferry.stop()
        for p in procs:
            p.stop()


def resync_bench(work, repos, tags):
    ferry = Ferry(os.path.join(work, "resync"))
    os.makedirs(ferry.workdir, exist_ok=True)
    s = Registry(ferry.workdir, "s", "111111111111", "us-east-1", None)
    d = Registry(ferry.workdir, "d", "111111111111", "us-west-2", None)
    procs = [s.process, d.process]
    try:
        t0 = time.monotonic()
        populate(s, repos, tags)
        populate_s = time.monotonic() - t0
        ferry.write("regs.yaml", s.resource(poll="5s") + "---\n" + d.resource())
        ferry.write("config.yaml", replication_config("s", s, [d]))
        ferry.start()

        def polls():
            found = re.findall(r'msg="poll complete".* tags=(\d+) new=(\d+) seconds=([0-9.]+)', ferry.process.output())
            return found if len(found) >= 2 else None
        found = wait_until(polls, 300, interval=0.2, what="two polls")
        mem = rss_kib(ferry.process.pid)
        return {"repos": repos, "tags": int(found[1][0]), "baseline_s": float(found[0][2]),
                "resync_s": float(found[1][2]), "new": int(found[1][1]), "rss_kib": mem["VmRSS"],
                "peak_kib": mem["VmHWM"], "populate_s": populate_s, "copied": d.catalog()}
    finally:
        ferry.stop()
        for p in procs:
            p.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pushes", type=int, default=200)
    p.add_argument("--repos", type=int, default=1000)
    p.add_argument("--tags", type=int, default=10)
    p.add_argument("--cluster-pushes", type=int, default=50)
    p.add_argument("--cluster-records", type=int, default=0)
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("--burst-destinations", type=int, default=3)
    args = p.parse_args()
    if not os.path.exists(harness.FERRY):
        sys.exit(f"{harness.FERRY} not built: run scripts/build.sh --target ferry (or set FERRY_BINARY)")
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as work:
        lat = latency_bench(work, args.pushes) if args.pushes > 0 else None
        if lat:
            print(f"push→COMPLETE latency over {lat['pushes']} pushes (notifications, loopback): "
                  f"p50 {lat['p50'] * 1000:.0f} ms (target < 500), p99 {lat['p99'] * 1000:.0f} ms (target < 2000), "
                  f"max {lat['max'] * 1000:.0f} ms")
            print(f"ferry RSS: idle {lat['idle_rss_kib'] / 1024:.1f} MiB (target < 40), after the pushes "
                  f"{lat['rss_after_kib'] / 1024:.1f} MiB, peak {lat['peak_kib'] / 1024:.1f} MiB")
        if args.cluster_pushes > 0:
            cl = cluster_latency_bench(work, args.cluster_pushes, args.cluster_records)
            if cl["existing"]:
                print(f"with {cl['existing']} finished ImageReplication objects already in the API (created in "
                      f"{cl['populate_s']:.0f} s): the operator's engine started {cl['start_s']:.1f} s after "
                      f"the operator did")
            print(f"cluster mode (ferry operator, kube-apiserver + etcd): push→COMPLETE over "
                  f"{cl['pushes']} pushes p50 {cl['p50'] * 1000:.0f} ms (target < 150), p99 {cl['p99'] * 1000:.0f} ms "
                  f"(target < 500), max {cl['max'] * 1000:.0f} ms; API writes per push {cl['writes_per_push']:.1f}; "
                  f"operator RSS idle {cl['idle_rss_kib'] / 1024:.1f} MiB, peak {cl['peak_kib'] / 1024:.1f} MiB; "
                  f"threads idle {cl['idle_threads']}, after the pushes {cl['threads']}")
        if args.burst > 0:
            bu = burst_bench(work, args.burst, args.burst_destinations)
            print(f"burst of {bu['pushes']} pushes in {bu['push_s']:.1f} s × {bu['destinations']} destinations: "
                  f"{bu['complete']} of {bu['pushes'] * bu['destinations']} COMPLETE, the last "
                  f"{bu['after_last_push_s']:.1f} s after the last push (target ≤ 10); ferry CPU "
                  f"{bu['cpu_ms_per_copy']:.2f} ms per image-destination, peak RSS {bu['peak_kib'] / 1024:.1f} MiB; "
                  f"push→record p50 {bu['intake_p50']:.2f} s max {bu['intake_max']:.2f} s, record→COMPLETE p50 "
                  f"{bu['copies_p50']:.2f} s max {bu['copies_max']:.2f} s; machine busy {bu['machine_busy'] * 100:.0f} %")
        rs = resync_bench(work, args.repos, args.tags) if args.repos > 0 else None
        if rs:
            print(f"resync of {rs['repos']} repositories × {args.tags} tags ({rs['tags']} tags seen), nothing to "
                  f"copy: {rs['resync_s']:.2f} s (target < 10), new pushes found {rs['new']}; first poll (baseline) "
                  f"{rs['baseline_s']:.2f} s; ferry RSS {rs['rss_kib'] / 1024:.1f} MiB, peak "
                  f"{rs['peak_kib'] / 1024:.1f} MiB; repositories copied {len(rs['copied'])} (expected 0)")


if __name__ == "__main__":
    main()
