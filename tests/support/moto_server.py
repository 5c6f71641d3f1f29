"""A moto_server (the ECR, SQS and STS APIs of one AWS account) on a free 127.0.0.1 port, stopped by
PID; shared by tests/aws and tests/e2e. Needs the venv of scripts/test-peers.sh (boto3, moto), which
tests/support/aws_python.sh runs tests with."""
import os
import ssl
import subprocess
import tempfile
import urllib.request

import boto3

from testproc import free_port, stop_pid, wait_until

PEERS = os.environ.get("FERRY_PEERS_BIN") or os.path.join(os.path.expanduser("~"), ".cache", "ferry-peers", "bin")
KEYS = {"AWS_ACCESS_KEY_ID": "AKIDFERRYTEST", "AWS_SECRET_ACCESS_KEY": "ferry-test-secret-key"}


class Moto:
    """moto_server for one account (MOTO_ACCOUNT_ID): its GetAuthorizationToken answers AWS:<account>-auth-token."""

    def __init__(self, account, tls=None):
        """tls: (certificate, key, CA bundle) files: moto serves HTTPS with that certificate."""
        self.port = free_port()
        self.ca = tls[2] if tls else None
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        env = dict(os.environ, MOTO_ACCOUNT_ID=account)
        self.log = tempfile.TemporaryFile()
        args = [os.path.join(PEERS, "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        if tls:
            args += ["--ssl-cert", tls[0], "--ssl-key", tls[1]]
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        context = ssl.create_default_context(cafile=self.ca) if tls else None

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"moto_server exited with {self.proc.returncode}")
            try:
                return urllib.request.urlopen(self.url + "/moto-api/", timeout=1, context=context).status == 200
            except OSError:
                return False
        wait_until(up, timeout=30, what="moto_server")

    def client(self, service, region="us-east-1"):
        return boto3.client(service, region_name=region, endpoint_url=self.url, verify=self.ca,
                            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])

    def stop(self):
        stop_pid(self.proc)
        self.log.close()
