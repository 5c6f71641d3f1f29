#!/usr/bin/python3
"""Validates Kubernetes objects against the upstream OpenAPI v3 documents in tests/testdata/kubernetes-openapi-v3/.

The same approach as tests/crds/test_crds.py: the documents' components/schemas with `$ref`
resolved by jsonschema, every object schema that lists properties closed with
additionalProperties: false (so a misspelled field fails, as kube-apiserver's
fieldValidation=Strict would), and the untyped JSONSchemaProps unions spelled out so nested CRD
schemas are checked too. Only the kinds those documents define can be checked:
CustomResourceDefinition, Validating/MutatingWebhookConfiguration, Lease and events.k8s.io Event.
"""
import copy
import json
import pathlib
import re

import jsonschema

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPENAPI_DIR = ROOT / "tests" / "testdata" / "kubernetes-openapi-v3"
APIEXT = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")
def _is_date_time(value):
    return not isinstance(value, str) or bool(_RFC3339.match(value))


def close_objects(schema, skip=lambda s: False):
    """Rejects unknown fields: every object schema listing properties and saying nothing about
    additionalProperties gets additionalProperties: false, recursively (in place)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema and not skip(schema):
            schema["additionalProperties"] = False
        for value in schema.values():
            close_objects(value, skip)
    elif isinstance(schema, list):
        for value in schema:
            close_objects(value, skip)
    return schema


def _patch_unions(schemas):
    if APIEXT + "JSONSchemaProps" not in schemas:
        return
    ref = {"$ref": "#/components/schemas/" + APIEXT + "JSONSchemaProps"}
    schemas[APIEXT + "JSONSchemaPropsOrArray"] = {"anyOf": [ref, {"type": "array", "items": ref}]}
    schemas[APIEXT + "JSONSchemaPropsOrBool"] = {"anyOf": [{"type": "boolean"}, ref]}
    schemas[APIEXT + "JSONSchemaPropsOrStringArray"] = {"anyOf": [ref, {"type": "array", "items": {"type": "string"}}]}


class KindValidators:
    """(apiVersion, kind) -> a jsonschema validator built from whichever document defines the kind."""

    def __init__(self, directory=OPENAPI_DIR):
        self._where = {}
        self._cache = {}
        self._docs = {}
        for path in sorted(directory.glob("*_openapi.json")):
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            self._docs[path.name] = doc
            for name, schema in doc["components"]["schemas"].items():
                if name.startswith("io.k8s.apimachinery.pkg.apis.meta."):
                    continue   # DeleteOptions, WatchEvent, ... carry every group's GVK
                for gvk in schema.get("x-kubernetes-group-version-kind", []):
                    api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                    self._where[(api_version, gvk["kind"])] = (path.name, name)

    def covers(self, api_version, kind):
        return (api_version, kind) in self._where

    def kinds(self):
        return sorted(self._where)

    def validator(self, api_version, kind):
        key = (api_version, kind)
        if key not in self._cache:
            doc_name, schema_name = self._where[key]
            schemas = copy.deepcopy(self._docs[doc_name]["components"]["schemas"])
            _patch_unions(schemas)
            close_objects(schemas, skip=lambda s: s.get("x-kubernetes-preserve-unknown-fields", False))
            root = {"$ref": "#/components/schemas/" + schema_name, "components": {"schemas": schemas}}
            self._cache[key] = jsonschema.Draft4Validator(root, format_checker=FORMATS)
        return self._cache[key]

    def errors(self, obj):
        """Sorted 'path: message' strings; [] when valid. The kind must be covered."""
        v = self.validator(obj.get("apiVersion"), obj.get("kind"))
        return sorted("/".join(str(p) for p in e.absolute_path) + ": " + e.message for e in v.iter_errors(obj))
