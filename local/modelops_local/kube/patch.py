"""The two PATCH flavours this stand-in accepts, with the API server's semantics.

- `application/json-patch+json`: RFC 6902 (add/remove/replace/move/copy/test): how the product
  patches a Deployment (a `test` op guards the container name). A body that is not a list is a
  400; an operation that cannot be applied (a failed `test`, a missing path) is the 422 the API
  server answers.
- `application/merge-patch+json`: RFC 7386 (objects merge, `null` deletes, everything else
  replaces): how the local controller, kubelet and tests write in-process.

Strategic merge patch (the official client's default for a dict body) is not accepted: nothing in
modelops sends one, and the answer is the 415 an API server gives for a media type it does not take.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from modelops_local.kube.errors import BadRequestError, UnsupportedMediaTypeError, patch_rejected
from modelops_local.kube.jsoncopy import json_copy

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
PATCH_CONTENT_TYPES = (JSON_PATCH, MERGE_PATCH)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def apply_patch(document: dict[str, Any], patch: Any, content_type: str | None) -> dict[str, Any]:
    """`document` with `patch` applied (the input is not modified).

    BadRequestError for a malformed patch, InvalidError (422) when a JSON Patch cannot be applied,
    UnsupportedMediaTypeError (415) for any other content type.
    """
    kind = check_patch_content_type(content_type)
    if kind == JSON_PATCH:
        return apply_json_patch(document, patch)
    if not isinstance(patch, dict):
        raise BadRequestError("json: cannot unmarshal array into Go value of type map[string]interface {}")
    merged = apply_merge_patch(document, patch)
    return merged if isinstance(merged, dict) else {}


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
        return json_copy(patch)
    result = json_copy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result
