"""SSM Parameter Store (the `Parameters` port) through a boto3 SSM client."""

from __future__ import annotations

from typing import Any

from modelops.adapters.aws import error_code


class SsmParameters:
    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, name: str) -> str | None:
        try:
            return str(self.client.get_parameter(Name=name)["Parameter"]["Value"])
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise

    def put(self, name: str, value: str) -> None:
        self.client.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
