"""Scale-out (SPEC §8) end to end: three `ferry operator --shards 6` replicas against one real
kube-apiserver, real docker-registry processes and skopeo. Each replica holds shard Leases
(ferry-shard-<i>) and runs an engine for each; a notification reaching any replica is recorded by
the holder of each push's shard; a replica killed mid-copy has its shards taken over once their
Leases expire, and its copy resumes there, once."""
import hashlib
import json
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Registry, http_text, post_notification, replication_config, wait_until  # noqa: E402
from test_cluster_mode import A_ID, ClusterModeTest  # noqa: E402
from testproc import free_port  # noqa: E402

SHARDS = 6
LEASE_SECONDS, RENEW_SECONDS, RETRY_SECONDS = 6, 4, 1
TIMING = ["--leader-election-lease-duration", f"{LEASE_SECONDS}s",
          "--leader-election-renew-deadline", f"{RENEW_SECONDS}s",
          "--leader-election-retry-period", f"{RETRY_SECONDS}s"]


def shard_of(registry_id, region, repository, shards=SHARDS):
    """model::shard_of, written again from its definition: SHA-256 of id NUL region NUL repository,
    the first 8 bytes big-endian, mod shards."""
    digest = hashlib.sha256(f"{registry_id}\0{region}\0{repository}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def repos_per_shard(prefix, per_shard=2):
    """Repository names, `per_shard` of them in each shard of (A_ID, us-east-1)."""
    out, i = {s: [] for s in range(SHARDS)}, 0
    while any(len(v) < per_shard for v in out.values()):
        name = f"{prefix}{i}"
        s = shard_of(A_ID, "us-east-1", name)
        if len(out[s]) < per_shard:
            out[s].append(name)
        i += 1
    return out


class ClusterShards(ClusterModeTest):
    def start_replicas(self, a, count=3):
        """`count` replicas; the registry notifies the first one only (as a Service would pick
        one), so pushes of shards held by the others must be forwarded."""
        ops, self.ports = [], []
        for n in range(count):
            port = self.notified_port if n == 0 else free_port()
            self.ports.append(port)
            op = self.start_operator("--shards", str(SHARDS), "--replicas", str(count),
                                     "--notifications-url", f"http://127.0.0.1:{port}", *TIMING,
                                     events_port=port, wait_engine=False)
            self.addCleanup(op.stop)
            ops.append(op)
        for op in ops:
            wait_until(lambda: "identity=" in op.output(), 10, what="a replica's identity")
        self.identities = [re.search(r"identity=(\S+)", op.output()).group(1) for op in ops]
        wait_until(lambda: sorted(self.lease_holders().values()).count("") == 0 and
                   all(list(self.lease_holders().values()).count(i) == SHARDS // count for i in self.identities),
                   30, what="every replica holding its share of the shards")
        # Each replica learns the others' holders (and addresses) at its next pass over the
        # Leases; until then it answers a push of such a shard 503 and the registry retries.
        time.sleep(2 * RETRY_SECONDS + 0.5)
        return ops

    def lease_holders(self):
        leases = self.get("leases", "-n", Cluster.NS)["items"]
        out = {s: "" for s in range(SHARDS)}
        for item in leases:
            name = item["metadata"]["name"]
            if name.startswith("ferry-shard-"):
                out[int(name[len("ferry-shard-"):])] = item["spec"].get("holderIdentity") or ""
        return out

    def setup_pair(self, slow_destination=False):
        self.notified_port = free_port()
        a = Registry(self.workdir, "a", A_ID, "us-east-1", f"http://127.0.0.1:{self.notified_port}")
        self._procs.append(a.process)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.b_log = os.path.join(self.workdir, "b-requests.log")
        endpoint = self.slow_endpoint(b, delay_ms=100, request_log=self.b_log) if slow_destination else None
        self.apply(a.resource() + "---\n" + (b.resource(endpoint=endpoint) if endpoint else b.resource()))
        self.apply(replication_config("a", a, [b]))
        return a, b

    def test_pushes_spread_over_the_shards_are_each_recorded_once_by_their_holder(self):
        a, b = self.setup_pair()
        ops = self.start_replicas(a)
        holders = self.lease_holders()
        repos = repos_per_shard("team/app")
        for shard in range(SHARDS):
            for repo in repos[shard]:
                self.image(seed=repo).push(a, repo)
        all_repos = [r for s in range(SHARDS) for r in repos[s]]
        for repo in all_repos:
            _, st = self.wait_record(repo, "v1", expected=1, timeout=60)
            self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE", repo)
            self.assertEqual(b.manifest(repo, "v1"), a.manifest(repo, "v1"), repo)
        records = self.records()
        self.assertEqual(sorted(r["spec"]["source"]["repositoryName"] for r in records), sorted(all_repos),
                         "one record per push, none twice")
        for r in records:
            repo = r["spec"]["source"]["repositoryName"]
            shard = shard_of(A_ID, "us-east-1", repo)
            self.assertEqual(r["metadata"]["labels"].get("ferry.dev/shard"), str(shard), repo)
            # Recorded by the replica that holds the shard, whichever replica the registry told.
            holder = ops[self.identities.index(holders[shard])]
            for op in ops:
                recorded = [line for line in op.output().splitlines()
                            if "push recorded" in line and f"repository={repo} " in line]
                self.assertEqual(len(recorded), 1 if op is holder else 0,
                                 f"{repo} (shard {shard}): recorded by its holder only, once")
        # Every replica recorded pushes of its own: the work is spread.
        for op in ops:
            self.assertGreater(op.output().count("push recorded"), 0)
        # Metrics carry the shard of each engine's series.
        self.assertRegex(http_text(f"http://127.0.0.1:{self.cluster.metrics_port}/metrics"), r'shard="\d"')

    def test_one_notification_with_pushes_of_two_shards_held_elsewhere_is_taken_by_both_holders(self):
        """A token-protected Registry; one envelope, POSTed to replica 0, carries a push of a shard
        replica 1 holds and one of a shard replica 2 holds. A wrong token is refused by replica 0
        itself, before anything is forwarded; one forwarded under another shard count is refused by
        the holder; the right one gets 200 once both holders recorded."""
        self.notified_port = free_port()
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.kubectl("create", "secret", "generic", "tok", "-n", Cluster.NS, "--from-literal=token=s3cret")
        self.apply(a.resource(extra=f"  notifications: {{tokenSecretRef: {{namespace: {Cluster.NS}, name: tok}}}}\n")
                   + "---\n" + b.resource())
        self.apply(replication_config("a", a, [b]))
        ops = self.start_replicas(a)
        holders = self.lease_holders()
        repos = repos_per_shard("multi/r", per_shard=1)
        picked = []
        for other in (1, 2):
            shard = min(s for s, h in holders.items() if h == self.identities[other])
            picked.append((repos[shard][0], other))
        events = []
        for repo, _ in picked:
            img = self.image(seed=repo)
            img.push(a, repo)
            events.append({"id": f"evt-{repo}", "action": "push", "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": repo,
                "digest": img.digest, "tag": "v1"}})
        body = json.dumps({"events": events}).encode()
        url = f"http://127.0.0.1:{self.notified_port}/registry-events/a"
        self.assertEqual(post_notification(url, body, "Bearer wrong")[0], 401)
        for op in ops[1:]:
            self.assertNotIn("push recorded", op.output(), "a refused notification must not be forwarded")
        # A push forwarded by a replica counting shards differently (a rolling change of --shards):
        # the holder answers 503, so the registry retries, and takes nothing (shard i of 7 is not
        # shard i of 6).
        repo, other = picked[0]
        mine = shard_of(A_ID, "us-east-1", repo)
        for query in (f"forwarded={mine}&shards={SHARDS + 1}", f"forwarded={mine}"):
            code, text = post_notification(f"http://127.0.0.1:{self.ports[other]}/registry-events/a?{query}", body,
                                           "Bearer s3cret")
            self.assertEqual(code, 503, (query, text))
            self.assertIn("--shards is changing", text)
        self.assertNotIn("push recorded", ops[other].output())
        code, text = post_notification(url, body, "Bearer s3cret")
        self.assertEqual(code, 200, text)
        for repo, holder in picked:
            _, st = self.wait_record(repo, "v1", expected=1, timeout=30)
            self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE", repo)
            self.assertEqual(b.manifest(repo, "v1"), a.manifest(repo, "v1"), repo)
            for n, op in enumerate(ops):
                recorded = [line for line in op.output().splitlines()
                            if "push recorded" in line and f"repository={repo} " in line]
                self.assertEqual(len(recorded), 1 if n == holder else 0, (repo, n))
        # Sent again (a registry retrying after a lost answer): the same records, nothing new.
        self.assertEqual(post_notification(url, body, "Bearer s3cret")[0], 200)
        self.assertEqual(len(self.records()), 2)

    def test_a_replica_killed_mid_copy_has_its_shards_taken_over_and_nothing_is_lost_or_copied_twice(self):
        a, b = self.setup_pair(slow_destination=True)
        ops = self.start_replicas(a)
        holders = self.lease_holders()
        # A shard held by a replica the registry does not notify: its push is forwarded there.
        victim_index = 1
        victim = ops[victim_index]
        victim_shards = sorted(s for s, h in holders.items() if h == self.identities[victim_index])
        repos = repos_per_shard("svc/api", per_shard=2)
        first, second = repos[victim_shards[0]][0], repos[victim_shards[-1]][1]
        self.image(seed="kill-1", tag="v1", layer_bytes=16 << 20).push(a, first)
        self.wait_copy_in_flight()
        victim.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        self.assertNotIn("replication complete", victim.output(), "the copy was meant to be in flight")
        # A push while its shard has no live holder: the notification is refused (503) until a
        # replica takes the shard over, and the registry sends it again.
        self.image(seed="kill-2", tag="v1").push(a, second)

        survivors = [i for i in self.identities if i != self.identities[victim_index]]
        wait_until(lambda: all(self.lease_holders()[s] in survivors for s in victim_shards), 30,
                   interval=0.1, what="the dead replica's shards taken over")
        taken_after = time.monotonic() - killed_at
        # Not before its Leases could expire (less one retry period, the last renewal's age),
        # and soon after.
        self.assertGreaterEqual(taken_after, LEASE_SECONDS - RETRY_SECONDS - 0.5)
        self.assertLessEqual(taken_after, LEASE_SECONDS + 6 * RETRY_SECONDS)
        for repo in (first, second):
            _, st = self.wait_record(repo, "v1", expected=1, timeout=90)
            self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE", repo)
            self.assertEqual(b.manifest(repo, "v1"), a.manifest(repo, "v1"), repo)
        records = self.records()
        self.assertEqual(sorted(r["spec"]["source"]["repositoryName"] for r in records), sorted([first, second]))
        # The copy resumed by the new holder put the manifest once (the dead one never got there).
        with open(self.b_log) as f:
            puts = [line for line in f if " PUT " in line and f"/v2/{first}/manifests/" in line]
        self.assertEqual(len(puts), 1, "".join(puts))
        resumed_by = [op for op in ops if op is not victim and any(
            "replication complete" in line and f"repository={first} " in line for line in op.output().splitlines())]
        self.assertEqual(len(resumed_by), 1)
        print(f"\nshards {victim_shards} taken over {taken_after:.1f} s after the kill "
              f"(Lease {LEASE_SECONDS} s, retry {RETRY_SECONDS} s)", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
