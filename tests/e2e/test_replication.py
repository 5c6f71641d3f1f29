"""ECR replication semantics (SPEC §3, S1–S15) end to end: real docker-registry processes as
(account, region) registries, skopeo pushing and checking, and the real `ferry run`."""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.request
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (E2ETest, allow_statement, registry_policy, replication_config, run,  # noqa: E402
                     wait_until)

A_ID, B_ID = "111111111111", "222222222222"


def push_event(repo, digest, tag=None, event_id=None):
    """A notification envelope for one push, as a registry would send it."""
    target = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": repo, "digest": digest}
    if tag:
        target["tag"] = tag
    return json.dumps({"events": [{"id": event_id or f"evt-{repo}-{digest[-12:]}-{tag}", "action": "push",
                                   "target": target}]})


def absent_digest(seed):
    """A well-formed digest no registry holds."""
    return "sha256:" + hashlib.sha256(f"never pushed {seed}".encode()).hexdigest()


def requests_for(registry, path_part):
    """How many requests the registry's access log shows whose path contains `path_part`."""
    return len(re.findall(r'"(?:GET|HEAD) [^" ]*' + re.escape(path_part) + r'[^" ]* HTTP/1\.1"',
                          registry.process.output()))


def post_headers_only(url_port, path, headers, timeout=5.0):
    """Sends the request line and headers, none of the body they announce, and reads the answer:
    (status, raw answer). A server that waits for the body times out here."""
    with socket.create_connection(("127.0.0.1", url_port), timeout=timeout) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(head.encode() + b"\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
        return status, data.decode(errors="replace")


def statuses_of(ferry, repo, ref):
    """The stored status entries (state directory records) of the pushes of repo:ref or repo@ref."""
    key = "imageDigest" if ref.startswith("sha256:") else "imageTag"
    return [s for r in ferry.records("imagereplications")
            if r["spec"]["source"]["repositoryName"] == repo and r["spec"]["source"].get(key) == ref
            for s in r.get("status", {}).get("replicationStatuses", [])]


class CrossRegionAndAccount(E2ETest):
    def setUp(self):
        super().setUp()
        self.a = self.registry("acct-a-us-east-1", A_ID, "us-east-1")
        self.b = self.registry("acct-a-us-west-2", A_ID, "us-west-2")
        self.c = self.registry("acct-b-eu-west-1", B_ID, "eu-west-1")
        for r in (self.a, self.b, self.c):
            self.ferry.write(f"{r.name}.yaml", r.resource())

    def test_s1_s2_push_reaches_same_region_and_allowed_account_with_same_digest_and_tag(self):
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.b, self.c]))
        self.ferry.write("policy.yaml", registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        self.ferry.start()
        img = self.image(seed="s1")
        img.push(self.a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=2)
        self.assertEqual({k: v["status"] for k, v in st.items()},
                         {(A_ID, "us-west-2"): "COMPLETE", (B_ID, "eu-west-1"): "COMPLETE"})
        src = self.a.manifest("prod/app", "v1")
        self.assertEqual(self.b.manifest("prod/app", "v1"), src)
        self.assertEqual(self.c.manifest("prod/app", "v1"), src)
        self.assertEqual(self.b.manifest("prod/app", img.digest), src)
        # S12: the repository replication created is recorded with default-off settings.
        repos = {(r["spec"]["registryId"], r["spec"]["region"], r["spec"]["repositoryName"]): r
                 for r in self.ferry.records("repositories")}
        rec = repos[(B_ID, "eu-west-1", "prod/app")]
        self.assertEqual(rec["spec"]["imageTagMutability"], "MUTABLE")
        self.assertFalse(rec["spec"]["imageScanningConfiguration"]["scanOnPush"])
        self.assertEqual(rec["spec"]["encryptionConfiguration"]["encryptionType"], "AES256")
        self.assertEqual(rec["status"]["createdBy"], "Replication")
        self.assertEqual(rec["status"]["source"], {"registryId": A_ID, "region": "us-east-1", "repositoryName": "prod/app"})

    def test_s2_cross_account_without_policy_is_denied_and_writes_nothing(self):
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.b, self.c]))
        self.ferry.start()
        self.image(seed="s2").push(self.a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=2)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        denied = st[(B_ID, "eu-west-1")]
        self.assertEqual(denied["status"], "FAILED")
        self.assertEqual(denied["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        self.assertIn("no RegistryPolicy for 222222222222/eu-west-1", denied["message"])
        self.assertEqual(self.c.catalog(), [])

    def test_s2_missing_repository_needs_create_repository(self):
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.c]))
        self.ferry.write("policy.yaml", registry_policy(
            "c", self.c, [allow_statement(A_ID, self.c, actions=["ecr:ReplicateImage"])]))
        self.ferry.start()
        self.image(seed="new").push(self.a, "prod/new")
        denied = self.ferry.wait_status("prod/new", "v1", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(denied["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        self.assertIn("ecr:CreateRepository", denied["message"])
        self.assertEqual(self.c.catalog(), [])
        # Once the repository exists there, ReplicateImage alone is enough.
        self.image(seed="other").push(self.c, "prod/existing", tag="old")
        self.image(seed="ex").push(self.a, "prod/existing")
        ok = self.ferry.wait_status("prod/existing", "v1", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(ok["status"], "COMPLETE", ok)

    def test_s2_explicit_deny_wins(self):
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.c]))
        deny = {"Sid": "NoProd", "Effect": "Deny", "Principal": "*", "Action": "ecr:ReplicateImage",
                "Resource": "arn:aws:ecr:eu-west-1:222222222222:repository/prod/*"}
        self.ferry.write("policy.yaml", registry_policy("c", self.c, [allow_statement(A_ID, self.c), deny]))
        self.ferry.start()
        self.image(seed="d").push(self.a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(st["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        self.assertIn("explicitly denied by Sid NoProd", st["message"])

    def test_s8_region_not_enabled(self):
        self.ferry.write(f"{self.b.name}.yaml", self.b.resource(enabled=False))
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.b]))
        self.ferry.start()
        self.image(seed="s8").push(self.a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "FAILED")
        self.assertEqual(st["failureCode"], "REGION_NOT_ENABLED")
        self.assertIn("RegionNotEnabled", st["message"])
        self.assertEqual(self.b.catalog(), [])

    def test_s5_prefix_filters_and_one_copy_per_destination(self):
        self.ferry.write("config.yaml", replication_config("a", self.a, None, rules=[
            ([self.b], ["prod"]), ([self.b, self.c], ["prod/app"]), ([self.c], ["team-x"])]))
        self.ferry.write("policy.yaml", registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        self.ferry.start()
        self.image(seed="p1").push(self.a, "prod/app")
        self.image(seed="p2").push(self.a, "prod/other")
        self.image(seed="p3").push(self.a, "dev/app")
        self.assertEqual(len(self.ferry.wait_status("prod/app", "v1", expected=2)), 2)
        self.assertEqual(len(self.ferry.wait_status("prod/other", "v1", expected=1)), 1)
        time.sleep(1.0)
        self.assertIsNone(self.ferry.status("dev/app", "v1"))
        self.assertEqual(self.b.catalog(), ["prod/app", "prod/other"])
        self.assertEqual(self.c.catalog(), ["prod/app"])
        records = [r for r in self.ferry.records("imagereplications")
                   if r["spec"]["source"]["repositoryName"] == "prod/app"]
        self.assertEqual(len(records), 1)
        self.assertEqual(len(records[0]["spec"]["destinations"]), 2)

    def test_s18_tag_filters_replicate_matching_tags_only(self):
        """S18 (beyond ECR): a rule with tagFilters ["v*"] copies app:v1, not app:latest, and not a
        push by digest only; a rule without tagFilters (ECR's) still copies every push."""
        self.ferry.write("config.yaml", (
            f"apiVersion: ferry.dev/v1alpha1\nkind: ReplicationConfig\nmetadata: {{name: a}}\n"
            f"spec:\n  registryId: \"{A_ID}\"\n  region: us-east-1\n  rules:\n"
            f"  - destinations: [{{region: us-west-2, registryId: \"{A_ID}\"}}]\n"
            f"    tagFilters: [{{filter: \"v*\", filterType: WILDCARD}}]\n"
            f"  - destinations: [{{region: eu-west-1, registryId: \"{B_ID}\"}}]\n"
            f"    repositoryFilters: [{{filter: app, filterType: PREFIX_MATCH}}]\n"))
        self.ferry.write("policy.yaml", registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        self.ferry.start()
        v1, latest = self.image(seed="t1"), self.image(seed="t2")
        v1.push(self.a, "app", tag="v1")
        latest.push(self.a, "app", tag="latest")
        st = self.ferry.wait_status("app", "v1", expected=2)
        self.assertEqual({k: v["status"] for k, v in st.items()},
                         {(A_ID, "us-west-2"): "COMPLETE", (B_ID, "eu-west-1"): "COMPLETE"})
        st = self.ferry.wait_status("app", "latest", expected=1)
        self.assertEqual(list(st), [(B_ID, "eu-west-1")], "latest goes only through the rule without tag filters")
        self.assertEqual(self.b.manifest("app", "v1"), self.a.manifest("app", "v1"))
        self.assertIsNone(self.b.manifest("app", "latest"))
        self.assertIsNone(self.b.manifest("app", latest.digest))
        self.assertEqual(self.c.manifest("app", "latest"), self.a.manifest("app", "latest"))
        # solo/x is reached only by the tag-filtered rule: a tag outside it and a push by digest
        # only (no tag) are not replicated; a later v2 is, which shows both were decided before.
        solo = self.image(seed="t3")
        solo.push(self.a, "solo/x", tag="latest")
        code, body = self.ferry.post_events(self.a.name, push_event("solo/x", solo.digest, event_id="evt-solo-digest"))
        self.assertEqual(code, 200, body)
        self.image(seed="t4").push(self.a, "solo/x", tag="v2")
        self.assertEqual(list(self.ferry.wait_status("solo/x", "v2", expected=1)), [(A_ID, "us-west-2")])
        time.sleep(1.0)
        records = [r["spec"]["source"] for r in self.ferry.records("imagereplications")
                   if r["spec"]["source"]["repositoryName"] == "solo/x"]
        self.assertEqual([r.get("imageTag") for r in records], ["v2"], records)
        self.assertIsNone(self.b.manifest("solo/x", "latest"))
        self.assertIsNone(self.b.manifest("solo/x", solo.digest))
        self.assertEqual(self.c.catalog(), ["app"])

    # ---- failed copies (issue 15) -------------------------------------------------------------

    def test_failed_copy_leaves_no_repository_record_and_widens_no_policy(self):
        """A copy that fails before anything is written leaves no Repository record behind, and
        CreateRepository is still required afterwards: authorization follows the destination as
        it is, never a record of the failed attempt (SPEC §6)."""
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.c]))
        self.ferry.write("policy.yaml", registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        self.ferry.start()
        code, body = self.ferry.post_events(self.a.name, push_event("prod/ghost", absent_digest("ghost"), "v1"))
        self.assertEqual(code, 200, body)
        failed = self.ferry.wait_status("prod/ghost", "v1", expected=1, timeout=60)[(B_ID, "eu-west-1")]
        self.assertEqual(failed["status"], "FAILED", failed)
        # The policy now allows ReplicateImage only: the repository does not exist at C, so the
        # next push needs CreateRepository and is denied.
        self.ferry.write("policy.yaml", registry_policy(
            "c", self.c, [allow_statement(A_ID, self.c, actions=["ecr:ReplicateImage"])]))
        self.ferry.wait_reload(2)
        self.image(seed="ghost-real").push(self.a, "prod/ghost", tag="v2")
        denied = self.ferry.wait_status("prod/ghost", "v2", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(denied["status"], "FAILED", denied)
        self.assertEqual(denied["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        self.assertIn("ecr:CreateRepository", denied["message"])
        self.assertEqual(self.c.catalog(), [])
        self.assertEqual(self.ferry.records("repositories"), [], "no record for a repository that does not exist")
        # Allowed again: this copy creates the repository, and only now is it recorded.
        self.ferry.write("policy.yaml", registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        self.ferry.wait_reload(3)
        self.image(seed="ghost-ok").push(self.a, "prod/ghost", tag="v3")
        ok = self.ferry.wait_status("prod/ghost", "v3", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(ok["status"], "COMPLETE", ok)
        self.assertEqual(self.c.catalog(), ["prod/ghost"])
        repos = self.ferry.records("repositories")
        self.assertEqual([(r["spec"]["registryId"], r["spec"]["repositoryName"], r["status"]["createdBy"])
                          for r in repos], [(B_ID, "prod/ghost", "Replication")])

    def test_user_repository_record_alone_does_not_stand_for_an_existing_repository(self):
        """A user's Repository object pre-sets settings (S12); it does not create the repository
        at the destination, so CreateRepository is still needed for the first copy."""
        self.ferry.write("repo.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: Repository\nmetadata: {name: preset}\n"
                                      f"spec:\n  registryId: \"{B_ID}\"\n  region: eu-west-1\n"
                                      "  repositoryName: prod/preset\n  imageTagMutability: MUTABLE\n")
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.c]))
        self.ferry.write("policy.yaml", registry_policy(
            "c", self.c, [allow_statement(A_ID, self.c, actions=["ecr:ReplicateImage"])]))
        self.ferry.start()
        self.image(seed="preset").push(self.a, "prod/preset")
        denied = self.ferry.wait_status("prod/preset", "v1", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(denied["status"], "FAILED", denied)
        self.assertEqual(denied["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        self.assertIn("ecr:CreateRepository", denied["message"])
        self.assertEqual(self.c.catalog(), [])
        # With CreateRepository the copy goes through; the user's object stays the only record.
        self.ferry.write("policy.yaml", registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        self.ferry.wait_reload(2)
        self.image(seed="preset-2").push(self.a, "prod/preset", tag="v2")
        ok = self.ferry.wait_status("prod/preset", "v2", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(ok["status"], "COMPLETE", ok)
        self.assertEqual(self.ferry.records("repositories"), [])

    def test_source_manifest_unknown_fails_at_once_without_retries(self):
        """An event for a digest the source does not have: one attempt, FAILED with a code naming
        the cause, and no claim that the tag was written."""
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.b]))
        self.ferry.start()
        digest = absent_digest("manifest")
        code, body = self.ferry.post_events(self.a.name, push_event("prod/app", digest, "v1"))
        self.assertEqual(code, 200, body)
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=60)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "FAILED", st)
        self.assertEqual(st["failureCode"], "SOURCE_MANIFEST_UNKNOWN", st)
        self.assertIn(digest, st["message"])
        self.assertIn("not found", st["message"])
        self.assertIn(f"prod/app at source {A_ID}/us-east-1", st["message"])
        self.assertNotIn("attempts", st["message"])
        # One attempt: one manifest request at the source, no retry in the log.
        self.assertEqual(requests_for(self.a, f"/v2/prod/app/manifests/{digest}"), 1)
        self.assertNotIn("retrying", self.ferry.process.output())
        stored = statuses_of(self.ferry, "prod/app", "v1")
        self.assertEqual(len(stored), 1)
        self.assertFalse(stored[0].get("tagged", False), stored[0])
        self.assertEqual(self.b.catalog(), [])

    def test_source_blob_unknown_fails_at_once_without_retries(self):
        """The source has the manifest but lost a blob: one attempt, SOURCE_BLOB_UNKNOWN, no image
        at the destination."""
        s = self.registry("src-s", A_ID, "us-east-2", notify=False)
        self.ferry.write(f"{s.name}.yaml", s.resource())
        self.ferry.write("config.yaml", replication_config("s", s, [self.b]))
        self.ferry.start()
        img = self.image(seed="lost-blob")
        img.push(s, "prod/app")
        layer = json.loads(s.manifest("prod/app", "v1"))["layers"][0]["digest"]
        req = urllib.request.Request(f"http://{s.host}/v2/prod/app/blobs/{layer}", method="DELETE")
        with urllib.request.urlopen(req, timeout=5) as r:
            self.assertEqual(r.status, 202)
        before = requests_for(s, f"/v2/prod/app/blobs/{layer}")  # skopeo's own checks
        code, body = self.ferry.post_events(s.name, push_event("prod/app", img.digest, "v1"))
        self.assertEqual(code, 200, body)
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=60)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "FAILED", st)
        self.assertEqual(st["failureCode"], "SOURCE_BLOB_UNKNOWN", st)
        self.assertIn(layer, st["message"])
        self.assertIn(f"at source {A_ID}/us-east-2", st["message"])
        self.assertEqual(requests_for(s, f"/v2/prod/app/blobs/{layer}") - before, 1)
        self.assertNotIn("retrying", self.ferry.process.output())
        self.assertFalse(statuses_of(self.ferry, "prod/app", "v1")[0].get("tagged", False))
        self.assertIsNone(self.b.manifest("prod/app", "v1"))
        self.assertEqual(self.ferry.records("repositories"), [])


class OnlyNewPushesNoChaining(E2ETest):
    def test_s3_images_pushed_before_the_configuration_are_not_copied(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        self.ferry.write("a.yaml", a.resource(poll="1s"))
        self.ferry.write("b.yaml", b.resource())
        self.ferry.start()
        self.image(seed="old").push(a, "prod/old")
        time.sleep(0.5)
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.wait_reload(2)
        self.image(seed="new").push(a, "prod/new")
        self.assertEqual(self.ferry.wait_status("prod/new", "v1", expected=1)[(A_ID, "us-west-2")]["status"],
                         "COMPLETE")
        time.sleep(2.5)  # more than two polls: polling does not backfill either
        self.assertEqual(b.catalog(), ["prod/new"])
        self.assertIsNone(self.ferry.status("prod/old", "v1"))

    def chain_a_b_c(self):
        """A→B and B→C configured, B polled every second; Ferry started."""
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        c = self.registry("c", A_ID, "eu-west-1")
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource(poll="1s") + "---\n" + c.resource())
        self.ferry.write("a.yaml", replication_config("a", a, [b]))
        self.ferry.write("b.yaml", replication_config("b", b, [c]))
        self.ferry.start()
        return a, b, c

    def test_s4_what_ferry_writes_is_not_a_push(self):
        a, b, c = self.chain_a_b_c()
        self.image(seed="chain").push(a, "prod/app")
        self.ferry.wait_status("prod/app", "v1", expected=1)
        self.assertIsNotNone(b.manifest("prod/app", "v1"))
        time.sleep(2.5)
        self.assertEqual(c.catalog(), [])
        # A push straight to B is a push, and goes on to C.
        self.image(seed="direct").push(b, "prod/direct")
        wait_until(lambda: c.manifest("prod/direct", "v1"), 20, what="B's own push at C")

    def test_s4_holds_across_a_crash_right_after_the_copy(self):
        """Killed as soon as the copy to B completes (before B's polling baseline is written):
        after the restart, the poll of B still knows the image as Ferry's own write, from the
        ImageReplication record."""
        a, b, c = self.chain_a_b_c()
        self.image(seed="chain-crash").push(a, "prod/app")
        self.ferry.wait_status("prod/app", "v1", expected=1)
        self.ferry.stop(signal.SIGKILL)
        self.ferry.start()
        time.sleep(2.5)  # two polls of B
        self.assertEqual(c.catalog(), [])


class ImageKinds(E2ETest):
    def setUp(self):
        super().setUp()
        self.same_account_pair(A_ID)
        self.ferry.start()

    def test_s15_four_platform_index_and_every_child(self):
        idx = self.image(kind="index", tag="multi", seed="idx")
        idx.push(self.a, "prod/multi", all_platforms=True)
        wait_until(lambda: self.b.manifest("prod/multi", "multi"), 30, what="index at B")
        self.ferry.wait_status("prod/multi", "multi", expected=1)
        src = self.a.manifest("prod/multi", "multi")
        self.assertEqual(self.b.manifest("prod/multi", "multi"), src)
        children = [m["digest"] for m in json.loads(src)["manifests"]]
        self.assertEqual(len(children), 4)
        for d in children:
            self.assertEqual(self.b.manifest("prod/multi", d), self.a.manifest("prod/multi", d))

    def test_s15_artifact_with_subject_replicates_as_its_own_push(self):
        img = self.image(seed="subj")
        img.push(self.a, "prod/app")
        self.ferry.wait_status("prod/app", "v1", expected=1)
        size = len(self.a.manifest("prod/app", "v1"))
        sig = self.image(kind="artifact", tag="sig", seed="sig", subject=img.digest, subject_size=size)
        sig.push(self.a, "prod/app")
        self.ferry.wait_status("prod/app", "sig", expected=1)
        self.assertEqual(self.b.manifest("prod/app", "sig"), self.a.manifest("prod/app", "sig"))
        self.assertEqual(json.loads(self.b.manifest("prod/app", "sig"))["subject"]["digest"], img.digest)


class SettingsAndImmutability(E2ETest):
    def setUp(self):
        super().setUp()
        self.same_account_pair(A_ID)

    def user_repository(self, name, mutability):
        self.ferry.write("repo.yaml", f"apiVersion: ferry.dev/v1alpha1\nkind: Repository\nmetadata: {{name: r}}\n"
                                      f"spec:\n  registryId: \"{A_ID}\"\n  region: us-west-2\n  repositoryName: {name}\n"
                                      f"  imageTagMutability: {mutability}\n"
                                      "  imageScanningConfiguration: {scanOnPush: true}\n")

    def test_s13_immutable_tag_elsewhere_gets_the_image_by_digest_without_the_tag(self):
        self.user_repository("prod/app", "IMMUTABLE")
        self.ferry.start()
        old = self.image(seed="already-there")
        old.push(self.b, "prod/app")
        new = self.image(seed="new-content")
        new.push(self.a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE")
        self.assertIn("copied by digest without the tag", st["message"])
        self.assertEqual(self.b.manifest("prod/app", "v1"), self.a.manifest("prod/app", old.digest) or
                         self.b.manifest("prod/app", old.digest))
        self.assertEqual(self.b.manifest("prod/app", new.digest), self.a.manifest("prod/app", "v1"))
        # A pre-created Repository keeps its settings: Ferry records no repository of its own.
        self.assertEqual(self.ferry.records("repositories"), [])

    def test_s12_mutable_user_repository_is_left_alone_and_tag_moves(self):
        self.user_repository("prod/app", "MUTABLE")
        self.ferry.start()
        self.image(seed="x").push(self.b, "prod/app")
        self.image(seed="y").push(self.a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE")
        self.assertEqual(self.b.manifest("prod/app", "v1"), self.a.manifest("prod/app", "v1"))
        self.assertEqual(self.ferry.records("repositories"), [])


def creation_template(name, dest, prefix, mutability="MUTABLE", exclusions=(), extra=""):
    """YAML for a RepositoryCreationTemplate of the destination registry `dest`."""
    out = (f"apiVersion: ferry.dev/v1alpha1\nkind: RepositoryCreationTemplate\nmetadata: {{name: {name}}}\n"
           f"spec:\n  registryId: \"{dest.registry_id}\"\n  region: {dest.region}\n  prefix: {prefix}\n"
           f"  appliedFor: [REPLICATION]\n  imageTagMutability: {mutability}\n")
    if exclusions:
        out += "  imageTagMutabilityExclusionFilters:\n" + "".join(
            f"  - {{filter: \"{f}\", filterType: WILDCARD}}\n" for f in exclusions)
    return out + extra


class DestinationRefusesTag(E2ETest):
    def test_s13_a_tag_the_destination_refuses_as_immutable_goes_over_by_digest(self):
        """ECR answers a manifest PUT over an immutable tag with 400 TAG_INVALID, also when the
        tag became immutable (or was pushed) after Ferry looked: the image then goes over by
        digest, the destination's tag stays, and the record says why (S13)."""
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        guarded = self.slow_endpoint(b, delay_ms=0, name="immutable", extra=["--immutable-tags"])
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource(endpoint=guarded))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        img = self.image(seed="refused-tag")
        img.push(a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertFalse(st.get("tagged"), st)
        self.assertIn("the destination refused tag v1", st["message"])
        self.assertIn("TAG_INVALID", st["message"])
        self.assertEqual(b.manifest("prod/app", img.digest), a.manifest("prod/app", "v1"))
        self.assertIsNone(b.manifest("prod/app", "v1"), "the tag was never written")


class CreationTemplates(E2ETest):
    """S16: the repositories replication creates take the settings of the template with the longest
    prefix covering their name, ROOT last; existing repositories keep theirs."""

    def setUp(self):
        super().setUp()
        self.same_account_pair(A_ID)
        self.ferry.write("templates.yaml", "---\n".join([
            creation_template("root", self.b, "ROOT", extra="  resourceTags:\n  - {Key: managed-by, Value: ferry}\n"),
            creation_template("prod", self.b, "prod", "IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"],
                              extra="  encryptionConfiguration: {encryptionType: KMS, kmsKey: alias/prod}\n"),
            creation_template("prod-team", self.b, "prod/team", "IMMUTABLE"),
            # Another registry's template, and one not applied for replication: neither counts here.
            creation_template("elsewhere", self.a, "ROOT", "IMMUTABLE"),
        ]))

    def repository_records(self):
        return {r["spec"]["repositoryName"]: r for r in self.ferry.records("repositories")}

    def test_s16_longest_prefix_wins_and_root_covers_the_rest(self):
        self.ferry.start()
        for repo in ("prod/team/api", "prod/app", "tools/lint", "prod"):
            self.image(seed=repo).push(self.a, repo)
        for repo in ("prod/team/api", "prod/app", "tools/lint", "prod"):
            self.assertEqual(self.ferry.wait_status(repo, "v1", expected=1)[(A_ID, "us-west-2")]["status"], "COMPLETE")
        records = wait_until(lambda: (lambda r: r if len(r) == 4 else None)(self.repository_records()), 10,
                             what="four Repository records")
        shaped = {name: (r["status"].get("template"), r["spec"]["imageTagMutability"],
                         r["spec"]["encryptionConfiguration"]["encryptionType"]) for name, r in records.items()}
        self.assertEqual(shaped, {
            "prod/team/api": ("prod-team", "IMMUTABLE", "AES256"),
            "prod/app": ("prod", "IMMUTABLE_WITH_EXCLUSION", "KMS"),
            "tools/lint": ("root", "MUTABLE", "AES256"),
            "prod": ("root", "MUTABLE", "AES256"),  # "prod" covers prod/..., not prod itself
        })
        self.assertEqual(records["prod/app"]["spec"]["imageTagMutabilityExclusionFilters"],
                         [{"filter": "latest", "filterType": "WILDCARD"}, {"filter": "dev-*", "filterType": "WILDCARD"}])
        self.assertEqual(records["prod/app"]["spec"]["encryptionConfiguration"]["kmsKey"], "alias/prod")
        self.assertEqual(records["tools/lint"]["spec"]["resourceTags"], [{"Key": "managed-by", "Value": "ferry"}])
        self.assertIn("template=prod-team", self.ferry.process.output())

    def test_s16_exclusion_filters_decide_which_tags_s13_keeps(self):
        self.ferry.start()
        first = self.image(seed="first")
        first.push(self.a, "prod/app", tag="v1")
        self.assertEqual(self.ferry.wait_status("prod/app", "v1", expected=1)[(A_ID, "us-west-2")]["status"],
                         "COMPLETE")
        wait_until(lambda: "prod/app" in self.repository_records(), 10, what="the Repository record of prod/app")
        first.push(self.a, "prod/app", tag="latest")
        self.assertEqual(self.ferry.wait_status("prod/app", "latest", expected=1)[(A_ID, "us-west-2")]["status"],
                         "COMPLETE")
        # New content under both tags: v1 is immutable there (kept on its digest, image copied by
        # digest), latest is an exclusion (moves).
        second = self.image(seed="second")
        second.push(self.a, "prod/app", tag="v1")
        second.push(self.a, "prod/app", tag="latest")
        wait_until(lambda: len([s for s in statuses_of(self.ferry, "prod/app", "v1") if s["status"] == "COMPLETE"]) == 2
                   and len([s for s in statuses_of(self.ferry, "prod/app", "latest") if s["status"] == "COMPLETE"]) == 2,
                   30, what="both second pushes COMPLETE")
        notes = [s.get("message", "") for s in statuses_of(self.ferry, "prod/app", "v1")]
        self.assertTrue(any("is immutable in IMMUTABLE_WITH_EXCLUSION repository prod/app" in n for n in notes), notes)
        self.assertEqual(self.b.manifest("prod/app", "v1"), self.a.manifest("prod/app", first.digest))
        self.assertEqual(self.b.manifest("prod/app", second.digest), self.a.manifest("prod/app", second.digest))
        self.assertEqual(self.b.manifest("prod/app", "latest"), self.a.manifest("prod/app", second.digest))

    def test_s16_an_existing_repository_is_never_changed(self):
        # prod/app exists at the destination before replication: no record, no template, and S13
        # treats it as mutable (the template's IMMUTABLE_WITH_EXCLUSION does not apply to it).
        self.image(seed="pre").push(self.b, "prod/app")
        # A user's Repository for prod/other: its settings stand, whatever the template says.
        self.ferry.write("repo.yaml", f"apiVersion: ferry.dev/v1alpha1\nkind: Repository\nmetadata: {{name: r}}\n"
                                      f"spec:\n  registryId: \"{A_ID}\"\n  region: us-west-2\n"
                                      "  repositoryName: prod/other\n  imageTagMutability: MUTABLE\n")
        self.ferry.start()
        self.image(seed="new").push(self.a, "prod/app")
        self.image(seed="other").push(self.a, "prod/other")
        for repo in ("prod/app", "prod/other"):
            st = self.ferry.wait_status(repo, "v1", expected=1)[(A_ID, "us-west-2")]
            self.assertEqual(st["status"], "COMPLETE")
            self.assertEqual(self.b.manifest(repo, "v1"), self.a.manifest(repo, "v1"))
        self.assertEqual(self.repository_records(), {})

    def test_s16_templates_are_validated_with_field_paths(self):
        self.ferry.write("bad-template.yaml", creation_template("bad", self.b, "Prod", "IMMUTABLE", ["latest"]))
        res = run([os.environ["FERRY_BINARY"], "validate", "-f", self.ferry.manifests], check=False)
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn("RepositoryCreationTemplate/bad: spec.prefix: \"Prod\" is neither ROOT nor a repository namespace",
                      res.stdout)
        self.assertIn("RepositoryCreationTemplate/bad: spec.imageTagMutabilityExclusionFilters: only allowed with "
                      "imageTagMutability IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION", res.stdout)


def tag_variants(registry, repo, base_tag, tags):
    """Puts one manifest per tag into `repo`, each the base tag's manifest with its own annotation
    (so its own digest, the same blobs): many distinct images in milliseconds. {tag: digest}."""
    url = f"http://{registry.host}/v2/{repo}/manifests/"
    req = urllib.request.Request(url + base_tag, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        base = json.load(r)
    out = {}
    for tag in tags:
        m = dict(base, annotations={"ferry.test/variant": f"{repo}:{tag}"})
        body = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
        put = urllib.request.Request(url + tag, data=body, method="PUT",
                                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(put, timeout=10) as r:
            out[tag] = r.headers["Docker-Content-Digest"]
    return out


def backfill_yaml(name, source, dest, filters=(), stop=False):
    out = (f"apiVersion: ferry.dev/v1alpha1\nkind: ReplicationBackfill\nmetadata: {{name: {name}}}\n"
           f"spec:\n  registryId: \"{source.registry_id}\"\n  region: {source.region}\n"
           f"  destination: {{region: {dest.region}, registryId: \"{dest.registry_id}\"}}\n")
    if filters:
        out += "  repositoryFilters:\n" + "".join(f"  - {{filter: {f}, filterType: PREFIX_MATCH}}\n" for f in filters)
    return out + ("  stop: true\n" if stop else "")


class Backfill(E2ETest):
    """S17: a ReplicationBackfill copies what the source already holds, every tag, under the rules
    of a push, skipping what the destination has; pushes keep priority."""

    def seed(self, registry, repos, tags_per_repo, prefix="prod/app"):
        """`repos` repositories of `tags_per_repo` distinct images each: {(repo, tag): digest}."""
        images = {}
        for r in range(repos):
            repo = f"{prefix}{r}"
            self.image(seed=repo, tag="t0").push(registry, repo)
            for tag, digest in tag_variants(registry, repo, "t0", [f"t{i}" for i in range(tags_per_repo)]).items():
                images[(repo, tag)] = digest
        return images

    def backfill_status(self, name):
        return self.ferry.backfill_status(name)

    def wait_phase(self, name, phases, timeout=60):
        return self.ferry.wait_backfill(name, phases, timeout)

    def test_s17_hundred_tags_ten_repositories_thirty_already_there(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        images = self.seed(a, 10, 10)
        # 30 of them are at the destination already (same bytes, same digest), 3 per repository.
        for r in range(10):
            repo = f"prod/app{r}"
            self.image(seed=repo, tag="t0").push(b, repo)
            tag_variants(b, repo, "t0", ["t0", "t1", "t2"])
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        time.sleep(1.0)
        self.assertEqual(b.tags("prod/app0"), ["t0", "t1", "t2"], "S3: nothing old moves without a backfill")
        self.ferry.write("backfill.yaml", backfill_yaml("all", a, b))
        done = self.wait_phase("all", ("COMPLETE", "FAILED"), timeout=120)
        self.assertEqual(done["phase"], "COMPLETE", done)
        self.assertEqual(done["images"], {"total": 100, "replicated": 70, "skipped": 30, "failed": 0})
        self.assertTrue(done["startedAt"] <= done["completedAt"])
        for (repo, tag), digest in images.items():
            self.assertEqual(b.manifest(repo, tag), a.manifest(repo, digest), f"{repo}:{tag}")
        # Backfilled images answer `ferry status` like pushes.
        st = self.ferry.status("prod/app3", "t7")
        self.assertEqual([s["status"] for s in st["replicationStatuses"]], ["COMPLETE"])
        self.assertIn("backfill listed", self.ferry.process.output())
        # A restart after the end changes nothing: no record is written again, no phase moves.
        records = len(self.ferry.records("imagereplications"))
        self.assertEqual(records, 70)
        self.assertEqual(self.ferry.stop(), 0)
        self.ferry.start()
        time.sleep(1.0)
        self.assertEqual(self.backfill_status("all"), done)
        self.assertEqual(len(self.ferry.records("imagereplications")), 70)

    def test_s17_cross_account_without_create_repository_fails_those_images(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        c = self.registry("c", B_ID, "eu-west-1", notify=False)
        self.seed(a, 2, 3)  # prod/app0 (exists at c) and prod/app1 (does not)
        self.image(seed="other").push(c, "prod/app0", tag="other")
        self.ferry.write("regs.yaml", a.resource() + "---\n" + c.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [c]))
        self.ferry.write("policy.yaml", registry_policy("c", c, [allow_statement(A_ID, c, actions=("ecr:ReplicateImage",))]))
        self.ferry.start()
        self.ferry.write("backfill.yaml", backfill_yaml("to-c", a, c))
        done = self.wait_phase("to-c", ("COMPLETE", "FAILED"))
        self.assertEqual(done["phase"], "COMPLETE", done)  # 3 of 6 failed: below the 100-image floor
        self.assertEqual(done["images"], {"total": 6, "replicated": 3, "skipped": 0, "failed": 3})
        self.assertEqual(sorted(c.tags("prod/app0")), ["other", "t0", "t1", "t2"])
        self.assertEqual(c.tags("prod/app1"), [])
        failed = [s for r in self.ferry.records("imagereplications") for s in r["status"]["replicationStatuses"]
                  if r["spec"]["source"]["repositoryName"] == "prod/app1"]
        self.assertEqual([(s["status"], s["failureCode"]) for s in failed], [("FAILED", "DESTINATION_REGISTRY_ACCESS_DENIED")] * 3)
        self.assertIn("ecr:CreateRepository", failed[0]["message"])

    def test_s17_stop_then_a_new_backfill_takes_the_rest(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        images = self.seed(a, 8, 10)
        slow = self.slow_endpoint(a, delay_ms=400)
        self.ferry.write("regs.yaml", a.resource(endpoint=slow) + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        self.ferry.write("backfill.yaml", backfill_yaml("first", a, b))
        wait_until(lambda: (self.backfill_status("first") or {}).get("images", {}).get("replicated", 0) >= 2, 60,
                   interval=0.1, what="a few images replicated")
        self.ferry.write("backfill.yaml", backfill_yaml("first", a, b, stop=True))
        stopped = self.wait_phase("first", ("STOPPED",))
        n = stopped["images"]
        self.assertLess(n["replicated"], 80, stopped)
        self.assertEqual(n["skipped"] + n["failed"], 0, stopped)
        self.assertRegex(stopped["message"], r"stopped \(spec.stop\); \d+ images not started")
        copied = sum(len(b.tags(f"prod/app{r}")) for r in range(8))
        self.assertEqual(copied, n["replicated"])
        time.sleep(1.0)
        self.assertEqual(sum(len(b.tags(f"prod/app{r}")) for r in range(8)), copied, "nothing moves once STOPPED")
        # A second backfill picks up the rest and skips what the first one copied.
        self.ferry.write("backfill2.yaml", backfill_yaml("second", a, b))
        done = self.wait_phase("second", ("COMPLETE", "FAILED"), timeout=120)
        self.assertEqual(done["images"], {"total": 80, "replicated": 80 - copied, "skipped": copied, "failed": 0})
        for (repo, tag), digest in images.items():
            self.assertEqual(b.manifest(repo, tag), a.manifest(repo, digest), f"{repo}:{tag}")

    def test_s17_kill_9_mid_backfill_resumes_without_copying_twice_or_missing_one(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        images = self.seed(a, 3, 10)
        slow = self.slow_endpoint(a, delay_ms=150)
        self.ferry.write("regs.yaml", a.resource(endpoint=slow) + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.write("backfill.yaml", backfill_yaml("bf", a, b))
        self.ferry.start()
        wait_until(lambda: (self.backfill_status("bf") or {}).get("images", {}).get("replicated", 0) >= 3, 60,
                   interval=0.05, what="some images replicated")
        self.ferry.stop(signal.SIGKILL)
        before = self.backfill_status("bf")
        self.assertEqual(before["phase"], "IN_PROGRESS", before)
        self.ferry.start()
        done = self.wait_phase("bf", ("COMPLETE", "FAILED"), timeout=120)
        self.assertEqual(done["images"], {"total": 30, "replicated": 30, "skipped": 0, "failed": 0}, done)
        self.assertEqual(done["startedAt"], before["startedAt"], "resumed, not started over")
        # One record per image, none twice; every image there with its digest.
        recs = self.ferry.records("imagereplications")
        keys = [(r["spec"]["source"]["repositoryName"], r["spec"]["source"]["imageTag"]) for r in recs]
        self.assertEqual(len(keys), 30)
        self.assertEqual(len(set(keys)), 30)
        for (repo, tag), digest in images.items():
            self.assertEqual(b.manifest(repo, tag), a.manifest(repo, digest), f"{repo}:{tag}")
        # No listing again after the restart: the kept list is used (the log spans both runs).
        self.assertEqual(self.ferry.process.output().count("backfill listed"), 1)

    def test_s17_a_push_during_a_backfill_replicates_on_time(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.seed(a, 3, 30, prefix="old/app")
        slow = self.slow_endpoint(a, delay_ms=400)
        self.ferry.write("regs.yaml", a.resource(endpoint=slow) + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        self.ferry.write("backfill.yaml", backfill_yaml("big", a, b))
        wait_until(lambda: (self.backfill_status("big") or {}).get("images", {}).get("replicated", 0) >= 1, 60,
                   interval=0.1, what="the backfill copying")
        self.image(seed="fresh", tag="v1").push(a, "new/app")
        st = self.ferry.wait_status("new/app", "v1", expected=1, timeout=30)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE")
        during = self.backfill_status("big")
        self.assertEqual(during["phase"], "IN_PROGRESS", "the push finished while the backfill was still running")
        self.assertLess(during["images"]["replicated"], 90)


def ts(text):
    """Unix seconds of an RFC 3339 UTC time as Ferry writes it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def copy_windows(request_log):
    """{repository: (first write's start, last write's end)} from a fault_proxy --request-log."""
    windows = {}
    with open(request_log) as f:
        for line in f:
            start, end, method, path = line.split(" ", 3)
            if method not in ("POST", "PUT", "PATCH"):
                continue  # a copy writes; HEADs also come from backfill listing and S13 checks
            m = re.match(r"/v2/(.+?)/(blobs|manifests)/", path)
            if not m:
                continue
            lo, hi = windows.get(m.group(1), (float(start), float(end)))
            windows[m.group(1)] = (min(lo, float(start)), max(hi, float(end)))
    return windows


def most_at_once(windows):
    """The largest number of windows that overlap at one instant."""
    edges = sorted([(lo, 1) for lo, _ in windows] + [(hi, -1) for _, hi in windows], key=lambda e: (e[0], e[1]))
    now = best = 0
    for _, d in edges:
        now += d
        best = max(best, now)
    return best


class Limits(E2ETest):
    """S21: per-registry limits on copies at once and on bytes, shared by pushes and backfills."""

    def test_s21_max_concurrent_copies_holds_per_destination_registry(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        c = self.registry("c", A_ID, "eu-west-1", notify=False)
        repos = [f"prod/app{i}" for i in range(4)]
        for r in repos:
            self.image(seed=r, layer_bytes=512 * 1024).push(a, r)
        log_b, log_c = os.path.join(self.workdir, "b.requests"), os.path.join(self.workdir, "c.requests")
        slow_b = self.slow_endpoint(b, delay_ms=60, request_log=log_b, name="proxy-b")
        slow_c = self.slow_endpoint(c, delay_ms=60, request_log=log_c, name="proxy-c")
        self.ferry.write("regs.yaml", a.resource() + "---\n"
                         + b.resource(endpoint=slow_b, extra="  limits: {maxConcurrentCopies: 1}\n") + "---\n"
                         + c.resource(endpoint=slow_c))
        self.ferry.write("config.yaml", replication_config("a", a, [b, c]))
        self.ferry.write("backfill-b.yaml", backfill_yaml("to-b", a, b))
        self.ferry.write("backfill-c.yaml", backfill_yaml("to-c", a, c))
        self.ferry.start()
        for name in ("to-b", "to-c"):
            done = self.ferry.wait_backfill(name, ("COMPLETE", "FAILED"), 120)
            self.assertEqual(done["images"], {"total": 4, "replicated": 4, "skipped": 0, "failed": 0}, done)
        for r in repos:
            self.assertEqual(b.manifest(r, "v1"), a.manifest(r, "v1"))
            self.assertEqual(c.manifest(r, "v1"), a.manifest(r, "v1"))
        at_b, at_c = copy_windows(log_b), copy_windows(log_c)
        self.assertEqual(sorted(at_b), repos)
        self.assertEqual(most_at_once(at_b.values()), 1, f"copies to b overlapped: {at_b}")
        # The same copies to c, which has no limit, ran side by side.
        self.assertGreater(most_at_once(at_c.values()), 1, f"copies to c never overlapped: {at_c}")

    def test_s21_byte_limit_holds_and_a_push_goes_before_a_backfill(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.image(seed="old", layer_bytes=3 * 1024 * 1024).push(a, "old/app")
        self.ferry.write("regs.yaml", a.resource() + "---\n"
                         + b.resource(extra="  limits: {bytesPerSecond: 2Mi, requestsPerSecond: 50}\n"))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        self.ferry.write("backfill.yaml", backfill_yaml("old", a, b))
        self.wait_copy_in_flight()
        time.sleep(0.5)  # the backfill's head start
        self.image(seed="new", layer_bytes=3 * 1024 * 1024).push(a, "new/app")
        self.ferry.wait_status("new/app", "v1", expected=1, timeout=60)
        done = self.ferry.wait_backfill("old", ("COMPLETE", "FAILED"), 60)
        self.assertEqual(done["phase"], "COMPLETE", done)
        self.ferry.wait_status("old/app", "v1", expected=1, timeout=5)
        recs = {r["spec"]["source"]["repositoryName"]: r for r in self.ferry.records("imagereplications")}
        pushed = recs["new/app"]["status"]["replicationStatuses"][0]
        backfilled = recs["old/app"]["status"]["replicationStatuses"][0]
        self.assertEqual((pushed["status"], backfilled["status"]), ("COMPLETE", "COMPLETE"))
        # Shared fairly, the backfill would finish first (it started earlier); pushes go first.
        self.assertLess(ts(pushed["completedAt"]), ts(backfilled["completedAt"]))
        for r in ("old/app", "new/app"):
            self.assertEqual(b.manifest(r, "v1"), a.manifest(r, "v1"))
        # 6 MiB through a 2 MiB/s limit: no less than about 3 s from the backfill's first byte.
        rec = recs["old/app"]
        self.assertGreaterEqual(ts(backfilled["completedAt"]) - ts(rec["metadata"]["creationTimestamp"]), 2.8)


class Retry(E2ETest):
    """S20: `ferry retry` tries a FAILED destination again now, authorization decided anew."""

    def test_s20_ferry_retry_after_the_policy_is_fixed(self):
        a = self.registry("a", A_ID, "us-east-1")
        c = self.registry("c", B_ID, "eu-west-1", notify=False)
        self.ferry.write("regs.yaml", a.resource() + "---\n" + c.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [c]))
        self.ferry.write("policy.yaml", registry_policy("c", c, [allow_statement(A_ID, c, actions=("ecr:ReplicateImage",))]))
        self.ferry.start()
        self.image(seed="retry").push(a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=30)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "FAILED")
        retry = [harness.FERRY, "retry", "--state-dir", self.ferry.state, "--repository", "prod/app", "--image", "v1"]
        # Nothing changes by itself: still FAILED, nothing at c.
        self.ferry.write("policy.yaml", registry_policy("c", c, [allow_statement(A_ID, c)]))
        time.sleep(2.0)
        self.assertEqual(self.ferry.wait_status("prod/app", "v1", expected=1)[(B_ID, "eu-west-1")]["status"], "FAILED")
        self.assertEqual(c.catalog(), [])
        out = run(retry)
        self.assertIn("retry requested: prod/app:v1", out.stdout)
        wait_until(lambda: self.ferry.status("prod/app", "v1")["replicationStatuses"][0]["status"] == "COMPLETE", 30,
                   interval=0.2, what="COMPLETE after ferry retry")
        self.assertEqual(c.manifest("prod/app", "v1"), a.manifest("prod/app", "v1"))
        rec = self.ferry.records("imagereplications")[0]
        self.assertTrue(rec["status"]["lastHandledRetryAt"])
        # Nothing left to retry: exit 1.
        self.assertEqual(run(retry, check=False).returncode, 1)


class NeverDelete(E2ETest):
    def test_s10_deleting_source_tags_config_and_records_deletes_nothing(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        img = self.image(seed="keep")
        img.push(a, "prod/app")
        self.ferry.wait_status("prod/app", "v1", expected=1)
        before = b.manifest("prod/app", "v1")
        self.assertIsNotNone(before)
        run(["skopeo", "delete", "--tls-verify=false", f"docker://{a.host}/prod/app@{img.digest}"])
        self.ferry.remove("config.yaml")
        self.ferry.wait_reload(2)
        for kind in ("imagereplications", "repositories"):
            d = os.path.join(self.ferry.state, kind)
            for f in os.listdir(d):
                os.remove(os.path.join(d, f))
        self.assertEqual(self.ferry.stop(), 0, "ferry run exits 0 on SIGTERM")
        self.ferry.start()
        time.sleep(1.0)
        self.assertEqual(b.manifest("prod/app", "v1"), before)
        self.assertEqual(b.manifest("prod/app", img.digest), before)


class Revocation(E2ETest):
    def test_s9_authorized_copy_completes_after_revocation_next_push_denied(self):
        a = self.registry("a", A_ID, "us-east-1")
        c = self.registry("c", B_ID, "eu-west-1")
        slow = self.slow_endpoint(a)
        self.ferry.write("regs.yaml", a.resource(endpoint=slow) + "---\n" + c.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [c]))
        self.ferry.write("policy.yaml", registry_policy("c", c, [allow_statement(A_ID, c)]))
        self.ferry.start()
        big = self.image(seed="big", layer_bytes=6 * 1024 * 1024)
        big.push(a, "prod/app")
        self.wait_copy_in_flight()
        self.ferry.write("policy.yaml", registry_policy("c", c, [
            {"Sid": "Nothing", "Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Resource": "*"}]))
        self.ferry.wait_reload(2)
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=60)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(c.manifest("prod/app", "v1"), a.manifest("prod/app", "v1"))
        self.image(seed="after").push(a, "prod/app", tag="v2")
        denied = self.ferry.wait_status("prod/app", "v2", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(denied["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        self.assertIn("explicitly denied", denied["message"])


class FullDisk(E2ETest):
    """The state directory on a full file system (a 1 MiB tmpfs): a push that cannot be recorded
    is refused with a clear error (the registry sends it again), nothing stored is damaged, and
    once space returns the push replicates."""

    def small_state_directory(self):
        self.assertEqual(os.geteuid(), 0, "mounting the small tmpfs needs root (CI runs as root)")
        os.makedirs(self.ferry.state)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", self.ferry.state], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.ferry.state])

    def fill(self):
        """Fills the state directory's file system to the last byte; returns the filler's path."""
        filler = os.path.join(self.ferry.state, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # ENOSPC: full
        finally:
            os.close(fd)
        return filler

    def test_a_full_state_directory_refuses_the_push_then_recovers(self):
        self.small_state_directory()
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        self.image(seed="before-full").push(a, "prod/app", tag="v1")
        self.ferry.wait_status("prod/app", "v1", expected=1)
        filler = self.fill()
        self.image(seed="while-full").push(a, "prod/app", tag="v2")
        wait_until(lambda: "No space left on device" in self.ferry.process.output(), 20,
                   what="the refused push in the log")
        self.assertIn("cannot record push", self.ferry.process.output())
        self.assertIsNone(self.ferry.status("prod/app", "v2"))
        self.assertIsNone(b.manifest("prod/app", "v2"))
        # What was stored is whole: every record still parses, the first one COMPLETE.
        for kind in ("imagereplications", "repositories"):
            for rec in self.ferry.records(kind):
                self.assertTrue(rec["metadata"]["name"])
        self.assertEqual(self.ferry.status("prod/app", "v1")["replicationStatuses"][0]["status"], "COMPLETE")
        self.assertTrue(self.ferry.process.alive(), "a full disk is not a crash")
        # Space again: the registry's next delivery of the same notification is recorded.
        os.remove(filler)
        st = self.ferry.wait_status("prod/app", "v2", expected=1, timeout=30)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.manifest("prod/app", "v2"), a.manifest("prod/app", "v2"))

    def test_a_disk_filling_during_a_copy_keeps_the_record_whole_and_writes_it_when_space_returns(self):
        """The record exists and the copy is under way when the disk fills: the copy finishes, its
        COMPLETE cannot be written (logged with the cause), the stored record stays whole and says
        IN_PROGRESS, and once space returns it is written without copying the image again."""
        self.small_state_directory()
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        log = os.path.join(self.workdir, "b-requests.log")
        self.ferry.write("regs.yaml", a.resource() + "---\n" +
                         b.resource(endpoint=self.slow_endpoint(b, delay_ms=60, request_log=log)))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        self.image(seed="filling", layer_bytes=6 << 20).push(a, "prod/app", tag="v1")
        self.wait_copy_in_flight()
        filler = self.fill()
        wait_until(lambda: b.manifest("prod/app", "v1"), 30, what="the copy finishing on a full disk")
        wait_until(lambda: "cannot persist record" in self.ferry.process.output(), 20,
                   what="the failed status write in the log")
        self.assertIn("No space left on device", self.ferry.process.output())
        self.assertTrue(self.ferry.process.alive(), "a full disk is not a crash")
        time.sleep(2)  # writes tried again meanwhile (every second) fail too
        st = self.ferry.status("prod/app", "v1")  # the stored record parses: whole, not truncated
        self.assertEqual(st["replicationStatuses"][0]["status"], "IN_PROGRESS", st)
        os.remove(filler)
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=20)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.manifest("prod/app", "v1"), a.manifest("prod/app", "v1"))
        with open(log) as f:
            puts = [line.split()[3] for line in f if line.split()[2] == "PUT" and "/manifests/" in line]
        self.assertEqual(puts, ["/v2/prod/app/manifests/v1"], "the image copied once")


class Durability(E2ETest):
    def test_killed_mid_copy_resumes_after_restart(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        slow = self.slow_endpoint(a)
        self.ferry.write("regs.yaml", a.resource(endpoint=slow) + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        self.image(seed="kill", layer_bytes=4 * 1024 * 1024).push(a, "prod/app")
        self.wait_copy_in_flight()
        self.ferry.stop(signal.SIGKILL)
        self.assertIsNone(b.manifest("prod/app", "v1"), "no half image is visible")
        self.ferry.start()
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=60)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("prod/app", "v1"), a.manifest("prod/app", "v1"))


class CatchUp(E2ETest):
    """S20: a destination that is down longer than one attempt cycle still gets every push made
    meanwhile, without a new push and across a restart of Ferry; a permanent cause is not retried."""

    def test_s20_destination_down_three_minutes_receives_every_push_across_a_restart(self):
        self.same_account_pair()
        # Pauses between catch-up attempts are capped at 10 s here (10 min by default).
        args = ("--retry-pause-max", "10s")
        self.ferry.start(args=args)
        self.b.stop()
        down_at = time.monotonic()
        tags = ["v1", "v2", "v3"]
        for i, tag in enumerate(tags):
            self.image(seed=f"down-{i}", tag=tag).push(self.a, "prod/app")

        def catching_up():
            entries = [s for tag in tags for s in statuses_of(self.ferry, "prod/app", tag)]
            if len(entries) == len(tags) and all(s.get("nextAttemptAt") for s in entries):
                return entries
            return None
        # Past the attempt cycle (5 attempts, about 30 s): still IN_PROGRESS, with the last error
        # and the next attempt's time, never FAILED.
        time.sleep(45)
        entries = wait_until(catching_up, 30, what="every destination retrying with a next attempt time")
        for s in entries:
            self.assertEqual(s["status"], "IN_PROGRESS", s)
            self.assertRegex(s["message"], r"attempt \d+ failed: .*(refused|connect)", s)
        # Ferry restarts while the destination is still down.
        self.ferry.stop()
        self.ferry.start(args=args)
        remaining = 180 - (time.monotonic() - down_at)
        if remaining > 0:
            time.sleep(remaining)
        for tag in tags:
            self.assertEqual(statuses_of(self.ferry, "prod/app", tag)[0]["status"], "IN_PROGRESS")
        returned_at = time.monotonic()
        self.b.start_again(self._procs)
        for tag in tags:
            st = self.ferry.wait_status("prod/app", tag, expected=1, timeout=60)[(A_ID, "us-west-2")]
            self.assertEqual(st["status"], "COMPLETE", st)
            self.assertNotIn("nextAttemptAt", st)
            self.assertEqual(self.b.manifest("prod/app", tag), self.a.manifest("prod/app", tag))
        sys.stderr.write(f"\ncatch-up: every push COMPLETE {time.monotonic() - returned_at:.1f} s after the "
                         "destination returned\n")

    def test_s20_a_permanent_cause_fails_at_once_and_is_not_retried(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", B_ID, "eu-west-1")  # another account, no policy: access denied
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start(args=("--retry-pause-max", "10s"))
        self.image(seed="denied").push(a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=20)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "FAILED", st)
        self.assertEqual(st["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        self.assertNotIn("nextAttemptAt", st)
        self.assertNotIn("attempt", st.get("message", ""))


SIGNATURE = "application/vnd.dev.cosign.simplesigning.v1+json"
SBOM = "application/spdx+json"


class Referrers(E2ETest):
    """S19: artifacts whose subject is an image (a signature, an SBOM) follow that image."""

    def test_s19_referrers_pushed_by_digest_alone_follow_through_the_referrers_api(self):
        # go-containerregistry's registry, with the referrers API and no notifications: polling
        # sees tags only, so only the referrers lookup can find these.
        a = self.registry("a", A_ID, "us-east-1", notify=False, server="referrers")
        b = self.registry("b", A_ID, "us-west-2", notify=False, server="referrers")
        self.ferry.write("regs.yaml", a.resource(poll="1s") + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        time.sleep(1.5)  # the first poll records the baseline
        img = self.image(seed="signed-later")
        img.push(a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=20)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE", st)
        # Signed and scanned after it replicated, by digest alone.
        sig = a.push_referrer("prod/app", img.digest, SIGNATURE, b'{"critical":{"image":"prod/app"}}')
        sbom = a.push_referrer("prod/app", img.digest, SBOM, b'{"spdxVersion":"SPDX-2.3"}')

        def listed_at_destination():
            got = {d["digest"]: d.get("artifactType") for d in b.referrers("prod/app", img.digest) or []}
            return got if set(got) == {sig, sbom} else None
        got = wait_until(listed_at_destination, 30, what="both referrers listed by the destination's referrers API")
        # The destination lists them as the source does (this registry reports config.mediaType as
        # artifactType); the manifests themselves carry theirs, byte for byte.
        self.assertEqual(got, {d["digest"]: d.get("artifactType") for d in a.referrers("prod/app", img.digest)})
        for d, kind in ((sig, SIGNATURE), (sbom, SBOM)):
            self.assertEqual(b.manifest("prod/app", d), a.manifest("prod/app", d))
            self.assertEqual(json.loads(b.manifest("prod/app", d))["artifactType"], kind)
            self.assertEqual([s["status"] for s in statuses_of(self.ferry, "prod/app", d)], ["COMPLETE"])
        self.assertEqual(b.tags("prod/app"), ["v1"], "referrers go by digest; no tag is made up")

    def test_s19_referrers_of_a_backfilled_image_already_there_follow_it(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False, server="referrers")
        b = self.registry("b", A_ID, "us-west-2", notify=False, server="referrers")
        img = self.image(seed="there-unsigned")
        img.push(a, "prod/app")
        img.push(b, "prod/app")  # the image is at the destination already, its signature is not
        sig = a.push_referrer("prod/app", img.digest, SIGNATURE, b'{"critical":{"image":"old"}}')
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.write("backfill.yaml", (
            "apiVersion: ferry.dev/v1alpha1\nkind: ReplicationBackfill\nmetadata: {name: old}\n"
            f"spec:\n  registryId: \"{A_ID}\"\n  region: us-east-1\n"
            f"  destination: {{region: us-west-2, registryId: \"{A_ID}\"}}\n"))
        self.ferry.start()

        done = self.ferry.wait_backfill("old", timeout=30)
        self.assertEqual(done["images"], {"total": 1, "replicated": 0, "skipped": 1, "failed": 0}, done)
        wait_until(lambda: [d["digest"] for d in b.referrers("prod/app", img.digest) or []] == [sig], 20,
                   what="the signature at the destination")
        self.assertEqual(b.manifest("prod/app", sig), a.manifest("prod/app", sig))

    def _tag_schema_referrers_follow_their_image(self, server):
        a = self.registry("a", A_ID, "us-east-1", server=server)
        b = self.registry("b", A_ID, "us-west-2", server=server)
        img = self.image(seed="promoted-" + server)
        img.push(a, "prod/app")  # before replication applies (S3): not copied on its own
        sig = a.push_referrer("prod/app", img.digest, SIGNATURE, b"signature", tag_schema=True)
        sbom = a.push_referrer("prod/app", img.digest, SBOM, b"sbom", tag_schema=True)
        self.assertIsNone(a.referrers("prod/app", img.digest), f"{server} has no referrers API")
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        img.push(a, "prod/app", tag="v2")  # promoted: the same image under a new tag
        st = self.ferry.wait_status("prod/app", "v2", expected=1, timeout=20)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE", st)
        fallback = "sha256-" + img.digest.split(":", 1)[1]
        wait_until(lambda: b.manifest("prod/app", fallback) == a.manifest("prod/app", fallback), 20,
                   what="the tag schema's index at the destination")
        listed = [d["digest"] for d in json.loads(b.manifest("prod/app", fallback))["manifests"]]
        self.assertEqual(listed, [sig, sbom])
        for d in (sig, sbom):
            self.assertEqual(b.manifest("prod/app", d), a.manifest("prod/app", d))
        self.assertIsNone(b.manifest("prod/app", "v1"), "S3 still holds for the tag pushed before")

    def test_s19_tag_schema_referrers_follow_their_image_on_distribution_2_8(self):
        self._tag_schema_referrers_follow_their_image("docker-registry")

    def test_s19_tag_schema_referrers_follow_their_image_on_distribution_v3(self):
        self._tag_schema_referrers_follow_their_image("registry-v3")


class Metrics(E2ETest):
    def test_bytes_copied_counts_each_blob_written_once_with_two_destinations_at_once(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        c = self.registry("c", B_ID, "eu-west-1")
        self.ferry.write("regs.yaml", a.resource() + "---\n" + b.resource() + "---\n" + c.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b, c]))
        self.ferry.write("policy.yaml", registry_policy("c", c, [allow_statement(A_ID, c)]))
        self.ferry.start()
        img = self.image(seed="metered", layer_bytes=3 * 1024 * 1024)
        img.push(a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=2, timeout=30)
        self.assertEqual({s["status"] for s in st.values()}, {"COMPLETE"}, st)
        manifest = json.loads(a.manifest("prod/app", "v1"))
        blob_bytes = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])

        def bytes_copied():
            with urllib.request.urlopen(self.ferry.url + "/metrics", timeout=5) as r:
                text = r.read().decode()
            return float(re.search(r"^ferry_bytes_copied_total (\S+)$", text, re.M).group(1))
        self.assertEqual(bytes_copied(), 2 * blob_bytes, "both destinations' blobs, each once")
        # The same image under another tag writes no blob anywhere: the count stays.
        img.push(a, "prod/app", tag="v2")
        self.ferry.wait_status("prod/app", "v2", expected=2, timeout=30)
        self.assertEqual(bytes_copied(), 2 * blob_bytes)


def scrape(ferry):
    """The /metrics page as {(name, frozenset(labels.items())): value}, parsed line by line."""
    with urllib.request.urlopen(ferry.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = sample.match(line)
        if not m:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    """The value of one sample, or None when the page has no such series."""
    return samples.get((name, frozenset(labels.items())))


class MetricsPerSpec(E2ETest):
    """SPEC §9 metrics after a known workload, read from /metrics of a real `ferry run`."""

    def test_replications_latency_notifications_responses_and_polls_name_their_registry(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        c = self.registry("c", B_ID, "eu-west-1")  # another account with no policy: denied
        self.ferry.write("regs.yaml", a.resource(poll="1s") + "---\n" + b.resource() + "---\n" + c.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b, c]))
        self.ferry.start()
        time.sleep(1.5)  # the first poll takes its baseline
        self.image(seed="counted").push(a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=2, timeout=30)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE", st)
        self.assertEqual(st[(B_ID, "eu-west-1")]["status"], "FAILED", st)
        self.assertEqual(self.ferry.post_events("nobody", '{"events": []}')[0], 404)
        self.assertEqual(self.ferry.post_events("a", '{"events": [')[0], 400)
        wait_until(lambda: (metric(scrape(self.ferry), "ferry_polls_total", registry="a", result="success") or 0) >= 2,
                   10, what="two successful polls of a")
        m = scrape(self.ferry)
        self.assertEqual(metric(m, "ferry_replications_total", destination="b", result="COMPLETE", failure_code=""), 1)
        self.assertEqual(metric(m, "ferry_replications_total", destination="c", result="FAILED",
                                failure_code="DESTINATION_REGISTRY_ACCESS_DENIED"), 1)
        # Every destination's series exist from the start (at 0), so a rate() sees the first event.
        self.assertEqual(metric(m, "ferry_replications_total", destination="c", result="COMPLETE", failure_code=""), 0)
        self.assertEqual(metric(m, "ferry_replications_total", destination="b", result="FAILED",
                                failure_code="SOURCE_MANIFEST_UNKNOWN"), 0)
        self.assertEqual(metric(m, "ferry_push_to_complete_seconds_count", destination="b"), 1)
        self.assertEqual(metric(m, "ferry_push_to_complete_seconds_count", destination="c"), 0)
        # The registry's push notification, the two made-up requests: each under its own code.
        self.assertGreaterEqual(metric(m, "ferry_notifications_total", registry="a", code="200"), 1)
        self.assertEqual(metric(m, "ferry_notifications_total", registry="a", code="400"), 1)
        self.assertEqual(metric(m, "ferry_notifications_total", registry="unknown", code="404"), 1)
        # a answered the copy's reads and the polls, b the copy's writes; nothing failed to answer.
        self.assertGreater(metric(m, "ferry_registry_responses_total", registry="a", code="2xx"), 3)
        self.assertGreater(metric(m, "ferry_registry_responses_total", registry="b", code="2xx"), 2)
        self.assertEqual(metric(m, "ferry_registry_responses_total", registry="b", code="error"), 0)
        self.assertLess(abs(metric(m, "ferry_poll_last_success_timestamp_seconds", registry="a") - time.time()), 5)
        self.assertGreaterEqual(metric(m, "ferry_poll_duration_seconds_count", registry="a"), 2)
        self.assertEqual(metric(m, "ferry_polls_total", registry="a", result="error") or 0, 0)
        self.assertEqual(metric(m, "ferry_copies", state="running"), 0)
        self.assertEqual(metric(m, "ferry_copies", state="queued"), 0)
        self.assertEqual(metric(m, "ferry_copies", state="retry_wait"), 0)
        self.assertEqual(metric(m, "ferry_oldest_copy_seconds"), 0)
        self.assertEqual(metric(m, "ferry_build_info", version="0.1.0"), 1)
        self.assertGreater(metric(m, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(metric(m, "process_cpu_seconds_total"), 0)
        self.assertGreater(metric(m, "process_open_fds"), 3)
        self.assertLess(abs(metric(m, "process_start_time_seconds") - time.time()), 120)

    def test_a_copy_to_an_unreachable_destination_shows_as_old_and_failing_to_connect(self):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # a port nothing listens on while the test runs
        closed_port = dead.getsockname()[1]
        self.addCleanup(dead.close)
        self.ferry.write("regs.yaml", a.resource(poll="1s") + "---\n" +
                         b.resource(endpoint=f"http://127.0.0.1:{closed_port}"))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        self.image(seed="stuck").push(a, "prod/app")
        wait_until(lambda: (metric(scrape(self.ferry), "ferry_oldest_copy_seconds") or 0) >= 2, 15,
                   what="the stuck copy's age on /metrics")
        m = scrape(self.ferry)
        self.assertEqual(sum(metric(m, "ferry_copies", state=s) for s in ("running", "queued", "retry_wait")), 1)
        self.assertGreater(metric(m, "ferry_registry_responses_total", registry="b", code="error"), 0)
        self.assertEqual(metric(m, "ferry_registry_responses_total", registry="b", code="2xx"), 0)
        self.assertEqual(metric(m, "ferry_replications_total", destination="b", result="COMPLETE", failure_code=""), 0)
        # The source stops answering: its polls count as errors and the last success stays put.
        last = metric(m, "ferry_poll_last_success_timestamp_seconds", registry="a")
        a.stop()
        wait_until(lambda: (metric(scrape(self.ferry), "ferry_polls_total", registry="a", result="error") or 0) >= 1,
                   20, what="a failed poll of a")
        self.assertEqual(metric(scrape(self.ferry), "ferry_poll_last_success_timestamp_seconds", registry="a"), last)


class PushDetection(E2ETest):
    def test_polling_notices_pushes_without_notifications(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2")
        self.image(seed="before").push(a, "prod/before")
        self.ferry.write("regs.yaml", a.resource(poll="1s") + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        time.sleep(1.5)  # the first poll records the baseline
        self.image(seed="after").push(a, "prod/after")
        st = self.ferry.wait_status("prod/after", "v1", expected=1, timeout=20)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.catalog(), ["prod/after"])

    def test_notification_endpoint_refuses_bad_requests_and_changes_nothing(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.ferry.write("regs.yaml", a.resource(extra="  notifications: {tokenSecretRef: {namespace: ferry-system, name: tok}}\n")
                         + "---\n" + b.resource())
        self.ferry.write("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: tok, namespace: ferry-system}\n"
                                        "stringData: {token: s3cret}\n")
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        good = json.dumps({"events": [{"action": "push", "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "prod/app",
            "digest": "sha256:" + "a" * 64, "tag": "v1"}}]})
        self.assertEqual(self.ferry.post_events("a", good)[0], 401)
        self.assertEqual(self.ferry.post_events("a", good, token="wrong")[0], 401)
        code, body = self.ferry.post_events("a", '{"events": [', token="s3cret")
        self.assertEqual(code, 400)
        self.assertIn("body is not JSON", body)
        code, body = self.ferry.post_events("a", good.replace("prod/app", "../etc"), token="s3cret")
        self.assertEqual(code, 400)
        self.assertIn("is not a repository name", body)
        self.assertEqual(self.ferry.post_events("nobody", good, token="s3cret")[0], 404)
        self.assertEqual(self.ferry.post_events("a", good, content_type="text/plain", token="s3cret")[0], 415)
        self.assertEqual(self.ferry.records("imagereplications"), [])
        # v2+json envelopes are accepted too.
        code, _ = self.ferry.post_events("a", good, token="s3cret",
                                         content_type="application/vnd.docker.distribution.events.v2+json")
        self.assertEqual(code, 200)
        self.assertEqual(len(self.ferry.records("imagereplications")), 1)
        self.assertNotIn("s3cret", self.ferry.process.output())

    def test_notification_token_is_checked_before_the_body_is_read(self):
        """With a token configured, a request without it is refused from its headers: 401 before
        any of the body is read, whatever its size; with the token an oversized body gets 413."""
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.ferry.write("regs.yaml", a.resource(extra="  notifications: {tokenSecretRef: {namespace: ferry-system, name: tok}}\n")
                         + "---\n" + b.resource())
        self.ferry.write("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: tok, namespace: ferry-system}\n"
                                        "stringData: {token: s3cret}\n")
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        events = "application/vnd.docker.distribution.events.v1+json"
        big = 2 << 20
        # Bodies announced but never sent: the answer can only come from the headers.
        for length in (big, 100):
            for auth in ({}, {"Authorization": "Bearer wrong"}):
                status, raw = post_headers_only(self.ferry.port, "/registry-events/a",
                                                {"Content-Type": events, "Content-Length": str(length), **auth})
                self.assertEqual(status, 401, raw)
        # An ordinary client sending a 2 MiB body without the token: 401, not 413.
        code, body = self.ferry.post_events("a", "x" * big)
        self.assertEqual(code, 401, body)
        # With the token, the size limit applies: 413.
        code, body = self.ferry.post_events("a", "x" * big, token="s3cret")
        self.assertEqual(code, 413, body)
        status, raw = post_headers_only(self.ferry.port, "/registry-events/a",
                                        {"Content-Type": events, "Content-Length": str(big),
                                         "Authorization": "Bearer s3cret"})
        self.assertEqual(status, 413, raw)
        # A client that asks first (Expect: 100-continue) is told to go on once the token is right.
        good = push_event("prod/app", absent_digest("expect"), "v1").encode()
        headers = {"Content-Type": events, "Content-Length": str(len(good)), "Authorization": "Bearer s3cret",
                   "Expect": "100-continue"}
        with socket.create_connection(("127.0.0.1", self.ferry.port), timeout=5) as sock:
            sock.sendall(("POST /registry-events/a HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                          "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(4096) or self.fail(f"closed after {answer!r}")
            self.assertTrue(answer.startswith(b"HTTP/1.1 100 "), answer)
            sock.sendall(good)
            answer = answer[answer.index(b"\r\n\r\n") + 4:]
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(4096) or self.fail(f"closed after {answer!r}")
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        wait_until(lambda: len(self.ferry.records("imagereplications")) == 1, 10, what="the accepted push recorded")
        self.assertNotIn("s3cret", self.ferry.process.output())

if __name__ == "__main__":
    unittest.main()
