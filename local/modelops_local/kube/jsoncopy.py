"""A deep copy for JSON-shaped objects (dicts, lists and scalars), as everything in the store is.

The controller copies every Deployment, ReplicaSet and Pod it reads several times a second;
`copy.deepcopy` spent most of the controller's time in its memo and dispatch (64 us for a pod
against 17 us here, measured on this machine). Nothing is shared with the original: dicts and lists
are rebuilt, and the scalars a JSON document holds are immutable.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def json_copy(value: T) -> T:
    """A copy of `value` sharing no dict or list with it."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}  # type: ignore[attr-defined,return-value]
    if kind is list:
        return [json_copy(item) for item in value]  # type: ignore[attr-defined,return-value]
    return value
