"""In-memory object storage with the API server's semantics, usable with or without HTTP.

What a client can rely on (the same as on a cluster):
- `metadata.resourceVersion` increases with every write (one counter per store); `uid`,
  `creationTimestamp` are set on create; `generation` starts at 1 and bumps only when a
  Deployment's/ReplicaSet's `spec` changes. A write that changes nothing changes nothing.
- A write carrying a stale `metadata.resourceVersion` is a 409 Conflict.
- Writes to the main resource keep `status`; writes to `status` change only `status`; the
  `scale` subresource reads and writes `spec.replicas` as an `autoscaling/v1` Scale.
- Objects are validated (OpenAPI schema + the server's rules) and defaulted; fields the schema does
  not know are dropped with a warning (`Warn`, the default), rejected (`Strict`) or dropped
  silently (`Ignore`).
- Deletion honours `preconditions` and pod grace periods (a pod bound to a node waits with a
  deletionTimestamp until its kubelet deletes it with grace 0). Nothing in modelops uses
  finalizers, owner-reference cascades or namespace deletion, so none is implemented:
  `metadata.finalizers` is stored but holds nothing, deleting an owner leaves its dependents,
  and deleting a namespace is a 405.
- `subscribe` hands every committed change to in-process callbacks (the controller and the
  Service proxies react through it). There is no watch: nothing in modelops watches.

Objects are plain JSON-shaped dicts. Everything handed out is a copy.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from modelops_local.kube import errors
from modelops_local.kube.defaults import ClusterIpAllocator, apply_defaults, initial_status
from modelops_local.kube.errors import BadRequestError, NotFoundError
from modelops_local.kube.jsoncopy import json_copy
from modelops_local.kube.patch import apply_patch
from modelops_local.kube.resources import (
    NAMESPACES,
    PODS,
    RESOURCE_TYPES,
    SERVICES,
    ResourceType,
    by_api_version_kind,
    resource_type,
)
from modelops_local.kube.schema import SchemaNode, SchemaNotFoundError, kube_schema, prune_unknown_fields
from modelops_local.kube.selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
    selector_from_spec,
)
from modelops_local.kube.validation import validate_object, validate_scale

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# Aliases: inside KubeStore, `list` names the method.
Objects = list[Obj]
Strings = list[str]
Changes = list["Change"]
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SYSTEM_METADATA = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    rt: ResourceType
    object: Obj  # never mutated after commit


@dataclass(frozen=True)
class DeleteResult:
    object: Obj  # the object as deleted, or as it now waits (deletionTimestamp set)
    deleted: bool  # False while a pod's grace period keeps it


@dataclass
class _Subscriber:
    callback: Callable[[str, Obj], None]
    since: int


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeStore:
    """Thread-safe Kubernetes object store (see the module docstring for the semantics)."""

    def __init__(
        self,
        *,
        namespaces: tuple[str, ...] = DEFAULT_NAMESPACES,
        clock: Callable[[], datetime] | None = None,
        validate_schema: bool = True,
    ) -> None:
        self._lock = threading.RLock()
        self._objects: dict[ResourceType, dict[tuple[str, str], Obj]] = {rt: {} for rt in RESOURCE_TYPES}
        self._rv = 0
        self._changes: deque[Change] = deque()  # committed, not yet handed to every subscriber
        self._clock = clock or (lambda: datetime.now(UTC))
        self._ips = ClusterIpAllocator()
        self._validate_schema = validate_schema
        self._subscribers: list[_Subscriber] = []
        self._dispatch_lock = threading.Lock()
        self._delivered = 0
        self._local = threading.local()
        for name in namespaces:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # --- reads ------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The store's current resourceVersion (the last write's)."""
        with self._lock:
            return str(self._rv)

    def get(
        self, kind: str | ResourceType, namespace: str | None, name: str, *, subresource: str | None = None
    ) -> Obj:
        """The object (a copy); NotFoundError (404) if absent. `subresource="scale"` gives the Scale."""
        rt = resource_type(kind)
        with self._lock:
            current = self._find(rt, namespace, name)
            if subresource == "scale":
                return self._scale_of(rt, current)
            self._check_subresource(rt, subresource)
            return json_copy(current)

    def list(
        self,
        kind: str | ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Objects:
        """Matching objects (copies) sorted by namespace and name; `namespace=None` means all."""
        rt = resource_type(kind)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt.plural)
        with self._lock:
            return [json_copy(obj) for obj in self._matching(rt, namespace, labels, fields)]

    def list_object(
        self,
        kind: str | ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> Obj:
        """A `<Kind>List` as the API returns it: items, `metadata.resourceVersion`, `continue` when limited."""
        rt = resource_type(kind)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt.plural)
        with self._lock:
            items = self._matching(rt, namespace, labels, fields)
            rv = self._rv
        if continue_token:
            start = _decode_continue(continue_token)
            items = [obj for obj in items if _sort_key(obj) > start]
        metadata: Obj = {"resourceVersion": str(rv)}
        if limit and limit > 0 and len(items) > limit:
            metadata["continue"] = _encode_continue(rv, _sort_key(items[limit - 1]))
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        listed = []
        for obj in items:
            item = json_copy(obj)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            listed.append(item)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata, "items": listed}

    # --- writes -----------------------------------------------------------------------------------

    def create(
        self,
        obj: Mapping[str, Any],
        *,
        kind: str | ResourceType | None = None,
        namespace: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
        warnings: Strings | None = None,
    ) -> Obj:
        """Store a new object and return it as stored.

        `kind`/`namespace` are what the request URL says (checked against the body); without them
        the body's `kind`/`apiVersion` decide and the namespace defaults to "default".
        AlreadyExistsError (409), InvalidError (422), NotFoundError for a missing namespace.
        """
        body = self._body(obj)
        rt = self._type_for_body(body, kind)
        meta = body["metadata"]
        if rt.namespaced:
            meta["namespace"] = self._namespace_for(meta, namespace) or "default"
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise BadRequestError("resourceVersion should not be set on objects to be created")
        self._check_fields(rt, body, field_validation, warnings)
        try:
            with self._lock:
                if rt.namespaced:
                    self._find(NAMESPACES, None, meta["namespace"])
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = self._generate_name(
                        rt, meta["namespace"] if rt.namespaced else None, str(meta["generateName"])
                    )
                for field in (*_SYSTEM_METADATA, "selfLink"):
                    meta.pop(field, None)
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = _timestamp(self._clock())
                if rt.tracks_generation:
                    meta["generation"] = 1
                body["status"] = initial_status(body)
                apply_defaults(body)
                if rt is SERVICES:
                    self._assign_cluster_ip(body)
                self._validate(rt, body)
                key = self._key(rt, meta.get("namespace"), meta["name"])
                if key in self._objects[rt]:
                    raise errors.already_exists(rt, meta["name"])
                if dry_run:
                    return json_copy(body)
                self._commit(rt, body, "ADDED")
                return json_copy(body)
        finally:
            self._dispatch()

    def update(
        self,
        obj: Mapping[str, Any],
        subresource: str | None = None,
        *,
        kind: str | ResourceType | None = None,
        namespace: str | None = None,
        name: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
        warnings: Strings | None = None,
    ) -> Obj:
        """Replace an object (PUT). `subresource="status"` changes only status; `"scale"` takes a Scale
        (pass `kind=`, e.g. "deployments", since the body's kind is Scale).

        A `metadata.resourceVersion` that is not current is a ConflictError (409); none means
        "unconditional". NotFoundError if the object does not exist.
        """
        body = self._body(obj)
        if subresource == "scale":
            rt = resource_type(kind) if kind is not None else self._type_for_body(body, None)
            return self._update_scale(rt, body, namespace, name, dry_run)
        rt = self._type_for_body(body, kind)
        meta = body["metadata"]
        if name and meta.get("name") and meta["name"] != name:
            raise BadRequestError(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        target = name or meta.get("name")
        if not target:
            raise BadRequestError("name is required for an update (metadata.name)")
        meta["name"] = target
        target_namespace = self._namespace_for(meta, namespace) if rt.namespaced else None
        if rt.namespaced:
            meta["namespace"] = target_namespace or "default"
        self._check_fields(rt, body, field_validation, warnings)
        try:
            with self._lock:
                self._check_subresource(rt, subresource)
                current = self._find(rt, meta.get("namespace"), target)
                return self._commit_update(rt, current, body, subresource, dry_run)
        finally:
            self._dispatch()

    def patch(
        self,
        kind: str | ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
        field_validation: str = "Warn",
        warnings: Strings | None = None,
    ) -> Obj:
        """Apply a JSON Patch or a merge patch (by `content_type`) and store the result.

        A patch that sets a stale `metadata.resourceVersion` is a ConflictError; a failed JSON Patch
        `test` is an InvalidError (422); an unknown content type is UnsupportedMediaTypeError (415).
        """
        rt = resource_type(kind)
        try:
            with self._lock:
                current = self._find(rt, namespace, name)
                if subresource == "scale":
                    scale = self._scale_of(rt, current)
                    patched_scale = apply_patch(scale, patch, content_type)
                    return self._apply_scale(rt, current, patched_scale, dry_run)
                self._check_subresource(rt, subresource)
                patched = apply_patch(current, patch, content_type)
                meta = patched.get("metadata")
                if not isinstance(meta, dict):
                    raise BadRequestError("metadata: the patched object has no metadata")
                if meta.get("name") != name:
                    raise BadRequestError(
                        f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
                    )
                if rt.namespaced and meta.get("namespace") != current["metadata"]["namespace"]:
                    raise BadRequestError(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                patched["apiVersion"], patched["kind"] = rt.api_version, rt.kind
                self._check_fields(rt, patched, field_validation, warnings)
                return self._commit_update(rt, current, patched, subresource, dry_run)
        finally:
            self._dispatch()

    def delete(
        self,
        kind: str | ResourceType,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> DeleteResult:
        """Delete an object (see the module docstring for preconditions and grace periods)."""
        rt = resource_type(kind)
        if rt is NAMESPACES:
            raise errors.MethodNotAllowedError("deleting a namespace is not supported by the local stand-in")
        try:
            with self._lock:
                current = self._find(rt, namespace, name)
                self._check_preconditions(rt, current, preconditions or {})
                if dry_run:
                    return DeleteResult(json_copy(current), deleted=True)
                return self._delete_locked(rt, current, grace_period_seconds)
        finally:
            self._dispatch()

    # --- subscribe -----------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[str, Obj], None]) -> Callable[[], None]:
        """Call `callback(type, object)` for every change from now on, in commit order.

        Callbacks run in the writing thread after the write returns its lock; keep them short. A
        callback may write to the store: that change is delivered after the current one.
        Returns a function that unsubscribes.
        """
        with self._lock:
            subscriber = _Subscriber(callback, self._rv)
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    # --- internals: lookup ---------------------------------------------------------------------------

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "default", name) if rt.namespaced else ("", name)

    def _find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._objects[rt].get(self._key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    def _matching(
        self, rt: ResourceType, namespace: str | None, labels: LabelSelector, fields: FieldSelector
    ) -> Objects:
        found = [
            obj
            for (obj_namespace, _), obj in self._objects[rt].items()
            if (namespace is None or not rt.namespaced or obj_namespace == namespace)
            and labels.matches(obj["metadata"].get("labels"))
            and fields.matches(obj)
        ]
        return sorted(found, key=_sort_key)

    def _check_subresource(self, rt: ResourceType, subresource: str | None) -> None:
        if subresource is not None and (
            subresource not in rt.subresources or subresource in ("scale", "proxy")
        ):
            raise NotFoundError("the server could not find the requested resource")

    # --- internals: bodies, schema, validation -----------------------------------------------------------

    def _body(self, obj: Mapping[str, Any]) -> Obj:
        if not isinstance(obj, Mapping):
            raise BadRequestError("the request body must be a JSON object")
        body = json_copy(dict(obj))
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise BadRequestError("metadata: must be an object")
        return body

    def _type_for_body(self, body: Obj, kind: str | ResourceType | None) -> ResourceType:
        api_version, body_kind = body.get("apiVersion"), body.get("kind")
        if kind is not None:
            rt = resource_type(kind)
            if api_version and api_version != rt.api_version:
                raise BadRequestError(
                    f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
                )
            if body_kind and body_kind != rt.kind:
                raise BadRequestError(
                    f"the kind in the data ({body_kind}) does not match the expected kind ({rt.kind})"
                )
        else:
            if not body_kind:
                raise BadRequestError("Object 'Kind' is missing in the request body")
            found = by_api_version_kind(str(api_version), str(body_kind)) if api_version else None
            rt = found or resource_type(str(body_kind))
            if api_version and found is None:
                raise BadRequestError(f'no kind "{body_kind}" is registered for version "{api_version}"')
        body["apiVersion"], body["kind"] = rt.api_version, rt.kind
        return rt

    def _namespace_for(self, meta: Obj, namespace: str | None) -> str | None:
        body_namespace = meta.get("namespace")
        if namespace and body_namespace and body_namespace != namespace:
            raise BadRequestError(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        return namespace or body_namespace

    def _schema_root(self, api_version: str, kind: str) -> SchemaNode | None:
        if not self._validate_schema:
            return None
        try:
            return kube_schema().root(api_version, kind)
        except SchemaNotFoundError:
            return None

    def _check_fields(
        self, rt: ResourceType, body: Obj, field_validation: str, warnings: Strings | None
    ) -> None:
        if field_validation not in FIELD_VALIDATION:
            raise BadRequestError(
                f"fieldValidation must be one of {', '.join(FIELD_VALIDATION)}, not {field_validation!r}"
            )
        root = self._schema_root(rt.api_version, rt.kind)
        unknown = sorted(prune_unknown_fields(body, root))
        if not unknown or field_validation == "Ignore":
            return
        messages = [f'unknown field "{field}"' for field in unknown]
        if field_validation == "Strict":
            raise BadRequestError(f"strict decoding error: {', '.join(messages)}")
        if warnings is not None:
            warnings.extend(messages)
        else:
            log.warning("%s %s: %s", rt.kind, body["metadata"].get("name"), "; ".join(messages))

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None = None) -> None:
        root = self._schema_root(rt.api_version, rt.kind)
        validator = kube_schema().validator(rt.api_version, rt.kind) if root is not None else None
        validate_object(rt, obj, root=root, validator=validator, old=old)

    def _generate_name(self, rt: ResourceType, namespace: str | None, prefix: str) -> str:
        for _ in range(100):
            name = prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
            if self._key(rt, namespace, name) not in self._objects[rt]:
                return name
        raise errors.KubeApiError(f"could not generate a unique name with prefix {prefix!r}")

    def _assign_cluster_ip(self, service: Obj) -> None:
        spec = service.get("spec")
        if (
            not isinstance(spec, dict)
            or spec.get("type") == "ExternalName"
            or spec.get("clusterIP") == "None"
        ):
            return
        if not spec.get("clusterIP"):
            in_use = {s.get("spec", {}).get("clusterIP", "") for s in self._objects[SERVICES].values()}
            spec["clusterIP"] = self._ips.allocate(in_use)
        spec["clusterIPs"] = [spec["clusterIP"]]

    # --- internals: update ---------------------------------------------------------------------------

    def _commit_update(
        self, rt: ResourceType, current: Obj, new: Obj, subresource: str | None, dry_run: bool
    ) -> Obj:
        name = current["metadata"]["name"]
        wanted_rv = new["metadata"].get("resourceVersion")
        if wanted_rv and str(wanted_rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        if subresource == "status":
            status = new.get("status")
            new = json_copy(current)
            new["status"] = json_copy(status) if status is not None else {}
        else:
            new["status"] = json_copy(current.get("status", {}))
            for key in _SYSTEM_METADATA:
                if key in current["metadata"]:
                    new["metadata"][key] = current["metadata"][key]
                else:
                    new["metadata"].pop(key, None)
            apply_defaults(new)
            if rt is SERVICES:
                self._keep_cluster_ip(current, new)
            if rt is NAMESPACES:
                new["spec"] = json_copy(current.get("spec", {}))
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        self._validate(rt, new, old=current)
        if rt.tracks_generation and new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if new == current:
            return json_copy(current)
        if dry_run:
            return new
        self._commit(rt, new, "MODIFIED")
        return json_copy(new)

    def _keep_cluster_ip(self, current: Obj, new: Obj) -> None:
        before, after = current.get("spec", {}), new.get("spec")
        if isinstance(after, dict) and before.get("clusterIP") and not after.get("clusterIP"):
            after["clusterIP"] = before["clusterIP"]
            after["clusterIPs"] = json_copy(before.get("clusterIPs", [before["clusterIP"]]))

    def _scale_of(self, rt: ResourceType, obj: Obj) -> Obj:
        if "scale" not in rt.subresources:
            raise NotFoundError("the server could not find the requested resource")
        meta = obj["metadata"]
        try:
            selector = str(selector_from_spec(obj.get("spec", {}).get("selector")))
        except ValueError:
            selector = ""
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": selector},
        }

    def _update_scale(
        self, rt: ResourceType, scale: Obj, namespace: str | None, name: str | None, dry_run: bool
    ) -> Obj:
        meta = scale["metadata"]
        if name and meta.get("name") and meta["name"] != name:
            raise BadRequestError(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        target = name or meta.get("name")
        if not target:
            raise BadRequestError("name is required for an update (metadata.name)")
        try:
            with self._lock:
                current = self._find(rt, namespace or meta.get("namespace"), str(target))
                if "scale" not in rt.subresources:
                    raise NotFoundError("the server could not find the requested resource")
                return self._apply_scale(rt, current, scale, dry_run)
        finally:
            self._dispatch()

    def _apply_scale(self, rt: ResourceType, current: Obj, scale: Obj, dry_run: bool) -> Obj:
        name = current["metadata"]["name"]
        validate_scale(name, scale)
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and str(wanted_rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        new = json_copy(current)
        new.setdefault("spec", {})["replicas"] = (scale.get("spec") or {}).get("replicas") or 0
        return self._scale_of(rt, self._commit_update(rt, current, new, None, dry_run))

    # --- internals: delete ---------------------------------------------------------------------------

    def _check_preconditions(self, rt: ResourceType, current: Obj, preconditions: Mapping[str, Any]) -> None:
        meta, name = current["metadata"], current["metadata"]["name"]
        uid, rv = preconditions.get("uid"), preconditions.get("resourceVersion")
        if uid and uid != meta["uid"]:
            raise errors.ConflictError(
                f'Operation cannot be fulfilled on {rt.group_resource} "{name}": Precondition failed: '
                f"UID in precondition: {uid}, UID in object meta: {meta['uid']}"
            )
        if rv and str(rv) != meta["resourceVersion"]:
            raise errors.ConflictError(
                f'Operation cannot be fulfilled on {rt.group_resource} "{name}": Precondition failed: '
                f"ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {meta['resourceVersion']}"
            )

    def _grace_period(self, rt: ResourceType, obj: Obj, requested: int | None) -> int:
        if rt is not PODS:
            return 0
        spec, status = obj.get("spec", {}), obj.get("status", {})
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        grace = requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
        return max(int(grace), 0)

    def _delete_locked(self, rt: ResourceType, current: Obj, grace_request: int | None) -> DeleteResult:
        grace = self._grace_period(rt, current, grace_request)
        meta = current["metadata"]
        pending_grace = meta.get("deletionGracePeriodSeconds")
        if grace > 0:
            if meta.get("deletionTimestamp") and (pending_grace is None or grace >= pending_grace):
                return DeleteResult(json_copy(current), deleted=False)
            new = json_copy(current)
            new["metadata"]["deletionTimestamp"] = _timestamp(self._clock() + timedelta(seconds=grace))
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            self._commit(rt, new, "MODIFIED")
            return DeleteResult(json_copy(new), deleted=False)
        return DeleteResult(self._remove(rt, current), deleted=True)

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        final = json_copy(obj)
        meta = final["metadata"]
        del self._objects[rt][self._key(rt, meta.get("namespace"), meta["name"])]
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._changes.append(Change(self._rv, "DELETED", rt, final))
        return json_copy(final)

    # --- internals: events -------------------------------------------------------------------------

    def _commit(self, rt: ResourceType, obj: Obj, event_type: str) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[rt][self._key(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
        self._changes.append(Change(self._rv, event_type, rt, obj))

    def _dispatch(self) -> None:
        """Deliver committed events to subscribers, in order, outside the store lock."""
        if getattr(self._local, "dispatching", False):
            return
        with self._lock:
            if not self._subscribers:
                self._changes.clear()
                self._delivered = self._rv
                return
        with self._dispatch_lock:
            self._local.dispatching = True
            try:
                while True:
                    with self._lock:
                        while self._changes and self._changes[0].rv <= self._delivered:
                            self._changes.popleft()
                        batch = list(self._changes)
                        subscribers = list(self._subscribers)
                    if not batch:
                        return
                    for event in batch:
                        self._delivered = event.rv
                        for subscriber in subscribers:
                            if subscriber.since < event.rv:
                                try:
                                    subscriber.callback(event.type, json_copy(event.object))
                                except Exception:
                                    log.exception(
                                        "store subscriber failed on %s %s", event.type, event.rt.kind
                                    )
            finally:
                self._local.dispatching = False


def _sort_key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    raw = json.dumps({"rv": rv, "start": list(key)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise BadRequestError("the provided continue parameter is invalid") from None
