"""IAM `Condition` blocks, evaluated the way IAM does for the operators the stack's policies use.

Used by the S3 bucket-policy patch (moto_patches) and by EventBridge's delivery to Lambda
(events: a function's resource policy names the rule allowed to invoke it).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Mapping
from typing import Any

LOG = logging.getLogger(__name__)


def conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """Whether an IAM `Condition` block is met by the request `context` (keys case-insensitive).

    Supports the String*, Arn*, Bool and Null operators and the `...IfExists` forms; a missing key
    fails the condition (as in IAM) and an unknown operator is treated as not met.
    """
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, checks in conditions.items():
        base = operator.removesuffix("IfExists")
        if_exists = base != operator
        for key, expected in (checks or {}).items():
            wanted = [str(e) for e in (expected if isinstance(expected, list) else [expected])]
            actual = lowered.get(key.lower())
            if not _condition_met(base, if_exists, wanted, actual):
                return False
    return True


def _condition_met(operator: str, if_exists: bool, wanted: list[str], actual: str | None) -> bool:
    if operator == "Null":
        return (actual is None) == (wanted[0].lower() == "true")
    if actual is None:
        return if_exists
    tests: dict[str, Callable[[], bool]] = {
        "StringEquals": lambda: actual in wanted,
        "StringNotEquals": lambda: actual not in wanted,
        "StringEqualsIgnoreCase": lambda: actual.lower() in [w.lower() for w in wanted],
        "StringNotEqualsIgnoreCase": lambda: actual.lower() not in [w.lower() for w in wanted],
        "StringLike": lambda: any(fnmatch.fnmatchcase(actual, w) for w in wanted),
        "StringNotLike": lambda: not any(fnmatch.fnmatchcase(actual, w) for w in wanted),
        "ArnEquals": lambda: actual in wanted,
        "ArnLike": lambda: any(fnmatch.fnmatchcase(actual, w) for w in wanted),
        "ArnNotEquals": lambda: actual not in wanted,
        "ArnNotLike": lambda: not any(fnmatch.fnmatchcase(actual, w) for w in wanted),
        "Bool": lambda: actual.lower() in [w.lower() for w in wanted],
    }
    test = tests.get(operator)
    if test is None:
        LOG.warning("IAM condition operator %s is not evaluated locally; treating it as not met", operator)
        return False
    return test()
