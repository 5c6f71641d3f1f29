"""Ferry's ECR, SQS and STS clients against a real moto_server, with boto3 as the checker.

Each test class starts its own moto_server on a free 127.0.0.1 port (MOTO_ACCOUNT_ID set, so the
account is known) and stops it by PID. tests/aws/ecr_probe (FERRY_ECR_PROBE) is the C++ side: one
operation per run, JSON on stdout, credentials from the default chain (the environment given to
it). moto does not check signatures: SigV4 itself is covered by the suite vectors and botocore.
Run by tests/support/aws_python.sh (the venv with boto3 and moto); a missing peer fails the test.
"""
import base64
import datetime
import hashlib
import http.server
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from unittest import mock

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from testproc import free_port, stop_pid, wait_until  # noqa: E402
from moto_server import Moto  # noqa: E402

PROBE = os.environ.get("FERRY_ECR_PROBE", "")
PEERS = os.environ.get("FERRY_PEERS_BIN") or os.path.join(os.path.expanduser("~"), ".cache", "ferry-peers", "bin")
ACCOUNT = "111111111111"
REGION = "us-east-1"
KEYS = {"AWS_ACCESS_KEY_ID": "AKIDFERRYTEST", "AWS_SECRET_ACCESS_KEY": "ferry-test-secret-key"}


def probe(*args, env=None, endpoint=None, sts=None, expect_ok=True):
    """Runs ecr_probe; returns (exit code, parsed JSON)."""
    cmd = [PROBE, "--region", REGION]
    if endpoint:
        cmd += ["--endpoint", endpoint]
    if sts:
        cmd += ["--sts-endpoint", sts]
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out = subprocess.run(cmd + list(args), env=dict(base, **(KEYS if env is None else env)),
                         capture_output=True, text=True, timeout=60)
    result = json.loads(out.stdout)
    if expect_ok:
        assert out.returncode == 0, f"{args}: {out.stdout} {out.stderr}"
    return out.returncode, result


class MotoTestCase(unittest.TestCase):
    """One moto_server for the class, stopped by PID afterwards."""

    @classmethod
    def setUpClass(cls):
        cls.moto = Moto(ACCOUNT)

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()


class PeersTest(unittest.TestCase):
    def test_probe_and_moto_exist(self):
        self.assertTrue(PROBE and os.access(PROBE, os.X_OK), f"FERRY_ECR_PROBE={PROBE!r}")
        self.assertTrue(os.access(os.path.join(PEERS, "moto_server"), os.X_OK), f"{PEERS}/moto_server")


class EcrTest(MotoTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ecr = cls.moto.client("ecr")

    def run_probe(self, *args, **kw):
        return probe(*args, endpoint=self.moto.url, **kw)

    def test_create_repository_settings_read_back_by_boto3(self):
        _, out = self.run_probe("create-repository", "team/app", "--mutability", "IMMUTABLE_WITH_EXCLUSION",
                                "--exclusion", "latest", "--exclusion", "dev-*", "--scan-on-push",
                                "--encryption", "KMS", "--kms-key", "arn:aws:kms:us-east-1:111111111111:key/k1",
                                "--tag", "team=a", "--tag", "owner=ferry")
        repo = out["repository"]
        self.assertEqual(repo["name"], "team/app")
        self.assertEqual(repo["registryId"], ACCOUNT)
        self.assertEqual(repo["arn"], f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/app")
        got = self.ecr.describe_repositories(repositoryNames=["team/app"])["repositories"][0]
        self.assertEqual(got["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION")
        self.assertEqual(sorted(f["filter"] for f in got["imageTagMutabilityExclusionFilters"]), ["dev-*", "latest"])
        self.assertTrue(all(f["filterType"] == "WILDCARD" for f in got["imageTagMutabilityExclusionFilters"]))
        self.assertTrue(got["imageScanningConfiguration"]["scanOnPush"])
        self.assertEqual(got["encryptionConfiguration"]["encryptionType"], "KMS")
        self.assertEqual(got["encryptionConfiguration"]["kmsKey"], "arn:aws:kms:us-east-1:111111111111:key/k1")
        tags = self.ecr.list_tags_for_resource(resourceArn=got["repositoryArn"])["tags"]
        self.assertEqual(sorted((t["Key"], t["Value"]) for t in tags), [("owner", "ferry"), ("team", "a")])
        # Ferry's reading of the same repository matches boto3's.
        _, mine = self.run_probe("describe-repository", "team/app")
        self.assertTrue(mine["found"])
        self.assertEqual(mine["repository"]["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION")
        self.assertEqual(mine["repository"]["uri"], got["repositoryUri"])
        self.assertTrue(mine["repository"]["scanOnPush"])
        self.assertAlmostEqual(mine["repository"]["createdAt"], got["createdAt"].timestamp(), delta=1)

    def test_defaults_are_mutable_no_scan_aes256(self):
        self.run_probe("create-repository", "defaults")
        got = self.ecr.describe_repositories(repositoryNames=["defaults"])["repositories"][0]
        self.assertEqual(got["imageTagMutability"], "MUTABLE")
        self.assertFalse(got["imageScanningConfiguration"]["scanOnPush"])
        self.assertEqual(got["encryptionConfiguration"]["encryptionType"], "AES256")

    def test_repository_not_found_is_distinguishable(self):
        code, out = self.run_probe("describe-repositories", "nope", expect_ok=False)
        self.assertEqual(code, 1)
        self.assertEqual(out["error"]["code"], "RepositoryNotFoundException")
        self.assertEqual(out["error"]["http_status"], 400)
        self.assertFalse(out["error"]["retryable"])
        self.assertIn("nope", out["error"]["message"])
        _, absent = self.run_probe("describe-repository", "nope")
        self.assertEqual(absent, {"found": False})

    def test_already_exists_is_mapped(self):
        self.run_probe("create-repository", "twice")
        code, out = self.run_probe("create-repository", "twice", expect_ok=False)
        self.assertEqual(code, 1)
        self.assertEqual(out["error"]["code"], "RepositoryAlreadyExistsException")

    def test_describe_repositories_lists_all(self):
        for name in ("list/a", "list/b", "list/c"):
            self.ecr.create_repository(repositoryName=name)
        _, out = self.run_probe("describe-repositories")
        names = {r["name"] for r in out["repositories"]}
        self.assertTrue({"list/a", "list/b", "list/c"} <= names, names)
        boto = {r["repositoryName"] for r in self.ecr.describe_repositories()["repositories"]}
        self.assertEqual(names, boto)

    def test_authorization_token(self):
        _, out = self.run_probe("get-token")
        self.assertEqual(out["username"], "AWS")
        self.assertEqual(out["password"], f"{ACCOUNT}-auth-token")
        token = self.ecr.get_authorization_token()["authorizationData"][0]
        self.assertEqual(base64.b64decode(token["authorizationToken"]).decode(), f"AWS:{out['password']}")
        self.assertEqual(out["proxyEndpoint"], token["proxyEndpoint"])

    def test_describe_images_after_boto3_put_image(self):
        self.ecr.create_repository(repositoryName="images")
        digests = []
        before = time.time() - 5
        for tag in ("v1", "v2"):
            manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                              "digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest(),
                                              "size": 2}, "layers": []})
            digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
            self.ecr.put_image(repositoryName="images", imageManifest=manifest, imageTag=tag, imageDigest=digest)
            digests.append(digest)
        _, out = self.run_probe("describe-images", "images")
        got = {i["digest"]: i for i in out["images"]}
        self.assertEqual(set(got), set(digests))
        self.assertEqual(got[digests[0]]["tags"], ["v1"])
        self.assertGreater(got[digests[1]]["pushedAt"], before)
        boto = {d["imageDigest"]: d for d in self.ecr.describe_images(repositoryName="images")["imageDetails"]}
        for digest in digests:
            self.assertAlmostEqual(got[digest]["pushedAt"], boto[digest]["imagePushedAt"].timestamp(), delta=1)

    def test_tags_policy_and_lifecycle(self):
        arn = self.ecr.create_repository(repositoryName="policies")["repository"]["repositoryArn"]
        self.run_probe("tag-resource", arn, "cost-center=42")
        tags = self.ecr.list_tags_for_resource(resourceArn=arn)["tags"]
        self.assertIn({"Key": "cost-center", "Value": "42"}, tags)
        policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "pull", "Effect": "Allow",
                             "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": ["ecr:BatchGetImage"]}]})
        self.run_probe("set-repository-policy", "policies", policy)
        self.assertEqual(json.loads(self.ecr.get_repository_policy(repositoryName="policies")["policyText"]),
                         json.loads(policy))
        lifecycle = json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged",
                                "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
                                "action": {"type": "expire"}}]})
        self.run_probe("put-lifecycle-policy", "policies", lifecycle)
        self.assertEqual(json.loads(self.ecr.get_lifecycle_policy(repositoryName="policies")["lifecyclePolicyText"]),
                         json.loads(lifecycle))

    def test_no_credentials_is_a_clear_error(self):
        code, out = self.run_probe("get-token", env={}, expect_ok=False)
        self.assertEqual(code, 1)
        self.assertIn("AWS_WEB_IDENTITY_TOKEN_FILE", out["error"]["text"])


class SqsTest(MotoTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sqs = cls.moto.client("sqs")

    def test_receive_and_delete_a_message_boto3_sent(self):
        url = self.sqs.create_queue(QueueName="ferry-ecr-events")["QueueUrl"]
        event = {"detail-type": "ECR Image Action", "source": "aws.ecr",
                 "detail": {"action-type": "PUSH", "result": "SUCCESS", "repository-name": "app", "image-tag": "v1"}}
        self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
        _, out = probe("receive", url, "--wait", "2", "--max", "10", endpoint=self.moto.url)
        self.assertEqual(len(out["messages"]), 1)
        self.assertEqual(json.loads(out["messages"][0]["body"]), event)
        probe("delete", url, out["messages"][0]["receipt"], endpoint=self.moto.url)
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual(attrs["ApproximateNumberOfMessages"], "0")
        self.assertEqual(attrs["ApproximateNumberOfMessagesNotVisible"], "0")

    def test_long_poll_on_an_empty_queue_waits_and_returns_nothing(self):
        url = self.sqs.create_queue(QueueName="empty")["QueueUrl"]
        start = time.monotonic()
        _, out = probe("receive", url, "--wait", "2", endpoint=self.moto.url)
        self.assertEqual(out["messages"], [])
        self.assertGreaterEqual(time.monotonic() - start, 1.5)

    def test_missing_queue_is_mapped(self):
        code, out = probe("receive", f"{self.moto.url}/{ACCOUNT}/absent", "--wait", "0", endpoint=self.moto.url,
                          expect_ok=False)
        self.assertEqual(code, 1)
        self.assertIn("QueueDoesNotExist", out["error"]["code"])


class StsTest(MotoTestCase):
    def test_assume_role_with_web_identity_through_moto_sts(self):
        with tempfile.NamedTemporaryFile("w", suffix=".jwt") as token:
            token.write("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZmVycnkifQ.c2ln\n")
            token.flush()
            env = {"AWS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/ferry", "AWS_WEB_IDENTITY_TOKEN_FILE": token.name,
                   "AWS_ROLE_SESSION_NAME": "ferry-test"}
            _, out = probe("credentials", env=env, sts=self.moto.url)
            self.assertEqual(out["provider"], "web identity")
            self.assertTrue(out["access_key_id"].startswith("ASIA"), out)
            self.assertTrue(out["secret_access_key"])
            self.assertTrue(out["session_token"])
            self.assertGreater(out["expiration"], time.time())
            # The temporary credentials work for ECR (moto does not check them, but the chain is whole).
            _, tok = probe("get-token", env=env, sts=self.moto.url, endpoint=self.moto.url)
            self.assertEqual(tok["username"], "AWS")

    def test_missing_token_file_names_it(self):
        env = {"AWS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/ferry", "AWS_WEB_IDENTITY_TOKEN_FILE": "/nonexistent/t"}
        code, out = probe("credentials", env=env, sts=self.moto.url, expect_ok=False)
        self.assertEqual(code, 1)
        self.assertIn("/nonexistent/t", out["error"]["text"])

    def secret(self, data):
        f = tempfile.NamedTemporaryFile("w", suffix=".json")
        json.dump(data, f)
        f.flush()
        return f

    def test_secret_with_role_arn_assumes_the_role(self):
        with self.secret({"aws_access_key_id": "AKIDSECRET", "aws_secret_access_key": "secret-from-secret",
                          "role_arn": f"arn:aws:iam::{ACCOUNT}:role/replicator"}) as f:
            _, out = probe("--secret", f.name, "credentials", env={}, sts=self.moto.url)
        self.assertEqual(out["provider"], "assume role")
        self.assertTrue(out["access_key_id"].startswith("ASIA"), out)
        self.assertNotEqual(out["secret_access_key"], "secret-from-secret")
        self.assertTrue(out["session_token"])

    def test_secret_keys_alone_are_used_as_they_are(self):
        with self.secret({"aws_access_key_id": "AKIDSECRET", "aws_secret_access_key": "s",
                          "aws_session_token": "t"}) as f:
            _, out = probe("--secret", f.name, "credentials", env={})
        self.assertEqual((out["provider"], out["access_key_id"], out["session_token"]), ("static", "AKIDSECRET", "t"))

    def test_secret_without_keys_is_refused_without_echoing_it(self):
        with self.secret({"aws_secret_access_key": "only-the-secret-half"}) as f:
            code, out = probe("--secret", f.name, "credentials", env={}, expect_ok=False)
        self.assertEqual(code, 1)
        self.assertIn("aws_access_key_id", out["error"]["text"])
        self.assertNotIn("only-the-secret-half", json.dumps(out))


class ContainerCredentialsTest(unittest.TestCase):
    SECRET = "container-secret-DO-NOT-LOG"
    TOKEN = "container-session-token-DO-NOT-LOG"

    def setUp(self):
        test = self
        self.seen = []
        self.status = 200

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                test.seen.append((self.path, self.headers.get("Authorization")))
                if test.status != 200:
                    body = json.dumps({"message": f"denied; you sent {test.SECRET} {test.TOKEN}"}).encode()
                elif self.headers.get("Authorization") != "pod-identity-token":
                    self.send_response(401)
                    self.end_headers()
                    return
                else:
                    body = json.dumps({"AccessKeyId": "ASIACONTAINER", "SecretAccessKey": test.SECRET,
                                       "Token": test.TOKEN, "Expiration": "2099-01-01T00:00:00Z"}).encode()
                self.send_response(test.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/v1/credentials"
        self.token_file = tempfile.NamedTemporaryFile("w", suffix=".token")
        self.token_file.write("pod-identity-token\n")
        self.token_file.flush()

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        self.token_file.close()

    def test_full_uri_with_token_file(self):
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.uri,
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": self.token_file.name}
        _, out = probe("credentials", env=env)
        self.assertEqual(out["provider"], "container")
        self.assertEqual(out["access_key_id"], "ASIACONTAINER")
        self.assertEqual(out["secret_access_key"], self.SECRET)
        self.assertEqual(out["session_token"], self.TOKEN)
        self.assertEqual(self.seen, [("/v1/credentials", "pod-identity-token")])

    def test_token_given_directly(self):
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "pod-identity-token"}
        _, out = probe("credentials", env=env)
        self.assertEqual(out["access_key_id"], "ASIACONTAINER")

    def test_errors_never_carry_secrets(self):
        self.status = 500
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.uri,
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": self.token_file.name}
        code, out = probe("credentials", env=env, expect_ok=False)
        self.assertEqual(code, 1)
        text = json.dumps(out)
        self.assertIn("500", text)
        self.assertTrue(out["error"]["retryable"])
        for secret in (self.SECRET, self.TOKEN, "pod-identity-token"):
            self.assertNotIn(secret, text)


class ScriptedAws:
    """A strict double of an AWS JSON endpoint, for what moto cannot show: the exact wire request.

    It answers only the (X-Amz-Target, expected body fields) it was given, in order, and re-checks
    every request's SigV4 signature with botocore over the headers the request says it signed, as
    AWS does. Anything else is recorded in `problems` and answered 500.
    """

    def __init__(self, script, secret):
        self.script = list(script)
        self.secret = secret
        self.problems = []
        self.seen = []
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                double.handle(self, body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verify_signature(self, handler, body):
        auth = handler.headers.get("Authorization", "")
        try:
            cred = auth.split("Credential=")[1].split(",")[0]
            signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
            key, _date, region, service, _ = cred.split("/")
        except IndexError:
            return f"unreadable Authorization {auth!r}"
        request = AWSRequest(method=handler.command, url=f"http://{handler.headers['Host']}{handler.path}", data=body)
        for name in signed:
            for value in handler.headers.get_all(name, []):
                request.headers[name] = value
        amz_date = handler.headers["X-Amz-Date"]
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        signer = botocore.auth.SigV4Auth(Credentials(key, self.secret, handler.headers.get("X-Amz-Security-Token")),
                                         service, region)
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
            signer.add_auth(request)
        if request.headers["Authorization"] != auth:
            return f"signature differs: got {auth!r}, botocore {request.headers['Authorization']!r}"
        return None

    def handle(self, handler, body):
        if handler.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            # STS's Query protocol: the Action names the call, the answer is XML.
            fields = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
            target = fields.get("Action", "")
        else:
            fields = json.loads(body or b"{}")
            target = handler.headers.get("X-Amz-Target", "")
        self.seen.append((target, handler.headers.get("Content-Type"), fields))
        problem = self.verify_signature(handler, body) if handler.headers.get("Authorization") else None
        if problem is None and not handler.headers.get("Authorization") and target != "AssumeRoleWithWebIdentity":
            problem = f"{target} is not signed"
        if not self.script:
            problem = problem or f"unexpected request {target}"
        else:
            want_target, want_fields, status, answer = self.script.pop(0)
            if target != want_target:
                problem = problem or f"expected {want_target}, got {target}"
            for k, v in want_fields.items():
                if fields.get(k) != v:
                    problem = problem or f"{target}: {k}={fields.get(k)!r}, expected {v!r}"
        if problem:
            self.problems.append(problem)
            status, answer = 500, {"__type": "TestDoubleRefused", "message": problem}
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/xml" if isinstance(answer, str) else "application/x-amz-json-1.1")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class SignedWireTest(unittest.TestCase):
    ENV = dict(KEYS, AWS_SESSION_TOKEN="session/token+==")
    ECR = "AmazonEC2ContainerRegistry_V20150921."

    def scripted(self, script):
        double = ScriptedAws(script, self.ENV["AWS_SECRET_ACCESS_KEY"])
        self.addCleanup(double.stop)
        return double

    def test_describe_repositories_follows_next_token(self):
        double = self.scripted([
            (self.ECR + "DescribeRepositories", {}, 200, {"repositories": [{"repositoryName": "a"}], "nextToken": "t1"}),
            (self.ECR + "DescribeRepositories", {"nextToken": "t1"}, 200, {"repositories": [{"repositoryName": "b"}]}),
        ])
        _, out = probe("describe-repositories", env=self.ENV, endpoint=double.url)
        self.assertEqual([r["name"] for r in out["repositories"]], ["a", "b"])
        self.assertEqual(double.problems, [])
        self.assertEqual({ct for _, ct, _ in double.seen}, {"application/x-amz-json-1.1"})

    def test_describe_images_follows_next_token(self):
        double = self.scripted([
            (self.ECR + "DescribeImages", {"repositoryName": "app"}, 200,
             {"imageDetails": [{"imageDigest": "sha256:1", "imagePushedAt": 1767323045.0}], "nextToken": "n"}),
            (self.ECR + "DescribeImages", {"repositoryName": "app", "nextToken": "n"}, 200,
             {"imageDetails": [{"imageDigest": "sha256:2", "imageTags": ["v2"], "imagePushedAt": 1767323046.0}]}),
        ])
        _, out = probe("describe-images", "app", env=self.ENV, endpoint=double.url)
        self.assertEqual([(i["digest"], i["pushedAt"]) for i in out["images"]],
                         [("sha256:1", 1767323045.0), ("sha256:2", 1767323046.0)])
        self.assertEqual(double.problems, [])

    def test_throttling_and_5xx_are_retryable_access_denied_is_not(self):
        for status, answer, retryable in [
                (400, {"__type": "ThrottlingException", "message": "Rate exceeded"}, True),
                (503, {"__type": "ServerException", "message": "try later"}, True),
                (400, {"__type": "AccessDeniedException", "Message": "not allowed to ecr:CreateRepository"}, False),
                (400, {"__type": "KmsException", "message": "key disabled", "kmsError": "DisabledException"}, False),
                (400, {"__type": "InvalidParameterException",
                       "message": f"echo {self.ENV['AWS_SESSION_TOKEN']}"}, False)]:
            double = self.scripted([(self.ECR + "CreateRepository", {"repositoryName": "x"}, status, answer)])
            code, out = probe("create-repository", "x", env=self.ENV, endpoint=double.url, expect_ok=False)
            self.assertEqual(code, 1)
            self.assertEqual(double.problems, [])
            self.assertEqual((out["error"]["code"], out["error"]["http_status"], out["error"]["retryable"]),
                             (answer["__type"], status, retryable))
            message = (answer.get("message") or answer.get("Message")).replace(self.ENV["AWS_SESSION_TOKEN"], "<redacted>")
            self.assertIn(message, out["error"]["text"])
            self.assertNotIn(self.ENV["AWS_SECRET_ACCESS_KEY"], json.dumps(out))
            self.assertNotIn(self.ENV["AWS_SESSION_TOKEN"], json.dumps(out))

    def test_assume_role_is_signed_for_sts_with_the_secrets_keys(self):
        xml = ("<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAROLE</AccessKeyId>"
               "<SecretAccessKey>role-secret</SecretAccessKey><SessionToken>role-token</SessionToken>"
               "<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>")
        double = self.scripted([("AssumeRole", {"RoleArn": "arn:aws:iam::222222222222:role/replicator",
                                                "Version": "2011-06-15"}, 200, xml)])
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump({"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                       "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
                       "role_arn": "arn:aws:iam::222222222222:role/replicator"}, f)
            f.flush()
            _, out = probe("--secret", f.name, "credentials", env={}, sts=double.url)
        self.assertEqual(double.problems, [])
        self.assertEqual((out["access_key_id"], out["session_token"]), ("ASIAROLE", "role-token"))
        self.assertTrue(double.seen[0][2]["RoleSessionName"].startswith("ferry-"))

    def test_sts_error_is_parsed_and_redacted(self):
        xml = ("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to "
               f"sts:AssumeRole; signed with {KEYS['AWS_SECRET_ACCESS_KEY']}</Message></Error></ErrorResponse>")
        double = self.scripted([("AssumeRole", {}, 403, xml)])
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump({"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                       "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"], "role_arn": "arn:aws:iam::2:role/r"}, f)
            f.flush()
            code, out = probe("--secret", f.name, "credentials", env={}, sts=double.url, expect_ok=False)
        self.assertEqual(code, 1)
        self.assertEqual((out["error"]["code"], out["error"]["http_status"]), ("AccessDenied", 403))
        self.assertIn("not authorized to sts:AssumeRole", out["error"]["text"])
        self.assertNotIn(KEYS["AWS_SECRET_ACCESS_KEY"], json.dumps(out))

    def test_sqs_receive_is_a_signed_json_1_0_long_poll(self):
        double = self.scripted([
            ("AmazonSQS.ReceiveMessage", {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/1/q", "WaitTimeSeconds": 20,
                                          "MaxNumberOfMessages": 10}, 200,
             {"Messages": [{"MessageId": "m", "ReceiptHandle": "r", "Body": "{}"}]}),
            ("AmazonSQS.DeleteMessage", {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/1/q", "ReceiptHandle": "r"},
             200, {}),
        ])
        _, out = probe("receive", "https://sqs.us-east-1.amazonaws.com/1/q", "--wait", "20", env=self.ENV,
                       endpoint=double.url)
        self.assertEqual(out["messages"][0]["receipt"], "r")
        probe("delete", "https://sqs.us-east-1.amazonaws.com/1/q", "r", env=self.ENV, endpoint=double.url)
        self.assertEqual(double.problems, [])
        self.assertEqual({ct for _, ct, _ in double.seen}, {"application/x-amz-json-1.0"})


if __name__ == "__main__":
    unittest.main()
