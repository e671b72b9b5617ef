"""CloudFormation intrinsic functions, conditions and resource dependency order.

`Resolver.resolve` turns a template fragment into plain values the way CloudFormation does at
deploy time: `Ref`, `Fn::GetAtt`, `Fn::Sub` (both forms), `Fn::Join`, `Fn::Select`, `Fn::Split`,
`Fn::If` with the template's `Conditions` (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`,
`Condition`), `Fn::FindInMap`, `Fn::Base64`, `Fn::ToJsonString` and `AWS::NoValue`. Every error
names where in the template it happened (`Resources.<LogicalId>.Properties...`).

`references` lists the logical ids a fragment depends on and `dependency_order` sorts resources so
each is created after what it references, reporting a cycle by its path.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)

_SUB_TOKEN = re.compile(r"\$\{([^}]*)\}")


class TemplateError(Exception):
    """The template cannot be deployed as written; the message names the place and the reason."""


class IntrinsicError(TemplateError):
    """An intrinsic function or condition could not be evaluated at `where`."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


class DependencyCycleError(TemplateError):
    """Resources reference each other in a cycle; `cycle` is the path, first id repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__("circular dependency between resources: " + " -> ".join(cycle))
        self.cycle = cycle


class _NoValue:
    """`Ref: AWS::NoValue`: the property or list item is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()

RefLookup = Callable[[str], Any]
GetAttLookup = Callable[[str, str], Any]


def _intrinsic_name(value: Any) -> str | None:
    """The intrinsic a one-key mapping calls (`Ref` or `Fn::...`), or None for plain data."""
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
            return str(key)
    return None


class Resolver:
    """Evaluates intrinsics against parameter values, pseudo parameters and created resources.

    `ref(logical_id)` must return the resource's `Ref` value and `get_att(logical_id, attribute)`
    its attribute; both raise `KeyError` for a resource that is unknown or not created.
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, Any],
        conditions: Mapping[str, Any] | None = None,
        mappings: Mapping[str, Any] | None = None,
        ref: RefLookup | None = None,
        get_att: GetAttLookup | None = None,
    ) -> None:
        self._parameters = dict(parameters)
        self._pseudo = dict(pseudo)
        self._conditions = dict(conditions or {})
        self._mappings = dict(mappings or {})
        self._ref = ref
        self._get_att = get_att
        self._condition_values: dict[str, bool] = {}
        self._evaluating: list[str] = []

    # ------------------------------------------------------------------ public
    def resolve(self, value: Any, where: str) -> Any:
        """The fragment with every intrinsic evaluated and `AWS::NoValue` entries removed."""
        name = _intrinsic_name(value)
        if name is not None:
            return self._call(name, value[name], where)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                resolved = self.resolve(item, f"{where}.{key}")
                if resolved is not NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(value, list):
            items = [self.resolve(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        return value

    def condition(self, name: str, where: str) -> bool:
        """The named condition's value (evaluated once; a condition cycle is an error)."""
        if name in self._condition_values:
            return self._condition_values[name]
        if name not in self._conditions:
            raise IntrinsicError(where, f"unknown condition {name!r}")
        if name in self._evaluating:
            path = " -> ".join([*self._evaluating[self._evaluating.index(name) :], name])
            raise IntrinsicError(where, f"conditions refer to each other in a cycle: {path}")
        self._evaluating.append(name)
        try:
            value = self._condition_expr(self._conditions[name], f"Conditions.{name}")
        finally:
            self._evaluating.pop()
        self._condition_values[name] = value
        return value

    # ------------------------------------------------------------------ conditions
    def _condition_expr(self, expr: Any, where: str) -> bool:
        if isinstance(expr, dict) and len(expr) == 1 and "Condition" in expr:
            return self.condition(self._string(expr["Condition"], where), where)
        name = _intrinsic_name(expr)
        if name in {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"}:
            return bool(self._call(str(name), expr[name], where))
        if isinstance(expr, bool):
            return expr
        raise IntrinsicError(where, f"a condition must be Fn::Equals/Not/And/Or or Condition, got {expr!r}")

    def _operands(self, args: Any, where: str, fn: str, minimum: int, maximum: int) -> list[bool]:
        if not isinstance(args, list) or not minimum <= len(args) <= maximum:
            raise IntrinsicError(where, f"{fn} takes a list of {minimum} to {maximum} conditions")
        return [self._condition_expr(arg, f"{where}.{fn}[{i}]") for i, arg in enumerate(args)]

    # ------------------------------------------------------------------ functions
    def _call(self, name: str, args: Any, where: str) -> Any:
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise IntrinsicError(where, f"intrinsic function {name} is not supported by the local runtime")
        return handler(self, args, f"{where}.{name}")

    def _fn_ref(self, args: Any, where: str) -> Any:
        name = self._string(args, where)
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._parameters:
            return self._parameters[name]
        if name in self._pseudo:
            return self._pseudo[name]
        if name in PSEUDO_PARAMETERS:
            raise IntrinsicError(where, f"pseudo parameter {name} has no value here")
        if self._ref is None:
            raise IntrinsicError(where, f"Ref to {name!r}: no resources can be referenced here")
        try:
            return self._ref(name)
        except KeyError:
            raise IntrinsicError(where, f"Ref to unknown parameter or resource {name!r}") from None

    def _fn_get_att(self, args: Any, where: str) -> Any:
        if isinstance(args, str):
            resource, _, attribute = args.partition(".")
        elif isinstance(args, list) and len(args) == 2:
            resource = self._string(args[0], where)
            attribute = self._string(self.resolve(args[1], where), where)
        else:
            raise IntrinsicError(where, "Fn::GetAtt takes [LogicalId, Attribute] or 'LogicalId.Attribute'")
        if not resource or not attribute:
            raise IntrinsicError(where, f"Fn::GetAtt needs a resource and an attribute, got {args!r}")
        if self._get_att is None:
            raise IntrinsicError(where, f"Fn::GetAtt {resource}.{attribute}: no resources here")
        try:
            return self._get_att(resource, attribute)
        except KeyError as exc:
            reason = exc.args[0] if exc.args else f"unknown resource {resource!r}"
            raise IntrinsicError(where, f"Fn::GetAtt {resource}.{attribute}: {reason}") from None

    def _fn_sub(self, args: Any, where: str) -> str:
        if isinstance(args, str):
            text, local = args, {}
        elif isinstance(args, list) and len(args) == 2 and isinstance(args[1], dict):
            text = self._string(args[0], where)
            local = {key: self.resolve(value, f"{where}.{key}") for key, value in args[1].items()}
        else:
            raise IntrinsicError(where, "Fn::Sub takes a string or [string, {Var: value}]")
        if not isinstance(text, str):
            raise IntrinsicError(where, f"Fn::Sub template must be a string, got {text!r}")

        def substitute(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in local:
                value = local[token]
            elif "." in token and token not in self._parameters:
                resource, _, attribute = token.partition(".")
                value = self._fn_get_att([resource, attribute], where)
            else:
                value = self._fn_ref(token, where)
            return self._scalar_text(value, f"{where} ${{{token}}}")

        return _SUB_TOKEN.sub(substitute, text)

    def _fn_join(self, args: Any, where: str) -> str:
        if not isinstance(args, list) or len(args) != 2:
            raise IntrinsicError(where, "Fn::Join takes [delimiter, [values]]")
        delimiter = self._string(self.resolve(args[0], where), where)
        values = self.resolve(args[1], where)
        if not isinstance(values, list):
            raise IntrinsicError(where, f"Fn::Join needs a list of values, got {values!r}")
        return delimiter.join(self._scalar_text(v, f"{where}[{i}]") for i, v in enumerate(values))

    def _fn_select(self, args: Any, where: str) -> Any:
        if not isinstance(args, list) or len(args) != 2:
            raise IntrinsicError(where, "Fn::Select takes [index, [values]]")
        index_value = self.resolve(args[0], where)
        values = self.resolve(args[1], where)
        try:
            index = int(index_value)
        except (TypeError, ValueError):
            raise IntrinsicError(where, f"Fn::Select index must be an integer, got {index_value!r}") from None
        if not isinstance(values, list):
            raise IntrinsicError(where, f"Fn::Select needs a list, got {values!r}")
        if not 0 <= index < len(values):
            raise IntrinsicError(where, f"Fn::Select index {index} is out of range for {len(values)} values")
        return values[index]

    def _fn_split(self, args: Any, where: str) -> list[str]:
        if not isinstance(args, list) or len(args) != 2:
            raise IntrinsicError(where, "Fn::Split takes [delimiter, string]")
        delimiter = self._string(self.resolve(args[0], where), where)
        source = self._string(self.resolve(args[1], where), where)
        if not delimiter:
            raise IntrinsicError(where, "Fn::Split delimiter must not be empty")
        return source.split(delimiter)

    def _fn_if(self, args: Any, where: str) -> Any:
        if not isinstance(args, list) or len(args) != 3:
            raise IntrinsicError(where, "Fn::If takes [ConditionName, value_if_true, value_if_false]")
        chosen = args[1] if self.condition(self._string(args[0], where), where) else args[2]
        return self.resolve(chosen, where)

    def _fn_equals(self, args: Any, where: str) -> bool:
        if not isinstance(args, list) or len(args) != 2:
            raise IntrinsicError(where, "Fn::Equals takes [value, value]")
        left, right = (self.resolve(arg, where) for arg in args)
        return _comparable(left) == _comparable(right)

    def _fn_not(self, args: Any, where: str) -> bool:
        return not self._operands(args, where, "Fn::Not", 1, 1)[0]

    def _fn_and(self, args: Any, where: str) -> bool:
        return all(self._operands(args, where, "Fn::And", 2, 10))

    def _fn_or(self, args: Any, where: str) -> bool:
        return any(self._operands(args, where, "Fn::Or", 2, 10))

    def _fn_find_in_map(self, args: Any, where: str) -> Any:
        if not isinstance(args, list) or len(args) != 3:
            raise IntrinsicError(where, "Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey]")
        keys = [self._string(self.resolve(arg, where), where) for arg in args]
        node: Any = self._mappings
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise IntrinsicError(
                    where, f"Fn::FindInMap: no key {key!r} in {'.'.join(keys[:depth]) or 'Mappings'}"
                )
            node = node[key]
        return node

    def _fn_base64(self, args: Any, where: str) -> str:
        text = self._string(self.resolve(args, where), where)
        return base64.b64encode(text.encode()).decode()

    def _fn_to_json_string(self, args: Any, where: str) -> str:
        return json.dumps(self.resolve(args, where), separators=(",", ":"))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _string(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise IntrinsicError(where, f"expected a string, got {value!r}")
        return value

    @staticmethod
    def _scalar_text(value: Any, where: str) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise IntrinsicError(where, f"expected a string value, got {value!r}")


def _comparable(value: Any) -> Any:
    """CloudFormation compares Fn::Equals operands as strings (a Number parameter equals '3')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


_FUNCTIONS: dict[str, Callable[[Resolver, Any, str], Any]] = {
    "Ref": Resolver._fn_ref,
    "Fn::GetAtt": Resolver._fn_get_att,
    "Fn::Sub": Resolver._fn_sub,
    "Fn::Join": Resolver._fn_join,
    "Fn::Select": Resolver._fn_select,
    "Fn::Split": Resolver._fn_split,
    "Fn::If": Resolver._fn_if,
    "Fn::Equals": Resolver._fn_equals,
    "Fn::Not": Resolver._fn_not,
    "Fn::And": Resolver._fn_and,
    "Fn::Or": Resolver._fn_or,
    "Fn::FindInMap": Resolver._fn_find_in_map,
    "Fn::Base64": Resolver._fn_base64,
    "Fn::ToJsonString": Resolver._fn_to_json_string,
}


# ---------------------------------------------------------------------- dependencies
def references(value: Any) -> set[str]:
    """Names a fragment refers to through Ref, Fn::GetAtt and Fn::Sub (parameters included)."""
    found: set[str] = set()
    _collect(value, found)
    return found - PSEUDO_PARAMETERS


def _collect(value: Any, found: set[str]) -> None:
    name = _intrinsic_name(value)
    if name == "Ref" and isinstance(value[name], str):
        found.add(value[name])
        return
    if name == "Fn::GetAtt":
        args = value[name]
        if isinstance(args, str):
            found.add(args.partition(".")[0])
        elif isinstance(args, list) and args and isinstance(args[0], str):
            found.add(args[0])
            _collect(args[1:], found)
        return
    if name == "Fn::Sub":
        args = value[name]
        text, local = (args, {}) if isinstance(args, str) else (args[0], args[1] if len(args) > 1 else {})
        if isinstance(text, str):
            for token in _SUB_TOKEN.findall(text):
                if not token.startswith("!") and token not in local:
                    found.add(token.partition(".")[0])
        _collect(local, found)
        return
    if isinstance(value, dict):
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)


def resource_dependencies(resources: Mapping[str, Any], parameters: Iterable[str]) -> dict[str, list[str]]:
    """For each logical id, the resources it must follow (references plus `DependsOn`).

    A reference that is neither a parameter, a pseudo parameter nor a resource is an error naming
    the referring resource.
    """
    known_parameters = set(parameters)
    graph: dict[str, list[str]] = {}
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict):
            raise TemplateError(f"Resources.{logical_id}: a resource must be a mapping")
        depends_on = resource.get("DependsOn", [])
        explicit = [depends_on] if isinstance(depends_on, str) else list(depends_on)
        referenced = references({k: v for k, v in resource.items() if k != "DependsOn"})
        needed: list[str] = []
        for name in [*explicit, *sorted(referenced)]:
            if name in known_parameters and name not in explicit:
                continue
            if name not in resources:
                raise TemplateError(f"Resources.{logical_id} refers to unknown resource {name!r}")
            if name not in needed:
                needed.append(name)
        graph[logical_id] = needed
    return graph


def dependency_order(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Every node after the nodes it depends on, otherwise in the graph's own order.

    Raises `DependencyCycleError` with the cycle's path when no such order exists.
    """
    deps = {node: list(edges) for node, edges in graph.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in deps:
        if state.get(root) == 2:
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterable[str]]] = [(root, iter(deps.get(root, [])))]
        state[root] = 1
        path.append(root)
        while stack:
            node, edges = stack[-1]
            nxt = next(iter(edges), None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
                order.append(node)
                continue
            if state.get(nxt) == 1:
                raise DependencyCycleError([*path[path.index(nxt) :], nxt])
            if state.get(nxt) != 2:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(deps.get(nxt, []))))
    return order
