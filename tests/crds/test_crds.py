#!/usr/bin/python3
"""Keeps crds/, examples/ and docs/crd-reference.md honest: schema checks, negative cases, doc drift."""
import copy
import json
import pathlib
import re
import subprocess
import sys
import unittest

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from k8s_openapi import FORMATS, close_objects  # noqa: E402  shared with tests/chart

CRD_DIR = ROOT / "crds"
EXAMPLES_DIR = ROOT / "examples"
OPENAPI = ROOT / "tests" / "testdata" / "kubernetes-openapi-v3" / "apis__apiextensions.k8s.io__v1_openapi.json"
GENERATOR = ROOT / "scripts" / "gen-crd-reference.py"
REFERENCE = ROOT / "docs" / "crd-reference.md"

GROUP = "ferry.dev"
VERSION = "v1alpha1"
API_PREFIX = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."

# The public names of the API (SPEC §2): kind -> (plural, short name).
EXPECTED_KINDS = {
    "Registry": ("registries", "freg"),
    "ReplicationConfig": ("replicationconfigs", "rcfg"),
    "RegistryPolicy": ("registrypolicies", "rpol"),
    "Repository": ("repositories", "frepo"),
    "ImageReplication": ("imagereplications", "imgrep"),
    "RepositoryCreationTemplate": ("repositorycreationtemplates", "frct"),
    "ReplicationBackfill": ("replicationbackfills", "fbf"),
}


class _KubeLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: timestamps stay strings (sigs.k8s.io/yaml goes through JSON)."""


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml_docs(text):
    return [d for d in yaml.load_all(text, Loader=_KubeLoader) if d is not None]


def load_dir(directory):
    """Returns [(file name, document)] for every YAML document under directory."""
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in load_yaml_docs(path.read_text(encoding="utf-8")):
            docs.append((path.name, doc))
    return docs




def crd_meta_validator():
    """A validator for CustomResourceDefinition documents built from the upstream OpenAPI document."""
    with open(OPENAPI, encoding="utf-8") as f:
        schemas = copy.deepcopy(json.load(f)["components"]["schemas"])
    ref = {"$ref": "#/components/schemas/" + API_PREFIX + "JSONSchemaProps"}
    # Upstream leaves these unions untyped, which would let anything through under items and
    # additionalProperties; spell out what the API server accepts so nested schemas are checked too.
    schemas[API_PREFIX + "JSONSchemaPropsOrArray"] = {"anyOf": [ref, {"type": "array", "items": ref}]}
    schemas[API_PREFIX + "JSONSchemaPropsOrBool"] = {"anyOf": [{"type": "boolean"}, ref]}
    schemas[API_PREFIX + "JSONSchemaPropsOrStringArray"] = {
        "anyOf": [ref, {"type": "array", "items": {"type": "string"}}]}
    close_objects(schemas)
    root = {"$ref": "#/components/schemas/" + API_PREFIX + "CustomResourceDefinition",
            "components": {"schemas": schemas}}
    return jsonschema.Draft4Validator(root, format_checker=FORMATS)


def resource_validator(crd):
    """A validator for resources of the CRD's storage version, rejecting unknown fields."""
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = close_objects(copy.deepcopy(version["schema"]["openAPIV3Schema"]),
                           skip=lambda s: s.get("x-kubernetes-preserve-unknown-fields", False))
    return jsonschema.Draft4Validator(schema, format_checker=FORMATS)


def errors_of(validator, doc):
    return sorted("/".join(str(p) for p in e.absolute_path) + ": " + e.message
                  for e in validator.iter_errors(doc))


def walk_fields(schema, path):
    """Yields (path, schema) for every field and array item below schema."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from walk_fields(sub, f"{path}.{name}")
    if "items" in schema:
        yield f"{path}[]", schema["items"]
        yield from walk_fields(schema["items"], f"{path}[]")


def partition_of(region):
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


class CrdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crd_docs = load_dir(CRD_DIR)
        cls.crds = {doc["spec"]["names"]["kind"]: doc for _, doc in cls.crd_docs}
        cls.meta = crd_meta_validator()

    def test_one_file_per_expected_kind(self):
        self.assertEqual(sorted(self.crds), sorted(EXPECTED_KINDS))
        for file_name, doc in self.crd_docs:
            names = doc["spec"]["names"]
            plural, short = EXPECTED_KINDS[names["kind"]]
            with self.subTest(file=file_name):
                self.assertEqual(file_name, f"{GROUP}_{plural}.yaml")
                self.assertEqual(doc["metadata"]["name"], f"{plural}.{GROUP}")
                self.assertEqual(doc["spec"]["group"], GROUP)
                self.assertEqual(doc["spec"]["scope"], "Cluster")
                self.assertEqual(names["plural"], plural)
                self.assertEqual(names["singular"], names["kind"].lower())
                self.assertEqual(names["listKind"], names["kind"] + "List")
                self.assertEqual(names["shortNames"], [short])
                self.assertEqual(names["categories"], ["ferry"])
                self.assertEqual([(v["name"], v["served"], v["storage"]) for v in doc["spec"]["versions"]],
                                 [(VERSION, True, True)])
                self.assertEqual(doc["spec"]["versions"][0]["subresources"], {"status": {}})
                first_line = (CRD_DIR / file_name).read_text(encoding="utf-8").splitlines()[0]
                self.assertTrue(first_line.startswith("# "), "a file starts with a comment saying what it is for")

    def test_crds_match_apiextensions_v1_schema(self):
        for file_name, doc in self.crd_docs:
            with self.subTest(file=file_name):
                self.assertEqual(errors_of(self.meta, doc), [])

    def test_schemas_are_structural_and_described(self):
        for kind, crd in self.crds.items():
            root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            self.assertEqual(root.get("type"), "object")
            self.assertIn("description", root)
            self.assertEqual(root["properties"]["metadata"], {"type": "object"})
            for path, sub in walk_fields(root, kind):
                with self.subTest(field=path):
                    if sub.get("x-kubernetes-int-or-string"):
                        # Kubernetes' one exception: no type, anyOf integer | string.
                        self.assertNotIn("type", sub)
                        self.assertEqual(sub.get("anyOf"), [{"type": "integer"}, {"type": "string"}])
                    elif not sub.get("x-kubernetes-preserve-unknown-fields"):
                        self.assertIn("type", sub, "structural schemas type every node")
                    if not path.endswith(".metadata"):
                        self.assertTrue(sub.get("description"), "every field is described")
                    self.assertFalse("properties" in sub and "additionalProperties" in sub)
                    if "default" in sub:
                        self.assertEqual(errors_of(jsonschema.Draft4Validator(sub), sub["default"]), [])
                    if sub.get("x-kubernetes-list-type") == "map":
                        required = set(sub["items"].get("required", []))
                        self.assertTrue(set(sub["x-kubernetes-list-map-keys"]) <= required,
                                        "list map keys must be required")

    def test_common_status(self):
        conditions = None
        for kind, crd in self.crds.items():
            status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            with self.subTest(kind=kind):
                self.assertEqual(status["properties"]["observedGeneration"]["type"], "integer")
                self.assertEqual(status["properties"]["observedGeneration"]["format"], "int64")
                cond = status["properties"]["conditions"]
                self.assertEqual(cond["x-kubernetes-list-map-keys"], ["type"])
                self.assertEqual(cond["items"]["properties"]["status"]["enum"], ["True", "False", "Unknown"])
                shape = {k: v for k, v in cond.items() if k != "description"}
                if conditions is None:
                    conditions = shape
                self.assertEqual(shape, conditions, "every kind shares one condition schema")

    def test_printer_columns_point_at_fields(self):
        for kind, crd in self.crds.items():
            version = crd["spec"]["versions"][0]
            fields = {p.replace("[]", "") for p, _ in walk_fields(version["schema"]["openAPIV3Schema"], "")}
            names = [c["name"] for c in version["additionalPrinterColumns"]]
            with self.subTest(kind=kind):
                self.assertEqual(names[-1], "Age")
                if "Ready" in names:
                    ready = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Ready")
                    self.assertEqual(ready["jsonPath"], '.status.conditions[?(@.type=="Ready")].status')
                for column in version["additionalPrinterColumns"]:
                    path = re.sub(r"\[\?\(.*?\)\]", "", column["jsonPath"])
                    if path != ".metadata.creationTimestamp":
                        self.assertIn(path, fields, column["name"])

    def test_misspelled_crd_fields_are_rejected(self):
        def mutate(change):
            doc = copy.deepcopy(self.crds["Registry"])
            change(doc)
            return errors_of(self.meta, doc)

        version = lambda d: d["spec"]["versions"][0]  # noqa: E731
        schema = lambda d: version(d)["schema"]["openAPIV3Schema"]  # noqa: E731
        cases = {
            "additionalPrinterColumn": lambda d: version(d).update(
                additionalPrinterColumn=version(d).pop("additionalPrinterColumns")),
            "names.shortname": lambda d: d["spec"]["names"].update(shortname=["x"]),
            "subresources.stauts": lambda d: version(d)["subresources"].update(stauts={}),
            "column jsonpath": lambda d: version(d)["additionalPrinterColumns"][0].update(
                jsonpath=version(d)["additionalPrinterColumns"][0].pop("jsonPath")),
            "property descripton": lambda d: schema(d)["properties"]["spec"]["properties"]["region"].update(
                descripton="x"),
            "item schema requried": lambda d: schema(d)["properties"]["status"]["properties"]["conditions"][
                "items"].update(requried=["type"]),
            "maxItems as string": lambda d: schema(d)["properties"]["status"]["properties"]["conditions"].update(
                maxItems="10"),
        }
        for name, change in cases.items():
            with self.subTest(case=name):
                self.assertNotEqual(mutate(change), [], f"{name} was accepted")


class ExamplesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crds = {doc["spec"]["names"]["kind"]: doc for _, doc in load_dir(CRD_DIR)}
        cls.validators = {kind: resource_validator(crd) for kind, crd in cls.crds.items()}
        cls.docs = load_dir(EXAMPLES_DIR)
        cls.resources = [(f, d) for f, d in cls.docs if d.get("apiVersion") != "v1"]

    def validate(self, doc):
        self.assertIn(doc["kind"], self.validators, "unknown kind")
        self.assertEqual(doc["apiVersion"], f"{GROUP}/{VERSION}")
        return errors_of(self.validators[doc["kind"]], doc)

    def example(self, kind):
        return copy.deepcopy(next(d for _, d in self.resources if d["kind"] == kind))

    def test_expected_files(self):
        names = sorted(p.name for p in EXAMPLES_DIR.glob("*.yaml"))
        for expected in ["registries.yaml", "cross-region.yaml", "cross-account.yaml", "prefix-filters.yaml",
                         "immutable-repository.yaml", "secrets.yaml"]:
            self.assertIn(expected, names)
        for name in names:
            first_line = (EXAMPLES_DIR / name).read_text(encoding="utf-8").splitlines()[0]
            self.assertTrue(first_line.startswith("# "), f"{name} starts with a comment")

    def test_examples_match_their_crds(self):
        self.assertTrue(self.resources)
        for file_name, doc in self.resources:
            with self.subTest(file=file_name, name=doc["metadata"]["name"]):
                self.assertEqual(self.validate(doc), [])

    def test_secrets_have_a_supported_shape(self):
        secrets = [d for _, d in self.docs if d.get("apiVersion") == "v1"]
        self.assertEqual({d["kind"] for d in secrets}, {"Secret"})
        types = set()
        for secret in secrets:
            types.add(secret["type"])
            keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
            if secret["type"] == "kubernetes.io/dockerconfigjson":
                self.assertIn(".dockerconfigjson", keys)
            else:
                self.assertEqual(secret["type"], "Opaque")
                # Basic credentials, or AWS keys for an ECR registry (SPEC §7).
                self.assertTrue({"username", "password"} <= keys or
                                {"aws_access_key_id", "aws_secret_access_key"} <= keys, keys)
        self.assertEqual(types, {"kubernetes.io/dockerconfigjson", "Opaque"})

    def test_examples_form_one_valid_set(self):
        # What `ferry validate -f examples/` checks across files: the examples are validated as one set.
        seen = set()
        for _, doc in self.docs:
            key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
            self.assertNotIn(key, seen, "each (kind, name) appears once")
            seen.add(key)
        registries = {}
        partitions = {}
        for _, doc in self.resources:
            if doc["kind"] == "Registry":
                key = (doc["spec"]["registryId"], doc["spec"]["region"])
                self.assertNotIn(key, registries, "one Registry per (registryId, region)")
                registries[key] = doc
                partitions[key] = doc["spec"].get("partition", partition_of(key[1]))
        secrets = {(d["metadata"]["namespace"], d["metadata"]["name"])
                   for _, d in self.docs if d.get("kind") == "Secret"}
        for doc in registries.values():
            ref = doc["spec"].get("credentialsSecretRef")
            if ref:
                self.assertIn((ref["namespace"], ref["name"]), secrets, doc["metadata"]["name"])
        for kind in ("ReplicationConfig", "RegistryPolicy", "Repository"):
            owners = set()
            for _, doc in self.resources:
                if doc["kind"] != kind:
                    continue
                key = (doc["spec"]["registryId"], doc["spec"]["region"])
                with self.subTest(kind=kind, name=doc["metadata"]["name"]):
                    self.assertIn(key, registries, "refers to a Registry of the catalog")
                    if kind != "Repository":
                        self.assertNotIn(key, owners, f"one {kind} per registry")
                    owners.add(key)
        policies = {(d["spec"]["registryId"], d["spec"]["region"])
                    for _, d in self.resources if d["kind"] == "RegistryPolicy"}
        for _, doc in self.resources:
            if doc["kind"] != "ReplicationConfig":
                continue
            source = (doc["spec"]["registryId"], doc["spec"]["region"])
            for i, rule in enumerate(doc["spec"].get("rules", [])):
                for dest in rule["destinations"]:
                    key = (dest["registryId"], dest["region"])
                    with self.subTest(config=doc["metadata"]["name"], rule=i, destination=key):
                        self.assertIn(key, registries)
                        self.assertNotEqual(key, source)
                        self.assertEqual(partitions[key], partitions[source])
                        if key[0] != source[0]:
                            self.assertIn(key, policies, "a cross-account destination has a policy")

    def test_records_ferry_writes_are_valid(self):
        record = load_yaml_docs("""
apiVersion: ferry.dev/v1alpha1
kind: ImageReplication
metadata: {name: acct-a-us-east-1.e9087d0b}
spec:
  source:
    registryId: "123456789012"
    region: us-east-1
    repositoryName: prod/payments-api
    imageDigest: sha256:e9087d0b20d80d3e12bc8530d883d7ad9c1eb3ebc5cb61824a2b460816503797
    imageTag: v1.4.2
    pushedAt: 2025-01-02T03:04:05Z
  destinations:
  - {region: us-west-2, registryId: "123456789012"}
  - {region: eu-west-1, registryId: "210987654321"}
status:
  observedGeneration: 1
  conditions:
  - {type: Ready, status: "False", reason: InProgress, message: "1/2 destinations complete",
     lastTransitionTime: 2025-01-02T03:04:06Z, observedGeneration: 1}
  replicationStatuses:
  - {region: us-west-2, registryId: "123456789012", status: COMPLETE, authorizedBy: same-account,
     tagged: true, startedAt: 2025-01-02T03:04:05Z, completedAt: 2025-01-02T03:04:06.25Z}
  - {region: eu-west-1, registryId: "210987654321", status: FAILED,
     failureCode: DESTINATION_REGISTRY_ACCESS_DENIED, message: no statement allows ecr:ReplicateImage}
  digestShort: e9087d0b20d8
  progress: 1/2
---
apiVersion: ferry.dev/v1alpha1
kind: Repository
metadata: {name: acct-a-us-west-2.api}
spec: {registryId: "123456789012", region: us-west-2, repositoryName: team-a/api}
status:
  createdBy: Replication
  createdAt: 2025-01-02T03:04:05+01:00
  source: {registryId: "123456789012", region: us-east-1, repositoryName: team-a/api}
---
apiVersion: ferry.dev/v1alpha1
kind: RegistryPolicy
metadata: {name: policy-as-json-string}
spec:
  registryId: "210987654321"
  region: eu-west-1
  policy: '{"Version":"2012-10-17","Statement":[]}'
---
apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: no-rules-yet}
spec: {registryId: "123456789012", region: ap-northeast-1, rules: []}
status:
  effectiveSince: 2025-01-02T03:04:05Z
  destinations:
  - {region: us-west-2, registryId: "123456789012", state: RegionNotEnabled, message: no Registry}
""")
        for doc in record:
            with self.subTest(kind=doc["kind"]):
                self.assertEqual(self.validate(doc), [])

    def assertRejectedAt(self, doc, path, case):
        errors = self.validate(doc)
        self.assertTrue(any(e.startswith(path + ": ") for e in errors),
                        f"{case}: expected an error at '{path}', got {errors}")

    def test_invalid_resources_are_rejected(self):
        def bad(kind, change):
            doc = self.example(kind)
            change(doc)
            return doc

        def rules(n):
            return [{"destinations": [{"region": "us-west-2", "registryId": "123456789012"}]} for _ in range(n)]

        def condition(drop=None, **fields):
            cond = {"type": "Ready", "status": "True", "reason": "Ok", "message": "",
                    "lastTransitionTime": "2025-01-02T03:04:05Z", **fields}
            cond.pop(drop, None)
            return {"conditions": [cond]}

        filters = "spec/rules/0/repositoryFilters"
        cases = {  # name: (path of the error, invalid document)
            "unknown spec field": ("spec", bad("Registry", lambda d: d["spec"].update(endpiont="https://x"))),
            "unknown nested field": ("spec/rules/0", bad("ReplicationConfig", lambda d: d["spec"]["rules"][0].update(
                destination=[]))),
            "unknown top-level field": ("", bad("Repository", lambda d: d.update(specs={}))),
            "registryId of 11 digits": ("spec/registryId", bad("ReplicationConfig", lambda d: d["spec"].update(
                registryId="12345678901"))),
            "registryId as a number": ("spec/registryId", bad("Registry", lambda d: d["spec"].update(
                registryId=123456789012))),
            "11 rules": ("spec/rules", bad("ReplicationConfig", lambda d: d["spec"].update(rules=rules(11)))),
            "filterType SUFFIX_MATCH": (filters + "/0/filterType", bad("ReplicationConfig", lambda d: d["spec"][
                "rules"][0].update(repositoryFilters=[{"filter": "prod", "filterType": "SUFFIX_MATCH"}]))),
            "filter of 1 character": (filters + "/0/filter", bad("ReplicationConfig", lambda d: d["spec"]["rules"][
                0].update(repositoryFilters=[{"filter": "p"}]))),
            "filter with upper case": (filters + "/0/filter", bad("ReplicationConfig", lambda d: d["spec"]["rules"][
                0].update(repositoryFilters=[{"filter": "Prod"}]))),
            "101 filters": (filters, bad("ReplicationConfig", lambda d: d["spec"]["rules"][0].update(
                repositoryFilters=[{"filter": f"p{i:03}"} for i in range(101)]))),
            "rule without destinations": ("spec/rules/0/destinations", bad("ReplicationConfig", lambda d: d["spec"][
                "rules"][0].update(destinations=[]))),
            "26 destinations": ("spec/rules/0/destinations", bad("ReplicationConfig", lambda d: d["spec"]["rules"][
                0].update(destinations=[{"region": f"r{i:02}", "registryId": "123456789012"} for i in range(26)]))),
            "region with upper case": ("spec/region", bad("ReplicationConfig", lambda d: d["spec"].update(
                region="US-east-1"))),
            "endpoint without scheme": ("spec/endpoint", bad("Registry", lambda d: d["spec"].update(
                endpoint="registry.example.com"))),
            "unknown partition": ("spec/partition", bad("Registry", lambda d: d["spec"].update(partition="aws-eu"))),
            "pollInterval 30 without unit": ("spec/pollInterval", bad("Registry", lambda d: d["spec"].update(
                pollInterval="30"))),
            "secret ref without name": ("spec/credentialsSecretRef", bad("Registry", lambda d: d["spec"].update(
                credentialsSecretRef={"namespace": "ferry-system"}))),
            "missing policy": ("spec", bad("RegistryPolicy", lambda d: d["spec"].pop("policy"))),
            "repositoryName with upper case": ("spec/repositoryName", bad("Repository", lambda d: d["spec"].update(
                repositoryName="Prod/x"))),
            "mutability lower case": ("spec/imageTagMutability", bad("Repository", lambda d: d["spec"].update(
                imageTagMutability="immutable"))),
            "encryptionType SSE": ("spec/encryptionConfiguration/encryptionType", bad("Repository", lambda d: d[
                "spec"]["encryptionConfiguration"].update(encryptionType="SSE"))),
            "condition status Maybe": ("status/conditions/0/status", bad("Registry", lambda d: d.update(
                status=condition(status="Maybe")))),
            "lastTransitionTime not a date-time": ("status/conditions/0/lastTransitionTime", bad(
                "Registry", lambda d: d.update(status=condition(lastTransitionTime="yesterday")))),
            "condition without reason": ("status/conditions/0", bad("Registry", lambda d: d.update(
                status=condition(drop="reason")))),
        }
        for name, (path, doc) in cases.items():
            with self.subTest(case=name):
                self.assertRejectedAt(doc, path, name)

    def test_invalid_image_replication_is_rejected(self):
        base = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImageReplication", "metadata": {"name": "x"},
                "spec": {"source": {"registryId": "123456789012", "region": "us-east-1",
                                    "repositoryName": "app", "imageDigest": "sha256:" + "a" * 64}}}
        self.assertEqual(self.validate(base), [])
        cases = {
            "short digest": ("spec/source/imageDigest",
                             lambda d: d["spec"]["source"].update(imageDigest="sha256:abc")),
            "missing digest": ("spec/source", lambda d: d["spec"]["source"].pop("imageDigest")),
            "unknown status": ("status/replicationStatuses/0/status", lambda d: d.update(status={
                "replicationStatuses": [{"region": "us-west-2", "registryId": "123456789012", "status": "DONE"}]})),
        }
        for name, (path, change) in cases.items():
            doc = copy.deepcopy(base)
            change(doc)
            with self.subTest(case=name):
                self.assertRejectedAt(doc, path, name)


class ReferenceDocTest(unittest.TestCase):
    def test_reference_is_generated_from_crds(self):
        generated = subprocess.run([sys.executable, str(GENERATOR), "--crds", str(CRD_DIR), "--output", "-"],
                                   check=True, capture_output=True, text=True).stdout
        current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
        self.assertTrue(generated == current,
                        "docs/crd-reference.md is out of date: run scripts/gen-crd-reference.py")


if __name__ == "__main__":
    unittest.main()
