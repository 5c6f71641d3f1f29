"""Amazon ECR as a back end (SPEC §7) end to end, `ferry run` against the real APIs' emulator.

Each ECR account is a moto_server (MOTO_ACCOUNT_ID; ECR and STS APIs, no layers) paired with a
docker-registry as its data plane, whose htpasswd accepts what moto's GetAuthorizationToken
returns (AWS:<account>-auth-token). boto3 is the independent checker of what Ferry created. moto
checks no signatures: SigV4 is covered by tests/aws (suite vectors, botocore). Run with the venv
of scripts/test-peers.sh (tests/support/aws_python.sh)."""
import json
import os
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from harness import (Cluster, E2ETest, Registry, allow_statement, registry_policy, replication_config,  # noqa: E402
                     run, wait_until)
import boto3  # noqa: E402
from kube_control_plane import Pki  # noqa: E402
from moto_server import KEYS, Moto  # noqa: E402
from test_failpoints import SQS_SWEEP, SweepChecks  # noqa: E402

A_ID, B_ID = "111111111111", "222222222222"


def ecr_registry(name, registry_id, region, data_plane, moto, secret=None, poll="0", sts=None, events=None,
                 ca_secret=None):
    out = (f"apiVersion: ferry.dev/v1alpha1\nkind: Registry\nmetadata: {{name: {name}}}\n"
           f"spec:\n  registryId: \"{registry_id}\"\n  region: {region}\n  type: ecr\n"
           f"  endpoint: http://{data_plane.host}\n  pollInterval: \"{poll}\"\n"
           f"  ecr:\n    apiEndpoint: {moto.url}\n")
    if ca_secret:
        out += f"  tls:\n    caSecretRef: {{namespace: ferry-system, name: {ca_secret}}}\n"
    if events:
        out += f"    eventsQueueUrl: {events}\n"
    if sts:
        out += f"    stsEndpoint: {sts}\n"
    if secret:
        out += f"  credentialsSecretRef: {{namespace: ferry-system, name: {secret}}}\n"
    return out


def aws_secret(name, keys):
    return (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: ferry-system}}\n"
            "stringData:\n" + "".join(f"  {k}: \"{v}\"\n" for k, v in keys.items()))


def ca_secret(name, pem_file):
    with open(pem_file) as f:
        pem = f.read()
    return (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: ferry-system}}\n"
            "stringData:\n  ca.crt: |\n" + "".join(f"    {line}\n" for line in pem.splitlines()))


def cluster_status(cluster, repo):
    """The first destination's status of `repo`'s record in the API server, once it has settled."""
    for r in cluster.records():
        st = r.get("status", {}).get("replicationStatuses", [])
        if r["spec"]["source"]["repositoryName"] == repo and st and st[0]["status"] != "IN_PROGRESS":
            return st[0]
    return None


class EcrTest(E2ETest):
    def moto(self, account):
        m = Moto(account)
        self.addCleanup(m.stop)
        return m

    def data_plane(self, name, account, region, password=None):
        """The docker-registry standing for an ECR registry's data plane; it accepts what moto's
        GetAuthorizationToken returns unless told another password."""
        return self.registry(name + "-data", account, region, notify=False,
                             htpasswd=("AWS", password or f"{account}-auth-token"))


class OciToEcr(EcrTest):
    """An OCI source replicating into another account's ECR registry: the repository is created
    through CreateRepository with the creation template's settings, only as the policy allows."""

    def setUp(self):
        super().setUp()
        self.a = self.registry("a", A_ID, "us-east-1")
        self.moto_b = self.moto(B_ID)
        self.b = self.data_plane("ecr-b", B_ID, "eu-west-1")
        self.ferry.write("secret.yaml", aws_secret("aws-b", {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                                                             "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}))
        self.ferry.write("regs.yaml", self.a.resource() + "---\n" +
                         ecr_registry("ecr-b", B_ID, "eu-west-1", self.b, self.moto_b, secret="aws-b"))
        self.ferry.write("config.yaml", replication_config("a", self.a, [self.b]))
        self.ferry.write("policy.yaml", registry_policy("ecr-b", self.b, [allow_statement(A_ID, self.b)]))
        self.ferry.write("template.yaml", (
            "apiVersion: ferry.dev/v1alpha1\nkind: RepositoryCreationTemplate\nmetadata: {name: b-prod}\n"
            f"spec:\n  registryId: \"{B_ID}\"\n  region: eu-west-1\n  prefix: prod\n"
            "  imageTagMutability: IMMUTABLE_WITH_EXCLUSION\n"
            "  imageTagMutabilityExclusionFilters: [{filter: latest}]\n"
            "  resourceTags: [{Key: team, Value: platform}]\n"
            "  lifecyclePolicy: {rules: [{rulePriority: 1, description: keep 10, selection: {tagStatus: any, "
            "countType: imageCountMoreThan, countNumber: 10}, action: {type: expire}}]}\n"))
        self.ecr = self.moto_b.client("ecr", "eu-west-1")

    def test_repository_created_with_the_template_then_s13_from_ecrs_own_setting(self):
        self.ferry.start()
        first = self.image(seed="ecr-first")
        first.push(self.a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(self.b.manifest("prod/app", "v1"), self.a.manifest("prod/app", "v1"))
        # What ECR says it created, read with boto3.
        repo = self.ecr.describe_repositories(registryId=B_ID, repositoryNames=["prod/app"])["repositories"][0]
        self.assertEqual(repo["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION")
        self.assertEqual([f["filter"] for f in repo["imageTagMutabilityExclusionFilters"]], ["latest"])
        self.assertEqual(repo["imageScanningConfiguration"], {"scanOnPush": False})
        self.assertEqual(repo["encryptionConfiguration"]["encryptionType"], "AES256")
        tags = self.ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        self.assertEqual(tags, [{"Key": "team", "Value": "platform"}])
        lifecycle = json.loads(self.ecr.get_lifecycle_policy(registryId=B_ID, repositoryName="prod/app")["lifecyclePolicyText"])
        self.assertEqual(lifecycle["rules"][0]["selection"]["countNumber"], 10)
        # The Repository record mirrors ECR and names the template.
        records = {r["spec"]["repositoryName"]: r for r in self.ferry.records("repositories")}
        rec = records["prod/app"]
        self.assertEqual((rec["spec"]["imageTagMutability"], rec["status"]["template"], rec["status"]["createdBy"]),
                         ("IMMUTABLE_WITH_EXCLUSION", "b-prod", "Replication"))
        self.assertIn("via=CreateRepository", self.ferry.process.output())
        # S13 from ECR's setting: v1 is immutable there, so new content under v1 goes by digest only.
        second = self.image(seed="ecr-second")
        second.push(self.a, "prod/app")
        wait_until(lambda: len([r for r in self.ferry.records("imagereplications")
                                if all(s["status"] != "IN_PROGRESS" for s in r["status"]["replicationStatuses"])]) == 2,
                   30, what="the second push finished")
        msgs = [s.get("message", "") for r in self.ferry.records("imagereplications")
                for s in r["status"]["replicationStatuses"]]
        self.assertTrue(any("immutable in IMMUTABLE_WITH_EXCLUSION repository prod/app" in m for m in msgs), msgs)
        self.assertEqual(self.b.manifest("prod/app", "v1"), self.a.manifest("prod/app", first.digest))
        self.assertEqual(self.b.manifest("prod/app", second.digest), self.a.manifest("prod/app", second.digest))
        # A repository no template covers gets ECR's defaults as S12 has them.
        self.image(seed="other").push(self.a, "tools/lint")
        self.assertEqual(self.ferry.wait_status("tools/lint", "v1", expected=1)[(B_ID, "eu-west-1")]["status"],
                         "COMPLETE")
        other = self.ecr.describe_repositories(registryId=B_ID, repositoryNames=["tools/lint"])["repositories"][0]
        self.assertEqual((other["imageTagMutability"], other["encryptionConfiguration"]["encryptionType"]),
                         ("MUTABLE", "AES256"))
        for secret in (KEYS["AWS_SECRET_ACCESS_KEY"], f"{B_ID}-auth-token"):
            self.assertNotIn(secret, self.ferry.process.output())

    def test_without_create_repository_permission_nothing_is_created(self):
        self.ferry.write("policy.yaml", registry_policy("ecr-b", self.b, [
            allow_statement(A_ID, self.b, actions=("ecr:ReplicateImage",))]))
        self.ferry.start()
        self.image(seed="denied").push(self.a, "prod/app")
        st = self.ferry.wait_status("prod/app", "v1", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual((st["status"], st["failureCode"]), ("FAILED", "DESTINATION_REGISTRY_ACCESS_DENIED"))
        self.assertIn("ecr:CreateRepository", st["message"])
        self.assertEqual(self.ecr.describe_repositories(registryId=B_ID)["repositories"], [])
        # A repository that exists needs only ecr:ReplicateImage.
        self.ecr.create_repository(repositoryName="prod/existing", imageTagMutability="IMMUTABLE")
        self.image(seed="allowed").push(self.a, "prod/existing")
        st = self.ferry.wait_status("prod/existing", "v1", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "COMPLETE", st)
        repo = self.ecr.describe_repositories(registryId=B_ID, repositoryNames=["prod/existing"])["repositories"][0]
        self.assertEqual(repo["imageTagMutability"], "IMMUTABLE", "an existing repository is never changed")


class TokenRefresh(EcrTest):
    """A data plane that refuses the token (401): the token is dropped and a new one asked for on
    the next attempt, which succeeds once the data plane takes it."""

    def test_a_refused_token_is_replaced_and_the_copy_completes(self):
        a = self.registry("a", A_ID, "us-east-1")
        moto_b = self.moto(B_ID)
        b = self.data_plane("ecr-b", B_ID, "eu-west-1", password="an-older-token")
        keys = {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}
        self.ferry.write("secret.yaml", aws_secret("aws-b", keys))
        self.ferry.write("regs.yaml", a.resource() + "---\n" +
                         ecr_registry("ecr-b", B_ID, "eu-west-1", b, moto_b, secret="aws-b"))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.write("policy.yaml", registry_policy("ecr-b", b, [allow_statement(A_ID, b)]))
        self.ferry.start()
        self.image(seed="refresh").push(a, "prod/app")
        log = self.ferry.process.output
        wait_until(lambda: "ECR token refused; a new one is asked for" in log(), 20, what="the 401")
        b.restart_with_password(f"{B_ID}-auth-token", self._procs)
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=60)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertGreaterEqual(log().count("ECR authorization token obtained"), 2, "a new token was asked for")
        self.assertEqual(b.manifest("prod/app", "v1"), a.manifest("prod/app", "v1"))


class EcrToOci(EcrTest):
    """An ECR source, polled through DescribeRepositories and DescribeImages (ECR has no
    _catalog), with web-identity credentials through moto's STS (EKS IRSA)."""

    def test_polled_pushes_replicate_and_what_existed_before_stays(self):
        moto_a = self.moto(A_ID)
        a = self.data_plane("ecr-a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        ecr = moto_a.client("ecr")
        ecr.create_repository(repositoryName="prod/app")

        def push(image, repo, tag):
            """Pushes to the data plane and records it in the API, as ECR would (same digest)."""
            image.push(a, repo, tag=tag)
            manifest = a.manifest(repo, image.digest).decode()
            ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag, imageDigest=image.digest,
                          imageManifestMediaType=json.loads(manifest)["mediaType"])
        old = self.image(seed="before")
        push(old, "prod/app", "old")
        token_file = os.path.join(self.workdir, "web-identity-token")
        with open(token_file, "w") as f:
            f.write("eyJhbGciOiJSUzI1NiJ9.ferry-test.signature")
        self.ferry.write("regs.yaml", ecr_registry("ecr-a", A_ID, "us-east-1", a, moto_a, poll="1s", sts=moto_a.url)
                         + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ROLE_ARN=f"arn:aws:iam::{A_ID}:role/ferry", AWS_WEB_IDENTITY_TOKEN_FILE=token_file,
                   AWS_ROLE_SESSION_NAME="ferry-test")
        self.ferry.start(env=env)
        wait_until(lambda: "poll baseline recorded" in self.ferry.process.output(), 20, what="the first poll")
        self.assertIn("credentials=web identity", self.ferry.process.output())
        new = self.image(seed="after")
        push(new, "prod/app", "v2")
        st = self.ferry.wait_status("prod/app", "v2", expected=1)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("prod/app", "v2"), a.manifest("prod/app", new.digest))
        time.sleep(1.5)
        self.assertEqual(b.tags("prod/app"), ["v2"], "S3: the image pushed before the configuration stays")
        # A backfill moves it, listing the ECR source through DescribeImages.
        self.ferry.write("backfill.yaml", (
            "apiVersion: ferry.dev/v1alpha1\nkind: ReplicationBackfill\nmetadata: {name: old}\n"
            f"spec:\n  registryId: \"{A_ID}\"\n  region: us-east-1\n"
            f"  destination: {{region: us-west-2, registryId: \"{A_ID}\"}}\n"))

        done = self.ferry.wait_backfill("old", timeout=30)
        self.assertEqual(done["images"], {"total": 2, "replicated": 1, "skipped": 1, "failed": 0}, done)
        self.assertEqual(b.manifest("prod/app", "old"), a.manifest("prod/app", old.digest))
        self.assertIn("via=DescribeImages", self.ferry.process.output())


def image_action(account, region, repo, digest, tag, action="PUSH", result="SUCCESS"):
    """An EventBridge "ECR Image Action" event, as a rule delivers it to SQS (AWS's documented shape)."""
    return json.dumps({
        "version": "0", "id": f"evt-{repo}-{tag}-{action}", "detail-type": "ECR Image Action", "source": "aws.ecr",
        "account": account, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": region,
        "resources": [], "detail": {"result": result, "repository-name": repo, "image-digest": digest,
                                    "action-type": action, "image-tag": tag,
                                    "manifest-media-type": "application/vnd.oci.image.manifest.v1+json"}})


class EcrEventsToOci(EcrTest):
    """An ECR source whose pushes arrive as EventBridge events through SQS, polling off: each push
    replicates, every message leaves the queue, malformed and foreign ones are dropped."""

    def test_push_events_from_sqs_replicate_and_leave_the_queue(self):
        moto_a = self.moto(A_ID)
        a = self.data_plane("ecr-a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        sqs = moto_a.client("sqs")
        queue = sqs.create_queue(QueueName="ecr-events", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
        self.ferry.write("secret.yaml", aws_secret("aws-a", {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                                                             "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}))
        self.ferry.write("regs.yaml", ecr_registry("ecr-a", A_ID, "us-east-1", a, moto_a, secret="aws-a",
                                                   events=queue) + "---\n" + b.resource())
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()
        time.sleep(1)  # the configuration applies now (S3); events are timed in whole seconds
        img = self.image(seed="evented")
        img.push(a, "prod/app", tag="v1")
        for body in ("{not json", image_action(B_ID, "us-east-1", "prod/app", img.digest, "v1"),
                     image_action(A_ID, "us-east-1", "prod/app", img.digest, "v1", action="DELETE"),
                     image_action(A_ID, "us-east-1", "prod/app", img.digest, "v1")):
            sqs.send_message(QueueUrl=queue, MessageBody=body)
        st = self.ferry.wait_status("prod/app", "v1", expected=1, timeout=30)[(A_ID, "us-west-2")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("prod/app", "v1"), a.manifest("prod/app", img.digest))
        wait_until(lambda: queue_drained(sqs, queue), 15, what="every message deleted from the queue")
        self.assertIn("via=sqs", self.ferry.process.output())
        log = self.ferry.process.output()
        self.assertIn("malformed ECR event dropped", log)
        self.assertIn("ECR event of another registry dropped", log)
        self.assertEqual(len([r for r in self.ferry.records("imagereplications")]), 1, "one push, one record")


def queue_drained(sqs, queue):
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    return (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")


class ClusterEcrEventsToOci(EcrTest):
    """Push events through SQS in cluster mode: `ferry operator` on the real API server takes an
    ECR source's EventBridge events from moto's queue, records the push as an ImageReplication
    object, copies it, and deletes the message only then."""

    def test_operator_takes_push_events_from_sqs(self):
        cluster = Cluster(self.workdir, self._procs)
        self.addCleanup(lambda: cluster.operator and cluster.operator.alive() and cluster.operator.stop())
        moto_a = self.moto(A_ID)
        a = self.data_plane("ecr-a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        sqs = moto_a.client("sqs")
        queue = sqs.create_queue(QueueName="ecr-events", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
        cluster.apply(aws_secret("aws-a", {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                                           "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}))
        cluster.apply(ecr_registry("ecr-a", A_ID, "us-east-1", a, moto_a, secret="aws-a", events=queue)
                      + "---\n" + b.resource())
        cluster.apply(replication_config("a", a, [b]))
        op = cluster.start_operator()
        time.sleep(1)  # the configuration applies now (S3); events are timed in whole seconds
        img = self.image(seed="cluster-evented")
        img.push(a, "prod/app", tag="v1")
        sqs.send_message(QueueUrl=queue, MessageBody=image_action(A_ID, "us-east-1", "prod/app", img.digest, "v1"))
        st = wait_until(lambda: cluster_status(cluster, "prod/app"), 30, what="the evented push replicated")
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("prod/app", "v1"), a.manifest("prod/app", img.digest))
        wait_until(lambda: queue_drained(sqs, queue), 15, what="the message deleted from the queue")
        self.assertIn("via=sqs", op.output())
        self.assertEqual(len(cluster.records()), 1, "one push, one record")
        self.assertNotIn(KEYS["AWS_SECRET_ACCESS_KEY"], op.output())


class EcrApiTls(EcrTest):
    """An ECR API on HTTPS under a private CA (a VPC endpoint behind a corporate proxy, a
    partition's own CA): the Registry's tls.caSecretRef is trusted for its ECR API as for its data
    plane; without it, verification stays on and the API is refused."""

    def test_the_registrys_ca_is_trusted_for_its_ecr_api_and_nothing_else_is(self):
        pki = Pki(os.path.join(self.workdir, "pki"))
        crt, key = pki.issue("moto", "/CN=127.0.0.1", san="IP:127.0.0.1")
        moto_b = Moto(B_ID, tls=(crt, key, pki.ca_crt))
        self.addCleanup(moto_b.stop)
        a = self.registry("a", A_ID, "us-east-1")
        b = self.data_plane("ecr-b", B_ID, "eu-west-1")
        self.ferry.write("secrets.yaml", aws_secret("aws-b", {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                                                              "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]})
                         + "---\n" + ca_secret("moto-ca", pki.ca_crt))
        self.ferry.write("regs.yaml", a.resource() + "---\n"
                         + ecr_registry("ecr-b", B_ID, "eu-west-1", b, moto_b, secret="aws-b"))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.write("policy.yaml", registry_policy("ecr-b", b, [allow_statement(A_ID, b)]))
        self.ferry.start()
        self.image(seed="tls-1").push(a, "prod/app", tag="v1")
        wait_until(lambda: "certificate verify failed" in self.ferry.process.output(), 20,
                   what="the ECR API's certificate refused without the CA")
        ecr_b = moto_b.client("ecr", "eu-west-1")
        self.assertEqual(ecr_b.describe_repositories(registryId=B_ID)["repositories"], [], "nothing created")
        self.assertIsNone(b.manifest("prod/app", "v1"))
        # The CA named: the same Registry now reaches its API; the next push goes over.
        self.ferry.write("regs.yaml", a.resource() + "---\n"
                         + ecr_registry("ecr-b", B_ID, "eu-west-1", b, moto_b, secret="aws-b", ca_secret="moto-ca"))
        wait_until(lambda: self.ferry.process.output().count("msg=\"ECR registry\"") >= 2, 20,
                   what="the Registry reloaded with its CA")
        self.image(seed="tls-2").push(a, "prod/app", tag="v2")
        st = self.ferry.wait_status("prod/app", "v2", expected=1, timeout=30)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("prod/app", "v2"), a.manifest("prod/app", "v2"))
        repos = ecr_b.describe_repositories(registryId=B_ID)["repositories"]
        self.assertEqual([(r["repositoryName"], r["imageTagMutability"]) for r in repos], [("prod/app", "MUTABLE")])


def documented_policy(side):
    """The IAM policy docs/registries.md tells users to paste for an ECR `side` ("source" or
    "destination"): the JSON block that follows "for an ECR *side*"."""
    with open(os.path.join(HERE, "..", "..", "docs", "registries.md")) as f:
        text = f.read()
    after = text.split(f"for an ECR *{side}*", 1)[1]
    return after.split("```json", 1)[1].split("```", 1)[0].strip()


class EcrIamPolicies(EcrTest):
    """The IAM policies of docs/registries.md, enforced: moto checks every request's signature and
    the calling user's policies once `/moto-api/reset-auth` is set to 0. ECR to ECR across
    accounts, the source polled and evented through SQS, with users holding exactly the documented
    policies; then a destination user without ecr:CreateRepository is refused, and the status says
    which action to grant."""

    def user(self, moto, name, policy):
        iam = moto.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="ferry", PolicyDocument=policy)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def enforce(self, moto):
        req = urllib.request.Request(moto.url + "/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
        self.assertEqual(urllib.request.urlopen(req, timeout=5).status, 200)

    def test_the_documented_policies_are_enough_and_a_missing_action_is_named(self):
        moto_a, moto_b = self.moto(A_ID), self.moto(B_ID)
        a = self.data_plane("ecr-a", A_ID, "us-east-1")
        b = self.data_plane("ecr-b", B_ID, "eu-west-1")
        src = moto_a.client("ecr")
        src.create_repository(repositoryName="team/api")
        sqs = moto_a.client("sqs")
        queue = sqs.create_queue(QueueName="ecr-events", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
        source_keys = self.user(moto_a, "ferry-source", documented_policy("source"))
        dest_keys = self.user(moto_b, "ferry-destination", documented_policy("destination"))
        narrow = json.loads(documented_policy("destination"))
        narrow["Statement"][0]["Action"].remove("ecr:CreateRepository")
        narrow_keys = self.user(moto_b, "ferry-no-create", json.dumps(narrow))
        # ECR's own side of a push (PutImage, the EventBridge rule's SendMessage): a user that may do anything.
        anything = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        pusher_keys = self.user(moto_a, "pusher", anything)
        for m in (moto_a, moto_b):
            self.enforce(m)
        with self.assertRaises(Exception, msg="moto enforces IAM: the test's own root keys are refused now"):
            moto_b.client("ecr", "eu-west-1").describe_repositories()

        self.ferry.write("secrets.yaml", aws_secret("aws-a", source_keys) + "---\n" + aws_secret("aws-b", dest_keys))
        self.ferry.write("regs.yaml", ecr_registry("ecr-a", A_ID, "us-east-1", a, moto_a, secret="aws-a", poll="1s",
                                                   events=queue)
                         + "---\n" + ecr_registry("ecr-b", B_ID, "eu-west-1", b, moto_b, secret="aws-b"))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.write("policy.yaml", registry_policy("ecr-b", b, [allow_statement(A_ID, b)]))
        self.ferry.start()
        wait_until(lambda: "poll baseline recorded" in self.ferry.process.output(), 20, what="the first poll")
        img = self.image(seed="iam-1")
        img.push(a, "team/api", tag="v1")
        # ECR's side of the push: the image in moto (what DescribeImages lists) and its event.
        source = boto_with(moto_a, pusher_keys, "ecr")
        manifest = a.manifest("team/api", img.digest).decode()
        source.put_image(repositoryName="team/api", imageManifest=manifest, imageTag="v1", imageDigest=img.digest,
                         imageManifestMediaType=json.loads(manifest)["mediaType"])
        sqs_user = boto_with(moto_a, pusher_keys, "sqs")
        sqs_user.send_message(QueueUrl=queue, MessageBody=image_action(A_ID, "us-east-1", "team/api", img.digest, "v1"))
        st = self.ferry.wait_status("team/api", "v1", expected=1, timeout=30)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("team/api", "v1"), manifest.encode())
        dest = boto_with(moto_b, dest_keys, "ecr", "eu-west-1").describe_repositories()["repositories"]
        self.assertEqual([(r["repositoryName"], r["imageTagMutability"]) for r in dest], [("team/api", "MUTABLE")])
        wait_until(lambda: queue_drained(sqs_user, queue), 15, what="the event deleted with the source user's keys")
        self.assertEqual(len(self.ferry.records("imagereplications")), 1, "polled and evented: one push, one record")
        self.assertNotIn("AccessDenied", self.ferry.process.output())

        # The destination user without ecr:CreateRepository: the next new repository is refused,
        # and the status names the action.
        self.ferry.write("secrets.yaml", aws_secret("aws-a", source_keys) + "---\n" + aws_secret("aws-b", narrow_keys))
        wait_until(lambda: self.ferry.process.output().count("msg=\"ECR registry\"") >= 3, 20,
                   what="the destination's new keys taken")
        source.create_repository(repositoryName="team/web")
        img2 = self.image(seed="iam-2")
        img2.push(a, "team/web", tag="v1")
        manifest2 = a.manifest("team/web", img2.digest).decode()
        source.put_image(repositoryName="team/web", imageManifest=manifest2, imageTag="v1", imageDigest=img2.digest,
                         imageManifestMediaType=json.loads(manifest2)["mediaType"])
        sqs_user.send_message(QueueUrl=queue, MessageBody=image_action(A_ID, "us-east-1", "team/web", img2.digest, "v1"))
        st = self.ferry.wait_status("team/web", "v1", expected=1, timeout=60)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "FAILED", st)
        self.assertIn("ecr:CreateRepository", st.get("message", ""), st)
        self.assertIsNone(b.manifest("team/web", "v1"))
        for keys in (source_keys, dest_keys, narrow_keys):
            self.assertNotIn(keys["aws_secret_access_key"], self.ferry.process.output())


def boto_with(moto, keys, service, region="us-east-1"):
    return boto3.client(service, region_name=region, endpoint_url=moto.url, verify=moto.ca,
                        aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])


class EcrEventsFailpoints(SweepChecks, EcrTest):
    """The failpoint sweep's SQS points (test_failpoints.py): Ferry ended right before and right
    after it deletes an event whose push it recorded. Before: the event comes back after its
    visibility timeout and is the same push, not a second one. After: nothing comes back. Either
    way the restarted Ferry copies the image once and records it once, and the queue drains."""

    def test_a_crash_around_the_sqs_delete_loses_no_push_and_repeats_none(self):
        moto_a = self.moto(A_ID)
        a = self.data_plane("ecr-a", A_ID, "us-east-1")
        b = self.registry("b", A_ID, "us-west-2", notify=False)
        log = os.path.join(self.workdir, "b-requests.log")
        sqs = moto_a.client("sqs")
        queue = sqs.create_queue(QueueName="ecr-events", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        self.ferry.write("secret.yaml", aws_secret("aws-a", {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                                                             "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}))
        self.ferry.write("regs.yaml", ecr_registry("ecr-a", A_ID, "us-east-1", a, moto_a, secret="aws-a", events=queue)
                         + "---\n" + b.resource(endpoint=self.slow_endpoint(b, delay_ms=0, request_log=log)))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.start()  # a clean first start: the configuration takes effect (S3)
        self.assertEqual(self.ferry.stop(), 0)
        time.sleep(1)  # events are timed in whole seconds
        for i, (point, n) in enumerate(SQS_SWEEP):
            with self.subTest(point=point, n=n):
                repo = f"sweep/p{i}"
                img = self.image(seed=f"sqs-sweep-{i}")
                img.push(a, repo, tag="v1")
                self.ferry.start(env=dict(os.environ, FERRY_FAILPOINT=f"{point}:{n}"))
                sqs.send_message(QueueUrl=queue, MessageBody=image_action(A_ID, "us-east-1", repo, img.digest, "v1"))
                self.assert_crashed_at(self.ferry.process, point, n)
                self.assertIsNotNone(self.ferry.status(repo, "v1"), "recorded before the crash")
                self.ferry.start()
                try:
                    st = self.ferry.wait_status(repo, "v1", expected=1, timeout=30)[(A_ID, "us-west-2")]
                    self.assertEqual(st["status"], "COMPLETE", st)
                    self.assertEqual(b.manifest(repo, "v1"), a.manifest(repo, img.digest))
                    wait_until(lambda: queue_drained(sqs, queue), 20, what="the event leaving the queue")
                    time.sleep(3)  # past the visibility timeout: a second copy would have started
                    records = [r for r in self.ferry.records("imagereplications")
                               if r["spec"]["source"]["repositoryName"] == repo]
                    self.assertEqual(len(records), 1, "one push, one record")
                    with open(log) as f:
                        puts = [line.split()[3] for line in f
                                if line.split()[2] == "PUT" and f"/{repo}/manifests/" in line]
                    self.assertEqual(puts, [f"/v2/{repo}/manifests/v1"], "the image copied once")
                finally:
                    self.assertEqual(self.ferry.stop(), 0)


class EcrToEcr(EcrTest):
    """ECR to ECR across accounts and regions: polled at the source, created at the destination."""

    def test_cross_account_cross_region(self):
        moto_a, moto_b = self.moto(A_ID), self.moto(B_ID)
        a = self.data_plane("ecr-a", A_ID, "us-east-1")
        b = self.data_plane("ecr-b", B_ID, "eu-west-1")
        src = moto_a.client("ecr")
        src.create_repository(repositoryName="team/api")
        keys = {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}
        self.ferry.write("secrets.yaml", aws_secret("aws-a", keys) + "---\n" + aws_secret("aws-b", keys))
        self.ferry.write("regs.yaml", ecr_registry("ecr-a", A_ID, "us-east-1", a, moto_a, secret="aws-a", poll="1s")
                         + "---\n" + ecr_registry("ecr-b", B_ID, "eu-west-1", b, moto_b, secret="aws-b"))
        self.ferry.write("config.yaml", replication_config("a", a, [b]))
        self.ferry.write("policy.yaml", registry_policy("ecr-b", b, [allow_statement(A_ID, b)]))
        self.ferry.start()
        wait_until(lambda: "poll baseline recorded" in self.ferry.process.output(), 20, what="the first poll")
        img = self.image(seed="ecr-to-ecr")
        img.push(a, "team/api")
        manifest = a.manifest("team/api", img.digest).decode()
        src.put_image(repositoryName="team/api", imageManifest=manifest, imageTag="v1", imageDigest=img.digest,
                      imageManifestMediaType=json.loads(manifest)["mediaType"])
        st = self.ferry.wait_status("team/api", "v1", expected=1)[(B_ID, "eu-west-1")]
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("team/api", "v1"), manifest.encode())
        dest = moto_b.client("ecr", "eu-west-1").describe_repositories(registryId=B_ID)["repositories"]
        self.assertEqual([(r["repositoryName"], r["imageTagMutability"]) for r in dest], [("team/api", "MUTABLE")])


class ClusterOciToEcr(EcrTest):
    """The same in cluster mode: `ferry operator` against a real kube-apiserver, the ECR Registry's
    probe going through GetAuthorizationToken, the Repository record a Kubernetes object."""

    def test_operator_creates_the_ecr_repository_and_the_registry_is_ready(self):
        cluster = Cluster(self.workdir, self._procs)
        self.addCleanup(lambda: cluster.operator and cluster.operator.alive() and cluster.operator.stop())
        a = Registry(self.workdir, "a", A_ID, "us-east-1", cluster.url)
        self._procs.append(a.process)
        moto_b = self.moto(B_ID)
        b = self.data_plane("ecr-b", B_ID, "eu-west-1")
        cluster.apply(aws_secret("aws-b", {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                                           "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}))
        cluster.apply(a.resource() + "---\n" + ecr_registry("ecr-b", B_ID, "eu-west-1", b, moto_b, secret="aws-b"))
        cluster.apply(replication_config("a", a, [b]))
        cluster.apply(registry_policy("ecr-b", b, [allow_statement(A_ID, b)]))
        op = cluster.start_operator()
        cluster.kubectl("wait", "--for=condition=Ready", "registry/ecr-b", "--timeout=30s")
        self.image(seed="cluster-ecr").push(a, "prod/app")

        st = wait_until(lambda: cluster_status(cluster, "prod/app"), 30, what="the replication into ECR")
        self.assertEqual(st["status"], "COMPLETE", st)
        self.assertEqual(b.manifest("prod/app", "v1"), a.manifest("prod/app", "v1"))
        repo = moto_b.client("ecr", "eu-west-1").describe_repositories(registryId=B_ID)["repositories"]
        self.assertEqual([r["repositoryName"] for r in repo], ["prod/app"])
        records = cluster.get("repositories")["items"]
        self.assertEqual([(r["spec"]["repositoryName"], r["status"]["createdBy"]) for r in records],
                         [("prod/app", "Replication")])
        for secret in (KEYS["AWS_SECRET_ACCESS_KEY"], f"{B_ID}-auth-token"):
            self.assertNotIn(secret, op.output())


if __name__ == "__main__":
    unittest.main()
