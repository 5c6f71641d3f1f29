"""`ferry status` as a user scripts it (SPEC §4): exit codes 0 COMPLETE / 1 FAILED / 3 IN_PROGRESS,
`--wait` with `--timeout`, `-o json|yaml|table`, and a repository's images listed without `--image`;
real docker-registry processes, skopeo pushing, the real `ferry run`."""
import json
import os
import sys
import time
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FERRY, E2ETest, replication_config, run  # noqa: E402

A_ID, B_ID = "111111111111", "222222222222"


class StatusCli(E2ETest):
    def status(self, *args):
        return run([FERRY, "status", "--state-dir", self.ferry.state, *args], check=False)

    def test_exit_codes_formats_and_repository_listing(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        c = self.registry("c", B_ID, "eu-west-1")  # another account, no RegistryPolicy: FAILED
        self.ferry.write("regs.yaml", "---\n".join(r.resource() for r in (a, b, c)))
        self.ferry.write("config.yaml", replication_config("a", a, None, rules=[([b, c], ["prod/"]), ([b], ["ok/"])]))
        self.ferry.start()
        v1, v2, ok = self.image(seed="st-1"), self.image(seed="st-2", tag="v2"), self.image(seed="st-ok")
        v1.push(a, "prod/app")
        v2.push(a, "prod/app")
        ok.push(a, "ok/app")

        # --wait until the outcome: 0 when every destination is COMPLETE.
        p = self.status("--repository", "ok/app", "--image", "v1", "--wait", "--timeout", "60s")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([s["status"] for s in json.loads(p.stdout)["replicationStatuses"]], ["COMPLETE"])

        # 1 when one is FAILED; the JSON is DescribeImageReplicationStatus-shaped, as before.
        p = self.status("--repository", "prod/app", "--image", "v1", "--wait", "--timeout", "60s")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertTrue(p.stdout.startswith('{"repositoryName":"prod/app","imageId":{"imageDigest":"'), p.stdout)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["imageId"], {"imageDigest": v1.digest, "imageTag": "v1"})
        self.assertEqual(sorted((s["registryId"], s["region"], s["status"]) for s in doc["replicationStatuses"]),
                         [(A_ID, "us-west-2", "COMPLETE"), (B_ID, "eu-west-1", "FAILED")])
        without_wait = self.status("--repository", "prod/app", "--image", "v1")
        self.assertEqual((without_wait.returncode, without_wait.stdout), (1, p.stdout))

        # -o yaml reads back as the same document (account ids stay strings).
        y = self.status("--repository", "prod/app", "--image", "v1", "-o", "yaml")
        self.assertEqual(y.returncode, 1, y.stderr)
        self.assertEqual(yaml.safe_load(y.stdout), doc)

        # Without --image: every recorded image of the repository; a table row per image × destination.
        self.assertEqual(self.status("--repository", "prod/app", "--image", "v2", "--wait", "--timeout", "60s")
                         .returncode, 1)
        t = self.status("--repository", "prod/app", "-o", "table")
        self.assertEqual(t.returncode, 1, t.stderr)
        lines = t.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["REPOSITORY", "TAG", "DIGEST", "REGISTRY", "REGION", "STATUS", "FAILURE"])
        rows = sorted(tuple(line.split()) for line in lines[1:])
        expected = []
        for tag, img in (("v1", v1), ("v2", v2)):
            expected += [("prod/app", tag, img.digest[:19], A_ID, "us-west-2", "COMPLETE"),
                         ("prod/app", tag, img.digest[:19], B_ID, "eu-west-1", "FAILED",
                          "DESTINATION_REGISTRY_ACCESS_DENIED")]
        self.assertEqual(rows, sorted(expected))
        listing = json.loads(self.status("--repository", "prod/app").stdout)
        self.assertEqual(listing["repositoryName"], "prod/app")
        self.assertEqual(sorted(i["imageId"]["imageTag"] for i in listing["images"]), ["v1", "v2"])
        self.assertEqual(yaml.safe_load(self.status("--repository", "prod/app", "-o", "yaml").stdout), listing)

        # Nothing recorded: 1 with a message, also after --wait gives up.
        start = time.monotonic()
        p = self.status("--repository", "prod/app", "--image", "v9", "--wait", "--timeout", "1s", "--interval", "200ms")
        self.assertGreaterEqual(time.monotonic() - start, 1.0)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no replication recorded for prod/app:v9", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_in_progress_is_exit_3_and_wait_waits_for_the_outcome(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        # 8 MiB through a proxy sleeping 80 ms per 64 KiB: about ten seconds in flight.
        self.ferry.write("regs.yaml", a.resource(endpoint=self.slow_endpoint(a, delay_ms=80)) + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        self.image(seed="st-slow", layer_bytes=8 * 1024 * 1024).push(a, "prod/app")
        self.wait_copy_in_flight()

        p = self.status("--repository", "prod/app", "--image", "v1")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertEqual([s["status"] for s in json.loads(p.stdout)["replicationStatuses"]], ["IN_PROGRESS"])
        t = self.status("--repository", "prod/app", "-o", "table")
        self.assertEqual(t.returncode, 3)
        self.assertEqual(t.stdout.splitlines()[1].split()[3:], [A_ID, "us-west-2", "IN_PROGRESS"])

        start = time.monotonic()
        p = self.status("--repository", "prod/app", "--image", "v1", "--wait", "--timeout", "1s")
        self.assertGreaterEqual(time.monotonic() - start, 1.0)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("still IN_PROGRESS", p.stderr)

        p = self.status("--repository", "prod/app", "--image", "v1", "--wait", "--timeout", "90s")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([s["status"] for s in json.loads(p.stdout)["replicationStatuses"]], ["COMPLETE"])
        self.assertEqual(b.manifest("prod/app", "v1"), a.manifest("prod/app", "v1"))


if __name__ == "__main__":
    unittest.main()
