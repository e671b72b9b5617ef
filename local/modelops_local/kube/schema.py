"""The real Kubernetes OpenAPI schemas shipped (offline) by `kubernetes-validate`.

Two uses, both driven by the same schema the API server is generated from:
- JSON Schema validation of an object of a served kind;
- finding (and dropping) fields the schema does not know, as the API server's field validation does.

The definitions (1.8 MB) load once, lazily, on first use.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from functools import cached_property
from importlib import resources
from typing import Any

SCHEMA_VERSION = "1.37.0"
_SCHEMA_DIR = f"v{SCHEMA_VERSION}-local"
_DEFS_PREFIX = "#/$defs/"


class SchemaNotFoundError(LookupError):
    """kubernetes-validate ships no schema for this apiVersion/kind."""


class SchemaNode:
    """One node of the OpenAPI schema with `$ref`s resolved."""

    __slots__ = ("_defs", "raw")

    def __init__(self, defs: dict[str, Any], raw: dict[str, Any]) -> None:
        self._defs = defs
        for _ in range(32):  # $ref chains are short; the bound guards against cycles
            ref = raw.get("$ref")
            if isinstance(ref, str) and _DEFS_PREFIX in ref:
                raw = defs[ref.split(_DEFS_PREFIX, 1)[1]]
                continue
            all_of = raw.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
                raw = all_of[0]
                continue
            break
        self.raw = raw

    @property
    def has_properties(self) -> bool:
        return isinstance(self.raw.get("properties"), dict)

    @property
    def preserves_unknown_fields(self) -> bool:
        """True when any key is allowed here (free-form maps, RawExtension, preserve-unknown-fields)."""
        if self.raw.get("x-kubernetes-preserve-unknown-fields"):
            return True
        additional = self.raw.get("additionalProperties")
        return additional is True or isinstance(additional, dict) or not self.has_properties

    @property
    def is_map(self) -> bool:
        """A string-keyed map (labels, annotations, selector) rather than a struct."""
        return not self.has_properties and isinstance(self.raw.get("additionalProperties"), dict)

    def child(self, key: str) -> SchemaNode | None:
        """The schema of field `key` of this object (or of any value of this map); None if unknown."""
        properties = self.raw.get("properties")
        if isinstance(properties, dict) and isinstance(properties.get(key), dict):
            return SchemaNode(self._defs, properties[key])
        additional = self.raw.get("additionalProperties")
        if isinstance(additional, dict):
            return SchemaNode(self._defs, additional)
        return None

    def items(self) -> SchemaNode | None:
        """The schema of this array's elements; None if not an array schema."""
        items = self.raw.get("items")
        return SchemaNode(self._defs, items) if isinstance(items, dict) else None


class KubeSchema:
    """Schemas of one Kubernetes version, loaded from the kubernetes-validate package."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roots: dict[tuple[str, str], dict[str, Any]] = {}
        self._validators: dict[tuple[str, str], Any] = {}

    @cached_property
    def _dir(self) -> Any:
        return resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", _SCHEMA_DIR)

    @cached_property
    def _defs_document(self) -> dict[str, Any]:
        return dict(json.loads(self._dir.joinpath("_definitions.json").read_text()))

    @property
    def definitions(self) -> dict[str, Any]:
        return dict(self._defs_document["$defs"])

    def _root(self, api_version: str, kind: str) -> dict[str, Any]:
        key = (api_version, kind)
        with self._lock:
            if key not in self._roots:
                group_version = api_version.split("/")
                group = group_version[0].split(".")[0] if len(group_version) == 2 else ""
                version = group_version[-1]
                stem = f"{kind.lower()}-{group}-{version}" if group else f"{kind.lower()}-{version}"
                path = self._dir.joinpath(f"{stem}.json")
                if not path.is_file():
                    raise SchemaNotFoundError(
                        f"no schema for {kind} {api_version} (Kubernetes {SCHEMA_VERSION})"
                    )
                self._roots[key] = json.loads(path.read_text())
            return self._roots[key]

    def root(self, api_version: str, kind: str) -> SchemaNode:
        """The schema of a whole object of `kind`."""
        root = self._root(api_version, kind)
        return SchemaNode(self._defs_document["$defs"], root)

    def validator(self, api_version: str, kind: str) -> Any:
        """A cached jsonschema validator for `kind` (Draft 2020-12, refs resolved offline)."""
        key = (api_version, kind)
        root = self._root(api_version, kind)
        defs_document = self._defs_document
        with self._lock:
            if key not in self._validators:
                import jsonschema
                from referencing import Registry, Resource

                registry: Registry[Any] = Registry().with_resources(
                    [
                        (root["$id"], Resource.from_contents(root)),
                        (defs_document["$id"], Resource.from_contents(defs_document)),
                    ]
                )
                self._validators[key] = jsonschema.Draft202012Validator(root, registry=registry)
            return self._validators[key]


_SCHEMA: KubeSchema | None = None
_SCHEMA_LOCK = threading.Lock()


def kube_schema() -> KubeSchema:
    """The process-wide schema set (loaded lazily, shared by every store)."""
    global _SCHEMA
    with _SCHEMA_LOCK:
        if _SCHEMA is None:
            _SCHEMA = KubeSchema()
        return _SCHEMA


def format_field_path(parts: Iterable[str | int], root: SchemaNode | None) -> str:
    """`spec.template.spec.containers[0].image` / `metadata.labels[app]`: how the API names a field."""
    text = ""
    node = root
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node.items() if node is not None else None
            continue
        if node is not None and node.is_map:
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
        node = node.child(part) if node is not None else None
    return text


def prune_unknown_fields(obj: Any, node: SchemaNode | None, path: Sequence[str | int] = ()) -> list[str]:
    """Remove fields the schema does not know from `obj` (in place); return their paths.

    Under `node is None` (an unknown subtree) nothing is inspected: the caller already dropped it.
    """
    unknown: list[str] = []
    if node is None:
        return unknown
    if isinstance(obj, dict):
        for key in list(obj):
            child = node.child(key)
            if child is None and not node.preserves_unknown_fields:
                unknown.append(format_field_path([*path, key], None))
                del obj[key]
                continue
            unknown.extend(prune_unknown_fields(obj[key], child, [*path, key]))
    elif isinstance(obj, list):
        items = node.items()
        for index, element in enumerate(obj):
            unknown.extend(prune_unknown_fields(element, items, [*path, index]))
    return unknown
