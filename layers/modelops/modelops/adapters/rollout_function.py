"""The clean-up's `Rollback` port: the rollout function's own `rollback` action, invoked synchronously,
so the one identity that may change a model's Deployments stays the rollout function's."""

from __future__ import annotations

import json
from typing import Any

from modelops.errors import RollbackFailedError
from modelops.run import RunRef


class LambdaRollback:
    def __init__(self, client: Any, *, function: str) -> None:
        self.client = client
        self.function = function

    def __call__(self, run: RunRef) -> dict[str, Any]:
        response = self.client.invoke(
            FunctionName=self.function,
            Payload=json.dumps({"action": "rollback", "run": run.to_payload()}).encode(),
        )
        body = response["Payload"].read()
        payload = json.loads(body) if body else None
        if response.get("FunctionError"):
            raise RollbackFailedError(f"the rollout function's rollback failed: {body[:500]!r}")
        return payload if isinstance(payload, dict) else {"result": payload}
