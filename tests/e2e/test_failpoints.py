"""The failpoint sweep (docs/reliability.md): Ferry is ended at each named crash point in turn
(FERRY_FAILPOINT=name[:N], reconcilers/model/failpoint.hpp: _exit at that instant, as a machine
dying would), then started again. At every point, while Ferry is down, no destination shows a
half image under its tag, and after the restart the push arrives at every destination exactly as
if nothing had happened: the same bytes, one record, COMPLETE. `ferry run` on a state directory
(FailpointSweep) and `ferry operator` on a real kube-apiserver (ClusterFailpointSweep); the SQS
points are swept by test_ecr.EcrEventsFailpoints (it needs moto). Real docker-registry processes
(their notifications retried until Ferry answers) and skopeo."""
import json
import os
import pathlib
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FERRY, E2ETest, Process, replication_config, wait_until  # noqa: E402
from test_cluster_mode import ClusterModeTest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
A_ID = "111111111111"
CRASH = 86  # failpoint.hpp's exit status

# (point, pass): file writes are records, baselines and effective times, whichever comes N-th.
SWEEP = ([("file.write.before-rename", n) for n in (1, 2, 3, 5)] +
         [("file.write.after-rename", n) for n in (1, 2, 3, 5)] +
         [("blob.commit.before", 1), ("blob.commit.before", 3), ("blob.commit.after", 1), ("blob.commit.after", 3),
          ("manifest.child.after", 1), ("manifest.child.after", 2),
          ("manifest.top.before", 1), ("manifest.top.after", 1), ("manifest.top.after", 2)])
# Cluster mode's writes to the API server: ImageReplication objects created (before their status),
# status writes (records and Repository objects, whichever comes N-th), and the bookkeeping
# ConfigMaps (here the source's polling baseline).
CLUSTER_SWEEP = ([("kube.record.created", n) for n in (1, 2)] +
                 [("kube.status.before", n) for n in (1, 2, 4)] +
                 [("kube.status.after", n) for n in (1, 2, 4)] +
                 [("kube.state.before", 1), ("kube.state.after", 1)])
# An ECR source's events: the SQS DeleteMessage after the push is recorded.
SQS_SWEEP = [("sqs.delete.before", 1), ("sqs.delete.after", 1)]


def points_in_source():
    names = set()
    for folder in ("registry", "store", "engine", "operator", "kube", "aws", "reconcilers"):
        for f in (ROOT / folder).rglob("*.cpp"):
            names |= set(re.findall(r'FERRY_FAILPOINT\("([^"]+)"\)', f.read_text()))
    return names


class SweepChecks:
    def assert_crashed_at(self, proc, point, n):
        """`proc` ends at point:n with the failpoint's exit status (a point not reached fails)."""
        try:
            wait_until(lambda: not proc.alive(), 30, what=f"the crash at {point}:{n}")
        except AssertionError:
            proc.stop()
            self.fail(f"{point}:{n} was not reached:\n{proc.output()[-3000:]}")
        self.assertEqual(proc.proc.returncode, CRASH, proc.output()[-3000:])
        self.assertIn(f"failpoint {point} reached", proc.output())

    def assert_arrived_once(self, repo, source, dests, records):
        """Every destination holds the source's index whole; one record per push of it."""
        for dest in dests:
            self.assertEqual(dest.manifest(repo, "v1"), source)
            self.assert_whole_or_absent(dest, repo, source)
        # One record for the tag push (skopeo pushes each child by digest first: those are pushes
        # of their own, one record each too).
        names = [r["spec"]["source"].get("imageTag") or r["spec"]["source"]["imageDigest"]
                 for r in records if r["spec"]["source"]["repositoryName"] == repo]
        children = [m["digest"] for m in json.loads(source)["manifests"]]
        self.assertEqual(sorted(names), sorted(children + ["v1"]), "every push recorded, once")

    def assert_recovers(self, repo, source, dests, start, wait_status, records, stop):
        """After the crash: nothing half-written at any destination; started again, Ferry finishes
        what it had started, takes the push if it had not, and every push arrives once."""
        for dest in dests:
            self.assert_whole_or_absent(dest, repo, source)
        start()
        try:
            st = wait_status()
            self.assertEqual({s["status"] for s in st.values()}, {"COMPLETE"}, st)
            self.assert_arrived_once(repo, source, dests, records())
        finally:
            self.assertEqual(stop(), 0)

    def assert_whole_or_absent(self, dest, repo, source):
        """The tag at `dest` is absent or names the source's index with every child and blob."""
        top = dest.manifest(repo, "v1")
        if top is None:
            return
        self.assertEqual(top, source, f"{dest.name}: {repo}:v1 differs from the source")
        for child in json.loads(top)["manifests"]:
            body = dest.manifest(repo, child["digest"])
            self.assertIsNotNone(body, f"{dest.name}: {repo}:v1 is tagged but its child {child['digest']} is missing")
            m = json.loads(body)
            for blob in [m["config"]] + m["layers"]:
                status = dest._send("HEAD", f"/v2/{repo}/blobs/{blob['digest']}")[0]
                self.assertEqual(status, 200, f"{dest.name}: {repo}:v1 is tagged but blob {blob['digest']} is missing")


class FailpointSweep(SweepChecks, E2ETest):
    def test_every_failpoint_is_swept(self):
        self.assertEqual(points_in_source(), {p for p, _ in SWEEP + CLUSTER_SWEEP + SQS_SWEEP})

    def test_a_crash_at_any_point_loses_nothing_and_shows_nothing_half_written(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        c = self.registry("c", A_ID, "eu-west-1")
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource() + "---\n" + c.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b, c]))
        # A clean first start: the configuration takes effect (S3) before the first crash.
        self.ferry.start()
        self.assertEqual(self.ferry.stop(), 0)
        reached = []
        for i, (point, n) in enumerate(SWEEP):
            with self.subTest(point=point, n=n):
                repo = f"sweep/p{i}"
                img = self.image(kind="index", seed=f"sweep-{i}", tag="v1", layer_bytes=96 * 1024,
                                 platforms="linux/amd64,linux/arm64")
                env = dict(os.environ, FERRY_FAILPOINT=f"{point}:{n}")
                proc = Process([FERRY, "run", "--manifests", self.ferry.manifests, "--state-dir", self.ferry.state,
                                "--listen", f"127.0.0.1:{self.ferry.port}"], os.path.join(self.workdir, f"crash-{i}.log"),
                               env=env)
                self._procs.append(proc)
                img.push(a, repo, all_platforms=True)
                self.assert_crashed_at(proc, point, n)
                reached.append((point, n))
                self.assert_recovers(repo, a.manifest(repo, "v1"), (b, c), self.ferry.start,
                                     lambda: self.ferry.wait_status(repo, "v1", expected=2, timeout=40),
                                     lambda: self.ferry.records("imagereplications"), self.ferry.stop)
        self.assertEqual(len(reached), len(SWEEP))


class ClusterFailpointSweep(SweepChecks, ClusterModeTest):
    """The sweep in cluster mode: `ferry operator` ended at each write to the API server in turn,
    started again, and every push arrives once, whole, recorded once."""

    def test_a_crash_at_any_api_server_write_loses_nothing_and_shows_nothing_half_written(self):
        # The source is notified and polled: polling writes its baseline ConfigMap (kube.state.*).
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        c = self.registry("c", A_ID, "eu-west-1", notify=False)
        self.apply(a.resource(poll="1s") + "---\n" + b.resource() + "---\n" + c.resource())
        self.apply(replication_config("a", a, [b, c]))
        self.start_operator()  # a clean first start: the configuration takes effect (S3)
        self.assertEqual(self.operator.stop(), 0)
        reached = []
        for i, (point, n) in enumerate(CLUSTER_SWEEP):
            with self.subTest(point=point, n=n):
                repo = f"ksweep/p{i}"
                img = self.image(kind="index", seed=f"ksweep-{i}", tag="v1", layer_bytes=64 * 1024,
                                 platforms="linux/amd64,linux/arm64")
                proc = self.start_operator(wait_engine=False, env=dict(os.environ, FERRY_FAILPOINT=f"{point}:{n}"))
                self.addCleanup(proc.stop)
                img.push(a, repo, all_platforms=True)
                self.assert_crashed_at(proc, point, n)
                reached.append((point, n))
                self.assert_recovers(repo, a.manifest(repo, "v1"), (b, c), self.start_operator,
                                     lambda: self.wait_record(repo, "v1", expected=2, timeout=40)[1],
                                     self.records, lambda: self.operator.stop())
        self.assertEqual(len(reached), len(CLUSTER_SWEEP))


if __name__ == "__main__":
    unittest.main()
