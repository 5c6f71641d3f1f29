"""The failpoint sweep (docs/reliability.md): `ferry run` is ended at each named crash point in
turn (FERRY_FAILPOINT=name[:N], reconcilers/model/failpoint.hpp: _exit at that instant, as a
machine dying would), then started again. At every point, while Ferry is down, no destination
shows a half image under its tag, and after the restart the push arrives at every destination
exactly as if nothing had happened: the same bytes, one record, COMPLETE. Real docker-registry
processes (their notifications retried until Ferry answers) and skopeo."""
import json
import os
import pathlib
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FERRY, E2ETest, Process, replication_config, wait_until  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
A_ID = "111111111111"
CRASH = 86  # failpoint.hpp's exit status

# (point, pass): file writes are records, baselines and effective times, whichever comes N-th.
SWEEP = ([("file.write.before-rename", n) for n in (1, 2, 3, 5)] +
         [("file.write.after-rename", n) for n in (1, 2, 3, 5)] +
         [("blob.commit.before", 1), ("blob.commit.before", 3), ("blob.commit.after", 1), ("blob.commit.after", 3),
          ("manifest.child.after", 1), ("manifest.child.after", 2),
          ("manifest.top.before", 1), ("manifest.top.after", 1), ("manifest.top.after", 2)])


def points_in_source():
    names = set()
    for folder in ("registry", "store", "engine", "operator", "kube", "aws", "reconcilers"):
        for f in (ROOT / folder).rglob("*.cpp"):
            names |= set(re.findall(r'FERRY_FAILPOINT\("([^"]+)"\)', f.read_text()))
    return names


class FailpointSweep(E2ETest):
    def test_every_failpoint_is_swept(self):
        self.assertEqual(points_in_source(), {p for p, _ in SWEEP})

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
                try:
                    wait_until(lambda: not proc.alive(), 20, what=f"the crash at {point}:{n}")
                except AssertionError:
                    proc.stop()
                    self.fail(f"{point}:{n} was not reached:\n{proc.output()[-3000:]}")
                self.assertEqual(proc.proc.returncode, CRASH, proc.output()[-3000:])
                self.assertIn(f"failpoint {point} reached", proc.output())
                reached.append((point, n))
                source = a.manifest(repo, "v1")
                for dest in (b, c):
                    self.assert_whole_or_absent(dest, repo, source)
                # Started again, it finishes what it had started and takes the push if it had not.
                self.ferry.start()
                try:
                    st = self.ferry.wait_status(repo, "v1", expected=2, timeout=40)
                    self.assertEqual({s["status"] for s in st.values()}, {"COMPLETE"}, st)
                    for dest in (b, c):
                        self.assertEqual(dest.manifest(repo, "v1"), source)
                        self.assert_whole_or_absent(dest, repo, source)
                    # One record for the tag push (skopeo pushes each child by digest first: those
                    # are pushes of their own, one record each too).
                    records = [r["spec"]["source"].get("imageTag") or r["spec"]["source"]["imageDigest"]
                               for r in self.ferry.records("imagereplications")
                               if r["spec"]["source"]["repositoryName"] == repo]
                    children = [m["digest"] for m in json.loads(source)["manifests"]]
                    self.assertEqual(sorted(records), sorted(children + ["v1"]), "every push recorded, once")
                finally:
                    self.assertEqual(self.ferry.stop(), 0)
        self.assertEqual(len(reached), len(SWEEP))

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


if __name__ == "__main__":
    unittest.main()
