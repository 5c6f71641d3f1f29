"""Ferry's SigV4 signer against botocore's (botocore.auth.SigV4Auth) on ~200 varied requests.

Each request is signed by both at a fixed time; the canonical request and the Authorization header
must be identical. The requests vary methods, services (ecr, sqs, sts, service), regions (aws,
aws-cn, GovCloud), hosts with and without ports, paths with spaces, unicode, reserved characters,
percent signs, dot segments and double slashes, repeated query keys with values encoded in several
equivalent ways, headers with odd case and whitespace (repeated ones too), bodies, session tokens
and x-amz-content-sha256. Run by tests/support/aws_python.sh (the venv with botocore).
"""
import datetime
import hashlib
import json
import os
import random
import subprocess
import unittest
from unittest import mock
from urllib.parse import quote

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ORACLE = os.environ.get("FERRY_SIGV4_ORACLE", "")

SEGMENTS = ["repo", "a b", "ሴ", "ü", "x+y", "a%20b", "%", "!$&'()*,;=:@", "~user", "-._", "日本語", "",
            ".", "..", "v2", "team", "émoji😀", "semi;colon", "[brackets]", "quote\"d", "back\\slash", "a|b"]
KEYS = ["Action", "Version", "a", "A", "b", "key with space", "ሴ", "x+y", "k=v", "list-type", "prefix",
        "~tilde", "a.b", "Param-3", "empty", "dup", "ü"]
VALUES = ["1", "value", "a b", "a+b", "a/b/c", "", "ሴ", "100%", "=", "&amp", "~._-", "ÄÖÜ", "x" * 40,
          "2011-06-15", "arn:aws:iam::123456789012:role/ferry"]
HEADER_NAMES = ["X-Custom", "x-amz-meta-Foo", "Content-Type", "content-type", "My-Header1", "X-AMZ-Target",
                "Accept", "User-Agent", "X-Amz-Trace", "Expect", "x-amzn-trace-id", "Cache-Control"]
HEADER_VALUES = ["value", "  leading", "trailing  ", "a   b   c", "a\tb", " \t mixed \t  space ", "x,y", "",
                 "application/x-amz-json-1.1", "\"quoted   value\"", "UPPER lower", "a  \t  b  \t  c"]
SERVICES = [("ecr", "api.ecr.{r}.amazonaws.com"), ("sqs", "sqs.{r}.amazonaws.com"),
            ("sts", "sts.{r}.amazonaws.com"), ("service", "example.amazonaws.com")]
REGIONS = ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1", "ap-southeast-2"]
TIMES = [datetime.datetime(2015, 8, 30, 12, 36, 0), datetime.datetime(2026, 12, 1, 23, 59, 59),
         datetime.datetime(2024, 2, 29, 0, 0, 1)]


def lower_hex(s):
    """s with the hex digits of its %XX escapes lowercased."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "%" and i + 2 < len(s) + 1:
            out.append("%" + s[i + 1:i + 3].lower())
            i += 3
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def encode_variant(rng, text):
    """text percent-encoded in one of several equivalent ways (Ferry decodes and re-encodes)."""
    choice = rng.randrange(3)
    if choice == 0:
        return quote(text, safe="-_.~")
    if choice == 1:
        return lower_hex(quote(text, safe="-_.~"))
    return "".join(f"%{b:02X}" for b in text.encode())  # unreserved characters encoded too


def make_cases(n=200, seed=20151230):
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        service, host_t = rng.choice(SERVICES)
        region = rng.choice(REGIONS)
        host = host_t.format(r=region)
        if region.startswith("cn-") and host.endswith(".amazonaws.com"):
            host += ".cn"
        scheme = rng.choice(["https", "http"])
        port = rng.choice([None, None, "443" if scheme == "https" else "80", "5000", "8443"])
        netloc = host if port is None else f"{host}:{port}"
        host_header = host if port is None or (scheme, port) in (("https", "443"), ("http", "80")) else netloc
        path = "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randrange(0, 4)))
        if rng.random() < 0.2:
            path += "/"
        params = [(rng.choice(KEYS), rng.choice(VALUES)) for _ in range(rng.choice([0, 0, 1, 2, 3, 5]))]
        if params and rng.random() < 0.3:
            params.append((params[0][0], rng.choice(VALUES)))  # a repeated key
        query = []
        for k, v in params:
            ek, ev = encode_variant(rng, k), encode_variant(rng, v)
            query.append(ek if (v == "" and rng.random() < 0.5) else f"{ek}={ev}")
        headers = []
        for _ in range(rng.randrange(0, 5)):
            headers.append((rng.choice(HEADER_NAMES), rng.choice(HEADER_VALUES)))
        if rng.random() < 0.3 and headers:
            headers.append((headers[0][0].upper(), rng.choice(HEADER_VALUES)))  # repeated, other case
        body = rng.choice(["", "", "Action=ListUsers&Version=2010-05-08", '{"repositoryNames":["a b"]}',
                           "ሴ unicode body ü", "x" * 1000])
        cases.append({
            "method": rng.choice(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "post"]),
            "url": f"{scheme}://{netloc}{quote(path, safe='/%!$&()*+,;=:@[]|~' + chr(39))}"
                   if rng.random() < 0.3 else f"{scheme}://{netloc}{path}",
            "params": params,
            "query": "&".join(query),
            "host": host_header,
            "headers": headers,
            "body": body,
            "access_key": rng.choice(["AKIDEXAMPLE", "ASIAEXAMPLE123", "AKIAIOSFODNN7EXAMPLE"]),
            "secret_key": rng.choice(["wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "s3cr3t+/=", "x"]),
            "token": rng.choice(["", "", "FQoGZXIvYXdzEBY//////////wEaDExample+token/==", "tok"]),
            "region": region,
            "service": service,
            "time": rng.choice(TIMES),
            "content_sha256": rng.random() < 0.3,
            "index": i,
        })
    return cases


class RecordingSigV4(botocore.auth.SigV4Auth):
    def canonical_request(self, request):
        self.last_canonical = super().canonical_request(request)
        return self.last_canonical


def botocore_sign(case):
    url = case["url"]
    path = url.split("://", 1)[1]
    path = path[path.index("/"):] if "/" in path else "/"
    request = AWSRequest(method=case["method"], url=url, data=case["body"].encode(), params=case["params"] or None)
    for k, v in case["headers"]:
        request.headers[k] = v  # appends: repeated names stay repeated
    if case["content_sha256"]:
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(case["body"].encode()).hexdigest()
    signer = RecordingSigV4(Credentials(case["access_key"], case["secret_key"], case["token"] or None),
                            case["service"], case["region"])
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=case["time"]):
        signer.add_auth(request)
    return signer.last_canonical, request.headers["Authorization"], path


class BotocoreOracleTest(unittest.TestCase):
    def test_oracle_binary_is_built(self):
        self.assertTrue(ORACLE and os.access(ORACLE, os.X_OK), f"FERRY_SIGV4_ORACLE={ORACLE!r} is not executable")

    def test_same_canonical_request_and_authorization_as_botocore(self):
        cases = make_cases()
        expected, requests = [], []
        for c in cases:
            canonical, authorization, path = botocore_sign(c)
            expected.append((canonical, authorization))
            target = path + ("?" + c["query"] if c["query"] else "")
            requests.append({
                "method": c["method"], "target": target,
                "headers": [["Host", c["host"]]] + [list(h) for h in c["headers"]],
                "body": c["body"], "access_key": c["access_key"], "secret_key": c["secret_key"],
                "token": c["token"], "region": c["region"], "service": c["service"],
                "time": c["time"].strftime("%Y%m%dT%H%M%SZ"), "content_sha256": c["content_sha256"],
            })
        out = subprocess.run([ORACLE], input=json.dumps(requests), capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = json.loads(out.stdout)
        self.assertEqual(len(got), len(cases))
        mismatches = []
        for c, req, (canonical, authorization), g in zip(cases, requests, expected, got):
            if g["canonical_request"] != canonical or g["authorization"] != authorization:
                mismatches.append(f"case {c['index']}: {req['method']} {c['url']} query={c['query']!r} "
                                  f"headers={c['headers']!r}\n--- botocore\n{canonical}\n--- ferry\n"
                                  f"{g['canonical_request']}\n")
        self.assertFalse(mismatches, f"{len(mismatches)} of {len(cases)} differ:\n" + "\n".join(mismatches[:5]))
        # The generated set really is varied.
        self.assertGreaterEqual(len({c["service"] for c in cases}), 4)
        self.assertTrue(any(c["region"].startswith("cn-") for c in cases))
        self.assertTrue(any(c["token"] for c in cases))
        self.assertTrue(any(len({h[0].lower() for h in c["headers"]}) < len(c["headers"]) for c in cases))


if __name__ == "__main__":
    unittest.main()
