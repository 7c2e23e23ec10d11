"""Bearer JWT decoding: anonymous without a header, 401 for every doubtful token (S2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from backend.auth import Principal, decode_bearer
from backend.errors import ErrorCode, LorechatError
from backend.settings import AuthSettings

SECRET = "s" * 64  # long enough for HS512 too: PyJWT warns (an error here) below that
HS = AuthSettings(jwt_secret=SECRET, jwt_algorithms=["HS256"])


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "user-42", "exp": int(time.time()) + 300}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _hs(claims: dict[str, Any] | None = None, secret: str = SECRET, alg: str = "HS256") -> str:
    return "Bearer " + jwt.encode(claims or _claims(), secret, algorithm=alg)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _rejected(header: str, settings: AuthSettings = HS) -> None:
    with pytest.raises(LorechatError) as caught:
        decode_bearer(header, settings)
    assert caught.value.code is ErrorCode.unauthorized and caught.value.status == 401
    # One message whatever the reason: no hints for whoever is probing.
    assert caught.value.message == "Invalid or expired token"


def _pem_pair(private_key: Any) -> tuple[bytes, str]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def test_no_header_is_anonymous() -> None:
    assert decode_bearer(None, HS) is None
    assert decode_bearer("", HS) is None


def test_valid_hs256_token() -> None:
    assert decode_bearer(_hs(), HS) == Principal(user_id="user-42")
    assert decode_bearer("bearer  " + _hs()[7:], HS) == Principal(user_id="user-42")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Token abc", "Bearer not.a.jwt", "Bearer a.b", "Bearer " + "x" * 9000],
)
def test_malformed_headers(header: str) -> None:
    _rejected(header)


def test_alg_none_is_refused() -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    _rejected("Bearer " + unsigned)
    _rejected("Bearer " + unsigned, AuthSettings(jwt_secret=SECRET, jwt_algorithms=["HS256", "RS256"]))


def test_algorithm_not_configured_is_refused() -> None:
    _rejected(_hs(alg="HS512"))


def test_expiry_is_required_and_checked() -> None:
    _rejected(_hs(_claims(exp=int(time.time()) - 60)))
    _rejected(_hs(_claims(exp=None)))


def test_subject_is_required() -> None:
    _rejected(_hs(_claims(sub=None)))
    _rejected(_hs(_claims(sub="")))


def test_tampered_signature_or_payload() -> None:
    token = _hs()[7:]
    header, payload, signature = token.split(".")
    forged_payload = _b64(_claims(sub="admin"))
    _rejected(f"Bearer {header}.{forged_payload}.{signature}")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    _rejected(f"Bearer {header}.{payload}.{flipped}")
    _rejected(_hs(secret="t" * 64))


def test_audience_and_issuer_when_configured() -> None:
    settings = AuthSettings(jwt_secret=SECRET, jwt_audience="lorechat", jwt_issuer="https://id.example")
    good = _claims(aud="lorechat", iss="https://id.example")
    assert decode_bearer(_hs(good), settings) == Principal(user_id="user-42")
    _rejected(_hs(_claims(aud="other", iss="https://id.example")), settings)
    _rejected(_hs(_claims(iss="https://id.example")), settings)
    _rejected(_hs(_claims(aud="lorechat", iss="https://evil.example")), settings)
    _rejected(_hs(_claims(aud="lorechat")), settings)


def test_no_key_configured_refuses_every_token() -> None:
    _rejected(_hs(), AuthSettings(jwt_algorithms=["HS256"]))
    _rejected(_hs(), AuthSettings(jwt_algorithms=["HS256", "RS256"], jwt_public_key=""))


def test_rs256_and_es256_with_public_key() -> None:
    rsa_private, rsa_public = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    rs = AuthSettings(jwt_public_key=rsa_public, jwt_algorithms=["RS256"])
    rs_token = "Bearer " + jwt.encode(_claims(), rsa_private, algorithm="RS256")
    assert decode_bearer(rs_token, rs) == Principal("user-42")
    other_private, _ = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    _rejected("Bearer " + jwt.encode(_claims(), other_private, algorithm="RS256"), rs)

    ec_private, ec_public = _pem_pair(ec.generate_private_key(ec.SECP256R1()))
    es = AuthSettings(jwt_public_key=ec_public, jwt_algorithms=["ES256"])
    es_token = "Bearer " + jwt.encode(_claims(), ec_private, algorithm="ES256")
    assert decode_bearer(es_token, es) == Principal("user-42")


def test_public_key_cannot_be_used_as_hmac_secret() -> None:
    """Key confusion: an HS256 token signed with the (public) RSA key must not verify."""
    _, rsa_public = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    header = _b64({"alg": "HS256", "typ": "JWT"})
    body = _b64(_claims())
    signature = hmac.new(rsa_public.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"
    _rejected("Bearer " + forged, AuthSettings(jwt_public_key=rsa_public, jwt_algorithms=["RS256", "HS256"]))
    _rejected("Bearer " + forged, AuthSettings(jwt_public_key=rsa_public, jwt_algorithms=["RS256"]))
