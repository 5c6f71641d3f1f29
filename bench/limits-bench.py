#!/usr/bin/env python3
"""S21 byte-rate limit accuracy (issue 14): how close `ferry run` holds a destination Registry's
`spec.limits.bytesPerSecond`. Real docker-registry processes on loopback, skopeo pushing, the real
`ferry run`; for each limit L one image of about `--seconds` × L bytes is pushed (one copy), then
two images of half that size at once (two copies sharing the limit). The rate is the image's blob
bytes over push → COMPLETE (the registry's push time to completedAt, both written by the
processes involved). An unlimited copy of the same image shows what the path costs without a limit.

  bench/limits-bench.py [--limits 4Mi,16Mi] [--seconds 6] [--json FILE]

Target (issue 14): every rate within 10 % of its limit."""
import argparse
import json
import os
import sys
import tempfile
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
from harness import Ferry, Image, Registry, replication_config, wait_until  # noqa: E402

UNITS = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def quantity(text):
    for suffix in ("Ki", "Mi", "Gi"):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * UNITS[suffix]
    return int(text)


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def blob_bytes(registry, repo, tag):
    m = json.loads(registry.manifest(repo, tag))
    return m["config"]["size"] + sum(layer["size"] for layer in m["layers"])


def run_case(work, name, limit, sizes):
    """Pushes one image per entry of `sizes` (layer bytes) back to back; returns (bytes, seconds)
    from the first push to the last COMPLETE."""
    ferry = Ferry(os.path.join(work, name))
    os.makedirs(ferry.workdir, exist_ok=True)
    a = Registry(ferry.workdir, "a", "111111111111", "us-east-1", ferry.url)
    b = Registry(ferry.workdir, "b", "111111111111", "us-west-2", None)
    try:
        extra = f"  limits: {{bytesPerSecond: {limit}}}\n" if limit else ""
        ferry.write("regs.yaml", a.resource() + "---\n" + b.resource(extra=extra))
        ferry.write("config.yaml", replication_config("a", a, [b]))
        images = [Image(ferry.workdir, seed=f"{name}-{i}", layer_bytes=n) for i, n in enumerate(sizes)]
        ferry.start()
        for i, img in enumerate(images):
            img.push(a, f"bench/img{i}")

        def done():
            recs = ferry.records("imagereplications")
            ok = [r for r in recs if r.get("status", {}).get("progress") == "1/1"]
            return ok if len(ok) == len(images) else None
        recs = wait_until(done, 600, interval=0.1, what=f"{len(images)} copies")
        start = min(ts(r["spec"]["source"]["pushedAt"]) for r in recs)
        end = max(ts(r["status"]["replicationStatuses"][0]["completedAt"]) for r in recs)
        total = sum(blob_bytes(a, f"bench/img{i}", "v1") for i in range(len(images)))
        for i in range(len(images)):
            assert b.manifest(f"bench/img{i}", "v1") == a.manifest(f"bench/img{i}", "v1")
        return total, end - start
    finally:
        ferry.stop()
        a.process.stop()
        b.process.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--limits", default="4Mi,16Mi")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--json")
    args = p.parse_args()
    if not os.path.exists(harness.FERRY):
        sys.exit(f"{harness.FERRY} not built: run scripts/build.sh --target ferry (or set FERRY_BINARY)")
    results = []
    with tempfile.TemporaryDirectory(prefix="ferry-limits-") as work:
        for text in args.limits.split(","):
            limit = quantity(text)
            size = int(limit * args.seconds)
            free_bytes, free_s = run_case(work, f"free-{text}", None, [size])
            for case, sizes in (("one copy", [size]), ("two copies", [size // 2, size // 2])):
                total, seconds = run_case(work, f"{case.replace(' ', '-')}-{text}", text, sizes)
                rate = total / seconds
                results.append({"limit": text, "limit_bytes_per_second": limit, "case": case, "bytes": total,
                                "seconds": seconds, "rate": rate, "ratio": rate / limit,
                                "unlimited_seconds": free_s * total / free_bytes})
    print(f"{'limit':>6}  {'case':<10}  {'MiB':>6}  {'seconds':>7}  {'MiB/s':>6}  {'rate/limit':>10}  unlimited s")
    for r in results:
        print(f"{r['limit']:>6}  {r['case']:<10}  {r['bytes'] / 2**20:6.1f}  {r['seconds']:7.2f}  "
              f"{r['rate'] / 2**20:6.2f}  {r['ratio']:10.3f}  {r['unlimited_seconds']:.2f}")
    worst = max(abs(r["ratio"] - 1) for r in results)
    print(f"worst deviation from the limit: {worst * 100:.1f} % (target ≤ 10 %)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "worst_deviation": worst}, f, indent=2)


if __name__ == "__main__":
    main()
