"""Reading a Step Functions execution's history in the e2e tier.

The tests poll histories (has the run entered Watch yet?) while the run grows them. A history is
append-only with consecutive event ids, so a poll reads only the events newer than the last one it
saw: pages newest first (`reverseOrder`) until it meets a known id. Re-reading whole histories on
every poll had moto serialising about 18 KB per call, 8.6 s of one lane's CPU over the fault matrix
and the canary steps.
"""

from __future__ import annotations

import threading
from typing import Any

_known: dict[tuple[str, bool], list[dict[str, Any]]] = {}
_lock = threading.Lock()


def history(sfn: Any, arn: str, *, data: bool = False) -> list[dict[str, Any]]:
    """Every history event of the execution, oldest first; without the states' input and output
    unless `data`, which the tests rarely read."""
    with _lock:
        known = _known.get((arn, data), [])
    last = known[-1]["id"] if known else 0
    newer: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "executionArn": arn,
        "maxResults": 10 if known else 1000,  # a poll finds a few new events
        "includeExecutionData": data,
        "reverseOrder": True,
    }
    for _ in range(250):
        page = sfn.get_execution_history(**kwargs)
        events = page["events"]
        newer += [e for e in events if e["id"] > last]
        overlap = [e for e in events if e["id"] <= last]
        if overlap:
            seen = overlap[0]
            if seen != known[seen["id"] - 1]:  # another execution under this ARN (a new local runtime)
                with _lock:
                    _known.pop((arn, data), None)
                return history(sfn, arn, data=data)
            break
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    else:
        raise AssertionError(f"{arn}: more than 25,000 new history events")
    events = known + newer[::-1]
    if [e["id"] for e in events] != list(range(1, len(events) + 1)):
        raise AssertionError(f"{arn}: history ids are not 1..{len(events)}")
    with _lock:
        _known[(arn, data)] = events
    return list(events)
