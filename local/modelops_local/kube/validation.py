"""Validation the API server applies before it stores an object, as 422 `Invalid` causes.

Two layers, like the real server: the OpenAPI schema (types, required fields, enums) from
kubernetes-validate, then the semantic rules clients run into (DNS names, label syntax, container
names and images, Deployment selector versus template labels, immutable fields on update).
Field paths read like the API server's: `spec.template.spec.containers[0].image`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from modelops_local.kube.errors import Cause, invalid
from modelops_local.kube.resources import ResourceType
from modelops_local.kube.schema import SchemaNode, format_field_path
from modelops_local.kube.selectors import label_key_problem, label_value_problem, selector_from_spec

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
PERCENT = re.compile(r"^[0-9]+%$")

LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
POD_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def render(value: Any) -> str:
    """A value as messages show it (strings quoted, objects as compact JSON)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class FieldErrors:
    """Collects causes in the API server's wording."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def add(self, reason: str, field: str, message: str) -> None:
        cause = Cause(reason, message, field)
        if cause not in self.causes:
            self.causes.append(cause)

    def required(self, field: str, detail: str = "") -> None:
        self.add("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.add("FieldValueInvalid", field, f"Invalid value: {render(value)}: {detail}")

    def not_supported(self, field: str, value: Any, supported: Iterable[str]) -> None:
        listed = ", ".join(render(s) for s in supported)
        self.add(
            "FieldValueNotSupported", field, f"Unsupported value: {render(value)}: supported values: {listed}"
        )

    def forbidden(self, field: str, detail: str) -> None:
        self.add("FieldValueForbidden", field, f"Forbidden: {detail}")

    def duplicate(self, field: str, value: Any) -> None:
        self.add("FieldValueDuplicate", field, f"Duplicate value: {render(value)}")

    def not_found(self, field: str, value: Any) -> None:
        self.add("FieldValueNotFound", field, f"Not found: {render(value)}")

    def too_long(self, field: str, value: Any, limit: int) -> None:
        self.add("FieldValueTooLong", field, f"Too long: may not be more than {limit} bytes")

    def too_many(self, field: str, value: list[Any], limit: int) -> None:
        self.add("FieldValueTooMany", field, f"Too many: {len(value)}: must have at most {limit} items")


# --- schema ---------------------------------------------------------------------------------------


def schema_causes(obj: Mapping[str, Any], root: SchemaNode, validator: Any) -> list[Cause]:
    """JSON Schema violations of `obj` as causes with API field paths."""
    errors = FieldErrors()
    for error in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(error.absolute_path)
        field = format_field_path(path, root)
        if error.validator == "required":
            instance = error.instance if isinstance(error.instance, dict) else {}
            for missing in error.validator_value:
                if missing not in instance:
                    errors.required(format_field_path([*path, missing], root))
        elif error.validator == "type":
            expected = [t for t in _as_list(error.validator_value) if t != "null"]
            errors.add(
                "FieldValueTypeInvalid",
                field,
                f"Invalid value: {render(error.instance)}: must be of type {' or '.join(expected)}",
            )
        elif error.validator == "enum":
            errors.not_supported(
                field, error.instance, [str(v) for v in error.validator_value if v is not None]
            )
        elif error.validator in ("oneOf", "anyOf"):
            errors.add(
                "FieldValueTypeInvalid",
                field,
                f"Invalid value: {render(error.instance)}: must be an integer or a string",
            )
        else:
            errors.invalid(field, error.instance, error.message)
    return errors.causes


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


# --- semantic rules ---------------------------------------------------------------------------------


def name_problem(name: str, rule: str) -> str | None:
    """Why `name` is not a valid object name under `rule` ("subdomain", "label", "dns1035")."""
    if rule == "label":
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if DNS1123_LABEL.match(name) else LABEL_MESSAGE
    if rule == "dns1035":
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if DNS1035_LABEL.match(name) else DNS1035_MESSAGE
    if len(name) > 253:
        return "must be no more than 253 characters"
    return None if DNS1123_SUBDOMAIN.match(name) else SUBDOMAIN_MESSAGE


def _metadata(errors: FieldErrors, rt: ResourceType, meta: Mapping[str, Any]) -> None:
    name = meta.get("name")
    if not name:
        errors.required("metadata.name", "name or generateName is required")
    elif isinstance(name, str):
        problem = name_problem(name, rt.name_rule)
        if problem:
            errors.invalid("metadata.name", name, problem)
    _labels(errors, "metadata.labels", meta.get("labels"))
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        for key in annotations:
            problem = label_key_problem(str(key))
            if problem:
                errors.invalid("metadata.annotations", key, problem)


def _labels(errors: FieldErrors, field: str, labels: Any) -> None:
    if not isinstance(labels, Mapping):
        return
    for key, value in labels.items():
        problem = label_key_problem(str(key))
        if problem:
            errors.invalid(field, key, problem)
        if isinstance(value, str):
            value_problem = label_value_problem(value)
            if value_problem:
                errors.invalid(field, value, value_problem)


def _non_negative(errors: FieldErrors, field: str, value: Any) -> None:
    if isinstance(value, int) and value < 0:
        errors.invalid(field, value, "must be greater than or equal to 0")


def _pod_spec(errors: FieldErrors, spec: Any, path: str) -> None:
    if not isinstance(spec, Mapping):
        return
    volumes = set()
    for index, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name") if isinstance(volume, Mapping) else None
        field = f"{path}.volumes[{index}].name"
        if not name:
            errors.required(field)
        elif name in volumes:
            errors.duplicate(field, name)
        elif not DNS1123_LABEL.match(str(name)):
            errors.invalid(field, name, LABEL_MESSAGE)
        volumes.add(name)
    if not spec.get("containers"):
        errors.required(f"{path}.containers")
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(key) or []):
            if isinstance(container, Mapping):
                _container(errors, container, f"{path}.{key}[{index}]", names, volumes)
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in ("Always", "OnFailure", "Never"):
        errors.not_supported(f"{path}.restartPolicy", policy, ["Always", "OnFailure", "Never"])
    _non_negative(errors, f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"))


def _container(
    errors: FieldErrors, container: Mapping[str, Any], path: str, names: set[str], volumes: set[Any]
) -> None:
    name = container.get("name")
    if not name:
        errors.required(f"{path}.name")
    elif name in names:
        errors.duplicate(f"{path}.name", name)
    elif not DNS1123_LABEL.match(str(name)):
        errors.invalid(f"{path}.name", name, LABEL_MESSAGE)
    if name:
        names.add(str(name))
    image = container.get("image")
    if not image:
        errors.required(f"{path}.image")
    elif isinstance(image, str) and image.strip() != image:
        errors.invalid(f"{path}.image", image, "must not have leading or trailing whitespace")
    policy = container.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        errors.not_supported(f"{path}.imagePullPolicy", policy, ["Always", "IfNotPresent", "Never"])
    port_names: set[str] = set()
    for index, port in enumerate(container.get("ports") or []):
        if not isinstance(port, Mapping):
            continue
        field = f"{path}.ports[{index}]"
        number = port.get("containerPort")
        if number is None:
            errors.required(f"{field}.containerPort")
        elif isinstance(number, int) and not 1 <= number <= 65535:
            errors.invalid(f"{field}.containerPort", number, "must be between 1 and 65535, inclusive")
        _protocol(errors, f"{field}.protocol", port.get("protocol"))
        port_name = port.get("name")
        if port_name:
            if port_name in port_names:
                errors.duplicate(f"{field}.name", port_name)
            elif len(str(port_name)) > 15 or not IANA_SVC_NAME.match(str(port_name)):
                errors.invalid(
                    f"{field}.name",
                    port_name,
                    "must be no more than 15 characters and a valid IANA service name",
                )
            port_names.add(str(port_name))
    for index, env in enumerate(container.get("env") or []):
        if isinstance(env, Mapping) and not env.get("name"):
            errors.required(f"{path}.env[{index}].name")
    for index, mount in enumerate(container.get("volumeMounts") or []):
        if not isinstance(mount, Mapping):
            continue
        if not mount.get("name"):
            errors.required(f"{path}.volumeMounts[{index}].name")
        elif mount["name"] not in volumes:
            errors.not_found(f"{path}.volumeMounts[{index}].name", mount["name"])
        if not mount.get("mountPath"):
            errors.required(f"{path}.volumeMounts[{index}].mountPath")


def _protocol(errors: FieldErrors, field: str, protocol: Any) -> None:
    if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
        errors.not_supported(field, protocol, ["SCTP", "TCP", "UDP"])


def _selector_and_template(errors: FieldErrors, spec: Mapping[str, Any], what: str) -> None:
    selector = spec.get("selector")
    template = spec.get("template")
    if selector is None:
        errors.required("spec.selector")
    elif isinstance(selector, Mapping):
        _labels(errors, "spec.selector.matchLabels", selector.get("matchLabels"))
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errors.invalid("spec.selector", selector, f"empty selector is invalid for {what}")
        else:
            try:
                matcher = selector_from_spec(selector)
            except ValueError as exc:
                errors.invalid("spec.selector", selector, str(exc))
            else:
                labels = (
                    ((template or {}).get("metadata") or {}).get("labels")
                    if isinstance(template, Mapping)
                    else None
                )
                if not matcher.matches(labels or {}):
                    errors.invalid(
                        "spec.template.metadata.labels",
                        labels or {},
                        "`selector` does not match template `labels`",
                    )
    if not isinstance(template, Mapping):
        errors.required("spec.template")
        return
    _labels(errors, "spec.template.metadata.labels", (template.get("metadata") or {}).get("labels"))
    _pod_spec(errors, template.get("spec"), "spec.template.spec")


def _deployment(errors: FieldErrors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        errors.required("spec")
        return
    for key in ("replicas", "revisionHistoryLimit", "minReadySeconds"):
        _non_negative(errors, f"spec.{key}", spec.get(key))
    _selector_and_template(errors, spec, "deployment")
    template_spec = (spec.get("template") or {}).get("spec") or {}
    policy = template_spec.get("restartPolicy") if isinstance(template_spec, Mapping) else None
    if policy not in (None, "Always"):
        errors.not_supported("spec.template.spec.restartPolicy", policy, ["Always"])
    _strategy(errors, spec.get("strategy"))
    deadline, min_ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if isinstance(deadline, int) and isinstance(min_ready, int) and deadline <= min_ready:
        errors.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")
    _immutable_selector(errors, spec, old)


def _strategy(errors: FieldErrors, strategy: Any) -> None:
    if not isinstance(strategy, Mapping):
        return
    kind = strategy.get("type")
    if kind not in (None, "RollingUpdate", "Recreate"):
        errors.not_supported("spec.strategy.type", kind, ["Recreate", "RollingUpdate"])
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate" and rolling is not None:
        errors.forbidden(
            "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"
        )
        return
    if not isinstance(rolling, Mapping):
        return
    values = {}
    for key in ("maxUnavailable", "maxSurge"):
        value = rolling.get(key)
        field = f"spec.strategy.rollingUpdate.{key}"
        if isinstance(value, str):
            if not PERCENT.match(value):
                errors.invalid(
                    field,
                    value,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
                    "'93%', regex used for validation is '[0-9]+%')",
                )
                continue
            values[key] = int(value[:-1])
            if key == "maxUnavailable" and values[key] > 100:
                errors.invalid(field, value, "must not be greater than 100%")
        elif isinstance(value, int):
            _non_negative(errors, field, value)
            values[key] = value
    if values.get("maxUnavailable") == 0 and values.get("maxSurge") == 0:
        errors.invalid(
            "spec.strategy.rollingUpdate.maxUnavailable",
            rolling.get("maxUnavailable"),
            "may not be 0 when `maxSurge` is 0",
        )


def _immutable_selector(errors: FieldErrors, spec: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    if old is None:
        return
    before = (old.get("spec") or {}).get("selector")
    if spec.get("selector") != before:
        errors.invalid("spec.selector", spec.get("selector"), "field is immutable")


def _replicaset(errors: FieldErrors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        errors.required("spec")
        return
    _non_negative(errors, "spec.replicas", spec.get("replicas"))
    _non_negative(errors, "spec.minReadySeconds", spec.get("minReadySeconds"))
    _selector_and_template(errors, spec, "replicaset")
    _immutable_selector(errors, spec, old)


def _pod(errors: FieldErrors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    _pod_spec(errors, obj.get("spec"), "spec")
    if old is not None and _mutable_pod_spec(obj.get("spec")) != _mutable_pod_spec(old.get("spec")):
        errors.forbidden("spec", POD_UPDATE_MESSAGE)


def _mutable_pod_spec(spec: Any) -> Any:
    """The pod spec without the fields an update may change."""
    if not isinstance(spec, Mapping):
        return spec
    stripped = {
        k: v
        for k, v in spec.items()
        if k not in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")
    }
    for key in ("containers", "initContainers"):
        if isinstance(stripped.get(key), list):
            stripped[key] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, Mapping) else c
                for c in stripped[key]
            ]
    return stripped


def _service(errors: FieldErrors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        errors.required("spec")
        return
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        errors.not_supported("spec.type", kind, ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"])
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        errors.required("spec.ports")
    seen_names: set[str] = set()
    seen_ports: set[tuple[Any, Any]] = set()
    for index, port in enumerate(ports):
        if not isinstance(port, Mapping):
            continue
        field = f"spec.ports[{index}]"
        name = port.get("name")
        if len(ports) > 1 and not name:
            errors.required(f"{field}.name")
        elif name:
            if name in seen_names:
                errors.duplicate(f"{field}.name", name)
            seen_names.add(str(name))
        number = port.get("port")
        if number is None:
            errors.required(f"{field}.port")
        elif isinstance(number, int) and not 1 <= number <= 65535:
            errors.invalid(f"{field}.port", number, "must be between 1 and 65535, inclusive")
        key = (number, port.get("protocol", "TCP"))
        if key in seen_ports:
            errors.duplicate(field, {"port": number, "protocol": key[1]})
        seen_ports.add(key)
        _protocol(errors, f"{field}.protocol", port.get("protocol"))
        target = port.get("targetPort")
        if isinstance(target, int) and not 1 <= target <= 65535:
            errors.invalid(f"{field}.targetPort", target, "must be between 1 and 65535, inclusive")
        elif isinstance(target, str) and not IANA_SVC_NAME.match(target):
            errors.invalid(
                f"{field}.targetPort",
                target,
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            )
    _labels(errors, "spec.selector", spec.get("selector"))
    if old is not None:
        before = (old.get("spec") or {}).get("clusterIP")
        if before and spec.get("clusterIP") != before:
            errors.invalid("spec.clusterIP", spec.get("clusterIP"), "field is immutable")


def _http_route(errors: FieldErrors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    """The HTTPRoute CRD's (gateway.networking.k8s.io/v1, standard channel) OpenAPI and CEL rules
    for the fields a weighted canary uses: at most 32 parentRefs, 16 rules and 16 backendRefs per
    rule; a backendRef's name 1-253 characters, weight 0-1000000, port 1-65535 and required for
    a Service ("Must have port for Service reference")."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        errors.required("spec")
        return
    for field, limit in (("parentRefs", 32), ("rules", 16)):
        value = spec.get(field)
        if value is not None and not isinstance(value, list):
            errors.add(
                "FieldValueTypeInvalid",
                f"spec.{field}",
                f"Invalid value: {render(value)}: must be of type array",
            )
        elif value is not None and len(value) > limit:
            errors.too_many(f"spec.{field}", value, limit)
    for index, parent in enumerate(spec.get("parentRefs") or []):
        if not isinstance(parent, Mapping) or not parent.get("name"):
            errors.required(f"spec.parentRefs[{index}].name")
    for r, rule in enumerate(spec.get("rules") or []):
        refs = rule.get("backendRefs") if isinstance(rule, Mapping) else None
        if refs is None:
            continue
        if not isinstance(refs, list):
            errors.add("FieldValueTypeInvalid", f"spec.rules[{r}].backendRefs", "must be of type array")
            continue
        if len(refs) > 16:
            errors.too_many(f"spec.rules[{r}].backendRefs", refs, 16)
        for b, ref in enumerate(refs):
            field = f"spec.rules[{r}].backendRefs[{b}]"
            if not isinstance(ref, Mapping):
                errors.add("FieldValueTypeInvalid", field, "must be of type object")
                continue
            name = ref.get("name")
            if not isinstance(name, str) or not 1 <= len(name) <= 253:
                errors.invalid(f"{field}.name", name, "must be a string of 1 to 253 characters")
            weight = ref.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int):
                errors.add(
                    "FieldValueTypeInvalid",
                    f"{field}.weight",
                    f"Invalid value: {render(weight)}: must be of type integer",
                )
            elif not 0 <= weight <= 1_000_000:
                errors.invalid(f"{field}.weight", weight, "should be between 0 and 1000000")
            port = ref.get("port")
            if port is None and ref.get("group", "") == "" and ref.get("kind", "Service") == "Service":
                errors.invalid(field, "object", "Must have port for Service reference")
            elif port is not None and (
                isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
            ):
                errors.invalid(f"{field}.port", port, "should be an integer between 1 and 65535")


RULES = {
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "Pod": _pod,
    "Service": _service,
    "HTTPRoute": _http_route,
}


def semantic_causes(
    rt: ResourceType, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> list[Cause]:
    """The API server's own validation rules for `obj` (`old` is the stored object on update)."""
    errors = FieldErrors()
    meta = obj.get("metadata")
    _metadata(errors, rt, meta if isinstance(meta, Mapping) else {})
    rule = RULES.get(rt.kind)
    if rule is not None:
        rule(errors, obj, old)
    return errors.causes


def validate_object(
    rt: ResourceType,
    obj: Mapping[str, Any],
    *,
    root: SchemaNode | None,
    validator: Any,
    old: Mapping[str, Any] | None = None,
) -> None:
    """Raise InvalidError (422) naming every bad field, schema errors first."""
    causes = schema_causes(obj, root, validator) if root is not None and validator is not None else []
    if not causes:
        causes = semantic_causes(rt, obj, old)
    if causes:
        name = str((obj.get("metadata") or {}).get("name") or "")
        raise invalid(rt.kind, rt.group, name, causes)


def validate_scale(name: str, scale: Mapping[str, Any]) -> None:
    replicas = (scale.get("spec") or {}).get("replicas")
    errors = FieldErrors()
    if replicas is not None and not isinstance(replicas, int):
        errors.add(
            "FieldValueTypeInvalid",
            "spec.replicas",
            f"Invalid value: {render(replicas)}: must be of type integer",
        )
    else:
        _non_negative(errors, "spec.replicas", replicas)
    if errors.causes:
        raise invalid("Scale", "autoscaling", name, errors.causes)
