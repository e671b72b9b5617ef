"""EKS bearer tokens, verified the way EKS (aws-iam-authenticator) verifies them, offline.

A token is `k8s-aws-v1.` + base64url (no padding) of a presigned STS GetCallerIdentity URL, SigV4
signed with the header `x-k8s-aws-id: <cluster name>` (`aws eks get-token`). EKS checks the URL's
shape (host, path, allow-listed query parameters, action, the cluster header among the signed
headers, `X-Amz-Expires` within 0..900), that the URL is at most 15 minutes old (STS ignores
`X-Amz-Expires`), then lets STS check the signature. Here the signature is recomputed with
botocore from the secret key of the access key in the token: local credentials are known.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote, urlsplit

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

log = logging.getLogger(__name__)

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
MAX_TOKEN_BYTES = 4096
TOKEN_LIFETIME_SECONDS = 15 * 60
MAX_CLOCK_SKEW_SECONDS = 5 * 60
ALLOWED_PARAMETERS = frozenset(
    {
        "action",
        "version",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-signedheaders",
    }
)
SIGNABLE_HEADERS = frozenset({"host", CLUSTER_ID_HEADER})
STS_HOST = re.compile(r"^sts(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?$")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class TokenRejectedError(ValueError):
    """The token is not a valid EKS token for this cluster (the message says why)."""


class EksTokenValidator:
    """`authenticate(token) -> username | None` for EKS tokens of one cluster.

    `credentials` maps access key id -> secret access key (or is a lookup function); `clock`
    returns the current time in epoch seconds. The username is `usernames[access_key_id]` when
    given (e.g. an `arn:aws:sts::123456789012:assumed-role/...`), else the access key id.
    `allowed_hosts` restricts the STS host in the URL; by default real STS hosts (https) and
    loopback hosts (a local STS such as moto, http or https) are accepted.
    """

    def __init__(
        self,
        cluster_name: str,
        credentials: Mapping[str, str] | Callable[[str], str | None],
        clock: Callable[[], float] = time.time,
        *,
        usernames: Mapping[str, str] | None = None,
        allowed_hosts: Collection[str] | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self._secret_for = credentials.get if isinstance(credentials, Mapping) else credentials
        self._clock = clock
        self._usernames = dict(usernames or {})
        self._allowed_hosts = frozenset(allowed_hosts) if allowed_hosts is not None else None

    def __call__(self, token: str) -> str | None:
        """The username for a valid token; None (the API server answers 401) otherwise."""
        try:
            return self.verify(token)
        except TokenRejectedError as exc:
            log.info("EKS token rejected: %s", exc)
            return None

    def verify(self, token: str) -> str:
        """The username for `token`; TokenRejectedError saying why it is not valid."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejectedError("token is too large")
        if not token.startswith(TOKEN_PREFIX):
            raise TokenRejectedError(f"token is missing expected {TOKEN_PREFIX!r} prefix")
        url = _decode(token[len(TOKEN_PREFIX) :])
        parts = urlsplit(url)
        self._check_host(parts.scheme, parts.hostname or "")
        if parts.path != "/":
            raise TokenRejectedError("unexpected path in pre-signed URL")
        params = _query(parts.query)
        if params.get("action") != "GetCallerIdentity":
            raise TokenRejectedError("unexpected action parameter in pre-signed URL")
        if params.get("version") != "2011-06-15":
            raise TokenRejectedError("unexpected version parameter in pre-signed URL")
        if params.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
            raise TokenRejectedError("unexpected X-Amz-Algorithm in pre-signed URL (want AWS4-HMAC-SHA256)")
        signed = {h.strip().lower() for h in params.get("x-amz-signedheaders", "").split(";") if h.strip()}
        if CLUSTER_ID_HEADER not in signed:
            raise TokenRejectedError(
                f"client did not sign the {CLUSTER_ID_HEADER} header in the pre-signed URL"
            )
        if not signed <= SIGNABLE_HEADERS:
            raise TokenRejectedError(
                f"pre-signed URL signs headers the verifier cannot reproduce: {sorted(signed - SIGNABLE_HEADERS)}"
            )
        expires = params.get("x-amz-expires", "")
        if not expires.isdigit() or not 0 <= int(expires) <= 900:
            raise TokenRejectedError(f"invalid X-Amz-Expires parameter in pre-signed URL: {expires!r}")
        amz_date = params.get("x-amz-date", "")
        self._check_time(amz_date)
        access_key, region = self._check_credential(params.get("x-amz-credential", ""), amz_date)
        secret = self._secret_for(access_key)
        if not secret:
            raise TokenRejectedError(f"unknown access key {access_key!r}")
        expected = self._signature(
            parts.scheme, parts.netloc, parts.query, amz_date, int(expires), access_key, secret, region
        )
        if not hmac.compare_digest(expected, params.get("x-amz-signature", "")):
            raise TokenRejectedError(
                f"signature does not match (signed for another cluster than {self.cluster_name!r}, or another secret)"
            )
        return self._usernames.get(access_key, access_key)

    def _check_host(self, scheme: str, host: str) -> None:
        if self._allowed_hosts is not None:
            allowed = host in self._allowed_hosts
        else:
            allowed = bool(STS_HOST.match(host)) or host in LOOPBACK_HOSTS
        if not allowed:
            raise TokenRejectedError(f"unexpected hostname {host!r} in pre-signed URL")
        if scheme != "https" and not (scheme == "http" and host in LOOPBACK_HOSTS):
            raise TokenRejectedError(f"unexpected scheme {scheme!r} in pre-signed URL")

    def _check_time(self, amz_date: str) -> None:
        if not amz_date:
            raise TokenRejectedError("X-Amz-Date parameter must be present in pre-signed URL")
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise TokenRejectedError(f"error parsing X-Amz-Date parameter {amz_date!r}") from None
        now = self._clock()
        if now > signed_at + TOKEN_LIFETIME_SECONDS:
            raise TokenRejectedError(f"X-Amz-Date parameter is expired (15 minute expiration) {amz_date}")
        if signed_at > now + MAX_CLOCK_SKEW_SECONDS:
            raise TokenRejectedError(f"X-Amz-Date parameter is in the future: {amz_date}")

    @staticmethod
    def _check_credential(credential: str, amz_date: str) -> tuple[str, str]:
        parts = credential.split("/")
        if len(parts) != 5 or parts[3] != "sts" or parts[4] != "aws4_request" or parts[1] != amz_date[:8]:
            raise TokenRejectedError("malformed X-Amz-Credential in pre-signed URL")
        return parts[0], parts[2]

    def _signature(
        self,
        scheme: str,
        netloc: str,
        query: str,
        amz_date: str,
        expires: int,
        access_key: str,
        secret: str,
        region: str,
    ) -> str:
        """SigV4 of the GET the EKS verifier makes (with its own cluster name as x-k8s-aws-id)."""
        unsigned = "&".join(
            piece
            for piece in query.split("&")
            if unquote(piece.split("=", 1)[0]).lower() != "x-amz-signature"
        )
        request = AWSRequest(
            method="GET",
            url=f"{scheme}://{netloc}/?{unsigned}",
            headers={CLUSTER_ID_HEADER: self.cluster_name},
        )
        request.context["timestamp"] = amz_date
        signer = SigV4QueryAuth(Credentials(access_key, secret), "sts", region, expires)
        canonical = signer.canonical_request(request)
        return str(signer.signature(signer.string_to_sign(request, canonical), request))


def _decode(encoded: str) -> str:
    if "=" in encoded or not re.fullmatch(r"[A-Za-z0-9_-]*", encoded):
        raise TokenRejectedError("token is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenRejectedError(f"token does not decode: {exc}") from None


def _query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise TokenRejectedError("malformed query parameter") from None
    for key, value in pairs:
        lowered = key.lower()
        if lowered not in ALLOWED_PARAMETERS:
            raise TokenRejectedError(f"non-whitelisted query parameter {key!r}")
        if lowered in params:
            raise TokenRejectedError("query parameter with multiple values not supported")
        params[lowered] = value
    return params
