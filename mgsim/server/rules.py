"""Checks on start/stop bodies that a schema cannot express (400-201 and 400-202).

The schema (the OpenAPI file) has already accepted the body's shape; these rules look at
what the fields say together. The contract's description lists each of them. Every form is
checked with a full match: ``$`` would also accept a trailing newline.
"""

from __future__ import annotations

import re
from typing import Any

from mgsim.contract import Problem
from mgsim.media.twilio import CALL_SID

__all__ = ["check_guid", "check_start", "guid_form_problem"]

_GUID_FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "siprec": (
        re.compile(r"[0-9]+(-[0-9]+)*"),
        "a UCID in decimal form (digits, optionally in dash-separated groups)",
    ),
    # The same form the Twilio decoder asks of a stream's callSid.
    "twilio": (CALL_SID, "a Twilio Call SID: CA followed by 32 hex digits"),
    "amazonconnect": (
        re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        "an Amazon Connect ContactId (a lowercase UUID)",
    ),
    # UUIDs compare case-insensitively: the gateway keys the call by the lower-case form.
    "genesysaudiohook": (
        re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"),
        "a Genesys conversationId (a UUID, in either case)",
    ),
}

_PARAMS_OF = {
    "siprecParams": "siprec",
    "twilioParams": "twilio",
    "amazonConnectParams": "amazonconnect",
}


def check_guid(namespace: str, guid: str) -> None:
    """400-201 unless ``guid`` has the form the platform gives its call ids."""
    problem = guid_form_problem(namespace, guid)
    if problem is not None:
        raise Problem("400-201", f"guid: {problem}")


def guid_form_problem(namespace: str | None, guid: str) -> str | None:
    """Why ``guid`` cannot be a call id of ``namespace`` (of any platform when None), or
    None when it can.

    >>> guid_form_problem(None, "CA" + "0" * 32) is None
    True
    >>> guid_form_problem(None, "1234\\n") is None  # a trailing newline is no UCID
    False
    """
    if namespace is not None:
        pattern, form = _GUID_FORMS[namespace]
        if pattern.fullmatch(guid):
            return None
        return f"for namespace {namespace} the guid must be {form}"
    if any(pattern.fullmatch(guid) for pattern, _ in _GUID_FORMS.values()):
        return None
    forms = "; ".join(form for _, form in _GUID_FORMS.values())
    return f"the guid must be a call id of one of the platforms: {forms}"


def check_start(body: dict[str, Any], *, redaction_rules_configured: bool) -> None:
    """Raise :class:`Problem` if a schema-valid start-streaming body is still wrong."""
    namespace = body["namespace"]
    check_guid(namespace, body["guid"])
    for key, owner in _PARAMS_OF.items():
        if key in body and owner != namespace:
            raise Problem("400-202", f"{key} applies to namespace {owner}, not {namespace}")

    at = body.get("autotranscribeParams") or {}
    output = at.get("redactionOutput", "redacted")
    if at.get("detailedToken", False) and output != "unredacted":
        raise Problem(
            "400-202",
            f"autotranscribeParams.detailedToken=true requires redactionOutput 'unredacted' "
            f"(got '{output}'; 'redacted' is the default)",
        )
    if output != "unredacted" and not redaction_rules_configured:
        raise Problem(
            "400-202",
            f"autotranscribeParams.redactionOutput '{output}' needs redaction rules, and none "
            "are configured for this account",
        )

    if namespace == "amazonconnect":
        kvs = body["amazonConnectParams"]  # the schema requires it for amazonconnect
        selector = kvs.get("startSelectorType", "NOW")
        has_after = "afterFragmentNumber" in kvs
        if selector == "FRAGMENT_NUMBER" and not has_after:
            raise Problem(
                "400-202",
                "amazonConnectParams.afterFragmentNumber is mandatory when startSelectorType "
                "is FRAGMENT_NUMBER",
            )
        # With NOW, afterFragmentNumber is ignored: integrators forward the contact's
        # StartFragmentNumber whichever selector they choose, and the vendor does not say
        # it must be absent.

    track_map = (body.get("twilioParams") or {}).get("trackMap") or {}
    inbound = track_map.get("inbound", "customer")
    outbound = track_map.get("outbound", "agent")
    if inbound == outbound:
        raise Problem(
            "400-202",
            f"twilioParams.trackMap maps both tracks to {inbound}; one must be the customer "
            "and the other the agent",
        )
