"""The compiled fast validator and the reference validator judge every body the same."""

from __future__ import annotations

from typing import Any

import fastjsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.contract import load_spec
from mgsim.contract._spec import _fast_check, _validator

SCHEMAS = ["StartStreamingRequest", "StopStreamingRequest", "SimCallRequest"]

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(
        [
            "siprec",
            "twilio",
            "amazonconnect",
            "genesysaudiohook",
            "",
            "1-2",
            "CUSTOMER_FIRST",
            "AGENT_FIRST",
            "customer",
            "agent",
            "redacted",
            "unredacted",
            "redacted_and_unredacted",
            "en-US",
            "NOW",
            "FRAGMENT_NUMBER",
            "123",
            "arn:aws:kinesisvideo:x",
        ]
    ),
    st.text(max_size=8),
)
keys = st.sampled_from(
    [
        "namespace",
        "guid",
        "customerId",
        "agentId",
        "autotranscribeParams",
        "siprecParams",
        "twilioParams",
        "amazonConnectParams",
        "language",
        "detailedToken",
        "redactionOutput",
        "audioRecordingAllowed",
        "mediaLineOrder",
        "trackMap",
        "inbound",
        "outbound",
        "streamArn",
        "startSelectorType",
        "afterFragmentNumber",
        "extra",
    ]
)
json_values = st.recursive(
    leaf,
    lambda inner: st.dictionaries(keys, inner, max_size=6) | st.lists(inner, max_size=3),
    max_leaves=20,
)


def fast_ok(name: str, body: Any) -> bool:
    try:
        _fast_check(name)(body)
        return True
    except fastjsonschema.JsonSchemaException:
        return False


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(SCHEMAS), body=st.dictionaries(keys, json_values, max_size=8))
def test_validators_agree(name: str, body: dict[str, Any]) -> None:
    assert fast_ok(name, body) == _validator(name).is_valid(body)


def test_fast_validator_does_not_fill_defaults() -> None:
    body = {
        "namespace": "siprec",
        "guid": "1",
        "customerId": "c",
        "agentId": "a",
        "autotranscribeParams": {},
    }
    _fast_check("StartStreamingRequest")(body)
    assert body["autotranscribeParams"] == {}


def test_every_request_schema_compiles() -> None:
    for name in load_spec()["components"]["schemas"]:
        _fast_check(name)


near_valid = st.fixed_dictionaries(
    {
        "namespace": st.sampled_from(["siprec", "twilio", "amazonconnect", "genesysaudiohook"]),
        "guid": st.text(min_size=0, max_size=5),
        "customerId": st.text(max_size=3),
        "agentId": st.text(max_size=3),
    },
    optional={
        "autotranscribeParams": st.fixed_dictionaries(
            {},
            optional={
                "language": st.sampled_from(["en-US", "fr", "x y", "", "de-DE-1996"]),
                "detailedToken": st.one_of(st.booleans(), st.just("true")),
                "redactionOutput": st.sampled_from(["redacted", "unredacted", "masked"]),
            },
        ),
        "siprecParams": st.fixed_dictionaries(
            {},
            optional={
                "mediaLineOrder": st.sampled_from(["CUSTOMER_FIRST", "AGENT_FIRST", "FIRST"])
            },
        ),
        "twilioParams": st.fixed_dictionaries(
            {},
            optional={
                "trackMap": st.fixed_dictionaries(
                    {},
                    optional={
                        "inbound": st.sampled_from(["customer", "agent", "x"]),
                        "outbound": st.sampled_from(["customer", "agent", 1]),
                    },
                )
            },
        ),
        "amazonConnectParams": st.fixed_dictionaries(
            {"streamArn": st.text(max_size=4)},
            optional={
                "startSelectorType": st.sampled_from(["NOW", "FRAGMENT_NUMBER", "EARLIEST"]),
                "afterFragmentNumber": st.sampled_from(["123", "12a", ""]),
            },
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(body=near_valid)
def test_validators_agree_near_the_boundary(body: dict[str, Any]) -> None:
    name = "StartStreamingRequest"
    assert fast_ok(name, body) == _validator(name).is_valid(body)
