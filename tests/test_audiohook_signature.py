from __future__ import annotations

import pytest

from mgsim.errors import ConfigError, MediaError
from mgsim.media.audiohook_signature import (
    AUDIOHOOK_COMPONENTS,
    CLOCK_SKEW_S,
    MAX_SIGNATURE_AGE_S,
    AudioHookSignatureError,
    NonceCache,
    check_api_key,
    sign_request,
    verify_signature,
)

# The public AudioHook test vector.
API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
PATH = "/api/v1/voicebiometrics/ws"
HOST = "audiohook.example.com"
HEADERS = {
    "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
    "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "X-API-KEY": API_KEY,
}
EXPECTED_INPUT = (
    'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
    '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
    'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430'
)
EXPECTED_SIGNATURE = "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"
CREATED, EXPIRES = 1641013200, 3282026430
NOW = CREATED + 1.0  # the vector's signature, one second after it was made
NONCE = "VGhpc0lzQVVuaXF1ZU5vbmNl"


def _signed(**overrides: object) -> dict[str, str]:
    kwargs: dict[str, object] = {
        "client_secret_b64": SECRET,
        "key_id": API_KEY,
        "nonce": NONCE,
        "created": CREATED,
        "expires": EXPIRES,
    }
    kwargs.update(overrides)
    return {**HEADERS, **sign_request("GET", PATH, HOST, HEADERS, **kwargs)}  # type: ignore[arg-type]


def _verify(headers: dict[str, str], *, path: str = PATH, now: float = NOW) -> None:
    verify_signature("GET", path, HOST, headers, client_secret_b64=SECRET, api_key=API_KEY, now=now)


def test_public_test_vector_reproduced_exactly() -> None:
    signed = sign_request(
        "GET",
        PATH,
        HOST,
        HEADERS,
        client_secret_b64=SECRET,
        key_id=API_KEY,
        nonce="VGhpc0lzQVVuaXF1ZU5vbmNl",
        created=CREATED,
        expires=EXPIRES,
    )
    assert signed == {"Signature-Input": EXPECTED_INPUT, "Signature": EXPECTED_SIGNATURE}


def test_public_test_vector_verifies() -> None:
    headers = {**HEADERS, "Signature-Input": EXPECTED_INPUT, "Signature": EXPECTED_SIGNATURE}
    _verify(headers)


@pytest.mark.parametrize("transform", [str.lower, str.upper])
def test_header_names_are_case_insensitive(transform: object) -> None:
    assert callable(transform)
    headers = {transform(k): v for k, v in _signed().items()}
    _verify(headers)


def test_optional_expires_may_be_omitted() -> None:
    signed = _signed(expires=None)
    assert "expires" not in signed["Signature-Input"]
    _verify(signed)


# Freshness as the reference verifier judges it (3 s clock skew, signatures at most 10 s
# old less the skew, expiry more than the skew away, a nonce of at least 22 characters):
# each of these was accepted before.
STALE_CASES = [
    ("created-an-hour-ago", {}, CREATED + 3600.0, "expired"),
    ("created-60-s-ago", {}, CREATED + 60.0, "expired"),
    ("created-8-s-ago", {}, CREATED + 8.0, "expired"),
    ("created-4-s-ahead", {}, CREATED - 4.0, "not-yet-valid"),
    ("expires-in-2-s", {"expires": CREATED + 3}, CREATED + 1.0, "expired"),
    ("no-nonce", {"nonce": None}, NOW, "bad-nonce"),
    ("short-nonce", {"nonce": "c2hvcnQtbm9uY2U"}, NOW, "bad-nonce"),
    ("no-created", {"created": None}, NOW, "malformed"),
]


@pytest.mark.parametrize(
    ("overrides", "now", "reason"), [c[1:] for c in STALE_CASES], ids=[c[0] for c in STALE_CASES]
)
def test_stale_future_or_nonceless_signatures_are_refused(
    overrides: dict[str, object], now: float, reason: str
) -> None:
    with pytest.raises(AudioHookSignatureError) as info:
        _verify(_signed(**overrides), now=now)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "now",
    [CREATED - CLOCK_SKEW_S, CREATED, CREATED + MAX_SIGNATURE_AGE_S - CLOCK_SKEW_S],
    ids=["skew-ahead", "at-once", "oldest"],
)
def test_fresh_signatures_within_the_skew_are_accepted(now: float) -> None:
    _verify(_signed(), now=now)


def test_a_nonce_is_accepted_once() -> None:
    nonces = NonceCache()
    headers = _signed()
    kwargs = {"client_secret_b64": SECRET, "api_key": API_KEY, "nonces": nonces}
    verify_signature("GET", PATH, HOST, headers, now=NOW, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(AudioHookSignatureError) as info:
        verify_signature("GET", PATH, HOST, headers, now=NOW + 1, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason == "replayed"
    # Remembered only while its signature could be fresh: the cache stays bounded.
    other = _signed(nonce="QW5vdGhlck5vbmNlT2YyMkNoYXJz", created=CREATED + 60)
    verify_signature("GET", PATH, HOST, other, now=CREATED + 61, **kwargs)  # type: ignore[arg-type]
    assert len(nonces) == 1


def test_unsigned_connections_need_the_api_key_only() -> None:
    check_api_key(HEADERS, API_KEY)
    for headers, reason in [
        ({**HEADERS, "X-API-KEY": "wrong"}, "unknown-keyid"),
        ({k: v for k, v in HEADERS.items() if k != "X-API-KEY"}, "missing-header"),
        (_signed(), "unexpected-signature"),
    ]:
        with pytest.raises(AudioHookSignatureError) as info:
            check_api_key(headers, API_KEY)
        assert info.value.reason == reason


def _drop(name: str) -> dict[str, str]:
    return {k: v for k, v in _signed().items() if k != name}


def _replace(name: str, value: str) -> dict[str, str]:
    return {**_signed(), name: value}


BAD_CASES = [
    ("no-signature", lambda: _drop("Signature"), NOW, "missing-header"),
    ("no-signature-input", lambda: _drop("Signature-Input"), NOW, "missing-header"),
    ("no-api-key-header", lambda: _drop("X-API-KEY"), NOW, "missing-header"),
    ("input-garbage", lambda: _replace("Signature-Input", "sig1=nonsense"), NOW, "malformed"),
    ("signature-label", lambda: _replace("Signature", "sig2=:AAAA:"), NOW, "malformed"),
    ("signature-not-b64", lambda: _replace("Signature", "sig1=:***:"), NOW, "malformed"),
    ("keyid", lambda: _signed(key_id="someone-else"), NOW, "unknown-keyid"),
    ("api-key", lambda: _replace("X-API-KEY", "another-key"), NOW, "api-key-mismatch"),
    (
        "alg",
        lambda: _replace(
            "Signature-Input", EXPECTED_INPUT.replace("hmac-sha256", "rsa-pss-sha512")
        ),
        NOW,
        "bad-alg",
    ),
    ("expired", _signed, EXPIRES + 1.0, "expired"),
    ("not-yet-valid", _signed, CREATED - 60.0, "not-yet-valid"),
    (
        "uncovered",
        lambda: _signed(components=AUDIOHOOK_COMPONENTS[:-1]),
        NOW,
        "missing-component",
    ),
    (
        "session-id-changed",
        lambda: _replace("Audiohook-Session-Id", "00000000-0000-0000-0000-000000000000"),
        NOW,
        "mismatch",
    ),
    ("wrong-secret", lambda: _signed(client_secret_b64="b3RoZXI="), NOW, "mismatch"),
    (
        "signature-bits",
        lambda: _replace("Signature", EXPECTED_SIGNATURE.replace("NZB", "NZC")),
        NOW,
        "mismatch",
    ),
]


@pytest.mark.parametrize(
    ("make", "now", "reason"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_each_failure_has_its_reason(make: object, now: float, reason: str) -> None:
    assert callable(make)
    with pytest.raises(AudioHookSignatureError) as info:
        _verify(make(), now=now)
    assert info.value.reason == reason
    assert isinstance(info.value, MediaError)


def test_path_is_covered() -> None:
    with pytest.raises(AudioHookSignatureError, match="does not match") as info:
        _verify(_signed(), path="/api/v1/other")
    assert info.value.reason == "mismatch"


def test_covered_header_absent_is_missing_component() -> None:
    headers = {k: v for k, v in _signed().items() if k != "Audiohook-Correlation-Id"}
    with pytest.raises(AudioHookSignatureError) as info:
        _verify(headers)
    assert info.value.reason == "missing-component"


def test_created_within_clock_skew_is_accepted() -> None:
    _verify(_signed(), now=CREATED - 3.0)


def test_bad_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        _signed(client_secret_b64="not base64!")
