"""The contract file, the typed records and the error table agree with each other."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
import yaml
from conftest import vendor_openapi

from mgsim.contract import CODES, ContractViolation, load_spec, validate
from mgsim.contract._spec import ecma_pattern
from mgsim.contract.models import (
    AmazonConnectParams,
    AutotranscribeParams,
    GenesysAudioHookParams,
    NamespaceParams,
    SiprecParams,
    StreamingResult,
    TwilioParams,
)

ARN = "arn:aws:kinesisvideo:us-east-1:000000000000:stream/demo-connect-x-contact-1/1654194145007"

PARAMS: list[NamespaceParams] = [
    SiprecParams(),
    SiprecParams("AGENT_FIRST"),
    TwilioParams(),
    TwilioParams("agent", "customer"),
    AmazonConnectParams(ARN),
    AmazonConnectParams(ARN, "FRAGMENT_NUMBER", "91343852333181432392682062622220590765191907586"),
    GenesysAudioHookParams(),
]
AUTOTRANSCRIBE = [
    None,
    AutotranscribeParams(),
    AutotranscribeParams(language="en-US", detailed_token=True, redaction_output="unredacted"),
    AutotranscribeParams(audio_recording_allowed=True, redaction_output="redacted_and_unredacted"),
]


@pytest.mark.parametrize(("params", "at"), list(itertools.product(PARAMS, AUTOTRANSCRIBE)))
def test_typed_params_produce_bodies_the_contract_accepts(
    params: NamespaceParams, at: AutotranscribeParams | None
) -> None:
    body: dict[str, Any] = {
        "namespace": params.namespace,
        "guid": "1",
        "customerId": "c",
        "agentId": "a",
    }
    body.update(params.to_body())
    if at is not None:
        body.update(at.to_body())
    validate("StartStreamingRequest", body)


def test_typed_fields_cover_every_schema_property() -> None:
    schemas = load_spec()["components"]["schemas"]
    assert set(schemas["SiprecParams"]["properties"]) == {"mediaLineOrder"}
    assert set(schemas["TwilioParams"]["properties"]["trackMap"]["properties"]) == {
        "inbound",
        "outbound",
    }
    assert set(schemas["AmazonConnectParams"]["properties"]) == set(
        AmazonConnectParams(ARN, "FRAGMENT_NUMBER", "1").to_body()["amazonConnectParams"]
    )
    assert set(schemas["AutotranscribeParams"]["properties"]) == set(
        AutotranscribeParams("en-US", True, True, "unredacted").to_body()["autotranscribeParams"]
    )
    enum = schemas["AutotranscribeParams"]["properties"]["redactionOutput"]["enum"]
    assert enum == ["redacted", "unredacted", "redacted_and_unredacted"]


def test_examples_in_the_contract_are_valid() -> None:
    schemas = load_spec()["components"]["schemas"]
    for name, schema in schemas.items():
        if "example" in schema:
            validate(name, schema["example"])


def test_every_documented_code_is_in_the_table_and_back() -> None:
    description = load_spec()["info"]["description"]
    documented = set(re.findall(r"\| (\d{3}-\d{2,3}) \|", description))
    assert documented <= set(CODES)
    assert {
        "400-01",
        "400-201",
        "400-202",
        "400-203",
        "401-01",
        "403-01",
        "409-201",
        "409-202",
        "409-203",
        "405-01",
        "413-01",
        "415-01",
        "429-01",
        "500-01",
        "500-201",
        "503-01",
        "504-01",
    } <= documented
    for code, entry in CODES.items():
        assert code.startswith(str(entry.status))


def test_every_operation_documents_its_errors_with_the_envelope() -> None:
    spec = load_spec()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert "default" in op["responses"], (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_validation_names_the_deepest_field() -> None:
    with pytest.raises(ContractViolation) as exc:
        validate(
            "StartStreamingRequest",
            {
                "namespace": "siprec",
                "guid": "1",
                "customerId": "c",
                "agentId": "a",
                "amazonConnectParams": {"streamArn": 1},
            },
        )
    assert exc.value.field == "amazonConnectParams.streamArn"


def test_streaming_result_parses_the_vendor_example() -> None:
    example = {
        "isOk": True,
        "autotranscribeResponse": {
            "customer": {
                "streamId": "5ce2b755",
                "status": {"code": 1000, "description": "OK"},
                "summary": {
                    "totalAudioBytes": 1334720,
                    "audioDurationMs": 83420,
                    "streamingSeconds": 84,
                    "transcripts": 2,
                },
            },
            "agent": {
                "streamId": "cf31116",
                "status": {"code": 1000, "description": "OK"},
                "summary": {
                    "totalAudioBytes": 0,
                    "audioDurationMs": 0,
                    "streamingSeconds": 84,
                    "transcripts": 0,
                },
            },
        },
    }
    validate("StopStreamingResponse", example)
    result = StreamingResult.from_json(example)
    assert result.customer.summary is not None
    assert (
        result.customer.summary.audio_duration_ms * 16 == result.customer.summary.total_audio_bytes
    )


# The vendor's file: its three operations, their operationIds and default error code.
VENDOR_OPERATIONS = {
    ("post", "/mg-autotranscribe/v1/start-streaming"): "startStreaming",
    ("post", "/mg-autotranscribe/v1/stop-streaming"): "stopStreaming",
    ("get", "/mg-autotranscribe/v1/twilio-media-stream-url"): "getTwilioMediaStreams",
}


def test_the_vendors_operations_keep_their_operation_ids() -> None:
    paths = load_spec()["paths"]
    for (method, path), operation_id in VENDOR_OPERATIONS.items():
        assert paths[path][method]["operationId"] == operation_id
    vendor_file = vendor_openapi()
    if vendor_file.exists():
        spec = yaml.safe_load(vendor_file.read_text(encoding="utf-8"))
        found = {
            (m, p): op["operationId"] for p, item in spec["paths"].items() for m, op in item.items()
        }
        assert found == VENDOR_OPERATIONS


def test_the_default_error_is_the_vendors_500_01() -> None:
    spec = load_spec()
    default = spec["components"]["responses"]["DefaultError"]["description"]
    assert "500-01" in default and "500-201" in default
    for item in spec["paths"].values():
        for method, op in item.items():
            if method != "parameters":
                assert op["responses"]["default"] == {"$ref": "#/components/responses/DefaultError"}


def test_every_operation_with_a_body_lists_415() -> None:
    for item in load_spec()["paths"].values():
        for method, op in item.items():
            if method != "parameters" and "requestBody" in op:
                assert "415" in op["responses"], (method, op["operationId"])


def test_the_deviations_table_gives_a_reason_for_each_row() -> None:
    description = load_spec()["info"]["description"]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|(.*)\|$", description, flags=re.MULTILINE)
    assert len(rows) >= 10
    for name, rest in rows:
        cells = [c.strip() for c in rest.split(" | ")]
        assert len(cells) == 3 and all(cells), name  # the vendor's file, mgsim, why


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("^[0-9]{1,64}$", "12", True),
        ("^[0-9]{1,64}$", "12\n", False),
        ("^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$", "en-US\n", False),
        ("^wss?://", "ws://x\n", True),
        (r"^a\$$", "a$", True),
        ("^[$]+$", "$$", True),
    ],
)
def test_patterns_are_read_as_ecma_262_reads_them(pattern: str, value: str, matches: bool) -> None:
    assert bool(re.search(ecma_pattern(pattern), value)) is matches


def test_doctests() -> None:
    import doctest

    from mgsim.contract import _spec
    from mgsim.server import jsonbody

    for module in (_spec, jsonbody):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
