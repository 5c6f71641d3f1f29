"""Cluster mode end to end: `ferry operator` against a real kube-apiserver and etcd (driven by
real kubectl), real docker-registry processes notifying the operator, skopeo pushing and checking.
The same engine as `ferry run`; here its records are Kubernetes objects and its bookkeeping
ConfigMaps."""
import hashlib
import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FERRY, Cluster, E2ETest, Registry, allow_statement, registry_policy,  # noqa: E402
                     post_notification, replication_config, run, wait_until)
from testproc import free_port  # noqa: E402

A_ID, B_ID = "111111111111", "222222222222"
NS = Cluster.NS


class ClusterModeTest(E2ETest):
    def setUp(self):
        super().setUp()
        self.cluster = Cluster(self.workdir, self._procs)
        self.kubectl, self.apply, self.get = self.cluster.kubectl, self.cluster.apply, self.cluster.get
        self.records = self.cluster.records
        self.kubeconfig = self.cluster.kubeconfig

    def _cleanup(self):
        op = self.cluster.operator if hasattr(self, "cluster") else None
        if op and op.alive():
            op.stop()
        if op and self._outcome_failed():
            sys.stderr.write("\n--- operator log ---\n" + op.output()[-8000:])
        super()._cleanup()

    @property
    def operator(self):
        return self.cluster.operator

    def start_operator(self, *extra, **kw):
        return self.cluster.start_operator(*extra, **kw)

    def registry(self, name, registry_id, region, notify=True, token=None):
        r = Registry(self.workdir, name, registry_id, region, self.cluster.url if notify else None, token)
        self._procs.append(r.process)
        return r

    def proxied_api_server(self):
        """A TcpProxy in front of the API server (stopped at cleanup) and a kubeconfig through it."""
        cp = self.cluster.control_plane
        proxy = cp.proxy()
        self.addCleanup(proxy.stop)
        kubeconfig = cp.write_kubeconfig(os.path.join(self.workdir, "proxied.kubeconfig"),
                                         f"https://127.0.0.1:{proxy.port}", cert=(cp.admin_crt, cp.admin_key))
        return proxy, kubeconfig

    def wait_copy_in_flight(self):
        """Waits until some destination is authorized and still IN_PROGRESS: a copy under way."""
        def in_flight():
            return any(s.get("authorizedBy") and s["status"] == "IN_PROGRESS"
                       for r in self.records() for s in r.get("status", {}).get("replicationStatuses", []))
        wait_until(in_flight, 20, interval=0.05, what="an authorized copy in flight")

    def wait_record(self, repo, tag, expected, timeout=30):
        """Waits until the ImageReplication of repo:tag has `expected` finished destinations."""
        def done():
            for r in self.records():
                src = r["spec"]["source"]
                if src["repositoryName"] != repo or src.get("imageTag") != tag:
                    continue
                st = {(s["registryId"], s["region"]): s for s in r.get("status", {}).get("replicationStatuses", [])}
                if len(st) == expected and all(s["status"] != "IN_PROGRESS" for s in st.values()):
                    return r, st
            return None
        return wait_until(done, timeout, interval=0.2, what=f"ImageReplication of {repo}:{tag}")


class ClusterReplication(ClusterModeTest):
    def setUp(self):
        super().setUp()
        self.a = self.registry("acct-a-us-east-1", A_ID, "us-east-1")
        self.b = self.registry("acct-a-us-west-2", A_ID, "us-west-2")
        self.c = self.registry("acct-b-eu-west-1", B_ID, "eu-west-1")
        self.apply("---\n".join(r.resource() for r in (self.a, self.b, self.c)))

    def test_push_is_replicated_and_recorded_as_kubernetes_objects(self):
        self.apply(replication_config("a", self.a, [self.b, self.c]))  # no policy for c: denied
        self.start_operator()
        img = self.image(seed="cluster-1")
        img.push(self.a, "prod/app")
        rec, st = self.wait_record("prod/app", "v1", expected=2)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(self.b.manifest("prod/app", "v1"), self.a.manifest("prod/app", "v1"))
        denied = st[(B_ID, "eu-west-1")]
        self.assertEqual((denied["status"], denied["failureCode"]), ("FAILED", "DESTINATION_REGISTRY_ACCESS_DENIED"))
        self.assertEqual(self.c.catalog(), [])
        self.assertEqual(rec["spec"]["source"]["imageDigest"], img.digest)
        # `ferry status` answers from the cluster, as from a state directory.
        p = run([FERRY, "status", "--kubeconfig", self.kubeconfig, "--repository", "prod/app", "--image", "v1"],
                check=False)
        self.assertEqual(p.returncode, 1, p.stderr)  # one destination FAILED
        out = json.loads(p.stdout)
        self.assertEqual(out["imageId"], {"imageDigest": img.digest, "imageTag": "v1"})
        self.assertEqual(sorted((s["region"], s["status"]) for s in out["replicationStatuses"]),
                         [("eu-west-1", "FAILED"), ("us-west-2", "COMPLETE")])
        # The repository's images as a table, one row per image and destination.
        p = run([FERRY, "status", "--kubeconfig", self.kubeconfig, "--repository", "prod/app", "-o", "table"],
                check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        rows = sorted(line.split() for line in p.stdout.splitlines()[1:])
        self.assertEqual(rows, [["prod/app", "v1", img.digest[:19], A_ID, "us-west-2", "COMPLETE"],
                                ["prod/app", "v1", img.digest[:19], B_ID, "eu-west-1", "FAILED",
                                 "DESTINATION_REGISTRY_ACCESS_DENIED"]])
        # kubectl shows the record with its printer columns.
        table = self.kubectl("get", "imagereplications").stdout
        self.assertIn("prod/app", table)
        self.assertIn("1/2", table)
        # Conditions: not Complete (one destination failed), Failed naming it.
        stored = self.get("imagereplication", rec["metadata"]["name"])
        conds = {c["type"]: c for c in stored["status"].get("conditions", [])}
        self.assertEqual(conds["Complete"]["status"], "False", conds)
        self.assertEqual(conds["Failed"]["status"], "True", conds)
        self.assertIn("222222222222/eu-west-1", conds["Failed"]["message"])
        # GitOps health (kstatus): the record with a FAILED destination is Failed, not InProgress
        # forever; the Repository Ferry created is Current; -o wide shows why.
        health = self.cluster.kstatus("imagereplications,repositories")
        self.assertEqual(health[f"ImageReplication/{rec['metadata']['name']}"], "Failed", health)
        self.assertEqual({v for k, v in health.items() if k.startswith("Repository/")}, {"Current"}, health)
        self.assertEqual((conds["Stalled"]["status"], conds["Ready"]["reason"]), ("True", "DestinationFailed"))
        wide = self.kubectl("get", "imagereplication", rec["metadata"]["name"], "-o", "wide").stdout
        self.assertIn("DestinationFailed", wide)
        self.assertIn("1 of 2 destinations FAILED", wide)
        # S12: the repository replication created is a Repository object with default-off settings.
        repos = {(r["spec"]["registryId"], r["spec"]["region"], r["spec"]["repositoryName"]): r
                 for r in self.get("repositories")["items"]}
        created = repos[(A_ID, "us-west-2", "prod/app")]
        self.assertEqual(created["spec"]["imageTagMutability"], "MUTABLE")
        self.assertEqual(created["status"]["createdBy"], "Replication")
        self.assertNotIn((B_ID, "eu-west-1", "prod/app"), repos)
        # A Kubernetes Event says which destination failed and why.
        events = self.get("events.events.k8s.io", "-n", "default")["items"]
        failed = [e for e in events if e["reason"] == "ReplicationFailed"]
        self.assertEqual(len(failed), 1, events)
        self.assertEqual(failed[0]["type"], "Warning")
        self.assertEqual(failed[0]["regarding"], {"apiVersion": "ferry.dev/v1alpha1", "kind": "ImageReplication",
                                                  "name": rec["metadata"]["name"]})
        self.assertIn("222222222222/eu-west-1: DESTINATION_REGISTRY_ACCESS_DENIED", failed[0]["note"])
        # S3 bookkeeping lives in a ConfigMap of the operator's namespace.
        effective = self.get("configmap", "ferry-state-effective", "-n", NS)
        since = json.loads(effective["data"]["state.json"])[f"{A_ID}/us-east-1"]
        self.assertEqual(set(since), {f"{A_ID}/us-west-2", f"{B_ID}/eu-west-1"})
        # The ReplicationConfig's status shows those times, per destination; the configuration
        # took effect when its last destination did.

        def shown():
            st = self.get("replicationconfig", "a").get("status", {})
            per = {f"{d['registryId']}/{d['region']}": d.get("effectiveSince") for d in st.get("destinations", [])}
            return (st.get("effectiveSince"), per) if per and all(per.values()) else None
        overall, per = wait_until(shown, 15, interval=0.2, what="effective times in the ReplicationConfig status")
        self.assertEqual(per, since)
        self.assertEqual(overall, max(since.values()))
        # S10: deleting the record deletes nothing in any registry.
        self.kubectl("delete", "imagereplication", rec["metadata"]["name"])
        self.assertEqual(self.b.manifest("prod/app", "v1"), self.a.manifest("prod/app", "v1"))

    def test_s16_creation_template_shapes_the_repository_record(self):
        self.apply(replication_config("a", self.a, [self.b]))
        self.apply(f"""apiVersion: ferry.dev/v1alpha1
kind: RepositoryCreationTemplate
metadata: {{name: b-prod}}
spec:
  registryId: "{A_ID}"
  region: us-west-2
  prefix: prod
  imageTagMutability: IMMUTABLE_WITH_EXCLUSION
  imageTagMutabilityExclusionFilters: [{{filter: latest}}]
  encryptionConfiguration: {{encryptionType: KMS, kmsKey: alias/prod}}
""")
        self.start_operator()
        self.kubectl("wait", "--for=condition=Ready", "repositorycreationtemplate/b-prod", "--timeout=30s")
        self.image(seed="templated").push(self.a, "prod/app")
        _, st = self.wait_record("prod/app", "v1", expected=1)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")

        def record():
            for r in self.get("repositories")["items"]:
                if r["spec"]["repositoryName"] == "prod/app" and r["spec"]["region"] == "us-west-2":
                    return r
            return None
        created = wait_until(record, 15, interval=0.2, what="the Repository record of prod/app")
        self.assertEqual(created["status"]["template"], "b-prod")
        self.assertEqual(created["spec"]["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION")
        self.assertEqual(created["spec"]["imageTagMutabilityExclusionFilters"],
                         [{"filter": "latest", "filterType": "WILDCARD"}])
        self.assertEqual(created["spec"]["encryptionConfiguration"], {"encryptionType": "KMS", "kmsKey": "alias/prod"})
        self.assertRegex(self.kubectl("get", "repositories").stdout, r"prod/app\s+IMMUTABLE_WITH_EXCLUSION\s+Replication\s+b-prod")

    def test_s17_backfill_progress_is_the_objects_status(self):
        self.apply(replication_config("a", self.a, [self.b]))
        for i in range(3):
            self.image(seed=f"old-{i}").push(self.a, f"old/app{i}")  # before anything applies (S3)
        self.start_operator()
        self.apply(f"""apiVersion: ferry.dev/v1alpha1
kind: ReplicationBackfill
metadata: {{name: old-images}}
spec:
  registryId: "{A_ID}"
  region: us-east-1
  destination: {{region: us-west-2, registryId: "{A_ID}"}}
""")
        self.kubectl("wait", "--for=jsonpath={.status.phase}=COMPLETE", "replicationbackfill/old-images",
                     "--timeout=60s")
        st = self.get("replicationbackfill", "old-images")["status"]
        self.assertEqual(st["images"], {"total": 3, "replicated": 3, "skipped": 0, "failed": 0})
        conds = {c["type"]: c for c in st["conditions"]}
        self.assertEqual((conds["Ready"]["status"], conds["Ready"]["reason"]), ("True", "Complete"))
        self.assertNotIn("Reconciling", conds)
        for i in range(3):
            self.assertEqual(self.b.manifest(f"old/app{i}", "v1"), self.a.manifest(f"old/app{i}", "v1"))
        out = json.loads(run([FERRY, "status", "--kubeconfig", self.kubeconfig, "--backfill", "old-images"]).stdout)
        self.assertEqual((out["phase"], out["images"]["replicated"]), ("COMPLETE", 3))
        self.assertRegex(self.kubectl("get", "replicationbackfills").stdout,
                         r"old-images\s+us-east-1\s+us-west-2\s+COMPLETE\s+3\s+3\s+0\s+0")
        # Each phase change is an Event about the backfill, the last one saying how it ended.
        events = [e for e in self.get("events.events.k8s.io", "-n", "default")["items"]
                  if e["regarding"].get("kind") == "ReplicationBackfill"]
        reasons = [e["reason"] for e in sorted(events, key=lambda e: e["eventTime"])]
        self.assertEqual(reasons[-1], "BackfillComplete", reasons)
        self.assertIn("BackfillInProgress", reasons)
        done = [e for e in events if e["reason"] == "BackfillComplete"][0]
        self.assertEqual((done["type"], done["regarding"]["name"]), ("Normal", "old-images"))
        self.assertIn("COMPLETE: 3 replicated, 0 skipped, 0 failed of 3", done["note"])

    def test_policy_applied_later_lets_the_next_push_through(self):
        self.apply(replication_config("a", self.a, [self.c]))
        self.start_operator()
        self.image(seed="cluster-2a", tag="v1").push(self.a, "team/svc")
        _, st = self.wait_record("team/svc", "v1", expected=1)
        self.assertEqual(st[(B_ID, "eu-west-1")]["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        # The informers carry the new RegistryPolicy to the running engine.
        self.apply(registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        wait_until(lambda: "policies=1" in self.operator.output(), 15, what="the engine to take the new policy")
        self.image(seed="cluster-2b", tag="v2").push(self.a, "team/svc")
        _, st = self.wait_record("team/svc", "v2", expected=1)
        self.assertEqual(st[(B_ID, "eu-west-1")]["status"], "COMPLETE")
        self.assertEqual(self.c.tags("team/svc"), ["v2"])

    def test_s20_ferry_retry_sets_the_annotation_and_the_engine_retries_even_one_started_later(self):
        """`ferry retry --kubeconfig` annotates the ImageReplication (ferry.dev/retry); the running
        engine retries its FAILED destination with authorization decided again. An annotation
        set while no operator runs is honoured by the next one at start."""
        self.apply(replication_config("a", self.a, [self.c]))
        self.start_operator()
        self.image(seed="cluster-retry", tag="v1").push(self.a, "team/retry")
        rec, st = self.wait_record("team/retry", "v1", expected=1)
        self.assertEqual(st[(B_ID, "eu-west-1")]["failureCode"], "DESTINATION_REGISTRY_ACCESS_DENIED")
        self.apply(registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        wait_until(lambda: "policies=1" in self.operator.output(), 15, what="the engine to take the new policy")
        retry = [FERRY, "retry", "--kubeconfig", self.kubeconfig, "--repository", "team/retry", "--image", "v1"]
        out = run(retry)
        self.assertIn("retry requested: team/retry:v1", out.stdout)
        name = rec["metadata"]["name"]
        asked = self.get("imagereplication", name)["metadata"]["annotations"]["ferry.dev/retry"]

        def retried():
            r = self.get("imagereplication", name)
            s = r.get("status", {})
            done = s.get("replicationStatuses", [{}])[0].get("status") == "COMPLETE"
            return r if done and s.get("lastHandledRetryAt") == asked else None
        wait_until(retried, 30, interval=0.2, what="COMPLETE after ferry retry, the annotation handled")
        self.assertEqual(self.c.manifest("team/retry", "v1"), self.a.manifest("team/retry", "v1"))
        self.assertEqual(run(retry, check=False).returncode, 1, "nothing left to retry")
        # With no operator running: a denied push, the policy fixed, `ferry retry`, then a start.
        emptied = self.operator.output().count("policies=0")
        self.kubectl("delete", "registrypolicy", "c")
        wait_until(lambda: self.operator.output().count("policies=0") > emptied, 15, what="the policy gone")
        self.image(seed="cluster-retry-2", tag="v2").push(self.a, "team/retry")
        rec2, st2 = self.wait_record("team/retry", "v2", expected=1)
        self.assertEqual(st2[(B_ID, "eu-west-1")]["status"], "FAILED")
        self.assertEqual(self.cluster.stop_operator(), 0)
        self.apply(registry_policy("c", self.c, [allow_statement(A_ID, self.c)]))
        run([FERRY, "retry", "--kubeconfig", self.kubeconfig, "--repository", "team/retry", "--image", "v2"])
        self.start_operator()
        name2 = rec2["metadata"]["name"]
        wait_until(lambda: self.get("imagereplication", name2).get("status", {}).get("replicationStatuses", [{}])[0]
                   .get("status") == "COMPLETE", 30, interval=0.2, what="COMPLETE for the retry asked while stopped")
        self.assertEqual(sorted(self.c.tags("team/retry")), ["v1", "v2"])


class ClusterDurability(ClusterModeTest):
    def slow_pair_with_copy_in_flight(self, seed):
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        self.apply(a.resource() + "---\n" + b.resource(endpoint=self.slow_endpoint(b, delay_ms=60)))
        self.apply(replication_config("a", a, [b]))
        self.start_operator()
        self.image(seed=seed, layer_bytes=6 << 20).push(a, "big/app")

        self.wait_copy_in_flight()
        # While it copies, GitOps tools see the record InProgress.
        health = self.cluster.kstatus("imagereplications")
        self.assertEqual(set(health.values()), {"InProgress"}, health)
        return a, b

    def test_sigterm_lets_the_copy_in_flight_finish_before_leaving(self):
        a, b = self.slow_pair_with_copy_in_flight("cluster-term")
        self.assertEqual(self.operator.stop(timeout=40), 0)
        # Finished by the replica that started it, before it exited: nothing left to resume.
        _, st = self.wait_record("big/app", "v1", expected=1, timeout=1)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.manifest("big/app", "v1"), a.manifest("big/app", "v1"))

    def test_sigkill_mid_copy_resumes_from_the_kubernetes_record(self):
        a, b = self.slow_pair_with_copy_in_flight("cluster-kill")
        self.operator.stop(signal.SIGKILL)
        self.start_operator()
        _, st = self.wait_record("big/app", "v1", expected=1, timeout=60)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.manifest("big/app", "v1"), a.manifest("big/app", "v1"))
        self.assertEqual(len(self.records()), 1)

    def test_polling_baseline_survives_a_restart_in_a_config_map(self):
        a = self.registry("a", A_ID, "us-east-1", notify=False)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.image(seed="old", tag="old").push(a, "app")  # before the configuration: never copied (S3)
        self.apply(a.resource(poll="1s") + "---\n" + b.resource())
        self.apply(replication_config("a", a, [b]))
        self.start_operator()
        key = f"ferry-state-known-{A_ID}-us-east-1"
        wait_until(lambda: self.kubectl("get", "configmap", key, "-n", NS, check=False).returncode == 0, 20,
                   what="the polling baseline ConfigMap")
        self.operator.stop()
        self.image(seed="new", tag="new").push(a, "app")  # while Ferry is down
        self.start_operator()
        _, st = self.wait_record("app", "new", expected=1)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.tags("app"), ["new"])
        self.assertEqual(len(self.records()), 1)


class ClusterApiOutage(ClusterModeTest):
    def test_api_server_unreachable_for_a_minute_mid_copy_loses_and_repeats_nothing(self):
        """SPEC §6: the API server unreachable for 60 s while a copy is in flight and a second push
        arrives. The copy finishes meanwhile; its record is written once the server is back; the
        push made during the outage is refused (503, the registry keeps it) and replicated after;
        no image is copied twice (one manifest PUT per image at the destination)."""
        proxy, proxied = self.proxied_api_server()
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2")
        log = os.path.join(self.workdir, "b-requests.log")
        self.apply(a.resource() + "---\n" + b.resource(endpoint=self.slow_endpoint(b, delay_ms=60, request_log=log)))
        self.apply(replication_config("a", a, [b]))
        self.start_operator(kubeconfig=proxied)
        self.image(seed="outage-1", tag="v1", layer_bytes=6 << 20).push(a, "app")

        self.wait_copy_in_flight()
        proxy.block()
        outage = time.monotonic()
        self.image(seed="outage-2", tag="v2").push(a, "app")
        wait_until(lambda: b.manifest("app", "v1"), 30, what="the copy in flight finishing during the outage")
        wait_until(lambda: "cannot record push" in self.operator.output(), 30,
                   what="the push during the outage refused")
        time.sleep(max(0.0, 60 - (time.monotonic() - outage)))
        proxy.unblock()
        self.assertTrue(self.operator.alive(), "the operator survives the outage")
        _, st1 = self.wait_record("app", "v1", expected=1, timeout=60)
        _, st2 = self.wait_record("app", "v2", expected=1, timeout=60)
        self.assertEqual(st1[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(st2[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.manifest("app", "v2"), a.manifest("app", "v2"))
        self.assertEqual(sorted(r["spec"]["source"]["imageTag"] for r in self.records()), ["v1", "v2"])
        time.sleep(2)  # a copy started again would show by now
        with open(log) as f:
            puts = [line.split()[3] for line in f if line.split()[2] == "PUT" and "/manifests/" in line]
        self.assertEqual(sorted(puts), ["/v2/app/manifests/v1", "/v2/app/manifests/v2"], "an image copied twice")


class ClusterSlowApi(ClusterModeTest):
    def test_blob_stream_keeps_moving_while_100_record_saves_go_to_a_slow_api_server(self):
        """Issue 11: record writes never stall the engine's thread. A 24 MiB copy is under way when
        the API server becomes slow (every request held 0.3 s) and 100 pushes arrive, each written
        as a record before it is answered (S1). The copy finishes while those writes are still
        going on; with writes on the engine's thread it would wait behind all of them (100 pushes
        × 2 round trips × 0.3 s)."""
        proxy, proxied = self.proxied_api_server()
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.apply(a.resource() + "---\n" + b.resource(endpoint=self.slow_endpoint(b, delay_ms=10)))
        self.apply(replication_config("a", a, [b]))
        self.start_operator(kubeconfig=proxied)
        self.image(seed="slow-api-big", tag="v1", layer_bytes=24 << 20).push(a, "app")

        self.wait_copy_in_flight()
        proxy.delay = 0.3
        answers, lock = [], threading.Lock()

        def send(worker):
            for i in range(10):
                n = worker * 10 + i
                digest = "sha256:" + hashlib.sha256(f"slow-api push {n}".encode()).hexdigest()
                body = json.dumps({"events": [{"id": f"evt-slow-{n}", "action": "push", "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "noise",
                    "digest": digest, "tag": f"t{n}"}}]}).encode()
                code, _ = post_notification(f"{self.cluster.url}/registry-events/a", body, timeout=120)
                with lock:
                    answers.append((time.monotonic(), code))
        senders = [threading.Thread(target=send, args=(w,), daemon=True) for w in range(10)]
        began = time.monotonic()
        for t in senders:
            t.start()
        copied = wait_until(lambda: b.manifest("app", "v1") and time.monotonic(), 120, interval=0.1,
                            what="the 24 MiB copy finishing")
        for t in senders:
            t.join(180)
        self.assertEqual(len(answers), 100)
        self.assertEqual(sorted({code for _, code in answers}), [200], "every push recorded before its 200")
        last = max(at for at, _ in answers)
        with lock:
            answered_before_copy = sum(1 for at, _ in answers if at <= copied)
        threads = len(os.listdir(f"/proc/{self.operator.pid}/task"))
        sys.stderr.write(f"\n[slow API] copy done {copied - began:.1f} s after the pushes began; "
                         f"last push answered at {last - began:.1f} s; {answered_before_copy} of 100 answered "
                         f"before the copy was done; operator threads {threads}\n")
        self.assertLess(copied, last, "the copy waited for the record writes")
        self.assertLess(answered_before_copy, 100)
        self.assertEqual(b.manifest("app", "v1"), a.manifest("app", "v1"))
        proxy.delay = 0.0
        _, st = self.wait_record("app", "v1", expected=1, timeout=60)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        noise = [r for r in self.records() if r["spec"]["source"]["repositoryName"] == "noise"]
        self.assertEqual(len(noise), 100, "one record per push")


class ClusterStateReads(ClusterModeTest):
    def test_unreadable_effective_times_at_start_move_nothing_and_lose_no_push(self):
        """SPEC §6: a failed read is never taken for "absent". The operator restarts as a
        ServiceAccount that may write but not read its state ConfigMaps (403 on every GET), while a
        push made during the restart waits in the registry's notification queue. Nothing may reset
        the stored effective time to "now" (which would drop that push under S3); once reads are
        allowed, the push replicates."""
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.apply(a.resource() + "---\n" + b.resource())
        self.apply(replication_config("a", a, [b]))
        self.start_operator()
        key = "ferry-state-effective"
        stored = wait_until(lambda: self.kubectl("get", "configmap", key, "-n", NS, "-o", "json",
                                                 check=False).stdout, 20, what="the effective times ConfigMap")
        before = json.loads(stored)["data"]
        self.operator.stop()

        sa = "ferry-no-state-reads"
        cp = self.cluster.control_plane
        self.apply(json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                               "metadata": {"name": sa}, "rules": [
                                   {"apiGroups": ["ferry.dev"], "resources": ["*"], "verbs": ["*"]},
                                   {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
                                   {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
                                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]},
                                   {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "update"]}]})
                   + "\n---\n" + json.dumps({
                       "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                       "metadata": {"name": sa},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": sa},
                       "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NS}]}))
        op = self.start_operator(kubeconfig=cp.service_account_kubeconfig(sa))

        def refused_read():
            return [e for e in cp.audit(username=f"system:serviceaccount:{NS}:{sa}")
                    if e["verb"] == "get" and e.get("objectRef", {}).get("name") == key
                    and e["responseStatus"]["code"] == 403]
        wait_until(refused_read, 20, what="the operator's refused read of its effective times")
        now = json.loads(self.kubectl("get", "configmap", key, "-n", NS, "-o", "json").stdout)["data"]
        self.assertEqual(now, before, "an unreadable state was taken for an empty one")
        self.image(seed="during", tag="v1").push(a, "app")  # notified: answered 503, kept by the registry
        wait_until(lambda: "cannot record push" in op.output(), 20, what="the push refused while state is unreadable")
        self.assertEqual(self.records(), [])

        self.apply(json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                               "metadata": {"name": sa + "-reads", "namespace": NS},
                               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})
                   + "\n---\n" + json.dumps({
                       "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": sa + "-reads", "namespace": NS},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa + "-reads"},
                       "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NS}]}))
        _, st = self.wait_record("app", "v1", expected=1, timeout=60)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.manifest("app", "v1"), a.manifest("app", "v1"))
        now = json.loads(self.kubectl("get", "configmap", key, "-n", NS, "-o", "json").stdout)["data"]
        self.assertEqual(now, before)


class ClusterFailover(ClusterModeTest):
    def test_standby_refuses_notifications_until_it_leads_then_replicates(self):
        """Two replicas with --leader-elect. The registry notifies the standby, which answers 503
        (the registry keeps the event and retries); once the leader is killed, the standby takes
        the Lease, starts its engine, accepts the retried notification and replicates."""
        standby_port = free_port()
        a = Registry(self.workdir, "a", A_ID, "us-east-1", f"http://127.0.0.1:{standby_port}")
        self._procs.append(a.process)
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        self.apply(a.resource() + "---\n" + b.resource())
        self.apply(replication_config("a", a, [b]))
        leader = self.start_operator("--leader-elect")
        standby = self.start_operator("--leader-elect", events_port=standby_port, wait_engine=False)
        self.addCleanup(standby.stop)
        self.addCleanup(leader.stop)
        wait_until(lambda: "serving registry notifications" in standby.output(), 15, what="the standby's endpoint")
        img = self.image(seed="failover")
        img.push(a, "ha/app")
        time.sleep(2)  # the registry tries the standby a few times (backoff 250 ms)
        self.assertEqual(self.records(), [], "a standby must not record pushes")
        self.assertNotIn("engine started", standby.output())
        leader.stop(signal.SIGKILL)
        self.cluster.wait_engine(standby, timeout=40)
        _, st = self.wait_record("ha/app", "v1", expected=1, timeout=40)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE")
        self.assertEqual(b.manifest("ha/app", "v1"), a.manifest("ha/app", "v1"))


class ClusterLeaseLost(ClusterModeTest):
    def test_a_leader_cut_off_from_the_api_server_mid_copy_stops_before_the_standby_takes_over(self):
        """SPEC §6/§8: the leader loses its Lease in the middle of a copy (its connection to the API
        server is cut; the standby's is not). It stops within the renew deadline (10 s), before the
        Lease expires (15 s) and the standby takes it, so no two replicas copy at once; it exits 1
        (a restart starts clean). The standby resumes the record: the image arrives once, whole,
        with one manifest PUT at the destination, and one record."""
        proxy, proxied = self.proxied_api_server()
        a = self.registry("a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        log = os.path.join(self.workdir, "b-requests.log")
        self.apply(a.resource() + "---\n" + b.resource(endpoint=self.slow_endpoint(b, delay_ms=100, request_log=log)))
        self.apply(replication_config("a", a, [b]))
        leader = self.start_operator("--leader-elect", kubeconfig=proxied)
        standby = self.start_operator("--leader-elect", events_port=free_port(), wait_engine=False)
        self.addCleanup(standby.stop)
        self.addCleanup(leader.stop)
        wait_until(lambda: "waiting for leadership" in standby.output(), 15, what="the standby waiting")
        self.image(seed="lease-lost", tag="v1", layer_bytes=16 << 20).push(a, "app")

        self.wait_copy_in_flight()
        proxy.block()
        cut = time.monotonic()
        wait_until(lambda: not leader.alive(), 30, what="the leader stopping after its Lease was lost")
        stopped_after = time.monotonic() - cut
        self.assertEqual(leader.proc.returncode, 1, leader.output()[-3000:])
        self.assertIn("leadership lost", leader.output())
        self.assertNotIn("replication complete", leader.output(), "the copy was meant to be in flight")
        self.assertLess(stopped_after, 15, "the leader must stop before its Lease can expire")
        self.cluster.wait_engine(standby, timeout=40)
        # The standby took the Lease only after the leader had stopped (the logs' UTC times).
        def at(output, message):
            line = next(line for line in output.splitlines() if message in line)
            return line.split()[0].removeprefix("ts=")
        self.assertLess(at(leader.output(), 'msg="stopped"'), at(standby.output(), "acquired leadership"))
        _, st = self.wait_record("app", "v1", expected=1, timeout=90)
        self.assertEqual(st[(A_ID, "us-west-2")]["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("app", "v1"), a.manifest("app", "v1"))
        self.assertEqual(len(self.records()), 1)
        with open(log) as f:
            puts = [line.split()[3] for line in f if line.split()[2] == "PUT" and "/manifests/" in line]
        self.assertEqual(puts, ["/v2/app/manifests/v1"], "the image written once")


if __name__ == "__main__":
    unittest.main()
