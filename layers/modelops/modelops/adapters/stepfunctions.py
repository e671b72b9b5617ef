"""Step Functions: starting executions (`Executions`) and ending a waiting task (`TaskCallbacks`)."""

from __future__ import annotations

import json
from typing import Any

from modelops.adapters.aws import error_code

#: SendTaskFailure's answers when the task is already over.
_TASK_OVER = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}


class StepFunctionsExecutions:
    def __init__(self, client: Any, *, state_machine_arn: str) -> None:
        self.client = client
        self.state_machine_arn = state_machine_arn

    def start(self, name: str, payload: str) -> str | None:
        try:
            response = self.client.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=payload
            )
        except Exception as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                return None
            raise
        return str(response["executionArn"])


class StepFunctionsCallbacks:
    def __init__(self, client: Any) -> None:
        self.client = client

    def fail(self, token: str, error: str, cause: str) -> bool:
        try:
            self.client.send_task_failure(taskToken=token, error=error, cause=cause)
        except Exception as exc:
            if error_code(exc) in _TASK_OVER:
                return False
            raise
        return True

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        try:
            self.client.send_task_success(taskToken=token, output=json.dumps(output))
        except Exception as exc:
            if error_code(exc) in _TASK_OVER:
                return False
            raise
        return True
