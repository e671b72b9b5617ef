"""EKS tokens: accepted when EKS would accept them, rejected (None -> 401) for the reasons EKS rejects."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from modelops_local.kube import EksTokenValidator, TokenRejectedError

CREDENTIALS = {"testing": "testing"}


def _url(token: str) -> str:
    encoded = token.removeprefix("k8s-aws-v1.")
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


def _token(url: str) -> str:
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _with_params(token: str, **changes: str | None) -> str:
    parts = urlsplit(_url(token))
    params = dict(parse_qsl(parts.query))
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return _token(urlunsplit(parts._replace(query=urlencode(params))))


def test_a_get_token_style_token_authenticates_as_its_access_key(make_eks_token):
    # Given a token made like `aws eks get-token --cluster-name demo`
    token = make_eks_token("demo")
    # When the API server validates it, Then it is the access key's identity
    assert EksTokenValidator("demo", CREDENTIALS)(token) == "testing"


def test_usernames_map_access_keys_to_arns(make_eks_token):
    arn = "arn:aws:sts::123456789012:assumed-role/modelops-functions/rollout"
    validator = EksTokenValidator("demo", {"AKIAEXAMPLE": "s3cret"}, usernames={"AKIAEXAMPLE": arn})
    assert (
        validator(make_eks_token("demo", key="AKIAEXAMPLE", secret="s3cret", session_token="session")) == arn
    )


def test_tokens_from_a_local_sts_endpoint_over_http_are_accepted(make_eks_token):
    token = make_eks_token("demo", endpoint="http://127.0.0.1:5000")
    assert EksTokenValidator("demo", CREDENTIALS)(token) == "testing"


def test_a_token_for_another_cluster_is_rejected(make_eks_token):
    # Given a token signed for cluster "other"
    token = make_eks_token("other")
    # Then the signature does not hold for "demo" (the cluster id is part of what is signed)
    with pytest.raises(TokenRejectedError, match="signature does not match"):
        EksTokenValidator("demo", CREDENTIALS).verify(token)


def test_tokens_are_valid_for_fifteen_minutes_whatever_x_amz_expires_says(make_eks_token):
    token = make_eks_token("demo")
    signed_at = time.time()
    # Then 14 minutes later it still works (X-Amz-Expires=60 is ignored, as STS ignores it)
    assert EksTokenValidator("demo", CREDENTIALS, clock=lambda: signed_at + 14 * 60)(token) == "testing"
    # And 16 minutes later it has expired
    with pytest.raises(TokenRejectedError, match="expired"):
        EksTokenValidator("demo", CREDENTIALS, clock=lambda: signed_at + 16 * 60).verify(token)
    with pytest.raises(TokenRejectedError, match="future"):
        EksTokenValidator("demo", CREDENTIALS, clock=lambda: signed_at - 10 * 60).verify(token)


def test_a_wrong_secret_or_unknown_key_is_rejected(make_eks_token):
    assert EksTokenValidator("demo", {"testing": "other-secret"})(make_eks_token("demo")) is None
    with pytest.raises(TokenRejectedError, match="unknown access key"):
        EksTokenValidator("demo", {"someone": "x"}).verify(make_eks_token("demo"))


def test_credentials_may_be_a_lookup_function(make_eks_token):
    assert (
        EksTokenValidator("demo", lambda key: "testing" if key == "testing" else None)(make_eks_token("demo"))
        == "testing"
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"Action": "AssumeRole"}, "unexpected action"),
        ({"Version": "2020-01-01"}, "unexpected version"),
        ({"X-Amz-Algorithm": "AWS4-HMAC-SHA1"}, "X-Amz-Algorithm"),
        ({"X-Amz-SignedHeaders": "host"}, "did not sign the x-k8s-aws-id header"),
        ({"X-Amz-SignedHeaders": "host;x-k8s-aws-id;x-extra"}, "cannot reproduce"),
        ({"X-Amz-Expires": "901"}, "invalid X-Amz-Expires"),
        ({"X-Amz-Date": None}, "X-Amz-Date parameter must be present"),
        ({"Extra": "1"}, "non-whitelisted query parameter"),
        ({"X-Amz-Credential": "testing/20200101/us-east-1/s3/aws4_request"}, "malformed X-Amz-Credential"),
    ],
)
def test_url_shape_is_checked_like_eks(make_eks_token, changes, reason):
    token = _with_params(make_eks_token("demo"), **changes)
    with pytest.raises(TokenRejectedError, match=reason):
        EksTokenValidator("demo", CREDENTIALS).verify(token)


def test_tampering_with_a_signed_parameter_breaks_the_signature(make_eks_token):
    token = _with_params(make_eks_token("demo"), **{"X-Amz-Expires": "900"})
    with pytest.raises(TokenRejectedError, match="signature does not match"):
        EksTokenValidator("demo", CREDENTIALS).verify(token)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("k8s-aws-v2.abc", "prefix"),
        ("k8s-aws-v1.aGVsbG8=", "unpadded base64url"),
        ("k8s-aws-v1." + "A" * 5000, "too large"),
    ],
)
def test_malformed_tokens_are_rejected(token, reason):
    with pytest.raises(TokenRejectedError, match=reason):
        EksTokenValidator("demo", CREDENTIALS).verify(token)


def test_hosts_and_schemes_are_checked(make_eks_token):
    token = make_eks_token("demo")
    plain_http = _token(_url(token).replace("https://", "http://"))
    with pytest.raises(TokenRejectedError, match="unexpected scheme"):
        EksTokenValidator("demo", CREDENTIALS).verify(plain_http)
    with pytest.raises(TokenRejectedError, match="unexpected hostname"):
        EksTokenValidator("demo", CREDENTIALS, allowed_hosts={"sts.eu-west-1.amazonaws.com"}).verify(token)
    elsewhere = _token(_url(token).replace("sts.us-east-1.amazonaws.com", "sts.example.com"))
    with pytest.raises(TokenRejectedError, match="unexpected hostname"):
        EksTokenValidator("demo", CREDENTIALS).verify(elsewhere)
