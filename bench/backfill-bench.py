#!/usr/bin/env python3
"""Backfill throughput (S17, issue 13): a ReplicationBackfill of R repositories × T tags against
`skopeo sync` of the same repositories, in one run, on the same machine. Real docker-registry
processes on loopback, the real `ferry run`.

  bench/backfill-bench.py [--repos 10] [--tags 20] [--layer-bytes 65536]

Every image is distinct (its own config and layer blob of --layer-bytes random bytes), so both
tools move every byte. skopeo sync copies one repository per invocation (`--src docker`, all
tags), one after the other, into an empty registry; Ferry backfills into another empty registry.
Ferry's time is from writing the ReplicationBackfill to its phase COMPLETE (as `ferry status
--backfill` reports it), so it includes noticing the file and listing the source."""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
from harness import Ferry, Registry, replication_config, wait_until  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def populate(registry, repos, tags, layer_bytes):
    """R × T distinct images over one keep-alive connection; returns the blob bytes written."""
    conn = http.client.HTTPConnection("127.0.0.1", registry.port)

    def req(method, path, body=b"", headers=None):
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]}")
        return r

    def blob(repo, data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = req("POST", f"/v2/{repo}/blobs/uploads/").getheader("Location")
        sep = "&" if "?" in loc else "?"
        path = loc.split("127.0.0.1:" + str(registry.port), 1)[-1]
        req("PUT", f"{path}{sep}digest={d}", data, {"Content-Type": "application/octet-stream"})
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(data)}

    total = 0
    for r in range(repos):
        repo = f"bench/app{r}"
        for t in range(tags):
            config = json.dumps({"architecture": "amd64", "os": "linux", "created": f"{repo}:{t}",
                                 "rootfs": {"type": "layers", "diff_ids": []}}).encode()
            layer = os.urandom(layer_bytes)
            c = dict(blob(repo, config), mediaType="application/vnd.oci.image.config.v1+json")
            layer_desc = blob(repo, layer)
            total += len(config) + len(layer)
            manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c,
                                   "layers": [layer_desc]}).encode()
            req("PUT", f"/v2/{repo}/manifests/t{t}", manifest, {"Content-Type": OCI_MANIFEST})
    conn.close()
    return total


def count_tags(registry, repos):
    n = 0
    for r in range(repos):
        n += len(registry.tags(f"bench/app{r}"))
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repos", type=int, default=10)
    p.add_argument("--tags", type=int, default=20)
    p.add_argument("--layer-bytes", type=int, default=65536)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print its path")
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="ferry-backfill-bench-")
    procs = []
    ferry = None
    try:
        ferry = Ferry(os.path.join(work, "ferry"))
        os.makedirs(ferry.workdir, exist_ok=True)
        src = Registry(work, "src", "111111111111", "us-east-1")
        dst_skopeo = Registry(work, "dst-skopeo", "111111111111", "us-west-1")
        dst_ferry = Registry(work, "dst-ferry", "111111111111", "us-west-2")
        procs += [src.process, dst_skopeo.process, dst_ferry.process]
        images = a.repos * a.tags
        nbytes = populate(src, a.repos, a.tags, a.layer_bytes)

        began = time.monotonic()
        for r in range(a.repos):
            harness.run(["skopeo", "sync", "--src", "docker", "--dest", "docker",
                         "--src-tls-verify=false", "--dest-tls-verify=false",
                         f"{src.host}/bench/app{r}", f"{dst_skopeo.host}/bench"])
        skopeo_s = time.monotonic() - began
        assert count_tags(dst_skopeo, a.repos) == images, "skopeo sync did not copy every tag"

        ferry.write("regs.yaml", src.resource() + "---\n" + dst_ferry.resource())
        ferry.write("config.yaml", replication_config("src", src, [dst_ferry]))
        ferry.start()
        time.sleep(0.5)
        began = time.monotonic()
        ferry.write("backfill.yaml", (
            "apiVersion: ferry.dev/v1alpha1\nkind: ReplicationBackfill\nmetadata: {name: bench}\n"
            f"spec:\n  registryId: \"{src.registry_id}\"\n  region: {src.region}\n"
            f"  destination: {{region: {dst_ferry.region}, registryId: \"{dst_ferry.registry_id}\"}}\n"))

        def done():
            r = harness.run([harness.FERRY, "status", "--state-dir", ferry.state, "--backfill", "bench"], check=False)
            if r.returncode != 0:
                return None
            st = json.loads(r.stdout)
            return st if st.get("phase") in ("COMPLETE", "FAILED") else None
        st = wait_until(done, 1800, interval=0.05, what="the backfill")
        ferry_s = time.monotonic() - began
        assert st["phase"] == "COMPLETE" and st["images"]["replicated"] == images, st
        assert count_tags(dst_ferry, a.repos) == images, "the backfill did not copy every tag"
        out = {"images": images, "bytes": nbytes, "skopeo_sync_s": round(skopeo_s, 2),
               "ferry_backfill_s": round(ferry_s, 2),
               "skopeo_images_per_s": round(images / skopeo_s, 1), "ferry_images_per_s": round(images / ferry_s, 1),
               "speedup_vs_skopeo_sync": round(skopeo_s / ferry_s, 2)}
        print(json.dumps(out))
    finally:
        if ferry:
            ferry.stop()
        for proc in procs:
            proc.stop()
        if a.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
