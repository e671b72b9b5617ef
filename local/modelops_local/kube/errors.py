"""API errors that become `kind: Status` bodies, worded like the Kubernetes API server's.

Each error knows its HTTP code and Status `reason`; `to_status()` is the JSON body the server sends,
so the official client raises `ApiException` with the right `status`, and in-process callers of the
store catch the same named errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelops_local.kube.resources import ResourceType


@dataclass(frozen=True)
class Cause:
    """One `details.causes[]` entry: which field is wrong and why."""

    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ...
    message: str  # "Required value", "Invalid value: ...", ...
    field: str  # "spec.template.spec.containers[0].image"

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class KubeApiError(Exception):
    """An API error with an HTTP status code and a Status body."""

    code = 500
    reason = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        code: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason

    def to_status(self) -> dict[str, Any]:
        """The `kind: Status` body the API server answers with."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


class BadRequestError(KubeApiError):
    code = 400
    reason = "BadRequest"


class UnauthorizedError(KubeApiError):
    code = 401
    reason = "Unauthorized"


class ForbiddenError(KubeApiError):
    code = 403
    reason = "Forbidden"


class NotFoundError(KubeApiError):
    code = 404
    reason = "NotFound"


class MethodNotAllowedError(KubeApiError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExistsError(KubeApiError):
    code = 409
    reason = "AlreadyExists"


class ConflictError(KubeApiError):
    code = 409
    reason = "Conflict"


class UnsupportedMediaTypeError(KubeApiError):
    code = 415
    reason = "UnsupportedMediaType"


class InvalidError(KubeApiError):
    code = 422
    reason = "Invalid"

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, causes: list[Cause] | None = None
    ):
        super().__init__(message, details=details)
        self.causes = list(causes or [])


class ServiceUnavailableError(KubeApiError):
    code = 503
    reason = "ServiceUnavailable"


REASONS_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_error(code: int, message: str | None = None) -> KubeApiError:
    """A generic error for `code` (used by fault injection)."""
    reason = REASONS_BY_CODE.get(code, "Unknown")
    return KubeApiError(
        message or f"injected fault: the server answered {code} {reason}", code=code, reason=reason
    )


def success_status(rt: ResourceType, name: str, uid: str | None) -> dict[str, Any]:
    """The Status a DELETE answers with when the resource does not return the deleted object."""
    details: dict[str, Any] = {"name": name, "group": rt.group, "kind": rt.plural}
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _details(rt: ResourceType, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"group": rt.group, "kind": rt.plural}
    if name:
        details = {"name": name, **details}
    return details


def not_found(rt: ResourceType, name: str) -> NotFoundError:
    return NotFoundError(f'{rt.group_resource} "{name}" not found', details=_details(rt, name))


def already_exists(rt: ResourceType, name: str) -> AlreadyExistsError:
    return AlreadyExistsError(f'{rt.group_resource} "{name}" already exists', details=_details(rt, name))


def conflict(rt: ResourceType, name: str) -> ConflictError:
    return ConflictError(
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details=_details(rt, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> InvalidError:
    """`Deployment.apps "x" is invalid: <field>: <why>` with every cause in details."""
    qualified = f"{kind}.{group}" if group else kind
    listed = [str(cause) for cause in causes]
    summary = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    details = {"name": name, "group": group, "kind": kind, "causes": [c.to_dict() for c in causes]}
    return InvalidError(f'{qualified} "{name}" is invalid: {summary}', details=details, causes=causes)


def patch_rejected() -> InvalidError:
    """What the API server answers when a JSON Patch cannot be applied (a failed `test`, a bad path)."""
    return InvalidError("the server rejected our request due to an error in our request", details={})


def forbidden(
    rt_or_resource: ResourceType | str,
    name: str | None,
    *,
    user: str,
    verb: str,
    resource: str,
    group: str,
    namespace: str | None,
) -> ForbiddenError:
    """`deployments.apps "x" is forbidden: User "u" cannot patch resource "deployments" in API group
    "apps" in the namespace "models"` (the RBAC authorizer's wording)."""
    if isinstance(rt_or_resource, ResourceType):
        target, details_kind = rt_or_resource.group_resource, rt_or_resource.plural
    else:
        target, details_kind = rt_or_resource, rt_or_resource
    subject = f'{target} "{name}"' if name else target
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    details: dict[str, Any] = {"group": group, "kind": details_kind}
    if name:
        details = {"name": name, **details}
    return ForbiddenError(
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}" {scope}',
        details=details,
    )
