"""The embedded moto server: ephemeral port, the environment it hands out, busy ports, bounded stop."""

from __future__ import annotations

import os
import socket
import time

import pytest

from modelops_local.aws_server import LocalAws, PortInUseError

pytestmark = pytest.mark.timeout(60)


def test_serves_on_an_ephemeral_loopback_port_and_leaves_the_environment_alone(monkeypatch):
    from moto import settings
    from moto.stepfunctions.parser.asl.utils import boto_client

    # Given the process environment as it is
    before = dict(os.environ)
    # When the server starts on port 0
    with LocalAws() as aws:
        # Then it listens on 127.0.0.1, clients work against it, and moto calls back into it on
        # its port (Step Functions' interpreter), all without a variable in the process environment
        assert aws.endpoint_url == f"http://127.0.0.1:{aws.port}" and aws.port > 0
        aws.client("s3").create_bucket(Bucket="probe-bucket")
        assert [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]] == ["probe-bucket"]
        assert settings.moto_server_port() == boto_client.moto_server_port() == str(aws.port)
        assert dict(os.environ) == before
        assert aws.function_environment() == {
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    # And stopping gives moto its own port lookup back
    assert dict(os.environ) == before
    monkeypatch.setenv("MOTO_PORT", "5999")
    assert settings.moto_server_port() == boto_client.moto_server_port() == "5999"


def test_a_fresh_server_starts_from_an_empty_account():
    with LocalAws() as first:
        first.client("sqs").create_queue(QueueName="left-over")
    with LocalAws() as second:
        assert second.client("sqs").list_queues().get("QueueUrls", []) == []


def test_a_busy_fixed_port_is_a_clear_error_or_another_port_when_allowed():
    # Given a port some other process holds
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    try:
        # When the server is asked for it
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{busy}: the port is in use"):
            LocalAws(port=busy).start()
        # Then, when allowed, it picks another one instead
        with LocalAws(port=busy, allow_other_port=True) as aws:
            assert aws.port != busy
    finally:
        holder.close()


def test_stop_is_bounded_and_closes_the_port():
    # Given a running server
    aws = LocalAws().start()
    port = aws.port
    # When it stops
    started = time.monotonic()
    aws.stop(timeout=3)
    # Then it stopped within the bound and nothing listens on its port any more
    assert time.monotonic() - started < 3
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
