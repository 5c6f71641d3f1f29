#!/usr/bin/python3
"""Ferry's CRDs in a real kube-apiserver: what the schema (and its CEL rules) can say, the API server
says, with the same message as `ferry validate` where the rule is the same.

FERRY_BINARY names the ferry binary (for `ferry validate`); the control plane comes from
tests/support/kube_control_plane.py.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.dont_write_bytecode = True
sys.path.insert(0, str(ROOT / "tests" / "support"))
from kube_control_plane import ControlPlane  # noqa: E402

FERRY = os.environ.get("FERRY_BINARY", str(ROOT / "build" / "operator" / "ferry"))


def config(name, destinations, filters=None):
    rule = {"destinations": [{"region": r, "registryId": a} for a, r in destinations]}
    if filters is not None:
        rule["repositoryFilters"] = [{"filter": f, "filterType": "PREFIX_MATCH"} for f in filters]
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ReplicationConfig", "metadata": {"name": name},
            "spec": {"registryId": "111111111111", "region": "us-east-1", "rules": [rule]}}


class ApiServerValidation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ferry-crds-")
        cls.cp = ControlPlane(cls.tmp)
        try:
            cls.cp.start()  # every CRD is accepted (structural schema, CEL rules compile within budget)
        except BaseException:
            cls.cp.stop()
            shutil.rmtree(cls.tmp, True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cp.stop()
        shutil.rmtree(cls.tmp, True)

    def apply(self, obj):
        return self.cp.kubectl("apply", "--server-side", "--validate=strict", "-f", "-",
                               stdin=json.dumps(obj), check=False)

    def validate(self, obj):
        path = os.path.join(self.tmp, obj["metadata"]["name"] + ".json")
        with open(path, "w") as f:
            json.dump(obj, f)
        res = subprocess.run([FERRY, "validate", "-f", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        return res.stdout

    def test_a_destination_equal_to_the_source_is_refused_with_the_validate_message(self):
        bad = config("to-itself", [("111111111111", "us-west-2"), ("111111111111", "us-east-1")])
        res = self.apply(bad)
        self.assertNotEqual(res.returncode, 0, res.stdout)
        message = "111111111111/us-east-1 is the source registry; a registry cannot replicate to itself"
        self.assertIn("spec.rules: Invalid value", res.stderr)
        self.assertIn(message, res.stderr)
        self.assertIn("spec.rules[0].destinations[1]: " + message, self.validate(bad))
        self.assertEqual(self.cp.kubectl("get", "replicationconfigs", "-o", "name").stdout, "")
        # The same destination in another account is fine.
        ok = config("elsewhere", [("222222222222", "us-east-1")])
        self.assertEqual(self.apply(ok).returncode, 0)

    def test_an_endpoint_is_required_unless_the_registry_is_ecr(self):
        def registry(name, **spec):
            return {"apiVersion": "ferry.dev/v1alpha1", "kind": "Registry", "metadata": {"name": name},
                    "spec": {"registryId": "111111111111", "region": "us-east-1", **spec}}
        res = self.apply(registry("no-endpoint"))
        self.assertNotEqual(res.returncode, 0, res.stdout)
        self.assertIn("spec.endpoint: Invalid value", res.stderr)
        self.assertIn("endpoint is required unless type is ecr", res.stderr)
        self.assertIn("spec.endpoint: required", self.validate(registry("no-endpoint")))
        res = self.apply(registry("ecr-on-oci", endpoint="https://r.example.com", ecr={"apiEndpoint": "https://a.example.com"}))
        self.assertNotEqual(res.returncode, 0, res.stdout)
        self.assertIn("ecr is only allowed with type ecr", res.stderr)
        # An ECR registry without an endpoint is fine: its data plane has a known address.
        self.assertEqual(self.apply(registry("ecr", type="ecr", ecr={"apiEndpoint": "http://127.0.0.1:5000"})).returncode, 0)

    def test_limits_grammar_and_unknown_fields_are_refused(self):
        cases = {
            "too-many-filters": (config("too-many-filters", [("111111111111", "us-west-2")],
                                        [f"prod{i}" for i in range(101)]),
                                 "spec.rules[0].repositoryFilters: Too many: 101: must have at most 100 items",
                                 "spec.rules[0].repositoryFilters: 101 filters, at most 100 allowed"),
            "bad-filter": (config("bad-filter", [("111111111111", "us-west-2")], ["Prod"]),
                           "spec.rules[0].repositoryFilters[0].filter: Invalid value: \"Prod\"",
                           "spec.rules[0].repositoryFilters[0].filter"),
            "bad-account": (config("bad-account", [("11111111111", "us-west-2")]),
                            "spec.rules[0].destinations[0].registryId: Invalid value: \"11111111111\"",
                            "spec.rules[0].destinations[0].registryId"),
        }
        typo = config("typo", [("111111111111", "us-west-2")])
        typo["spec"]["rules"][0]["destination"] = []
        for name, (obj, server_says, validate_says) in cases.items():
            with self.subTest(name):
                res = self.apply(obj)
                self.assertNotEqual(res.returncode, 0, res.stdout)
                self.assertIn(server_says, res.stderr)
                self.assertIn(validate_says, self.validate(obj))
        res = self.apply(typo)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn(".spec.rules[0].destination: field not declared in schema", res.stderr)
        self.assertIn("spec.rules[0].destination", self.validate(typo))

    def test_tag_filters_limits_grammar_and_default(self):
        def tagged(name, tag_filters):
            obj = config(name, [("111111111111", "us-west-2")])
            obj["spec"]["rules"][0]["tagFilters"] = tag_filters
            return obj
        cases = {
            "too-many-tag-filters": (tagged("too-many-tag-filters", [{"filter": f"v{i}*"} for i in range(101)]),
                                     "spec.rules[0].tagFilters: Too many: 101: must have at most 100 items",
                                     "spec.rules[0].tagFilters: 101 filters, at most 100 allowed"),
            "bad-tag-filter": (tagged("bad-tag-filter", [{"filter": "v*"}, {"filter": "ok"}, {"filter": "v1/x"}]),
                               "spec.rules[0].tagFilters[2].filter: Invalid value: \"v1/x\"",
                               "spec.rules[0].tagFilters[2].filter: \"v1/x\" does not match"),
            "bad-tag-filter-type": (tagged("bad-tag-filter-type", [{"filter": "v*", "filterType": "REGEX"}]),
                                    "spec.rules[0].tagFilters[0].filterType: Unsupported value: \"REGEX\"",
                                    "spec.rules[0].tagFilters[0].filterType: \"REGEX\" is not supported; only WILDCARD"),
        }
        for name, (obj, server_says, validate_says) in cases.items():
            with self.subTest(name):
                res = self.apply(obj)
                self.assertNotEqual(res.returncode, 0, res.stdout)
                self.assertIn(server_says, res.stderr)
                self.assertIn(validate_says, self.validate(obj))
        ok = tagged("tag-filtered", [{"filter": "v*"}, {"filter": "*-rc*", "filterType": "WILDCARD"}])
        self.assertEqual(self.apply(ok).returncode, 0)
        got = json.loads(self.cp.kubectl("get", "replicationconfig", "tag-filtered", "-o", "json").stdout)
        self.assertEqual(got["spec"]["rules"][0]["tagFilters"],
                         [{"filter": "v*", "filterType": "WILDCARD"}, {"filter": "*-rc*", "filterType": "WILDCARD"}])


if __name__ == "__main__":
    unittest.main(verbosity=2)
