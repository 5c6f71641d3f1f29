#!/usr/bin/python3
"""A Kubernetes API server DOUBLE for tests: real kubectl and Ferry's client talk to it over plain HTTP.

This is not kube-apiserver. No kube-apiserver can run on the test machines, so this program
speaks the same JSON wire protocol for the small part of the API Ferry uses, and fails loudly
on everything else. Standard library only; one process; state in memory.

Modelled (see docs/kube-double.md for details):
  - GET /version, /healthz, /readyz, /livez.
  - Discovery: /api, /apis (plain APIVersions / APIGroupList JSON; the aggregated
    apidiscovery.k8s.io Accept is not honoured, and kubectl falls back), /apis/<group>,
    /api/v1 and /apis/<group>/<version> resource lists with scope, verbs, shortNames,
    categories and `<plural>/status` subresources, including kinds defined by CRDs.
  - /openapi/v3 root and per group-version documents: operations tagged with
    x-kubernetes-group-version-kind that declare the fieldValidation parameter, so kubectl
    (default --validate=strict) sends fieldValidation=Strict and leaves checking to the server;
    component schemas for CRD kinds come from their openAPIV3Schema. /openapi/v2 is 404.
  - Resources: apiextensions.k8s.io/v1 CustomResourceDefinitions (served at once, status
    Established/NamesAccepted), the resources they define (cluster or namespaced scope),
    core v1 Namespaces and Secrets (stringData folded into base64 data), events.k8s.io/v1
    Events (required fields checked), coordination.k8s.io/v1 Leases; stored generically, with no
    type-specific validation or controllers (for applying Ferry's Helm chart): v1 ServiceAccounts
    and Services, apps/v1 Deployments, rbac.authorization.k8s.io/v1 ClusterRoles,
    ClusterRoleBindings, Roles, RoleBindings, admissionregistration.k8s.io/v1 Validating- and
    MutatingWebhookConfigurations.
  - Verbs: get, list, watch, create, update (PUT), patch, delete; `status` subresource
    (writes to /status change only status; writes to the main resource ignore status).
  - Patch types: application/merge-patch+json (RFC 7386), application/json-patch+json
    (RFC 6902), application/strategic-merge-patch+json (merge patch semantics; `$patch`,
    `$retainKeys`, `$setElementOrder/...` directives are accepted and ignored or applied
    crudely: lists are replaced, not merged by key).
  - Metadata: uid, one global increasing resourceVersion, creationTimestamp, generation
    (CRDs and custom resources: bumped only when something other than metadata and, with a
    status subresource, status changes), generateName, finalizers with deletionTimestamp.
  - Errors as Status objects: 404 NotFound, 409 AlreadyExists, 409 Conflict on a stale
    resourceVersion (PUT, PATCH with resourceVersion, delete preconditions), 422 Invalid
    (CRD schema: type, required, enum, pattern, lengths, item counts, bounds; missing
    resourceVersion on update of a custom resource), 400 BadRequest for unknown fields with
    fieldValidation=Strict (pruned with a Warning header otherwise, as kube-apiserver does).
  - CRD schema defaults are applied; unknown fields are pruned (x-kubernetes-preserve-unknown-fields honoured).
  - list: limit/continue (a consistent snapshot per continue token), labelSelector
    (=, ==, !=, in, notin, exists, !exists), fieldSelector on metadata.name/namespace.
  - watch (?watch=true|1): chunked JSON event stream ADDED/MODIFIED/DELETED, BOOKMARK when
    allowWatchBookmarks=true (every --bookmark-interval seconds), initial ADDED events for
    resourceVersion ""/"0" or sendInitialEvents=true (ended by the initial-events-end bookmark),
    replay from resourceVersion N, an ERROR event with a 410 Expired Status for versions older
    than the retained window, timeoutSeconds honoured.
  - `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` answered with meta.k8s.io/v1 Tables
    built from additionalPrinterColumns (simple JSONPath with [n], [*] and [?(@.k=="v")]
    filters; date columns rendered as ages like kube-apiserver does), also for watch events.
  - Test switches under /__double/ (see docs/kube-double.md): drop watches, expire
    resourceVersions, fail the next N matching requests, send bookmarks, read the request log,
    dump objects.

Not modelled (answered 404/405/406/415 with a Status saying "not modelled by the double",
and logged on stderr): TLS and authentication/authorization (every request is admin),
protobuf, aggregated discovery, server-side apply (application/apply-patch+yaml), managedFields,
deletecollection, scale and other subresources, admission webhooks, conversion between CRD
versions (each served version is stored as sent), CEL validation rules, OpenAPI v2, built-in
kinds other than the ones above, garbage collection by ownerReferences, namespace
finalization (a deleted namespace disappears at once with its contents), the legacy
/api/v1/watch/ paths, and resourceVersionMatch=Exact (lists always return the latest state).
"""
import argparse
import base64
import copy
import datetime
import json
import os
import queue
import random
import re
import signal
import string
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RETAINED_EVENTS = 1000          # watch events kept for replay; older versions get 410
MAX_SNAPSHOTS = 64              # paginated list snapshots kept for continue tokens
TABLE_MEDIA = "as=table"
STATUS_VERBS = ["get", "patch", "update"]
ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


class ApiError(Exception):
    """An error answered as a Kubernetes Status object."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers = details, headers or {}

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            s["details"] = self.details
        return s


def not_modelled(method, path, code=404):
    return ApiError(code, "NotFound" if code == 404 else "MethodNotAllowed",
                    f"not modelled by the double: {method} {path}")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value):
    try:
        v = value.replace("Z", "+00:00")
        return datetime.datetime.fromisoformat(v)
    except (AttributeError, ValueError):
        return None


def human_duration(seconds):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def age_of(timestamp):
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())


# ---------------------------------------------------------------- JSONPath (printer columns)

def jsonpath_tokens(expr):
    """Tokenises .a.b[0][*][?(@.type=="Ready")].c['x'] into steps."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    if expr.startswith("$"):
        expr = expr[1:]
    steps, i = [], 0
    while i < len(expr):
        c = expr[i]
        if c == ".":
            m = re.match(r"\.([A-Za-z0-9_\-/]+)", expr[i:])
            if not m:
                raise ValueError(f"bad JSONPath {expr!r}")
            steps.append(("key", m.group(1)))
            i += m.end()
        elif c == "[":
            end = expr.find("]", i)
            if expr.startswith("[?(", i):
                end = expr.find(")]", i) + 1
            inner = expr[i + 1:end]
            if inner == "*":
                steps.append(("all", None))
            elif re.fullmatch(r"-?\d+", inner):
                steps.append(("index", int(inner)))
            elif inner.startswith("?(") and inner.endswith(")"):
                m = re.fullmatch(r"\?\(@\.([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(?:\"([^\"]*)\"|'([^']*)'|(\S+))\)", inner)
                if not m:
                    raise ValueError(f"bad JSONPath filter {inner!r}")
                value = m.group(3) if m.group(3) is not None else (m.group(4) if m.group(4) is not None else m.group(5))
                steps.append(("filter", (m.group(1).split("."), m.group(2), value)))
            elif inner[:1] in "'\"":
                steps.append(("key", inner[1:-1]))
            else:
                raise ValueError(f"bad JSONPath {expr!r}")
            i = end + 1
        else:
            raise ValueError(f"bad JSONPath {expr!r}")
    return steps


def jsonpath_find(obj, expr):
    current = [obj]
    for kind, arg in jsonpath_tokens(expr):
        nxt = []
        for v in current:
            if kind == "key" and isinstance(v, dict) and arg in v:
                nxt.append(v[arg])
            elif kind == "index" and isinstance(v, list) and -len(v) <= arg < len(v):
                nxt.append(v[arg])
            elif kind == "all":
                nxt.extend(v if isinstance(v, list) else (v.values() if isinstance(v, dict) else []))
            elif kind == "filter" and isinstance(v, list):
                path, op, want = arg
                for item in v:
                    got = item
                    for p in path:
                        got = got.get(p) if isinstance(got, dict) else None
                    text = got if isinstance(got, str) else (json.dumps(got) if got is not None else None)
                    if (op == "==" and text == want) or (op == "!=" and got is not None and text != want):
                        nxt.append(item)
        current = nxt
    return current


def cell_for(column, obj):
    try:
        found = jsonpath_find(obj, column["jsonPath"])
    except ValueError:
        return None
    if not found or found[0] is None:
        return None
    value, ctype = found[0], column.get("type", "string")
    if ctype == "date":
        return age_of(value) if isinstance(value, str) else "<invalid>"
    if ctype == "string":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if ctype == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if ctype == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if ctype == "boolean":
        return value if isinstance(value, bool) else None
    return value


# ---------------------------------------------------------------- selectors

def parse_label_selector(text):
    """Returns a predicate over a labels dict; raises ApiError on syntax it does not know."""
    if not text:
        return lambda labels: True
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    preds = []
    for term in (t.strip() for t in terms):
        m = re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                preds.append(lambda l, k=key, vs=vals: l.get(k) in vs)
            else:
                preds.append(lambda l, k=key, vs=vals: l.get(k) not in vs)
            continue
        m = re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", term)
        if m:
            key, op, val = m.groups()
            if op == "!=":
                preds.append(lambda l, k=key, v=val: l.get(k) != v)
            else:
                preds.append(lambda l, k=key, v=val: l.get(k) == v)
            continue
        m = re.fullmatch(r"(!?)([\w./-]+)", term)
        if m:
            neg, key = m.groups()
            preds.append((lambda l, k=key: k not in l) if neg else (lambda l, k=key: k in l))
            continue
        raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(p(labels) for p in preds)


def parse_field_selector(text):
    if not text:
        return lambda obj: True
    preds = []
    for term in text.split(","):
        m = re.fullmatch(r"\s*(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(\S*)\s*", term)
        if not m:
            raise ApiError(400, "BadRequest",
                           f"field label not supported: {term} (not modelled by the double: only metadata.name and metadata.namespace)")
        field, op, val = m.groups()
        key = field.split(".")[1]
        if op == "!=":
            preds.append(lambda o, k=key, v=val: o["metadata"].get(k, "") != v)
        else:
            preds.append(lambda o, k=key, v=val: o["metadata"].get(k, "") == v)
    return lambda obj: all(p(obj) for p in preds)


# ---------------------------------------------------------------- patches

def merge_patch(target, patch, strategic=False):
    """RFC 7386; with strategic=True, strategic-merge directives are handled crudely."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if strategic and patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if strategic and patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            if key.startswith("$deleteFromPrimitiveList/"):
                field = key.split("/", 1)[1]
                if isinstance(result.get(field), list):
                    result[field] = [x for x in result[field] if x not in value]
            continue   # $retainKeys, $setElementOrder/...: ordering and retention not modelled
        if value is None:
            result.pop(key, None)
        else:
            merged = merge_patch(result.get(key), value, strategic)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def json_pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch must be a list of operations")

    def walk(parts):
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        return parent, parts[-1]

    def get(parts):
        v = doc
        for p in parts:
            v = v[int(p)] if isinstance(v, list) else v[p]
        return v

    def add(parts, value):
        nonlocal doc
        if not parts:
            doc = value
            return
        parent, last = walk(parts)
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value

    def remove(parts):
        parent, last = walk(parts)
        if isinstance(parent, list):
            return parent.pop(int(last))
        return parent.pop(last)

    for op in ops:
        try:
            name, parts = op["op"], json_pointer(op["path"])
            if name == "add":
                add(parts, copy.deepcopy(op["value"]))
            elif name == "remove":
                remove(parts)
            elif name == "replace":
                remove(parts)
                add(parts, copy.deepcopy(op["value"]))
            elif name == "move":
                value = remove(json_pointer(op["from"]))
                add(parts, value)
            elif name == "copy":
                add(parts, copy.deepcopy(get(json_pointer(op["from"]))))
            elif name == "test":
                if get(parts) != op["value"]:
                    raise ApiError(422, "Invalid", f"testing value {op['path']} failed")
            else:
                raise ApiError(400, "BadRequest", f"unknown json patch op {name!r}")
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: json patch {op!r}: {e}")
    return doc


# ---------------------------------------------------------------- CRD structural schema

class SchemaChecker:
    """Validates, defaults and prunes a custom resource against its openAPIV3Schema."""

    TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}

    def __init__(self, schema):
        self.schema = schema or {}
        self.errors, self.unknown = [], []

    def run(self, obj):
        self.walk(obj, self.schema, "", top=True)
        return obj

    def err(self, path, reason, message):
        self.errors.append({"reason": reason, "message": message, "field": path})

    def walk(self, value, schema, path, top=False):
        if value is None:
            if not schema.get("nullable"):
                self.err(path, "FieldValueTypeInvalid", f"{path}: Invalid value: \"null\": {path} in body must be of type {schema.get('type', 'object')}: \"null\"")
            return
        typ = schema.get("type")
        if schema.get("x-kubernetes-int-or-string"):
            if not isinstance(value, (int, str)) or isinstance(value, bool):
                self.err(path, "FieldValueTypeInvalid", f"{path}: Invalid value: {json.dumps(value)}: {path} in body must be of type int-or-string")
            return
        if typ:
            ok = (isinstance(value, int) and not isinstance(value, bool)) if typ == "integer" else \
                (isinstance(value, (int, float)) and not isinstance(value, bool)) if typ == "number" else \
                isinstance(value, self.TYPES.get(typ, object))
            if not ok:
                got = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(type(value), "?")
                self.err(path, "FieldValueTypeInvalid", f"{path}: Invalid value: \"{got}\": {path} in body must be of type {typ}: \"{got}\"")
                return
        if "enum" in schema and value not in schema["enum"]:
            allowed = ", ".join(json.dumps(e) for e in schema["enum"])
            self.err(path, "FieldValueNotSupported", f"{path}: Unsupported value: {json.dumps(value)}: supported values: {allowed}")
        if isinstance(value, str):
            if "pattern" in schema and not re.search(schema["pattern"], value):
                self.err(path, "FieldValueInvalid", f"{path}: Invalid value: {json.dumps(value)}: {path} in body should match '{schema['pattern']}'")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                self.err(path, "FieldValueTooLong", f"{path}: Too long: may not be longer than {schema['maxLength']}")
            if "minLength" in schema and len(value) < schema["minLength"]:
                self.err(path, "FieldValueInvalid", f"{path}: Invalid value: {json.dumps(value)}: {path} in body should be at least {schema['minLength']} chars long")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                self.err(path, "FieldValueInvalid", f"{path}: Invalid value: {value}: {path} in body should be greater than or equal to {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                self.err(path, "FieldValueInvalid", f"{path}: Invalid value: {value}: {path} in body should be less than or equal to {schema['maximum']}")
        if isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                self.err(path, "FieldValueTooMany", f"{path}: Too many: {len(value)}: must have at most {schema['maxItems']} items")
            if "minItems" in schema and len(value) < schema["minItems"]:
                self.err(path, "FieldValueInvalid", f"{path}: Invalid value: {len(value)}: {path} in body should have at least {schema['minItems']} items")
            items = schema.get("items") or {}
            for i, item in enumerate(value):
                self.walk(item, items, f"{path}[{i}]")
        if isinstance(value, dict):
            props = schema.get("properties")
            addl = schema.get("additionalProperties")
            preserve = schema.get("x-kubernetes-preserve-unknown-fields")
            for name, sub in (props or {}).items():
                if name not in value and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
            for req in schema.get("required", []):
                if req not in value:
                    self.err(f"{path}.{req}".lstrip("."), "FieldValueRequired", f"{path}.{req}: Required value".lstrip("."))
            for key in list(value.keys()):
                sub_path = f"{path}.{key}" if path else key
                if top and key in ("apiVersion", "kind", "metadata"):
                    continue
                if props is not None and key in props:
                    self.walk(value[key], props[key], sub_path)
                elif isinstance(addl, dict):
                    self.walk(value[key], addl, sub_path)
                elif addl is True or preserve or (props is None and addl is None and not typ and not top):
                    continue
                else:
                    self.unknown.append(sub_path)
                    del value[key]


# ---------------------------------------------------------------- resource types

class ResourceType:
    def __init__(self, group, version, plural, kind, namespaced, singular=None, short_names=(),
                 categories=(), has_status=False, columns=None, schema=None, crd=None, builtin=True,
                 generation=False, unconditional_update=True, list_kind=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.singular = namespaced, singular or kind.lower()
        self.short_names, self.categories = list(short_names), list(categories)
        self.has_status, self.columns, self.schema, self.crd = has_status, columns, schema, crd
        self.builtin, self.generation, self.unconditional_update = builtin, generation, unconditional_update
        self.list_kind = list_kind or kind + "List"

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self):
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def store_key(self):
        return (self.group, self.plural)

    def discovery(self):
        entries = [{"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
                    "kind": self.kind, "verbs": ALL_VERBS}]
        if self.short_names:
            entries[0]["shortNames"] = self.short_names
        if self.categories:
            entries[0]["categories"] = self.categories
        if self.has_status:
            entries.append({"name": f"{self.plural}/status", "singularName": "", "namespaced": self.namespaced,
                            "kind": self.kind, "verbs": STATUS_VERBS})
        return entries


def age_column():
    return {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def builtin_types():
    return [
        ResourceType("", "v1", "namespaces", "Namespace", False, short_names=["ns"], has_status=True,
                     columns=[{"name": "Status", "type": "string", "jsonPath": ".status.phase"}, age_column()]),
        ResourceType("", "v1", "secrets", "Secret", True,
                     columns=[{"name": "Type", "type": "string", "jsonPath": ".type"},
                              {"name": "Data", "type": "integer", "jsonPath": "$data_count"}, age_column()]),
        ResourceType("", "v1", "configmaps", "ConfigMap", True, short_names=["cm"],
                     columns=[{"name": "Data", "type": "integer", "jsonPath": "$data_count"}, age_column()]),
        ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
                     short_names=["crd", "crds"], categories=["api-extensions"], has_status=True,
                     columns=[{"name": "Created At", "type": "string", "format": "date-time",
                               "jsonPath": ".metadata.creationTimestamp"}],
                     generation=True, unconditional_update=False),
        ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True,
                     columns=[{"name": "Holder", "type": "string", "jsonPath": ".spec.holderIdentity"}, age_column()]),
        ResourceType("events.k8s.io", "v1", "events", "Event", True, short_names=["ev"],
                     columns=[{"name": "Type", "type": "string", "jsonPath": ".type"},
                              {"name": "Reason", "type": "string", "jsonPath": ".reason"},
                              {"name": "Object", "type": "string", "jsonPath": "$regarding"},
                              {"name": "Message", "type": "string", "jsonPath": ".note"}, age_column()]),
    ] + generic_builtin_types()


def generic_builtin_types():
    """Kinds a Helm install of Ferry creates, stored generically: no defaulting, no type-specific
    validation, no controllers (a Deployment never gets pods, a Service no clusterIP)."""
    return [
        ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=["sa"],
                     columns=[age_column()]),
        ResourceType("", "v1", "services", "Service", True, short_names=["svc"], has_status=True,
                     columns=[{"name": "Type", "type": "string", "jsonPath": ".spec.type"}, age_column()]),
        ResourceType("apps", "v1", "deployments", "Deployment", True, short_names=["deploy"], has_status=True,
                     categories=["all"], generation=True,
                     columns=[{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}, age_column()]),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, columns=[age_column()]),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False,
                     columns=[{"name": "Role", "type": "string", "jsonPath": ".roleRef.name"}, age_column()]),
        ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, columns=[age_column()]),
        ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True,
                     columns=[{"name": "Role", "type": "string", "jsonPath": ".roleRef.name"}, age_column()]),
        ResourceType("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
                     "ValidatingWebhookConfiguration", False, columns=[age_column()], generation=True),
        ResourceType("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
                     "MutatingWebhookConfiguration", False, columns=[age_column()], generation=True),
    ]


# ---------------------------------------------------------------- the store

class Watcher:
    def __init__(self, rtype, namespace, label_pred, field_pred, bookmarks, as_table):
        self.rtype, self.namespace = rtype, namespace
        self.label_pred, self.field_pred = label_pred, field_pred
        self.bookmarks, self.as_table = bookmarks, as_table
        self.queue = queue.Queue()

    def matches(self, obj):
        if obj is None:
            return False
        md = obj["metadata"]
        if self.namespace is not None and md.get("namespace") != self.namespace:
            return False
        return self.label_pred(md.get("labels") or {}) and self.field_pred(obj)

    def offer(self, rtype, old, new, kind):
        """Translates one store event into what this watch sees (selectors move objects in and out)."""
        if rtype.store_key != self.rtype.store_key:
            return
        if kind == "DELETED":
            if self.matches(old):
                self.queue.put(("DELETED", new))
            return
        was, now = self.matches(old), self.matches(new)
        if was and now:
            self.queue.put(("MODIFIED", new))
        elif now:
            self.queue.put(("ADDED", new))
        elif was:
            self.queue.put(("DELETED", new))


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.rv = 1
        self.floor = 0                      # watches from versions below this get 410
        self.types = {}                     # (group, version, plural) -> ResourceType
        self.objects = {}                   # (group, plural) -> {(ns, name): obj}
        self.events = []                    # (rv, rtype, old, new, kind), oldest first
        self.watchers = set()
        self.snapshots = {}                 # token id -> (rv, [objects])
        for t in builtin_types():
            self.add_type(t)
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.commit_create(self.type_for("", "v1", "namespaces"), self.new_namespace(ns))

    @staticmethod
    def new_namespace(name):
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}

    def add_type(self, t):
        self.types[(t.group, t.version, t.plural)] = t
        self.objects.setdefault(t.store_key, {})

    def type_for(self, group, version, plural):
        return self.types.get((group, version, plural))

    def groups(self):
        out = {}
        for (g, v, _p) in self.types:
            if g:
                out.setdefault(g, [])
                if v not in out[g]:
                    out[g].append(v)
        return out

    def next_rv(self):
        self.rv += 1
        return self.rv

    def record(self, rtype, old, new, kind):
        rv = int((new or old)["metadata"]["resourceVersion"])
        self.events.append((rv, rtype, copy.deepcopy(old), copy.deepcopy(new), kind))
        if len(self.events) > RETAINED_EVENTS:
            dropped = self.events[: len(self.events) - RETAINED_EVENTS]
            del self.events[: len(self.events) - RETAINED_EVENTS]
            self.floor = max(self.floor, dropped[-1][0])
        for w in list(self.watchers):
            w.offer(rtype, old, copy.deepcopy(new), kind)

    def commit_create(self, rtype, obj):
        md = obj["metadata"]
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        md["resourceVersion"] = str(self.next_rv())
        if rtype.generation:
            md["generation"] = 1
        if rtype.kind == "Namespace":
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        self.objects[rtype.store_key][(md.get("namespace", ""), md["name"])] = obj
        self.record(rtype, None, obj, "ADDED")
        return obj

    def commit_update(self, rtype, old, new):
        new["metadata"]["resourceVersion"] = str(self.next_rv())
        md = new["metadata"]
        self.objects[rtype.store_key][(md.get("namespace", ""), md["name"])] = new
        self.record(rtype, old, new, "MODIFIED")
        return new

    def commit_delete(self, rtype, old):
        md = old["metadata"]
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self.next_rv())
        del self.objects[rtype.store_key][(md.get("namespace", ""), md["name"])]
        self.record(rtype, old, gone, "DELETED")
        return gone

    def expire(self, floor=None):
        """Makes every resourceVersion below floor (default: all seen so far) too old to watch from."""
        with self.lock:
            if floor is None:
                floor = self.next_rv()     # an invisible write: every version a client holds is now old
            self.floor = max(self.floor, floor)
            self.events = [e for e in self.events if e[0] >= self.floor]
            self.snapshots.clear()
            return self.floor


# ---------------------------------------------------------------- the server

class Double:
    def __init__(self, bookmark_interval):
        self.store = Store()
        self.bookmark_interval = bookmark_interval
        self.requests = []
        self.failures = []          # dicts: method, pathPrefix/pathRegex, status, count, reason, message
        self.req_lock = threading.Lock()
        self.port = None

    # ------------------------------------------------------------ test switches
    def control(self, method, path, query, body):
        if method == "GET" and path == "/__double/requests":
            with self.req_lock:
                return 200, list(self.requests)
        if method == "DELETE" and path == "/__double/requests":
            with self.req_lock:
                self.requests.clear()
            return 200, {"cleared": True}
        if method == "POST" and path == "/__double/drop-watches":
            mode = (body or {}).get("mode", "close")
            with self.store.lock:
                watchers = list(self.store.watchers)
                self.store.watchers.clear()
            for w in watchers:
                w.queue.put(("__drop__", mode))
            return 200, {"dropped": len(watchers)}
        if method == "POST" and path == "/__double/expire":
            floor = (body or {}).get("resourceVersion")
            return 200, {"floor": str(self.store.expire(int(floor) if floor else None))}
        if method == "POST" and path == "/__double/fail":
            rule = dict(body or {})
            if "status" not in rule or not ("pathPrefix" in rule or "pathRegex" in rule):
                raise ApiError(400, "BadRequest", "fail needs status and pathPrefix or pathRegex")
            rule.setdefault("count", 1)
            with self.req_lock:
                self.failures.append(rule)
            return 200, rule
        if method == "DELETE" and path == "/__double/fail":
            with self.req_lock:
                self.failures.clear()
            return 200, {"cleared": True}
        if method == "POST" and path == "/__double/bookmark":
            with self.store.lock:
                watchers = list(self.store.watchers)
            for w in watchers:
                w.queue.put(("__bookmark__", None))
            return 200, {"watches": len(watchers)}
        if method == "GET" and path == "/__double/watches":
            with self.store.lock:
                return 200, [{"resource": w.rtype.qualified, "namespace": w.namespace} for w in self.store.watchers]
        if method == "GET" and path == "/__double/objects":
            with self.store.lock:
                return 200, {"resourceVersion": str(self.store.rv), "floor": str(self.store.floor),
                             "objects": [o for objs in self.store.objects.values() for o in objs.values()]}
        raise not_modelled(method, path)

    def injected_failure(self, method, path):
        with self.req_lock:
            for rule in self.failures:
                if rule.get("method") and rule["method"].upper() != method:
                    continue
                if "pathPrefix" in rule and not path.startswith(rule["pathPrefix"]):
                    continue
                if "pathRegex" in rule and not re.search(rule["pathRegex"], path):
                    continue
                rule["count"] -= 1
                if rule["count"] <= 0:
                    self.failures.remove(rule)
                code = int(rule["status"])
                headers = {}
                if rule.get("retryAfterSeconds") is not None:
                    headers["Retry-After"] = str(rule["retryAfterSeconds"])
                reasons = {409: "Conflict", 410: "Expired", 429: "TooManyRequests", 500: "InternalError",
                           503: "ServiceUnavailable", 504: "Timeout", 403: "Forbidden", 401: "Unauthorized"}
                return ApiError(code, rule.get("reason", reasons.get(code, "InternalError")),
                                rule.get("message", f"injected failure by the double ({code})"), headers=headers)
        return None

    # ------------------------------------------------------------ discovery and openapi
    def discovery(self, path):
        s = self.store
        with s.lock:
            if path == "/version":
                return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-ferry-double",
                        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                        "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
                        "platform": "linux/amd64"}
            if path == "/api":
                return {"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]}
            if path == "/apis":
                return {"kind": "APIGroupList", "apiVersion": "v1",
                        "groups": [self.group_doc(g, vs) for g, vs in sorted(s.groups().items())]}
            if path == "/api/v1":
                return self.resource_list("", "v1")
            parts = path.strip("/").split("/")
            if len(parts) == 2 and parts[0] == "apis" and parts[1] in s.groups():
                doc = self.group_doc(parts[1], s.groups()[parts[1]])
                doc.update({"kind": "APIGroup", "apiVersion": "v1"})
                return doc
            if len(parts) == 3 and parts[0] == "apis" and parts[2] in s.groups().get(parts[1], []):
                return self.resource_list(parts[1], parts[2])
        return None

    @staticmethod
    def group_doc(group, versions):
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": vs, "preferredVersion": vs[0]}

    def resource_list(self, group, version):
        resources = []
        for (g, v, _p), t in sorted(self.store.types.items()):
            if g == group and v == version:
                resources.extend(t.discovery())
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    def openapi_v3(self, path):
        s = self.store
        with s.lock:
            gvs = {("", "v1")} | {(g, v) for (g, v, _p) in s.types if g}
            if path == "/openapi/v3":
                paths = {}
                for g, v in sorted(gvs):
                    key = f"apis/{g}/{v}" if g else "api/v1"
                    paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={s.rv:016X}"}
                return {"paths": paths}
            key = path[len("/openapi/v3/"):]
            parts = key.split("/")
            if parts[0] == "api" and parts[1:] == ["v1"]:
                gv = ("", "v1")
            elif parts[0] == "apis" and len(parts) == 3:
                gv = (parts[1], parts[2])
            else:
                return None
            if gv not in gvs:
                return None
            return self.openapi_group_doc(*gv)

    def openapi_group_doc(self, group, version):
        paths, schemas = {}, {}
        param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                 "description": "Strict, Warn or Ignore: what the server does with unknown or duplicate fields."}
        for (g, v, _p), t in sorted(self.store.types.items()):
            if (g, v) != (group, version):
                continue
            gvk = {"group": g, "version": v, "kind": t.kind}
            prefix = f"/apis/{g}/{v}" if g else "/api/v1"
            ns = "/namespaces/{namespace}" if t.namespaced else ""
            name = f"{'io.ferry.double' if not g else '.'.join(reversed(g.split('.')))}.{v}.{t.kind}"
            ref = {"$ref": f"#/components/schemas/{name}"}
            body = {"content": {"application/json": {"schema": ref}}, "required": True}
            op = {"x-kubernetes-group-version-kind": gvk, "parameters": [param],
                  "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}}
            paths[f"{prefix}{ns}/{t.plural}/{{name}}"] = {
                "get": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "get",
                        "responses": op["responses"]},
                "put": dict(op, **{"x-kubernetes-action": "put", "requestBody": body}),
                "patch": dict(op, **{"x-kubernetes-action": "patch",
                                     "requestBody": {"content": {"application/merge-patch+json": {"schema": {"type": "object"}}}}}),
            }
            paths[f"{prefix}{ns}/{t.plural}"] = {
                "post": dict(op, **{"x-kubernetes-action": "post", "requestBody": body})}
            schema = copy.deepcopy(t.schema) if t.schema else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[name] = schema
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes (ferry double)", "version": "v1.32.0"},
                "paths": paths, "components": {"schemas": schemas}}

    # ------------------------------------------------------------ resource paths
    def route(self, path):
        """Returns (rtype, namespace, name, subresource) or raises ApiError."""
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        s = self.store
        if parts[0] == "api" and len(parts) >= 3 and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            t = s.type_for(group, version, rest[2])
            if t is not None and t.namespaced:
                namespace, rest = rest[1], rest[2:]
        t = s.type_for(group, version, rest[0])
        if t is None or len(rest) > 3:
            return None
        if t.namespaced and namespace is None and len(rest) > 1:
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not (sub == "status" and t.has_status):
            return None
        return t, namespace, name, sub

    def not_found(self, t, name):
        return ApiError(404, "NotFound", f"{t.qualified} \"{name}\" not found",
                        {"name": name, "group": t.group, "kind": t.plural})

    def key_of(self, t, namespace, name):
        return (namespace or "", name)

    # ------------------------------------------------------------ read
    def get(self, t, namespace, name):
        with self.store.lock:
            obj = self.store.objects[t.store_key].get(self.key_of(t, namespace, name))
            if obj is None:
                raise self.not_found(t, name)
            return copy.deepcopy(obj)

    def list(self, t, namespace, query):
        label_pred = parse_label_selector(query.get("labelSelector", ""))
        field_pred = parse_field_selector(query.get("fieldSelector", ""))
        limit = int(query.get("limit", "0") or 0)
        s = self.store
        with s.lock:
            token = query.get("continue")
            if token:
                try:
                    decoded = json.loads(base64.b64decode(token))
                    snap_id, offset = decoded["id"], int(decoded["start"])
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "BadRequest", "continue key is not valid: invalid continue token")
                if snap_id not in s.snapshots:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without the continue parameter.")
                rv, items = s.snapshots[snap_id]
            else:
                rv = s.rv
                items = sorted((o for o in s.objects[t.store_key].values()
                                if (namespace is None or o["metadata"].get("namespace") == namespace)
                                and label_pred(o["metadata"].get("labels") or {}) and field_pred(o)),
                               key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
                items = copy.deepcopy(items)
                offset, snap_id = 0, None
            meta = {"resourceVersion": str(rv)}
            page = items[offset:offset + limit] if limit > 0 else items[offset:]
            if limit > 0 and offset + limit < len(items):
                if snap_id is None:
                    snap_id = uuid.uuid4().hex
                    s.snapshots[snap_id] = (rv, items)
                    while len(s.snapshots) > MAX_SNAPSHOTS:
                        s.snapshots.pop(next(iter(s.snapshots)))
                meta["continue"] = base64.b64encode(json.dumps(
                    {"v": "meta.k8s.io/v1", "rv": rv, "id": snap_id, "start": offset + limit}).encode()).decode()
                meta["remainingItemCount"] = len(items) - offset - limit
        if t.builtin:
            page = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in page]
        return {"apiVersion": t.api_version, "kind": t.list_kind, "metadata": meta, "items": page}

    # ------------------------------------------------------------ write helpers
    def check_body(self, t, namespace, body, name=None):
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was not a JSON object")
        if body.get("kind") != t.kind or body.get("apiVersion") != t.api_version:
            raise ApiError(400, "BadRequest",
                           f"the body of the request was in an unknown format: expected apiVersion {t.api_version} "
                           f"kind {t.kind}, got apiVersion {body.get('apiVersion')!r} kind {body.get('kind')!r}")
        md = body.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if t.namespaced:
            if md.get("namespace") and md["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        if name is not None and md.get("name") and md["name"] != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
        if name is not None:
            md["name"] = name
        return body

    def invalid(self, t, name, causes):
        msg = "; ".join(c["message"] for c in causes)
        if len(causes) > 1:
            msg = "[" + ", ".join(c["message"] for c in causes) + "]"
        group = f".{t.group}" if t.group else ""
        return ApiError(422, "Invalid", f"{t.kind}{group} \"{name}\" is invalid: {msg}",
                        {"name": name, "group": t.group, "kind": t.kind, "causes": causes})

    def validate(self, t, obj, field_validation, warnings):
        """Type-specific validation, CRD schema defaulting/pruning/validation; raises ApiError."""
        md, name = obj["metadata"], obj["metadata"].get("name", "")
        causes = []
        if not name:
            causes.append({"reason": "FieldValueRequired", "message": "metadata.name: Required value: name or generateName is required", "field": "metadata.name"})
        elif not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
            causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                           "message": f"metadata.name: Invalid value: {json.dumps(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"})
        for field in ("labels", "annotations"):
            if md.get(field) is not None and not (isinstance(md[field], dict) and all(isinstance(v, str) for v in md[field].values())):
                causes.append({"reason": "FieldValueInvalid", "field": f"metadata.{field}",
                               "message": f"metadata.{field}: Invalid value: values must be strings"})
        if t.crd is not None and t.schema is not None:
            checker = SchemaChecker(t.schema)
            checker.run(obj)
            causes.extend(checker.errors)
            if checker.unknown:
                if field_validation == "Strict":
                    raise ApiError(400, "BadRequest",
                                   f"{t.kind} in version \"{t.version}\" cannot be handled as a {t.kind}: strict decoding error: "
                                   + ", ".join(f"unknown field \"{u}\"" for u in checker.unknown))
                if field_validation != "Ignore":
                    warnings.extend(f"unknown field \"{u}\"" for u in checker.unknown)
        if t.kind == "CustomResourceDefinition":
            causes.extend(self.validate_crd(obj))
        if t.kind == "Event":
            for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
                if not obj.get(f):
                    causes.append({"reason": "FieldValueRequired", "message": f"{f}: Required value", "field": f})
            if obj.get("type") not in ("Normal", "Warning"):
                causes.append({"reason": "FieldValueNotSupported", "field": "type",
                               "message": f"type: Unsupported value: {json.dumps(obj.get('type', ''))}: supported values: \"Normal\", \"Warning\""})
            if len(obj.get("note", "") or "") > 1024:
                causes.append({"reason": "FieldValueTooLong", "field": "note", "message": "note: Too long: may not be longer than 1024"})
        if t.kind == "Lease":
            d = (obj.get("spec") or {}).get("leaseDurationSeconds")
            if d is not None and (not isinstance(d, int) or d <= 0):
                causes.append({"reason": "FieldValueInvalid", "field": "spec.leaseDurationSeconds",
                               "message": f"spec.leaseDurationSeconds: Invalid value: {d}: must be greater than 0"})
        if t.kind == "ConfigMap":
            size = 0
            for field in ("data", "binaryData"):
                for k, v in (obj.get(field) or {}).items():
                    if not isinstance(v, str):
                        raise ApiError(400, "BadRequest", f"ConfigMap in version \"v1\" cannot be handled as a ConfigMap: "
                                                          f"{field}[{k!r}]: expected a string")
                    size += len(k) + len(v.encode())
            if size > 1048576:
                causes.append({"reason": "FieldValueTooLong", "field": "[]",
                               "message": "[]: Too long: must have at most 1048576 bytes"})
        if t.kind == "Secret":
            for k, v in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(v, validate=True)
                except (ValueError, TypeError):
                    raise ApiError(400, "BadRequest", f"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k!r}]")
        if causes:
            raise self.invalid(t, name, causes)

    def validate_crd(self, crd):
        causes = []
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural = spec.get("group", ""), names.get("plural", "")
        if crd["metadata"].get("name") != f"{plural}.{group}":
            causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                           "message": f"metadata.name: Invalid value: {json.dumps(crd['metadata'].get('name'))}: must be spec.names.plural+\".\"+spec.group"})
        if spec.get("scope") not in ("Cluster", "Namespaced"):
            causes.append({"reason": "FieldValueNotSupported", "field": "spec.scope",
                           "message": f"spec.scope: Unsupported value: {json.dumps(spec.get('scope'))}: supported values: \"Cluster\", \"Namespaced\""})
        if not names.get("kind"):
            causes.append({"reason": "FieldValueRequired", "field": "spec.names.kind", "message": "spec.names.kind: Required value"})
        versions = spec.get("versions") or []
        if not versions:
            causes.append({"reason": "FieldValueRequired", "field": "spec.versions", "message": "spec.versions: Invalid value: must have exactly one version marked as storage version"})
        elif sum(1 for v in versions if v.get("storage")) != 1:
            causes.append({"reason": "FieldValueInvalid", "field": "spec.versions", "message": "spec.versions: Invalid value: must have exactly one version marked as storage version"})
        for i, v in enumerate(versions):
            if not ((v.get("schema") or {}).get("openAPIV3Schema")):
                causes.append({"reason": "FieldValueRequired", "field": f"spec.versions[{i}].schema.openAPIV3Schema",
                               "message": f"spec.versions[{i}].schema.openAPIV3Schema: Required value: schemas are required"})
        return causes

    def crd_types(self, crd):
        spec, names = crd["spec"], crd["spec"]["names"]
        out = []
        for v in spec.get("versions", []):
            if not v.get("served"):
                continue
            columns = [c for c in v.get("additionalPrinterColumns") or []] or [age_column()]
            out.append(ResourceType(spec["group"], v["name"], names["plural"], names["kind"],
                                    spec["scope"] == "Namespaced", singular=names.get("singular"),
                                    short_names=names.get("shortNames", []), categories=names.get("categories", []),
                                    has_status="status" in (v.get("subresources") or {}), columns=columns,
                                    schema=(v.get("schema") or {}).get("openAPIV3Schema"), crd=crd["metadata"]["name"],
                                    builtin=False, generation=True, unconditional_update=False,
                                    list_kind=names.get("listKind")))
        return out

    def sync_crd(self, crd, removed=False):
        """Serves (or stops serving) the kinds a CRD defines; instances go with a deleted CRD."""
        s = self.store
        name = crd["metadata"]["name"]
        for key, t in list(s.types.items()):
            if t.crd == name:
                del s.types[key]
        if removed:
            group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
            rtype_any = ResourceType(group, "", plural, crd["spec"]["names"]["kind"], False, builtin=False)
            for obj in list(s.objects.get((group, plural), {}).values()):
                s.commit_delete(rtype_any, obj)
            s.objects.pop((group, plural), None)
            return
        for t in self.crd_types(crd):
            s.add_type(t)

    def crd_status(self, crd):
        names = crd["spec"]["names"]
        ts = now_rfc3339()
        accepted = {k: names[k] for k in ("plural", "singular", "shortNames", "kind", "listKind", "categories") if k in names}
        accepted.setdefault("singular", names.get("kind", "").lower())
        accepted.setdefault("listKind", names.get("kind", "") + "List")
        crd["status"] = {
            "acceptedNames": accepted,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": ts},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": ts},
            ],
            "storedVersions": [v["name"] for v in crd["spec"].get("versions", []) if v.get("storage")],
        }

    def prepare_secret(self, obj):
        if obj.get("stringData"):
            data = obj.setdefault("data", {}) or {}
            for k, v in obj["stringData"].items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        obj.pop("stringData", None)
        obj.setdefault("type", "Opaque")

    def bump_generation(self, t, old, new):
        if not t.generation:
            return
        ignored = {"metadata", "status"} if (t.has_status or t.kind == "CustomResourceDefinition") else {"metadata"}
        strip = lambda o: {k: v for k, v in o.items() if k not in ignored}
        gen = old["metadata"].get("generation", 1)
        if strip(old) != strip(new) or (new["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp")):
            gen += 1
        new["metadata"]["generation"] = gen

    # ------------------------------------------------------------ write verbs
    def create(self, t, namespace, body, query, warnings):
        body = self.check_body(t, namespace, body)
        md = body["metadata"]
        if md.get("resourceVersion"):
            raise ApiError(400, "BadRequest", "resourceVersion should not be set on objects to be created")
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "managedFields"):
            md.pop(k, None)
        if t.has_status and t.crd is not None:
            body.pop("status", None)
        if t.kind == "Secret":
            self.prepare_secret(body)
        self.validate(t, body, query.get("fieldValidation"), warnings)
        s = self.store
        with s.lock:
            if t.namespaced and ("", namespace) not in s.objects[("", "namespaces")]:
                raise ApiError(404, "NotFound", f"namespaces \"{namespace}\" not found",
                               {"name": namespace, "kind": "namespaces"})
            if self.key_of(t, namespace, md["name"]) in s.objects[t.store_key]:
                raise ApiError(409, "AlreadyExists", f"{t.qualified} \"{md['name']}\" already exists",
                               {"name": md["name"], "group": t.group, "kind": t.plural})
            if t.kind == "CustomResourceDefinition":
                self.crd_status(body)
            if query.get("dryRun") == "All":
                body["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
                return 201, body
            obj = s.commit_create(t, body)
            if t.kind == "CustomResourceDefinition":
                self.sync_crd(obj)
            return 201, copy.deepcopy(obj)

    def update(self, t, namespace, name, sub, new, query, warnings, patched=False):
        """PUT, and the last step of PATCH. new is the full desired object."""
        new = self.check_body(t, namespace, new, name)
        s = self.store
        with s.lock:
            old = s.objects[t.store_key].get(self.key_of(t, namespace, name))
            if old is None:
                raise self.not_found(t, name)
            rv = new["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               f"Operation cannot be fulfilled on {t.qualified} \"{name}\": the object has been modified; "
                               "please apply your changes to the latest version and try again",
                               {"name": name, "group": t.group, "kind": t.plural})
            if not rv and not patched and not t.unconditional_update:
                raise self.invalid(t, name, [{"reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                                              "message": "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"}])
            if sub == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
            else:
                if t.has_status:
                    if "status" in old:
                        new["status"] = copy.deepcopy(old["status"])
                    else:
                        new.pop("status", None)
                md, omd = new["metadata"], old["metadata"]
                for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                    if k in omd:
                        md[k] = omd[k]
                    else:
                        md.pop(k, None)
                md.pop("managedFields", None)
                if t.kind == "Secret":
                    self.prepare_secret(new)
            if t.kind == "CustomResourceDefinition" and sub is None:
                self.crd_status(new)
                new["status"]["conditions"] = old.get("status", {}).get("conditions", new["status"]["conditions"])
            self.validate(t, new, query.get("fieldValidation"), warnings)
            self.bump_generation(t, old, new)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return 200, copy.deepcopy(old)       # no-op writes do not bump resourceVersion
            if query.get("dryRun") == "All":
                return 200, new
            if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
                return 200, s.commit_delete(t, new)
            obj = s.commit_update(t, old, new)
            if t.kind == "CustomResourceDefinition":
                self.sync_crd(obj)
            return 200, copy.deepcopy(obj)

    def patch(self, t, namespace, name, sub, content_type, raw, query, warnings):
        ctype = content_type.split(";")[0].strip()
        try:
            patch = json.loads(raw or b"null")
        except ValueError as e:
            raise ApiError(400, "BadRequest", f"error decoding patch: {e}")
        with self.store.lock:
            current = self.get(t, namespace, name)
            if ctype == "application/merge-patch+json":
                if not isinstance(patch, dict):
                    raise ApiError(400, "BadRequest", "merge patch must be a JSON object")
                new = merge_patch(current, patch)
            elif ctype == "application/strategic-merge-patch+json":
                if t.crd is not None:
                    raise ApiError(415, "UnsupportedMediaType",
                                   "strategic merge patch is not supported for custom resources (as kube-apiserver)")
                new = merge_patch(current, patch, strategic=True)
            elif ctype == "application/json-patch+json":
                new = json_patch(current, patch)
            else:
                raise ApiError(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format - accepted media types include: "
                               f"application/json-patch+json, application/merge-patch+json, "
                               f"application/strategic-merge-patch+json (not modelled by the double: {ctype})")
            if not isinstance(new, dict):
                raise ApiError(422, "Invalid", "the patched object is not a JSON object")
            return self.update(t, namespace, name, sub, new, query, warnings, patched=True)

    def delete(self, t, namespace, name, body, query):
        s = self.store
        with s.lock:
            old = s.objects[t.store_key].get(self.key_of(t, namespace, name))
            if old is None:
                raise self.not_found(t, name)
            pre = (body or {}).get("preconditions") or {}
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on {t.qualified} \"{name}\": Precondition failed: "
                               f"ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {old['metadata']['resourceVersion']}",
                               {"name": name, "group": t.group, "kind": t.plural})
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on {t.qualified} \"{name}\": Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {old['metadata']['uid']}")
            if query.get("dryRun") == "All":
                return 200, copy.deepcopy(old)
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return 200, copy.deepcopy(old)
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                self.bump_generation(t, old, new)
                return 200, copy.deepcopy(s.commit_update(t, old, new))
            if t.kind == "Namespace":
                for rt in {x.store_key: x for x in s.types.values() if x.namespaced}.values():
                    for obj in [o for o in s.objects[rt.store_key].values() if o["metadata"].get("namespace") == name]:
                        s.commit_delete(rt, obj)
            gone = s.commit_delete(t, old)
            if t.kind == "CustomResourceDefinition":
                self.sync_crd(gone, removed=True)
            return 200, gone

    # ------------------------------------------------------------ tables
    def table(self, t, objs, list_meta, include):
        columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}]
        for c in t.columns or [age_column()]:
            columns.append({"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                            "description": c.get("description", ""), "priority": c.get("priority", 0)})
        rows = []
        for o in objs:
            cells = [o["metadata"]["name"]]
            for c in t.columns or [age_column()]:
                if c["jsonPath"] == "$data_count":
                    cells.append(len(o.get("data") or {}))
                elif c["jsonPath"] == "$regarding":
                    r = o.get("regarding") or {}
                    cells.append(f"{(r.get('kind') or '').lower()}/{r.get('name', '')}")
                elif c.get("format") == "date-time":
                    cells.append(o["metadata"].get("creationTimestamp"))
                else:
                    cells.append(cell_for(c, o))
            row = {"cells": cells}
            if include == "Object":
                row["object"] = o
            elif include != "None":
                row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
            rows.append(row)
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
                "columnDefinitions": columns, "rows": rows}


def wants_table(accept):
    for part in (accept or "").split(","):
        params = [p.strip().lower() for p in part.split(";")]
        if "as=table" in params and "g=meta.k8s.io" in params and "v=v1" in params:
            return True
    return False


def accepts_json(accept):
    if not accept:
        return True
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("application/json", "*/*", "application/*", "application/json-seq"):
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm holds the body
    # until the client's delayed ACK (40 ms) on a kept-alive connection. Go's net/http (and so
    # kube-apiserver) sets TCP_NODELAY too.
    disable_nagle_algorithm = True
    server_version = "ferry-kube-apiserver-double/1"
    double = None     # set by main
    verbose = False

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write("double: " + (fmt % args) + "\n")

    # BaseHTTPRequestHandler dispatch
    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_HEAD(self):
        self.handle_any("HEAD")

    def do_OPTIONS(self):
        self.handle_any("OPTIONS")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, code, obj, headers=None):
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self, method):
        d = self.double
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        try:
            raw = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        entry = {"method": method, "path": path, "query": query,
                 "accept": self.headers.get("Accept", ""), "contentType": self.headers.get("Content-Type", ""),
                 "userAgent": self.headers.get("User-Agent", ""), "time": time.time(),
                 "clientPort": self.client_address[1]}
        if not path.startswith("/__double/"):
            with d.req_lock:
                d.requests.append(entry)
        status, warnings = 0, []
        try:
            if path.startswith("/__double/"):
                body = json.loads(raw) if raw else None
                code, obj = d.control(method, path, query, body)
                status = code
                self.send_json(code, obj)
                return
            injected = d.injected_failure(method, path)
            if injected:
                raise injected
            if path == "/openapi/v2" or path.startswith("/openapi/v2/"):
                raise not_modelled(method, path)
            if not accepts_json(self.headers.get("Accept")):
                raise ApiError(406, "NotAcceptable", f"only application/json is served (not modelled by the double: Accept {self.headers.get('Accept')} for {method} {path})")
            if method == "GET" and path in ("/healthz", "/readyz", "/livez"):
                data = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(data)
                status = 200
                return
            if method == "GET" and (path in ("/version", "/api", "/apis", "/api/v1") or path.startswith("/apis/")):
                doc = d.discovery(path)
                if doc is not None:
                    status = 200
                    self.send_json(200, doc)
                    return
            if method == "GET" and (path == "/openapi/v3" or path.startswith("/openapi/v3/")):
                doc = d.openapi_v3(path)
                if doc is None:
                    raise not_modelled(method, path)
                status = 200
                self.send_json(200, doc)
                return
            route = d.route(path)
            if route is None:
                raise not_modelled(method, path)
            t, namespace, name, sub = route
            status = self.resource(method, t, namespace, name, sub, query, raw, warnings)
        except ApiError as e:
            status = e.code
            if "not modelled" in e.message:
                sys.stderr.write(f"double: {e.message} (query {url.query!r})\n")
                sys.stderr.flush()
            try:
                self.send_json(e.code, e.status(), e.headers)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug in the double must be loud, not a hung client
            status = 500
            sys.stderr.write(f"double: internal error on {method} {path}: {e!r}\n")
            import traceback
            traceback.print_exc(file=sys.stderr)
            try:
                self.send_json(500, ApiError(500, "InternalError", f"double internal error: {e!r}").status())
            except OSError:
                pass
        finally:
            entry["status"] = status

    def resource(self, method, t, namespace, name, sub, query, raw, warnings):
        d = self.double
        as_table = wants_table(self.headers.get("Accept"))
        hdrs = lambda: {"Warning": ", ".join('299 - "%s"' % w.replace('"', '\\"') for w in warnings)} if warnings else {}
        if t.namespaced and namespace is None and method != "GET":
            raise not_modelled(method, self.path.split("?")[0], 405)

        def body_json():
            try:
                return json.loads(raw) if raw else None
            except ValueError as e:
                raise ApiError(400, "BadRequest", f"error decoding request body: {e}")

        if method == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                return self.watch(t, namespace, query, as_table)
            result = d.list(t, namespace, query)
            if as_table:
                result = d.table(t, result["items"], result["metadata"], query.get("includeObject", "Metadata"))
            self.send_json(200, result)
            return 200
        if method == "GET":
            obj = d.get(t, namespace, name)
            if as_table:
                obj = d.table(t, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, query.get("includeObject", "Metadata"))
            self.send_json(200, obj)
            return 200
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if method == "POST" and name is None:
            if ctype != "application/json":
                raise ApiError(415, "UnsupportedMediaType", f"not modelled by the double: Content-Type {ctype} for POST")
            code, obj = d.create(t, namespace, body_json(), query, warnings)
            self.send_json(code, obj, hdrs())
            return code
        if method == "PUT" and name is not None:
            if ctype != "application/json":
                raise ApiError(415, "UnsupportedMediaType", f"not modelled by the double: Content-Type {ctype} for PUT")
            code, obj = d.update(t, namespace, name, sub, body_json(), query, warnings)
            self.send_json(code, obj, hdrs())
            return code
        if method == "PATCH" and name is not None:
            code, obj = d.patch(t, namespace, name, sub, self.headers.get("Content-Type") or "", raw, query, warnings)
            self.send_json(code, obj, hdrs())
            return code
        if method == "DELETE" and name is not None and sub is None:
            code, obj = d.delete(t, namespace, name, body_json(), query)
            self.send_json(code, obj)
            return code
        raise not_modelled(method, self.path.split("?")[0], 405)

    # ------------------------------------------------------------ watch
    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def watch(self, t, namespace, query, as_table):
        d, s = self.double, self.double.store
        label_pred = parse_label_selector(query.get("labelSelector", ""))
        field_pred = parse_field_selector(query.get("fieldSelector", ""))
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or 0) or None
        rv_text = query.get("resourceVersion", "")
        initial = query.get("sendInitialEvents") in ("true", "1")
        if initial and not bookmarks:
            raise ApiError(422, "Invalid", "sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true")
        w = Watcher(t, namespace, lambda labels: label_pred(labels), field_pred, bookmarks, as_table)
        pending, expired = [], None
        with s.lock:
            if rv_text in ("", "0") or initial:
                for obj in sorted(s.objects[t.store_key].values(), key=lambda o: int(o["metadata"]["resourceVersion"])):
                    if w.matches(obj):
                        pending.append(("ADDED", copy.deepcopy(obj)))
                if initial:
                    pending.append(("__initial_end__", str(s.rv)))
            else:
                try:
                    rv = int(rv_text)
                except ValueError:
                    raise ApiError(400, "BadRequest", f"invalid resource version {rv_text!r}")
                oldest = s.events[0][0] if s.events else s.rv + 1
                if rv < s.floor or (rv < oldest - 1 and rv < s.rv):
                    expired = f"too old resource version: {rv} ({max(s.floor, oldest - 1)})"
                else:
                    for (erv, ert, old, new, kind) in s.events:
                        if erv > rv:
                            w.offer(ert, old, new, kind)
            if expired is None:
                s.watchers.add(w)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if expired is not None:
            st = ApiError(410, "Expired", expired).status()
            self.write_chunk(json.dumps({"type": "ERROR", "object": st}).encode() + b"\n")
            self.write_chunk(b"")
            return 200
        deadline = time.monotonic() + timeout if timeout else None
        mode = "close"
        try:
            for kind, obj in pending:
                if kind == "__initial_end__":
                    self.send_event("BOOKMARK", self.bookmark_obj(t, obj, initial_end=True), t, as_table)
                else:
                    self.send_event(kind, obj, t, as_table)
            next_bookmark = time.monotonic() + d.bookmark_interval
            while True:
                nowm = time.monotonic()
                if deadline and nowm >= deadline:
                    break
                wait = min([x for x in (deadline, next_bookmark if bookmarks else None) if x] + [nowm + 1.0]) - nowm
                try:
                    kind, obj = w.queue.get(timeout=max(0.01, wait))
                except queue.Empty:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        kind, obj = "__bookmark__", None
                    else:
                        continue
                if kind == "__drop__":
                    mode = obj
                    break
                if kind == "__bookmark__":
                    if not bookmarks:
                        continue
                    with s.lock:
                        if not w.queue.empty():
                            continue
                        rv_now = str(s.rv)
                    self.send_event("BOOKMARK", self.bookmark_obj(t, rv_now), t, as_table)
                    next_bookmark = time.monotonic() + d.bookmark_interval
                    continue
                self.send_event(kind, obj, t, as_table)
            if mode == "abort":
                import socket
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            else:
                self.write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            with s.lock:
                s.watchers.discard(w)
        return 200

    @staticmethod
    def bookmark_obj(t, rv, initial_end=False):
        md = {"resourceVersion": rv}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": t.kind, "apiVersion": t.api_version, "metadata": md}

    def send_event(self, kind, obj, t, as_table):
        if as_table and kind != "BOOKMARK":
            obj = self.double.table(t, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, "Metadata")
        self.write_chunk(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")


def write_kubeconfig(path, port):
    server = f"http://127.0.0.1:{port}"
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "double",
           "clusters": [{"name": "double", "cluster": {"server": server}}],
           "users": [{"name": "double", "user": {"token": "double-token"}}],
           "contexts": [{"name": "double", "context": {"cluster": "double", "user": "double", "namespace": "default"}}],
           "preferences": {}}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)     # JSON is YAML: kubectl and Ferry read it as a kubeconfig
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="Kubernetes API server double for tests (plain HTTP, loopback).")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    ap.add_argument("--kubeconfig-out", help="write a kubeconfig pointing at the double to this file")
    ap.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds between BOOKMARK events")
    ap.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args()

    double = Double(args.bookmark_interval)
    Handler.double, Handler.verbose = double, args.verbose
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    double.port = server.server_address[1]
    if args.kubeconfig_out:
        write_kubeconfig(args.kubeconfig_out, double.port)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    print(f"LISTENING 127.0.0.1:{double.port}", flush=True)
    while not stop.wait(0.5):
        pass
    with double.store.lock:
        watchers = list(double.store.watchers)
    for w in watchers:
        w.queue.put(("__drop__", "close"))
    server.shutdown()
    server.server_close()
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
