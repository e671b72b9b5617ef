"""The guard on our moto patch: it fails loudly, naming the symbol, when moto's internals change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.cloudwatch.models import CloudWatchBackend
from moto.cloudwatch.responses import CloudWatchResponse

from modelops_local import moto_cloudwatch_patch as patch
from modelops_local.cloudwatch import MotoPatchError


@pytest.fixture
def unpatched() -> Iterator[None]:
    """moto as shipped for the test; whatever was applied before is restored after."""
    was_applied = patch.is_applied()
    patch.remove()
    yield
    patch.remove()
    if was_applied:
        patch.apply()


def test_the_pinned_moto_has_every_symbol_the_patch_relies_on(unpatched):
    # Given moto as pinned  When checked  Then nothing the patch touches has changed
    patch.check_compatibility()


def test_apply_and_remove_swap_exactly_the_patched_methods(unpatched):
    # Given moto's own methods
    own = (
        CloudWatchBackend.get_metric_data,
        CloudWatchBackend.put_metric_alarm,
        CloudWatchBackend.set_alarm_state,
    )
    # When applied (twice: idempotent)
    patch.apply()
    patch.apply()
    # Then the methods are ours and DescribeAlarmHistory exists
    assert CloudWatchBackend.get_metric_data is not own[0]
    assert "describe_alarm_history" in CloudWatchResponse.__dict__
    # When removed  Then moto is as shipped
    patch.remove()
    assert (
        CloudWatchBackend.get_metric_data,
        CloudWatchBackend.put_metric_alarm,
        CloudWatchBackend.set_alarm_state,
    ) == own
    assert "describe_alarm_history" not in CloudWatchResponse.__dict__


def test_a_changed_signature_is_reported_by_name(unpatched, monkeypatch):
    # Given moto's set_alarm_state grew a parameter
    def set_alarm_state(self, alarm_name, reason, reason_data, state_value, timestamp):  # pragma: no cover
        raise AssertionError("never called")

    expected = patch.EXPECTED_SIGNATURES["CloudWatchBackend.set_alarm_state"][1]
    monkeypatch.setitem(
        patch.EXPECTED_SIGNATURES, "CloudWatchBackend.set_alarm_state", (set_alarm_state, expected)
    )
    # When the patch is applied  Then it refuses, naming the symbol, and leaves moto untouched
    own = CloudWatchBackend.set_alarm_state
    with pytest.raises(
        MotoPatchError, match=r"CloudWatchBackend\.set_alarm_state parameters are .*timestamp"
    ):
        patch.apply()
    assert CloudWatchBackend.set_alarm_state is own
    assert not patch.is_applied()


def test_moto_implementing_alarm_history_itself_is_reported(unpatched, monkeypatch):
    # Given a moto that implements DescribeAlarmHistory
    monkeypatch.setattr(CloudWatchResponse, "describe_alarm_history", lambda self: None, raising=False)
    # When checked  Then we are told to drop our version
    with pytest.raises(MotoPatchError, match="moto now implements CloudWatchResponse.describe_alarm_history"):
        patch.check_compatibility()


def test_a_renamed_attribute_is_reported(unpatched, monkeypatch):
    # Given moto's alarms stopped having a state_reason_data attribute
    monkeypatch.setattr(patch, "ALARM_ATTRIBUTES", (*patch.ALARM_ATTRIBUTES, "state_reason_details"))
    # When checked  Then the missing attribute is named
    with pytest.raises(MotoPatchError, match="Alarm has no attribute 'state_reason_details'"):
        patch.check_compatibility()
