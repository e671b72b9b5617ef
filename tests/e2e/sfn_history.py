"""Reading a Step Functions execution's history in the e2e tier."""

from __future__ import annotations

from typing import Any


def history(sfn: Any, arn: str, *, data: bool = False) -> list[dict[str, Any]]:
    """Every history event of the execution, page by page (GetExecutionHistory gives at most 1,000
    a call); without the states' input and output unless `data`, which the tests rarely read."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "executionArn": arn,
        "maxResults": 1000,
        "includeExecutionData": data,
    }
    for _ in range(25):
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]
    raise AssertionError(f"{arn}: more than 25,000 history events")
