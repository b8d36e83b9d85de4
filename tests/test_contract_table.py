"""Hand-made requests across every field and combination of the vendor endpoints and the
simulator's own, one row each: what is sent, and the status and code it must get.

Each row runs on a fresh simulator on which a call is open in every namespace (none
streaming). ``setup`` rows run first (each must succeed). A JSON body is sent as
``json.dumps`` writes it (so ``"\\ud800"`` in a row goes out as the escape), ``bytes`` as
they are. ``headers`` are merged onto valid credentials and ``content-type:
application/json``; a ``None`` value removes that header. ``code`` is the vendor error code
of an error, the stream status of a start or stop answered 200 ("1000", "4050"), or "" for
other successes. Every error must be the envelope, and every answer must fit the contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import ARN, GUIDS, HEADERS

from mgsim.contract import CODES, validate
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator

START = "/mg-autotranscribe/v1/start-streaming"
STOP = "/mg-autotranscribe/v1/stop-streaming"
URL = "/mg-autotranscribe/v1/twilio-media-stream-url"
MESSAGES = "/conversation/v1/conversation/messages"
CALLS = "/_sim/v1/calls"
FAULTS = "/_sim/v1/faults"
MEDIA = "/_sim/v1/media/stats"
MEDIA_CALL = "/_sim/v1/media/calls/"
SIP, TWI, KVS, GEN = (GUIDS[n] for n in ("siprec", "twilio", "amazonconnect", "genesysaudiohook"))
FRAGMENT = "91343852333181432392682062622220590765191907586"
JSON = {"content-type": "application/json"}
_REMOVE = object()


def start(ns: str = "siprec", /, **changes: Any) -> dict[str, Any]:
    """A valid start-streaming body for namespace ``ns``, with ``changes`` (None removes)."""
    body: dict[str, Any] = {
        "namespace": ns,
        "guid": GUIDS[ns],
        "customerId": "cust-1",
        "agentId": "agent-7",
    }
    if ns == "amazonconnect":
        body["amazonConnectParams"] = {"streamArn": ARN}
    return _changed(body, changes)


def stop(ns: str = "siprec", /, **changes: Any) -> dict[str, Any]:
    """A valid stop-streaming body for namespace ``ns``, with ``changes`` (None removes)."""
    return _changed({"namespace": ns, "guid": GUIDS[ns]}, changes)


def _changed(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def at(**params: Any) -> dict[str, Any]:
    return {"autotranscribeParams": params}


def kvs(**params: Any) -> dict[str, Any]:
    return {"amazonConnectParams": {"streamArn": ARN, **params}}


def from_fragment(after: Any) -> dict[str, Any]:
    """A start on Amazon Connect reading after fragment ``after``."""
    selector = kvs(startSelectorType="FRAGMENT_NUMBER", afterFragmentNumber=after)
    return start("amazonconnect", **selector)


def word(text: str = "hello", **changes: Any) -> dict[str, Any]:
    return {"speaker": "agent", "text": text, "startMs": 0, "endMs": 300, **changes}


@dataclass(frozen=True)
class Row:
    id: str
    method: str
    path: str
    body: Any = None  # dict/list/str/number: JSON; bytes: raw; None: no body
    status: int = 200
    code: str = ""
    headers: dict[str, Any] = field(default_factory=dict)
    setup: tuple[tuple[str, str, Any], ...] = ()


STREAMING = ((("POST", START, start())),)


def streaming(namespace: str) -> tuple[tuple[str, str, Any], ...]:
    return (("POST", START, start(namespace)),)


NO_CREDS = {"asapp-api-id": None, "asapp-api-secret": None}
ROWS: list[Row] = [
    # -- credentials, before anything else ---------------------------------------------------
    Row("start-no-credentials", "POST", START, start(), 401, "401-01", NO_CREDS),
    Row("start-only-id", "POST", START, start(), 401, "401-01", {"asapp-api-secret": None}),
    Row("start-only-secret", "POST", START, start(), 401, "401-01", {"asapp-api-id": None}),
    Row("start-empty-id", "POST", START, start(), 401, "401-01", {"asapp-api-id": ""}),
    Row("start-wrong-id", "POST", START, start(), 403, "403-01", {"asapp-api-id": "x"}),
    Row("start-wrong-secret", "POST", START, start(), 403, "403-01", {"asapp-api-secret": "x"}),
    Row("stop-no-credentials", "POST", STOP, stop(), 401, "401-01", NO_CREDS),
    Row("stop-wrong-secret", "POST", STOP, stop(), 403, "403-01", {"asapp-api-secret": "y"}),
    Row("url-no-credentials", "GET", URL, None, 401, "401-01", NO_CREDS),
    Row("url-wrong-id", "GET", URL, None, 403, "403-01", {"asapp-api-id": "nobody"}),
    Row(
        "messages-no-credentials",
        "GET",
        f"{MESSAGES}?externalId={SIP}",
        None,
        401,
        "401-01",
        NO_CREDS,
    ),
    Row(
        "sim-open-no-credentials",
        "POST",
        CALLS,
        {"namespace": "siprec", "guid": "1"},
        401,
        "401-01",
        NO_CREDS,
    ),
    Row(
        "sim-get-wrong-secret",
        "GET",
        f"{CALLS}/{SIP}",
        None,
        403,
        "403-01",
        {"asapp-api-secret": "z"},
    ),
    Row("sim-faults-no-credentials", "GET", FAULTS, None, 401, "401-01", NO_CREDS),
    Row(
        "bad-credentials-before-bad-body",
        "POST",
        START,
        b"{nope",
        403,
        "403-01",
        {"asapp-api-id": "x"},
    ),
    # -- paths and methods -------------------------------------------------------------------
    Row("start-get", "GET", START, None, 405, "405-01"),
    Row("start-put", "PUT", START, start(), 405, "405-01"),
    Row("stop-delete", "DELETE", STOP, None, 405, "405-01"),
    Row("url-post", "POST", URL, {}, 405, "405-01"),
    Row("messages-delete", "DELETE", f"{MESSAGES}?externalId={SIP}", None, 405, "405-01"),
    Row("sim-call-post", "POST", f"{CALLS}/{SIP}", {}, 405, "405-01"),
    Row("start-trailing-slash", "POST", START + "/", start(), 404, "404-01"),
    Row("stop-trailing-slash", "POST", STOP + "/", stop(), 404, "404-01"),
    Row("url-trailing-slash", "GET", URL + "/", None, 404, "404-01"),
    Row("trailing-slash-no-credentials", "POST", START + "/", start(), 404, "404-01", NO_CREDS),
    Row("unknown-version", "POST", "/mg-autotranscribe/v2/start-streaming", start(), 404, "404-01"),
    Row("unknown-path", "GET", "/nothing/here", None, 404, "404-01"),
    Row("root", "GET", "/", None, 404, "404-01"),
    # -- content type ------------------------------------------------------------------------
    Row("start-text-plain", "POST", START, start(), 415, "415-01", {"content-type": "text/plain"}),
    Row(
        "start-form-urlencoded",
        "POST",
        START,
        b"namespace=siprec&guid=1",
        415,
        "415-01",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    Row(
        "start-json-as-form",
        "POST",
        START,
        start(),
        415,
        "415-01",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    Row("start-xml", "POST", START, start(), 415, "415-01", {"content-type": "application/xml"}),
    Row(
        "start-multipart",
        "POST",
        START,
        start(),
        415,
        "415-01",
        {"content-type": "multipart/form-data; boundary=x"},
    ),
    Row(
        "start-json-utf16-charset",
        "POST",
        START,
        start(),
        415,
        "415-01",
        {"content-type": "application/json; charset=utf-16"},
    ),
    Row(
        "start-json-utf8-charset",
        "POST",
        START,
        start(),
        200,
        "1000",
        {"content-type": "application/json; charset=UTF-8"},
    ),
    Row(
        "start-json-uppercase",
        "POST",
        START,
        start(),
        200,
        "1000",
        {"content-type": "Application/JSON"},
    ),
    Row("start-no-content-type", "POST", START, start(), 200, "1000", {"content-type": None}),
    Row(
        "stop-text-plain",
        "POST",
        STOP,
        stop(),
        415,
        "415-01",
        {"content-type": "text/plain"},
        STREAMING,
    ),
    Row(
        "sim-open-text-plain",
        "POST",
        CALLS,
        {"namespace": "siprec", "guid": "1"},
        415,
        "415-01",
        {"content-type": "text/plain"},
    ),
    Row(
        "sim-script-form",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"sample": "card_payment"},
        415,
        "415-01",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    Row(
        "sim-fault-text-plain",
        "POST",
        FAULTS,
        {"error": "503-01"},
        415,
        "415-01",
        {"content-type": "text/plain"},
    ),
    # -- JSON text ---------------------------------------------------------------------------
    Row("not-json", "POST", START, b"{nope", 400, "400-01"),
    Row("truncated-json", "POST", START, b'{"namespace": "siprec", "gu', 400, "400-01"),
    Row("empty-body", "POST", STOP, b"", 400, "400-01"),
    Row("json-array", "POST", START, [start()], 400, "400-01"),
    Row("json-string", "POST", STOP, "siprec", 400, "400-01"),
    Row("json-number", "POST", STOP, 1, 400, "400-01"),
    Row("json-null", "POST", STOP, b"null", 400, "400-01"),
    Row("invalid-utf8", "POST", STOP, b"\xff\xfe\xfd", 400, "400-01"),
    Row("utf8-bom", "POST", START, b"\xef\xbb\xbf" + json.dumps(start()).encode(), 400, "400-01"),
    Row("utf16", "POST", START, json.dumps(start()).encode("utf-16"), 400, "400-01"),
    Row("nan", "POST", STOP, b'{"namespace": "siprec", "guid": NaN}', 400, "400-01"),
    Row(
        "infinity",
        "PUT",
        f"{CALLS}/{SIP}/script",
        b'{"words": [{"speaker": "agent", "text": "hi", "startMs": 0, "endMs": Infinity}]}',
        400,
        "400-01",
    ),
    Row(
        "number-beyond-double",
        "PUT",
        f"{CALLS}/{SIP}/script",
        b'{"sample": "card_payment", "untilMs": 1e999}',
        400,
        "400-01",
    ),
    Row("nested-too-deeply", "POST", START, b"[" * 1100 + b"]" * 1100, 400, "400-01"),
    Row("surrogate-in-customerId", "POST", START, start(customerId="\ud800"), 400, "400-01"),
    Row("surrogate-in-agentId", "POST", START, start(agentId="a\udfff"), 400, "400-01"),
    Row("surrogate-in-guid", "POST", STOP, stop(guid="\ud800"), 400, "400-01"),
    Row("surrogate-member-name", "POST", START, {**start(), "\ud800": 1}, 400, "400-01"),
    Row("surrogate-nested-member-name", "POST", START, start(**at(**{"\udbff": 1})), 400, "400-01"),
    Row("surrogate-in-language", "POST", START, start(**at(language="en-\ud800")), 400, "400-01"),
    Row(
        "surrogate-in-sim-guid",
        "POST",
        CALLS,
        {"namespace": "siprec", "guid": "\ud800"},
        400,
        "400-01",
    ),
    Row(
        "surrogate-in-script-word",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word("hi\ud800")]},
        400,
        "400-01",
    ),
    Row(
        "surrogate-in-fault-name",
        "POST",
        FAULTS,
        {"error": "503-01", "name": "\ud800"},
        400,
        "400-01",
    ),
    Row("surrogate-pair-is-text", "POST", START, start(customerId="\ud83d\ude00"), 200, "1000"),
    Row("non-ascii-ids", "POST", START, start(customerId="Zoë", agentId="坂本"), 200, "1000"),
    # -- start-streaming: valid, per namespace and parameter --------------------------------
    Row("start-siprec", "POST", START, start("siprec"), 200, "1000"),
    Row("start-twilio", "POST", START, start("twilio"), 200, "1000"),
    Row("start-amazonconnect", "POST", START, start("amazonconnect"), 200, "1000"),
    Row("start-genesys", "POST", START, start("genesysaudiohook"), 200, "1000"),
    Row(
        "start-avaya-ucid",
        "POST",
        START,
        start(guid="00002542391662063156"),
        200,
        "1000",
        setup=(("POST", CALLS, {"namespace": "siprec", "guid": "00002542391662063156"}),),
    ),
    Row(
        "start-siprec-agent-first",
        "POST",
        START,
        start(siprecParams={"mediaLineOrder": "AGENT_FIRST"}),
        200,
        "1000",
    ),
    Row(
        "start-siprec-customer-first",
        "POST",
        START,
        start(siprecParams={"mediaLineOrder": "CUSTOMER_FIRST"}),
        200,
        "1000",
    ),
    Row("start-siprec-empty-params", "POST", START, start(siprecParams={}), 200, "1000"),
    Row(
        "start-twilio-swapped",
        "POST",
        START,
        start("twilio", twilioParams={"trackMap": {"inbound": "agent", "outbound": "customer"}}),
        200,
        "1000",
    ),
    Row(
        "start-twilio-explicit-default",
        "POST",
        START,
        start("twilio", twilioParams={"trackMap": {"inbound": "customer", "outbound": "agent"}}),
        200,
        "1000",
    ),
    Row(
        "start-kvs-now",
        "POST",
        START,
        start("amazonconnect", **kvs(startSelectorType="NOW")),
        200,
        "1000",
    ),
    Row(
        "start-kvs-fragment",
        "POST",
        START,
        from_fragment(FRAGMENT),
        200,
        "1000",
    ),
    Row(
        "start-kvs-now-with-fragment",
        "POST",
        START,
        start("amazonconnect", **kvs(startSelectorType="NOW", afterFragmentNumber=FRAGMENT)),
        200,
        "1000",
    ),
    Row(
        "start-kvs-default-with-fragment",
        "POST",
        START,
        start("amazonconnect", **kvs(afterFragmentNumber=FRAGMENT)),
        200,
        "1000",
    ),
    Row(
        "start-kvs-china-partition",
        "POST",
        START,
        start(
            "amazonconnect",
            amazonConnectParams={
                "streamArn": "arn:aws-cn:kinesisvideo:cn-north-1:123456789012:stream/s/1654194145"
            },
        ),
        200,
        "1000",
    ),
    Row(
        "start-all-autotranscribe-params",
        "POST",
        START,
        start(
            **at(
                language="en-US",
                detailedToken=False,
                audioRecordingAllowed=True,
                redactionOutput="redacted_and_unredacted",
            )
        ),
        200,
        "1000",
    ),
    Row("start-unredacted", "POST", START, start(**at(redactionOutput="unredacted")), 200, "1000"),
    Row(
        "start-detailed-unredacted",
        "POST",
        START,
        start(**at(detailedToken=True, redactionOutput="unredacted")),
        200,
        "1000",
    ),
    Row("start-empty-autotranscribe", "POST", START, start(autotranscribeParams={}), 200, "1000"),
    Row("start-unsupported-language", "POST", START, start(**at(language="fr-FR")), 200, "4050"),
    Row("start-three-letter-language", "POST", START, start(**at(language="yue-HK")), 200, "4050"),
    Row(
        "start-after-4050-start",
        "POST",
        START,
        start(),
        200,
        "1000",
        setup=(("POST", START, start(**at(language="de-DE"))),),
    ),
    Row(
        "stop-after-4050-start",
        "POST",
        STOP,
        stop(),
        409,
        "409-201",
        setup=(("POST", START, start(**at(language="de-DE"))),),
    ),
    # -- start-streaming: required members and types ----------------------------------------
    Row("start-missing-namespace", "POST", START, start(namespace=None), 400, "400-201"),
    Row("start-missing-guid", "POST", START, start(guid=None), 400, "400-201"),
    Row("start-missing-customerId", "POST", START, start(customerId=None), 400, "400-201"),
    Row("start-missing-agentId", "POST", START, start(agentId=None), 400, "400-201"),
    Row("start-empty-object", "POST", START, {}, 400, "400-201"),
    Row("start-namespace-int", "POST", START, start(namespace=1), 400, "400-201"),
    Row("start-guid-int", "POST", START, start(guid=867617078), 400, "400-201"),
    Row("start-guid-null", "POST", START, start(guid=[]), 400, "400-201"),
    Row("start-customerId-int", "POST", START, start(customerId=1), 400, "400-201"),
    Row("start-agentId-bool", "POST", START, start(agentId=True), 400, "400-201"),
    Row("start-customerId-null", "POST", START, {**start(), "customerId": None}, 400, "400-201"),
    Row("start-customerId-empty", "POST", START, start(customerId=""), 400, "400-201"),
    Row("start-agentId-empty", "POST", START, start(agentId=""), 400, "400-201"),
    Row("start-guid-empty", "POST", START, start(guid=""), 400, "400-201"),
    Row("start-customerId-257", "POST", START, start(customerId="c" * 257), 400, "400-201"),
    Row("start-agentId-256", "POST", START, start(agentId="a" * 256), 200, "1000"),
    Row("start-guid-129", "POST", START, start(guid="1" * 129), 400, "400-201"),
    Row("start-namespace-uppercase", "POST", START, start(namespace="SIPREC"), 400, "400-201"),
    Row("start-namespace-unknown", "POST", START, start(namespace="zoom"), 400, "400-201"),
    Row("start-namespace-empty", "POST", START, start(namespace=""), 400, "400-201"),
    Row("start-unknown-member", "POST", START, start(extra=1), 400, "400-201"),
    Row(
        "start-typo-siprecParms",
        "POST",
        START,
        start(siprecParms={"mediaLineOrder": "AGENT_FIRST"}),
        400,
        "400-201",
    ),
    # -- guid forms, full match --------------------------------------------------------------
    Row("siprec-guid-letters", "POST", START, start(guid="abc"), 400, "400-201"),
    Row("siprec-guid-trailing-dash", "POST", START, start(guid="12-"), 400, "400-201"),
    Row("siprec-guid-leading-dash", "POST", START, start(guid="-12"), 400, "400-201"),
    Row("siprec-guid-trailing-newline", "POST", START, start(guid=SIP + "\n"), 400, "400-201"),
    Row("siprec-guid-space", "POST", START, start(guid="12 34"), 400, "400-201"),
    Row("siprec-guid-fullwidth-digits", "POST", START, start(guid="１２３"), 400, "400-201"),
    Row("twilio-guid-short", "POST", START, start("twilio", guid="CA" + "0" * 31), 400, "400-201"),
    Row(
        "twilio-guid-uppercase-hex",
        "POST",
        START,
        start("twilio", guid="CA" + "AB" * 16),
        400,
        "400-201",
    ),
    Row("twilio-guid-newline", "POST", STOP, stop("twilio", guid=TWI + "\n"), 400, "400-201"),
    Row(
        "twilio-guid-other-prefix",
        "POST",
        STOP,
        stop("twilio", guid="MZ" + "0" * 32),
        400,
        "400-201",
    ),
    Row(
        "kvs-guid-uppercase",
        "POST",
        START,
        start("amazonconnect", guid=KVS.upper()),
        400,
        "400-201",
    ),
    Row(
        "kvs-guid-no-dashes",
        "POST",
        STOP,
        stop("amazonconnect", guid=KVS.replace("-", "")),
        400,
        "400-201",
    ),
    Row("kvs-guid-newline", "POST", STOP, stop("amazonconnect", guid=KVS + "\n"), 400, "400-201"),
    Row(
        "genesys-guid-braces",
        "POST",
        START,
        start("genesysaudiohook", guid="{" + GEN + "}"),
        400,
        "400-201",
    ),
    Row(
        "genesys-guid-newline",
        "POST",
        START,
        start("genesysaudiohook", guid=GEN + "\n"),
        400,
        "400-201",
    ),
    Row(
        "genesys-guid-siprec-form", "POST", STOP, stop("genesysaudiohook", guid=SIP), 400, "400-201"
    ),
    # -- autotranscribeParams ----------------------------------------------------------------
    Row(
        "language-trailing-newline", "POST", START, start(**at(language="en-US\n")), 400, "400-201"
    ),
    Row("language-sentence", "POST", START, start(**at(language="english please")), 400, "400-201"),
    Row("language-empty", "POST", START, start(**at(language="")), 400, "400-201"),
    Row("language-int", "POST", START, start(**at(language=5)), 400, "400-201"),
    Row("language-underscore", "POST", START, start(**at(language="en_US")), 400, "400-201"),
    Row("detailedToken-string", "POST", START, start(**at(detailedToken="yes")), 400, "400-201"),
    Row(
        "detailedToken-redacted-default",
        "POST",
        START,
        start(**at(detailedToken=True)),
        400,
        "400-202",
    ),
    Row(
        "detailedToken-redacted",
        "POST",
        START,
        start(**at(detailedToken=True, redactionOutput="redacted")),
        400,
        "400-202",
    ),
    Row(
        "detailedToken-both",
        "POST",
        START,
        start(**at(detailedToken=True, redactionOutput="redacted_and_unredacted")),
        400,
        "400-202",
    ),
    Row("redactionOutput-none", "POST", START, start(**at(redactionOutput="none")), 400, "400-201"),
    Row(
        "redactionOutput-uppercase",
        "POST",
        START,
        start(**at(redactionOutput="REDACTED")),
        400,
        "400-201",
    ),
    Row(
        "audioRecordingAllowed-string",
        "POST",
        START,
        start(**at(audioRecordingAllowed="true")),
        400,
        "400-201",
    ),
    Row("autotranscribe-unknown-member", "POST", START, start(**at(lang="en-US")), 400, "400-201"),
    Row("autotranscribe-list", "POST", START, start(autotranscribeParams=[]), 400, "400-201"),
    Row(
        "autotranscribe-null",
        "POST",
        START,
        {**start(), "autotranscribeParams": None},
        400,
        "400-201",
    ),
    # -- siprecParams / twilioParams ---------------------------------------------------------
    Row(
        "mediaLineOrder-bad",
        "POST",
        START,
        start(siprecParams={"mediaLineOrder": "FIRST"}),
        400,
        "400-201",
    ),
    Row(
        "siprecParams-unknown-member",
        "POST",
        START,
        start(siprecParams={"order": "x"}),
        400,
        "400-201",
    ),
    Row(
        "siprecParams-on-twilio",
        "POST",
        START,
        start("twilio", siprecParams={"mediaLineOrder": "AGENT_FIRST"}),
        400,
        "400-202",
    ),
    Row(
        "siprecParams-on-genesys",
        "POST",
        START,
        start("genesysaudiohook", siprecParams={}),
        400,
        "400-202",
    ),
    Row(
        "trackMap-both-customer",
        "POST",
        START,
        start("twilio", twilioParams={"trackMap": {"inbound": "customer", "outbound": "customer"}}),
        400,
        "400-202",
    ),
    Row(
        "trackMap-both-agent",
        "POST",
        START,
        start("twilio", twilioParams={"trackMap": {"inbound": "agent", "outbound": "agent"}}),
        400,
        "400-202",
    ),
    Row(
        "trackMap-inbound-agent-only",
        "POST",
        START,
        start("twilio", twilioParams={"trackMap": {"inbound": "agent"}}),
        400,
        "400-202",
    ),
    Row(
        "trackMap-bad-role",
        "POST",
        START,
        start("twilio", twilioParams={"trackMap": {"inbound": "caller"}}),
        400,
        "400-201",
    ),
    Row(
        "trackMap-unknown-member",
        "POST",
        START,
        start("twilio", twilioParams={"trackMap": {"both": "customer"}}),
        400,
        "400-201",
    ),
    Row("twilioParams-on-siprec", "POST", START, start(twilioParams={}), 400, "400-202"),
    # -- amazonConnectParams -----------------------------------------------------------------
    Row(
        "kvs-params-missing",
        "POST",
        START,
        start("amazonconnect", amazonConnectParams=None),
        400,
        "400-201",
    ),
    Row(
        "kvs-streamArn-missing",
        "POST",
        START,
        start("amazonconnect", amazonConnectParams={}),
        400,
        "400-201",
    ),
    Row(
        "kvs-streamArn-s3",
        "POST",
        START,
        start("amazonconnect", amazonConnectParams={"streamArn": "arn:aws:s3:::bucket"}),
        400,
        "400-201",
    ),
    Row(
        "kvs-streamArn-newline",
        "POST",
        START,
        start("amazonconnect", amazonConnectParams={"streamArn": ARN + "\n"}),
        400,
        "400-201",
    ),
    Row(
        "kvs-streamArn-empty",
        "POST",
        START,
        start("amazonconnect", amazonConnectParams={"streamArn": ""}),
        400,
        "400-201",
    ),
    Row(
        "kvs-fragment-missing",
        "POST",
        START,
        start("amazonconnect", **kvs(startSelectorType="FRAGMENT_NUMBER")),
        400,
        "400-202",
    ),
    Row(
        "kvs-fragment-letters",
        "POST",
        START,
        from_fragment("12a"),
        400,
        "400-201",
    ),
    Row(
        "kvs-fragment-newline",
        "POST",
        START,
        from_fragment(FRAGMENT + "\n"),
        400,
        "400-201",
    ),
    Row(
        "kvs-fragment-65-digits",
        "POST",
        START,
        from_fragment("1" * 65),
        400,
        "400-201",
    ),
    Row(
        "kvs-fragment-int",
        "POST",
        START,
        from_fragment(12),
        400,
        "400-201",
    ),
    Row(
        "kvs-now-fragment-bad-form",
        "POST",
        START,
        start("amazonconnect", **kvs(afterFragmentNumber="latest")),
        400,
        "400-201",
    ),
    Row(
        "kvs-selector-bad",
        "POST",
        START,
        start("amazonconnect", **kvs(startSelectorType="SERVER_TIMESTAMP")),
        400,
        "400-201",
    ),
    Row(
        "kvs-unknown-member",
        "POST",
        START,
        start("amazonconnect", **kvs(region="us-east-1")),
        400,
        "400-201",
    ),
    Row("kvs-params-on-twilio", "POST", START, start("twilio", **kvs()), 400, "400-202"),
    # -- call state --------------------------------------------------------------------------
    Row("start-no-call", "POST", START, start(guid="1-2-3"), 400, "400-203"),
    Row(
        "start-no-twilio-call", "POST", START, start("twilio", guid="CA" + "0" * 32), 400, "400-203"
    ),
    Row("stop-no-call", "POST", STOP, stop(guid="42"), 400, "400-203"),
    Row(
        "stop-call-of-other-namespace",
        "POST",
        STOP,
        stop("amazonconnect", guid=GEN),
        400,
        "400-203",
    ),
    Row("start-while-streaming", "POST", START, start(), 409, "409-201", setup=STREAMING),
    Row("stop-while-stopped", "POST", STOP, stop(), 409, "409-201"),
    Row("stop-streaming-siprec", "POST", STOP, stop(), 200, "1000", setup=STREAMING),
    Row(
        "stop-streaming-twilio",
        "POST",
        STOP,
        stop("twilio"),
        200,
        "1000",
        setup=streaming("twilio"),
    ),
    Row(
        "stop-streaming-kvs",
        "POST",
        STOP,
        stop("amazonconnect"),
        200,
        "1000",
        setup=streaming("amazonconnect"),
    ),
    Row(
        "stop-streaming-genesys",
        "POST",
        STOP,
        stop("genesysaudiohook"),
        200,
        "1000",
        setup=streaming("genesysaudiohook"),
    ),
    Row(
        "restart-after-stop",
        "POST",
        START,
        start(),
        200,
        "1000",
        setup=(("POST", START, start()), ("POST", STOP, stop())),
    ),
    Row(
        "start-after-hang-up",
        "POST",
        START,
        start(),
        400,
        "400-203",
        setup=(("DELETE", f"{CALLS}/{SIP}", None),),
    ),
    # -- stop-streaming: shape ---------------------------------------------------------------
    Row("stop-empty-object", "POST", STOP, {}, 400, "400-201"),
    Row("stop-missing-namespace", "POST", STOP, stop(namespace=None), 400, "400-201"),
    Row("stop-missing-guid", "POST", STOP, stop(guid=None), 400, "400-201"),
    Row("stop-unknown-member", "POST", STOP, stop(customerId="c"), 400, "400-201"),
    Row("stop-namespace-bad", "POST", STOP, stop(namespace="sip"), 400, "400-201"),
    Row("stop-guid-int", "POST", STOP, stop(guid=1), 400, "400-201"),
    # -- body size ---------------------------------------------------------------------------
    Row("start-oversize", "POST", START, start(customerId="x" * 70000), 413, "413-01"),
    Row(
        "script-oversize",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word(f"w{i}x") for i in range(2000)]},
        413,
        "413-01",
    ),
    # -- twilio-media-stream-url and conversation messages ----------------------------------
    Row("url", "GET", URL),
    Row("url-with-query", "GET", URL + "?x=1"),
    Row("messages", "GET", f"{MESSAGES}?externalId={SIP}"),
    Row("messages-unknown-guid", "GET", f"{MESSAGES}?externalId=nobody"),
    Row("messages-without-id", "GET", MESSAGES, None, 400, "400-201"),
    Row("messages-empty-id", "GET", f"{MESSAGES}?externalId=", None, 400, "400-201"),
    Row("messages-id-129", "GET", f"{MESSAGES}?externalId={'1' * 129}", None, 400, "400-201"),
    Row("messages-id-invalid-utf8", "GET", f"{MESSAGES}?externalId=%ED%A0%80"),
    Row(
        "messages-after-non-ascii-start",
        "GET",
        f"{MESSAGES}?externalId={SIP}",
        setup=(("POST", START, start(customerId="Zoë")), ("POST", STOP, stop())),
    ),
    # -- /_sim/v1/calls ----------------------------------------------------------------------
    Row("sim-open-siprec", "POST", CALLS, {"namespace": "siprec", "guid": "123"}, 201),
    Row("sim-open-twilio", "POST", CALLS, {"namespace": "twilio", "guid": "CA" + "1" * 32}, 201),
    Row(
        "sim-open-kvs",
        "POST",
        CALLS,
        {"namespace": "amazonconnect", "guid": "00000000-0000-4000-8000-000000000000"},
        201,
    ),
    Row(
        "sim-open-genesys",
        "POST",
        CALLS,
        {"namespace": "genesysaudiohook", "guid": "00000000-0000-4000-8000-000000000001"},
        201,
    ),
    Row(
        "sim-open-guid-newline",
        "POST",
        CALLS,
        {"namespace": "siprec", "guid": "123\n"},
        400,
        "400-201",
    ),
    Row(
        "sim-open-guid-form", "POST", CALLS, {"namespace": "twilio", "guid": "123"}, 400, "400-201"
    ),
    Row("sim-open-missing-namespace", "POST", CALLS, {"guid": "123"}, 400, "400-201"),
    Row(
        "sim-open-unknown-member",
        "POST",
        CALLS,
        {"namespace": "siprec", "guid": "123", "open": True},
        400,
        "400-201",
    ),
    Row(
        "sim-open-already-open", "POST", CALLS, {"namespace": "siprec", "guid": SIP}, 409, "409-01"
    ),
    Row("sim-get-open", "GET", f"{CALLS}/{SIP}"),
    Row("sim-get-unknown", "GET", f"{CALLS}/999", None, 404, "404-01"),
    Row("sim-get-ended", "GET", f"{CALLS}/{SIP}", setup=(("DELETE", f"{CALLS}/{SIP}", None),)),
    Row("sim-hang-up", "DELETE", f"{CALLS}/{SIP}", None, 204),
    Row("sim-hang-up-streaming", "DELETE", f"{CALLS}/{SIP}", None, 204, setup=STREAMING),
    Row("sim-hang-up-unknown", "DELETE", f"{CALLS}/999", None, 404, "404-01"),
    # -- /_sim/v1/calls/{guid}/script --------------------------------------------------------
    Row("script-sample", "PUT", f"{CALLS}/{SIP}/script", {"sample": "card_payment"}),
    Row(
        "script-sample-until",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"sample": "card_payment", "untilMs": 5000},
    ),
    Row("script-words", "PUT", f"{CALLS}/{SIP}/script", {"words": [word(), word("there")]}),
    Row("script-words-before-call", "PUT", f"{CALLS}/555/script", {"words": [word()]}),
    Row(
        "script-sample-unknown", "PUT", f"{CALLS}/{SIP}/script", {"sample": "nope"}, 400, "400-201"
    ),
    Row(
        "script-sample-and-words",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"sample": "card_payment", "words": [word()]},
        400,
        "400-201",
    ),
    Row("script-neither", "PUT", f"{CALLS}/{SIP}/script", {}, 400, "400-201"),
    Row(
        "script-until-without-sample",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word()], "untilMs": 10},
        400,
        "400-201",
    ),
    Row(
        "script-word-with-spaces",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word("my card is 4111 1111 1111 1111")]},
        400,
        "400-201",
    ),
    Row(
        "script-word-with-tab",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word("4111\t1111")]},
        400,
        "400-201",
    ),
    Row(
        "script-word-trailing-newline",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word("hello\n")]},
        400,
        "400-201",
    ),
    Row(
        "script-word-ends-before-start",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word(startMs=500, endMs=100)]},
        400,
        "400-201",
    ),
    Row(
        "script-word-bad-speaker",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word(speaker="ivr")]},
        400,
        "400-201",
    ),
    Row("script-word-empty", "PUT", f"{CALLS}/{SIP}/script", {"words": [word("")]}, 400, "400-201"),
    Row(
        "script-word-negative-time",
        "PUT",
        f"{CALLS}/{SIP}/script",
        {"words": [word(startMs=-1)]},
        400,
        "400-201",
    ),
    Row("script-no-words", "PUT", f"{CALLS}/{SIP}/script", {"words": []}, 400, "400-201"),
    Row("script-post", "POST", f"{CALLS}/{SIP}/script", {"sample": "card_payment"}, 405, "405-01"),
    # -- /_sim/v1/faults ---------------------------------------------------------------------
    Row(
        "fault-add",
        "POST",
        FAULTS,
        {"endpoint": "stop-streaming", "error": "503-01", "count": 1},
        201,
    ),
    Row("fault-list", "GET", FAULTS),
    Row("fault-clear", "DELETE", FAULTS, None, 204),
    Row("fault-bad-error", "POST", FAULTS, {"error": "418-01"}, 400, "400-201"),
    Row("fault-no-effect", "POST", FAULTS, {"endpoint": "stop-streaming"}, 400, "400-201"),
    Row("fault-delete-unknown", "DELETE", f"{FAULTS}/r99", None, 404, "404-01"),
    Row(
        "fault-guid-newline",
        "POST",
        FAULTS,
        {"endpoint": "stop-streaming", "guid": SIP + "\n", "error": "503-01"},
        400,
        "400-201",
    ),
    Row(
        "fault-guid-other-namespace",
        "POST",
        FAULTS,
        {"namespace": "siprec", "guid": TWI, "error": "503-01"},
        400,
        "400-201",
    ),
    Row("fault-guid-any-form", "POST", FAULTS, {"guid": GEN.upper(), "error": "503-01"}, 201),
    Row(
        "fault-applies",
        "POST",
        STOP,
        stop(),
        503,
        "503-01",
        setup=(
            ("POST", START, start()),
            ("POST", FAULTS, {"endpoint": "stop-streaming", "error": "503-01", "count": 1}),
        ),
    ),
    # -- the media transports' statistics and per-call accounting (simulator only) ----------
    Row("media-stats", "GET", MEDIA),
    Row("media-stats-no-credentials", "GET", MEDIA, None, 401, "401-01", NO_CREDS),
    Row("media-stats-wrong-secret", "GET", MEDIA, None, 403, "403-01", {"asapp-api-secret": "x"}),
    Row("media-stats-put", "PUT", MEDIA, {}, 405, "405-01"),
    Row("media-reset-no-body", "POST", MEDIA),
    Row("media-reset-no-body-no-type", "POST", MEDIA, None, 200, "", {"content-type": None}),
    Row("media-reset-empty-object", "POST", MEDIA, {}),
    Row("media-reset-true", "POST", MEDIA, {"reset_lateness": True}),
    Row("media-reset-false", "POST", MEDIA, {"reset_lateness": False}),
    Row("media-reset-unknown-member", "POST", MEDIA, {"reset": True}, 400, "400-201"),
    Row("media-reset-string", "POST", MEDIA, {"reset_lateness": "yes"}, 400, "400-201"),
    Row("media-reset-null", "POST", MEDIA, {"reset_lateness": None}, 400, "400-201"),
    Row("media-reset-array", "POST", MEDIA, [True], 400, "400-01"),
    Row("media-reset-not-json", "POST", MEDIA, b"reset", 400, "400-01"),
    Row("media-reset-surrogate", "POST", MEDIA, {"\ud800": True}, 400, "400-01"),
    Row("media-reset-bom", "POST", MEDIA, b"\xef\xbb\xbf{}", 400, "400-01"),
    Row(
        "media-reset-form",
        "POST",
        MEDIA,
        b"reset_lateness=true",
        415,
        "415-01",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    Row("media-reset-too-large", "POST", MEDIA, b" " * 70_000, 413, "413-01"),
    Row("media-call-open", "GET", MEDIA_CALL + SIP),
    Row("media-call-uuid-case", "GET", MEDIA_CALL + GEN.upper()),
    Row("media-call-ended", "GET", MEDIA_CALL + TWI, setup=(("DELETE", f"{CALLS}/{TWI}", None),)),
    Row("media-call-unknown", "GET", MEDIA_CALL + "999", None, 404, "404-01"),
    Row("media-call-trailing-slash", "GET", MEDIA_CALL + SIP + "/", None, 404, "404-01"),
    Row("media-call-no-credentials", "GET", MEDIA_CALL + SIP, None, 401, "401-01", NO_CREDS),
    Row("media-call-delete", "DELETE", MEDIA_CALL + SIP, None, 405, "405-01"),
]

_RESPONSE_SCHEMAS = {
    (START, 200): "StartStreamingResponse",
    (STOP, 200): "StopStreamingResponse",
    (URL, 200): "TwilioMediaStreamUrlResponse",
    (MESSAGES, 200): "ConversationMessagesResponse",
    (CALLS, 201): "SimCall",
    (FAULTS, 201): "FaultRule",
    (MEDIA, 200): "SimMediaStats",
    **{(MEDIA_CALL + guid, 200): "SimMediaCall" for guid in (SIP, TWI, GEN.upper())},
}


def _send(http: httpx.Client, method: str, path: str, body: Any, headers: dict[str, Any]) -> Any:
    merged: dict[str, Any] = {**HEADERS, **JSON, **headers}
    sent = {k: v for k, v in merged.items() if v is not None}
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    return http.request(method, path, content=content, headers=sent)


@pytest.fixture
def http() -> Any:
    sim = Simulator(SimulatorConfig(seed=16, spike_arrest_per_s=None), virtual=True)
    for namespace, guid in GUIDS.items():
        sim.gateway.open_call(namespace, guid)
    with httpx.Client(transport=sim.sync_transport(), base_url="http://sim") as client:
        yield client
    sim.close()


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_contract_table(http: httpx.Client, row: Row) -> None:
    for method, path, body in row.setup:
        before = _send(http, method, path, body, {})
        assert before.status_code < 300, (method, path, before.text)
    r = _send(http, row.method, row.path, row.body, row.headers)
    assert r.status_code == row.status, r.text
    route = row.path.split("?")[0]
    if r.status_code >= 400:
        error = r.json()
        validate("Error", error)
        assert error["error"]["code"] == row.code, error
        assert error["error"]["code"] in CODES
        assert row.path.endswith("/") or error["error"]["message"]
    elif r.status_code != 204:
        body = r.json()
        schema = _RESPONSE_SCHEMAS.get((route, r.status_code))
        if schema is not None:
            validate(schema, body)
        if route in (START, STOP):
            statuses = {
                body["autotranscribeResponse"][role]["status"]["code"]
                for role in ("customer", "agent")
            }
            assert statuses == {int(row.code)}
            assert body["isOk"] is (row.code == "1000")
        else:
            assert row.code == ""


def test_the_table_has_at_least_150_rows_with_distinct_ids() -> None:
    assert len(ROWS) >= 150
    assert len({row.id for row in ROWS}) == len(ROWS)


def test_the_table_covers_every_operation_of_the_contract() -> None:
    import re

    from mgsim.contract import load_spec

    sent = {(row.method.lower(), row.path.split("?")[0]) for row in ROWS}
    for path, item in load_spec()["paths"].items():
        template = re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)))
        for method in item.keys() - {"parameters"}:
            assert any(m == method and template.fullmatch(p) for m, p in sent), (method, path)
