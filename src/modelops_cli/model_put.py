"""`modelops model put`: store a validated model config, its alarms and its schedules.

The CLI runs it with the clients `modelops.adapters.aws` builds from the environment; the local
runtime (`modelops local up`, the demo) runs the same code with its own `clients`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelops.config import ModelConfig
from modelops.model_admin import StackInfo


def put_model_config(
    config: ModelConfig,
    stack: StackInfo,
    *,
    base_dir: Path,
    clients: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Upload a local training.script.source (relative to `base_dir`, the config file's folder),
    then store the config with its alarms and schedules; returns what `put_model` reports.
    `clients(service)` gives the boto3 clients (default: `modelops.adapters.aws.client`)."""
    from modelops.adapters import aws
    from modelops.adapters.cloudwatch import CloudWatchMetrics
    from modelops.adapters.s3 import S3Objects
    from modelops.adapters.store import StateStore
    from modelops.model_admin import put_model
    from modelops.script_code import publish_script_code

    client = clients or aws.client
    if config.training.script is not None:
        config = publish_script_code(
            config, base_dir=base_dir, bucket=stack.bucket, objects=S3Objects(client("s3"))
        )
    metrics = CloudWatchMetrics(
        client("cloudwatch"), namespace=stack.metric_namespace, alarm_prefix=stack.alarm_prefix
    )
    store = StateStore(stack.table, client("dynamodb"))
    return put_model(config, stack=stack, store=store, metrics=metrics, scheduler=client("scheduler"))
