"""The state table as template.yaml declares it (pk/sk strings, on demand), for tests on moto."""

from __future__ import annotations

from typing import Any


def create_state_table(ddb: Any, name: str) -> None:
    """Create the modelops state table `name` with the DynamoDB client `ddb`."""
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
    )
