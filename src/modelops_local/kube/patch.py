"""The three PATCH flavours the API server accepts, with its semantics.

- `application/json-patch+json`: RFC 6902 (add/remove/replace/move/copy/test). A body that is not
  a list is a 400; an operation that cannot be applied (a failed `test`, a missing path) is the
  422 the API server answers.
- `application/merge-patch+json`: RFC 7386 (objects merge, `null` deletes, everything else replaces).
- `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch. Lists whose schema
  says `x-kubernetes-patch-strategy: merge` merge by their `x-kubernetes-patch-merge-key`
  (containers and env by `name`, ports by `containerPort`, conditions by `type`, ...); other lists
  are replaced. Directives: `$patch: replace|delete` (in maps and list elements),
  `$retainKeys`, `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`. Element order
  follows the API server's rules (items new to a list come first unless `$setElementOrder` says
  otherwise).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonpatch
import jsonpointer

from modelops_local.kube.errors import BadRequestError, UnsupportedMediaTypeError, patch_rejected
from modelops_local.kube.schema import SchemaNode

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_CONTENT_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
SET_ELEMENT_ORDER = "$setElementOrder/"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def apply_patch(
    document: dict[str, Any], patch: Any, content_type: str | None, schema: SchemaNode | None
) -> dict[str, Any]:
    """`document` with `patch` applied (the input is not modified).

    BadRequestError for a malformed patch, InvalidError (422) when a JSON Patch cannot be applied,
    UnsupportedMediaTypeError (415) for any other content type.
    """
    kind = check_patch_content_type(content_type)
    if kind == JSON_PATCH:
        return apply_json_patch(document, patch)
    if kind == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise BadRequestError(
                "json: cannot unmarshal array into Go value of type map[string]interface {}"
            )
        merged = apply_merge_patch(document, patch)
        return merged if isinstance(merged, dict) else {}
    return apply_strategic_merge_patch(document, patch, schema)


def check_patch_content_type(content_type: str | None) -> str:
    """The patch media type of `content_type`; UnsupportedMediaTypeError (415) if it is not one."""
    kind = media_type(content_type)
    if kind not in PATCH_CONTENT_TYPES:
        raise UnsupportedMediaTypeError(
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(PATCH_CONTENT_TYPES)
        )
    return kind


# --- RFC 6902 ------------------------------------------------------------------------------------


def apply_json_patch(document: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch; every operation applies or none does."""
    if not isinstance(operations, list):
        raise BadRequestError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    if not all(isinstance(op, dict) for op in operations):
        raise BadRequestError(
            "json: cannot unmarshal non-object operation into Go value of type jsonpatch.Operation"
        )
    try:
        result = jsonpatch.apply_patch(document, operations, in_place=False)
    except (
        jsonpatch.JsonPatchException,
        jsonpointer.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
    ):
        raise patch_rejected() from None
    if not isinstance(result, dict):
        raise patch_rejected()
    return result


# --- RFC 7386 ------------------------------------------------------------------------------------


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` removes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# --- strategic merge patch --------------------------------------------------------------------------


def apply_strategic_merge_patch(
    document: dict[str, Any], patch: Any, schema: SchemaNode | None
) -> dict[str, Any]:
    """Apply a strategic merge patch, using `schema` (the object's OpenAPI schema) for list strategies."""
    if not isinstance(patch, dict):
        raise BadRequestError("json: cannot unmarshal array into Go value of type map[string]interface {}")
    merged = _merge_map(copy.deepcopy(document), copy.deepcopy(patch), schema)
    return _strip_directives(merged)


def _merge_map(
    original: dict[str, Any] | None, patch: dict[str, Any], node: SchemaNode | None
) -> dict[str, Any]:
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == "replace":
            return patch
        if directive == "delete":
            return {}
        raise BadRequestError(f"Unknown patch type: {directive} in map: {patch}")
    original = {} if original is None else original
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, node)
    for key, patch_value in list(patch.items()):
        is_delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = key[len(DELETE_FROM_PRIMITIVE_LIST) :]
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not is_delete_list:
                original[key] = _strip_directives(patch_value)
            continue
        current = original[key]
        child = node.child(key) if node is not None else None
        strategies = child.patch_strategies if child is not None else frozenset()
        if isinstance(current, dict) and isinstance(patch_value, dict):
            original[key] = (
                patch_value if "replace" in strategies else _merge_map(current, patch_value, child)
            )
        elif isinstance(current, list) and isinstance(patch_value, list):
            original[key] = _merge_list_field(current, patch_value, child, strategies, is_delete_list)
        elif is_delete_list:
            raise BadRequestError("invalid patch format of primitive list")
        else:
            original[key] = patch_value
    return original


def _merge_list_field(
    original: list[Any],
    patch: list[Any],
    node: SchemaNode | None,
    strategies: frozenset[str],
    is_delete_list: bool,
) -> list[Any]:
    if is_delete_list:
        return [value for value in original if value not in patch]
    if "merge" not in strategies:
        return patch
    return _merge_list(original, patch, node.items() if node else None, node.merge_key if node else None)


def _merge_list(
    original: list[Any], patch: list[Any], items: SchemaNode | None, merge_key: str | None
) -> list[Any]:
    if not original and not patch:
        return original
    elements = original + patch
    if any(isinstance(e, list) for e in elements):
        raise BadRequestError("lists of lists are not supported")
    if len({type(e) is dict for e in elements}) > 1:
        raise BadRequestError(f"list element types are not identical: {elements}")
    if not isinstance(elements[0], dict):
        merged = []
        for value in elements:
            if value not in merged:
                merged.append(value)
        server_order = original
    else:
        if not merge_key:
            raise BadRequestError("cannot merge lists without merge key")
        original, patch = _apply_list_directives(original, patch, merge_key)
        server_order = list(original)
        merged = list(original)
        for element in patch:
            if merge_key not in element:
                raise BadRequestError(f"map: {element} does not contain declared merge key: {merge_key}")
            index = _find(merged, merge_key, element[merge_key])
            if index is None:
                merged.append(_strip_directives(element))
            else:
                merged[index] = _merge_map(merged[index], element, items)
    patch_items, server_only = _partition(merged, patch, merge_key)
    return _normalize_order(patch_items, server_only, patch, server_order, merge_key)


def _apply_list_directives(
    original: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    """Handle `$patch` elements: delete by merge key, or replace the whole list."""
    plain, replace = [], False
    for element in patch:
        if DIRECTIVE not in element:
            plain.append(element)
            continue
        directive = element[DIRECTIVE]
        if directive == "delete":
            if merge_key not in element:
                raise BadRequestError(f"map: {element} does not contain declared merge key: {merge_key}")
            original = [
                e
                for e in original
                if not (isinstance(e, dict) and e.get(merge_key, _MISSING) == element[merge_key])
            ]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise BadRequestError("merging lists cannot yet be specified in the patch")
        else:
            raise BadRequestError(f"Unknown patch type: {directive} in map: {element}")
    if replace:
        return [_strip_directives(e) for e in plain], []
    return original, plain


_MISSING = object()


def _find(elements: list[Any], merge_key: str, value: Any) -> int | None:
    for index, element in enumerate(elements):
        if isinstance(element, dict) and merge_key in element and element[merge_key] == value:
            return index
    return None


def _index_fn(merge_key: str | None) -> Callable[[list[Any], Any], int]:
    def index(order: list[Any], item: Any) -> int:
        for position, candidate in enumerate(order):
            if merge_key:
                if (
                    isinstance(candidate, dict)
                    and isinstance(item, dict)
                    and candidate.get(merge_key, _MISSING) == item.get(merge_key)
                ):
                    return position
            elif candidate == item:
                return position
        return -1

    return index


def _partition(merged: list[Any], by: list[Any], merge_key: str | None) -> tuple[list[Any], list[Any]]:
    index = _index_fn(merge_key)
    present: list[Any] = []
    absent: list[Any] = []
    for element in merged:
        (present if index(by, element) >= 0 else absent).append(element)
    return present, absent


def _normalize_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str | None,
) -> list[Any]:
    """Patch items in patch order, server-only items in server order, interleaved by server order."""
    index = _index_fn(merge_key)

    def by(order: list[Any]) -> Callable[[Any], int]:
        return lambda item: index(order, item) if index(order, item) >= 0 else len(order)

    left = sorted(server_only, key=by(server_order))
    right = sorted(patch_items, key=by(patch_order))
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li, ri = index(server_order, left[i]), index(server_order, right[j])
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise BadRequestError("invalid patch format of retainKeys")
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in retain:
            raise BadRequestError("invalid patch format of retainKeys")
    for key in list(original):
        if key not in retain:
            del original[key]


def _apply_set_element_order(
    original: dict[str, Any], patch: dict[str, Any], node: SchemaNode | None
) -> None:
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise BadRequestError("invalid patch format of setElementOrder list")
        field = key[len(SET_ELEMENT_ORDER) :]
        current, wanted = original.get(field), patch.get(field)
        if (current is not None and not isinstance(current, list)) or (
            wanted is not None and not isinstance(wanted, list)
        ):
            raise BadRequestError("invalid patch format of setElementOrder list")
        child = node.child(field) if node is not None else None
        merge_key = child.merge_key if child is not None else None
        if current is not None and wanted is not None:
            strategies = child.patch_strategies if child is not None else frozenset()
            merged = _merge_list_field(current, wanted, child, strategies, False)
        elif current is not None:
            merged = current
        elif wanted is not None:
            merged = wanted
        else:
            continue
        patch_items, server_only = _partition(merged, order, merge_key)
        original[field] = _normalize_order(patch_items, server_only, order, current or [], merge_key)
        patch.pop(field, None)


def _strip_directives(value: Any) -> Any:
    """`value` without patch directives (for parts of a patch taken over as they are)."""
    if isinstance(value, dict):
        if value.get(DIRECTIVE) == "delete":
            return {}
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if k not in (DIRECTIVE, RETAIN_KEYS)
            and not k.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER))
        }
    if isinstance(value, list):
        return [
            _strip_directives(v)
            for v in value
            if not (isinstance(v, dict) and v.get(DIRECTIVE) in ("delete", "replace"))
        ]
    return value
