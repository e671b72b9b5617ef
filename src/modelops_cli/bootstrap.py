"""`modelops bootstrap`: build the stack's training image in its CodeBuild project and record it.

The same code runs for AWS (after `sam deploy`) and for the local runtime (`modelops local up`
calls `run_bootstrap` once its stack is created). The CLI uses the clients `modelops.adapters.aws`
builds from the environment; the local runtime passes its own `clients` (on its endpoint), so it
never has to point this process's environment at itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelops.errors import BootstrapError
from modelops.model_admin import StackInfo
from modelops.training_image import BootstrapResult, bootstrap_training_image, pack_image_source

#: serving_image/ beside the CLI's source tree (the repository a user deploys from)
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "serving_image"
#: The project's TimeoutInMinutes is 30; queueing and provisioning come on top.
DEFAULT_TIMEOUT_SECONDS = 40 * 60
DEFAULT_POLL_SECONDS = 10.0


def run_bootstrap(
    stack: StackInfo,
    *,
    source: Path = DEFAULT_SOURCE,
    progress: Callable[[str], None] = print,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    clients: Callable[[str], Any] | None = None,
) -> BootstrapResult:
    """Pack `source`, build its `runtime` target unless that source's image exists, record it.
    `clients(service)` gives the boto3 clients (default: `modelops.adapters.aws.client`)."""
    from modelops.adapters import aws
    from modelops.adapters.codebuild import CodeBuildImages, EcrRepository
    from modelops.adapters.s3 import S3Objects
    from modelops.adapters.ssm import SsmParameters

    if not (stack.training_repository_uri and stack.training_image_parameter and stack.codebuild_project):
        raise BootstrapError(
            f"stack {stack.stack_name} was deployed before it had a training repository: run "
            "`sam build && sam deploy` from this checkout first, then `modelops bootstrap`"
        )
    client = clients or aws.client
    archive = pack_image_source(source)
    return bootstrap_training_image(
        archive,
        bucket=stack.bucket,
        parameter=stack.training_image_parameter,
        objects=S3Objects(client("s3")),
        builds=CodeBuildImages(client("codebuild"), project=stack.codebuild_project),
        repository=EcrRepository(
            client("ecr"), name=stack.training_repository_name, uri=stack.training_repository_uri
        ),
        parameters=SsmParameters(client("ssm")),
        progress=progress,
        timeout_seconds=timeout_seconds,
        poll_seconds=poll_seconds,
    )
