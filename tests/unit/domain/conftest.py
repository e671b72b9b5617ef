"""Fixtures shared by the domain tests."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from modelops.adapters.store import StateStore
from moto import mock_aws

from tests.state_table import create_state_table


@pytest.fixture
def store(offline_aws: None) -> Iterator[StateStore]:
    """The state table (as template.yaml declares it) on moto's in-process DynamoDB, empty."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_table(ddb, "state")
        yield StateStore("state", ddb)
