"""The local runtime's fault-injection hooks on their own: which requests and invocations they hit."""

from __future__ import annotations

import pytest

from modelops_local.kube.faults import FaultInjector
from modelops_local.lambda_runtime import InvocationFaults


def test_invocation_faults_hit_matching_invocations_of_their_function_n_times():
    # Given a fault on the rollout function's promote invocations, twice
    faults = InvocationFaults()
    fault = faults.add(
        "arn:aws:lambda:us-east-1:123456789012:function:modelops-rollout",
        match=lambda event: event["action"] == "promote",
        timeout=1.0,
        times=2,
    )
    # Then other functions, other actions and events the predicate cannot judge are not hit
    assert faults.take("modelops-run-state", {"action": "promote"}) is None
    assert faults.take("modelops-rollout", {"action": "status"}) is None
    assert faults.take("modelops-rollout", None) is None
    # And matching invocations are, twice only
    assert faults.take("modelops-rollout", {"action": "promote"}) is fault
    assert faults.take("modelops-rollout", {"action": "promote"}) is fault
    assert faults.take("modelops-rollout", {"action": "promote"}) is None
    assert fault.fired == 2 and faults.pending == []


def test_an_invocation_fault_must_do_something():
    with pytest.raises(ValueError, match="timeout or kill_after"):
        InvocationFaults().add("fn")
    with pytest.raises(ValueError, match="at least 1"):
        InvocationFaults().add("fn", timeout=1, times=0)


def test_kube_faults_can_rewrite_a_body_or_call_a_hook_and_be_disarmed():
    # Given a rewrite fault and a hook fault
    faults = FaultInjector()
    rewrite = faults.add("patch", "deployments", status=None, rewrite=lambda ops: [*ops, {"op": "x"}])
    assert rewrite.rewrite is not None and rewrite.rewrite([{"op": "test"}]) == [{"op": "test"}, {"op": "x"}]
    calls: list[str] = []
    hook = faults.add("get", "deployments", status=None, on_match=lambda: calls.append("hit"), times=5)
    # Then each is taken by its own requests; a disarmed fault is taken no more
    assert faults.take("patch", "deployments", "e2e", "m-canary") is rewrite
    assert faults.take("get", "deployments", "e2e", "m-canary") is hook
    faults.remove(hook)
    assert faults.take("get", "deployments", "e2e", "m-canary") is None and faults.pending == []
    # And a fault that would do nothing is refused
    with pytest.raises(ValueError, match="rewrite or on_match"):
        faults.add("get", "deployments", status=None)
