"""The local runtime's backbone wired as `modelops local` wires it: moto server, Lambda runtime,
moto patches, EventBridge delivery and the scheduler, with a stack deployed from a template."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from modelops_local.aws_server import LocalAws
from modelops_local.events import EventDelivery, Scheduler
from modelops_local.lambda_runtime import LambdaRuntime
from modelops_local.moto_patches import MotoPatches
from modelops_local.stack import StackResources, deploy_stack
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[4]
FIXTURE_TEMPLATE = ROOT / "tests" / "fixtures" / "templates" / "runtime" / "template.yaml"
T = TypeVar("T")


class Backbone:
    """Everything a test drives, plus bounded waiting."""

    def __init__(self, state_dir: Path) -> None:
        self.aws = LocalAws().start()
        self.runtime = LambdaRuntime(state_dir, self.aws.function_environment())
        self.delivery = EventDelivery(self.runtime, self.aws)
        self.scheduler = Scheduler(self.aws, self.delivery)
        self.patches = MotoPatches()
        self.patches.route_lambda(self.runtime)
        self.patches.route_eventbridge(self.delivery)
        self.patches.s3_policy_conditions()
        self.stack: StackResources | None = None

    def deploy(self, template: Path, stack_name: str, parameters: dict[str, Any]) -> StackResources:
        self.stack = deploy_stack(template, stack_name, parameters, self.aws, lambda_runtime=self.runtime)
        return self.stack

    def client(self, service: str) -> Any:
        return self.aws.client(service)

    def settle(self, timeout: float = 20) -> None:
        """Wait until queued event deliveries and asynchronous invocations have finished."""
        assert self.delivery.wait_idle(timeout), "event deliveries still queued"
        assert self.runtime.wait_idle(timeout), "asynchronous invocations still running"

    @staticmethod
    def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 20) -> T:
        return wait_for(probe, what, timeout, interval=0.05)

    def close(self) -> None:
        self.scheduler.stop()
        self.patches.undo()
        self.delivery.shutdown()
        self.runtime.shutdown(timeout=5)
        self.aws.stop()


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backbone]:
    running = Backbone(tmp_path_factory.mktemp("runtime-state"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def fixture_stack(backbone: Backbone) -> StackResources:
    return backbone.deploy(FIXTURE_TEMPLATE, "fx", {"Greeting": "hello"})
