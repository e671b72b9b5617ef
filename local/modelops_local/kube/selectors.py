"""Label and field selectors with the API server's grammar and matching rules.

Label selectors (`?labelSelector=`): `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`,
`!a`, `a>1`, `a<1`, comma-separated (all must hold). `a!=b` and `notin` also match objects without
the label. A Deployment's `spec.selector` (matchLabels/matchExpressions) becomes the same thing.
Field selectors (`?fieldSelector=`): `field=value`, `field==value`, `field!=value` on the fields
each resource supports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelops_local.kube.errors import BadRequestError

_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_QUALIFIED_NAME = re.compile(
    rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME_PART}$"
)
_LABEL_VALUE = re.compile(rf"^({_NAME_PART})?$")


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label key (a qualified name), or None."""
    prefix, _, name = key.rpartition("/")
    if not name or len(name) > 63 or (prefix and len(prefix) > 253) or not _QUALIFIED_NAME.match(key):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix "
            "and '/' (e.g. 'example.com/MyName')"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
            "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        )
    return None


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if not present:
            return False
        try:
            number, bound = int(str(value)), int(self.values[0])
        except ValueError:
            return False
        return number > bound if self.operator == "gt" else number < bound

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return "!" + self.key
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(sorted(self.values))})"
        if self.operator in ("gt", "lt"):
            return f"{self.key}{'>' if self.operator == 'gt' else '<'}{self.values[0]}"
        return f"{self.key}{self.operator}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in sorted(self.requirements, key=lambda r: r.key))


def _bad(selector: str, why: str) -> BadRequestError:
    return BadRequestError(f"unable to parse requirement: {why} (in selector {selector!r})")


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


_SET_RE = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_CMP_RE = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<value>[^\s!=<>(),]*)$")
_KEY_RE = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=<>(),]+)$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a `labelSelector` query value; BadRequestError (400) when it does not parse."""
    if text is None or not text.strip():
        return LabelSelector()
    requirements = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise _bad(text, "found '', expected: identifier")
        requirement = _parse_requirement(text, part)
        problem = label_key_problem(requirement.key)
        if problem:
            raise _bad(text, f"invalid label key {requirement.key!r}: {problem}")
        for value in requirement.values:
            if requirement.operator in ("gt", "lt"):
                if not re.fullmatch(r"-?\d+", value):
                    raise _bad(text, f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}")
            elif label_value_problem(value):
                raise _bad(text, f"invalid label value: {value!r}: {label_value_problem(value)}")
        requirements.append(requirement)
    return LabelSelector(tuple(requirements))


def _parse_requirement(selector: str, part: str) -> Requirement:
    match = _SET_RE.match(part)
    if match:
        values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
        if not values:
            raise _bad(selector, f"for 'in', 'notin' operators, values set can't be empty: {part!r}")
        return Requirement(match["key"], match["op"], values)
    match = _CMP_RE.match(part)
    if match:
        op = {"==": "=", "=": "=", "!=": "!=", ">": "gt", "<": "lt"}[match["op"]]
        return Requirement(match["key"], op, (match["value"],))
    match = _KEY_RE.match(part)
    if match:
        return Requirement(match["key"], "!" if match["neg"] else "exists")
    raise _bad(selector, f"cannot parse {part!r}")


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def selector_from_spec(spec: Mapping[str, Any] | None) -> LabelSelector:
    """A `metav1.LabelSelector` (matchLabels + matchExpressions) as a LabelSelector.

    ValueError names the bad expression (validation turns it into a 422 cause).
    """
    spec = spec or {}
    requirements = [Requirement(str(k), "=", (str(v),)) for k, v in (spec.get("matchLabels") or {}).items()]
    for index, expression in enumerate(spec.get("matchExpressions") or []):
        operator = _OPERATORS.get(str(expression.get("operator")))
        if operator is None:
            raise ValueError(f"matchExpressions[{index}].operator: not a valid selector operator")
        values = tuple(str(v) for v in expression.get("values") or [])
        if operator in ("in", "notin") and not values:
            raise ValueError(f"matchExpressions[{index}].values: Required value: must be specified")
        if operator in ("exists", "!") and values:
            raise ValueError(f"matchExpressions[{index}].values: Forbidden: may not be specified")
        requirements.append(Requirement(str(expression.get("key", "")), operator, values))
    return LabelSelector(tuple(requirements))


# --- field selectors ---------------------------------------------------------------------------

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
SUPPORTED_FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (
        *_COMMON_FIELDS,
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "namespaces": (*_COMMON_FIELDS, "status.phase"),
    "replicasets": (*_COMMON_FIELDS, "status.replicas"),
}


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (field, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, field) == value) == equal for field, equal, value in self.terms)


def field_value(obj: Mapping[str, Any], field: str) -> str:
    """The string a field selector compares (missing fields are "", booleans "true"/"false")."""
    current: Any = obj
    for part in field.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    if isinstance(current, bool):
        return "true" if current else "false"
    return "" if current is None else str(current)


def parse_field_selector(text: str | None, plural: str) -> FieldSelector:
    """Parse a `fieldSelector` for resource `plural`; BadRequestError for unsupported fields."""
    if text is None or not text.strip():
        return FieldSelector()
    supported = SUPPORTED_FIELDS.get(plural, _COMMON_FIELDS)
    terms = []
    for raw in text.split(","):
        part = raw.strip()
        match = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(.*)", part)
        if not match:
            raise BadRequestError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = match.group(1), match.group(2), match.group(3).strip()
        if field not in supported:
            raise BadRequestError(f"field label not supported: {field}")
        terms.append((field, op != "!=", value))
    return FieldSelector(tuple(terms))
