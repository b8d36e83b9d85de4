"""Typed request parameters and response records of the vendor API.

Parameters turn into exactly the JSON the contract describes (``to_body``); a test checks
every combination against the OpenAPI schemas, so these records cannot drift from the file.

>>> SiprecParams(media_line_order="AGENT_FIRST").to_body()
{'siprecParams': {'mediaLineOrder': 'AGENT_FIRST'}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AmazonConnectParams",
    "AutotranscribeParams",
    "GenesysAudioHookParams",
    "NamespaceParams",
    "ParticipantResult",
    "SiprecParams",
    "StreamingResult",
    "Summary",
    "TwilioParams",
]

Namespace = Literal["siprec", "twilio", "amazonconnect", "genesysaudiohook"]
RedactionOutput = Literal["redacted", "unredacted", "redacted_and_unredacted"]


@dataclass(frozen=True, slots=True)
class AutotranscribeParams:
    """``autotranscribeParams``; ``None`` fields are left out (the gateway's defaults apply)."""

    language: str | None = None
    detailed_token: bool | None = None
    audio_recording_allowed: bool | None = None
    redaction_output: RedactionOutput | None = None

    def to_body(self) -> dict[str, Any]:
        fields = {
            "language": self.language,
            "detailedToken": self.detailed_token,
            "audioRecordingAllowed": self.audio_recording_allowed,
            "redactionOutput": self.redaction_output,
        }
        inner = {k: v for k, v in fields.items() if v is not None}
        return {"autotranscribeParams": inner} if inner else {}


@dataclass(frozen=True, slots=True)
class SiprecParams:
    """``siprecParams``: which participant the top SDP m-line carries."""

    namespace = "siprec"
    media_line_order: Literal["CUSTOMER_FIRST", "AGENT_FIRST"] = "CUSTOMER_FIRST"

    def to_body(self) -> dict[str, Any]:
        return {"siprecParams": {"mediaLineOrder": self.media_line_order}}


@dataclass(frozen=True, slots=True)
class TwilioParams:
    """``twilioParams.trackMap``: the role of each Twilio track."""

    namespace = "twilio"
    inbound: Literal["customer", "agent"] = "customer"
    outbound: Literal["customer", "agent"] = "agent"

    def to_body(self) -> dict[str, Any]:
        return {"twilioParams": {"trackMap": {"inbound": self.inbound, "outbound": self.outbound}}}


@dataclass(frozen=True, slots=True)
class AmazonConnectParams:
    """``amazonConnectParams``: the contact's Kinesis Video stream and where to start reading."""

    namespace = "amazonconnect"
    stream_arn: str
    start_selector_type: Literal["NOW", "FRAGMENT_NUMBER"] = "NOW"
    after_fragment_number: str | None = None

    def to_body(self) -> dict[str, Any]:
        inner: dict[str, Any] = {
            "streamArn": self.stream_arn,
            "startSelectorType": self.start_selector_type,
        }
        if self.after_fragment_number is not None:
            inner["afterFragmentNumber"] = self.after_fragment_number
        return {"amazonConnectParams": inner}


@dataclass(frozen=True, slots=True)
class GenesysAudioHookParams:
    """Genesys AudioHook takes no namespace parameters: external is always the customer."""

    namespace = "genesysaudiohook"

    def to_body(self) -> dict[str, Any]:
        return {}


NamespaceParams = SiprecParams | TwilioParams | AmazonConnectParams | GenesysAudioHookParams


@dataclass(frozen=True, slots=True)
class Summary:
    """What the gateway received for one participant in one streaming segment."""

    total_audio_bytes: int
    audio_duration_ms: int
    streaming_seconds: int
    transcripts: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        return cls(
            total_audio_bytes=int(data.get("totalAudioBytes", 0)),
            audio_duration_ms=int(data.get("audioDurationMs", 0)),
            streaming_seconds=int(data.get("streamingSeconds", 0)),
            transcripts=int(data.get("transcripts", 0)),
        )


@dataclass(frozen=True, slots=True)
class ParticipantResult:
    stream_id: str
    status_code: int
    status_description: str
    summary: Summary | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParticipantResult:
        status = data.get("status") or {}
        summary = data.get("summary")
        return cls(
            stream_id=str(data.get("streamId", "")),
            status_code=int(status.get("code", 0)),
            status_description=str(status.get("description", "")),
            summary=Summary.from_json(summary) if isinstance(summary, dict) else None,
        )


@dataclass(frozen=True, slots=True)
class StreamingResult:
    """The answer to start-streaming or stop-streaming."""

    is_ok: bool
    customer: ParticipantResult
    agent: ParticipantResult
    error_message: str | None
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamingResult:
        at = data.get("autotranscribeResponse") or {}
        return cls(
            is_ok=bool(data.get("isOk", False)),
            customer=ParticipantResult.from_json(at.get("customer") or {}),
            agent=ParticipantResult.from_json(at.get("agent") or {}),
            error_message=data.get("errorMessage"),
            raw=data,
        )
