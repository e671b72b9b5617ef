"""STS: who is calling (`Identity`), for the record of who approved, rejected, promoted or aborted."""

from __future__ import annotations

from typing import Any


class StsIdentity:
    def __init__(self, client: Any) -> None:
        self.client = client

    def caller(self) -> str:
        return str(self.client.get_caller_identity()["Arn"])
