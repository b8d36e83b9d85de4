"""The sidecar's format: its JSON Schema and how it is written.

``sample_audio/README.md`` documents every field; :meth:`mgsim.sim.call.Call.load`
validates against :data:`SIDECAR_SCHEMA` and :meth:`~mgsim.sim.call.Call.save` writes with
:func:`dumps_sidecar`.
"""

from __future__ import annotations

import json
from typing import Any

from mgsim.media._base import SAMPLE_RATE

__all__ = ["SIDECAR_SCHEMA", "dumps_sidecar"]

_TIME = {"type": "number", "minimum": 0}
_SPEAKER = {"enum": ["customer", "agent"]}
_TEXT = {"type": "string", "minLength": 1}
# One word, as the transcription engine and redaction take them: no whitespace anywhere.
_WORD = {**_TEXT, "not": {"pattern": "\\s"}}


def _record(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


SIDECAR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mgsim call sidecar",
    **_record(
        {
            "call_id": _TEXT,
            "title": {"type": "string"},
            "direction": {"enum": ["inbound", "outbound"]},
            "rate": {"const": SAMPLE_RATE},
            "channels": _record(
                {
                    "customer": {"type": "integer", "minimum": 0},
                    "agent": {"type": "integer", "minimum": 0},
                }
            ),
            "duration_ms": _TIME,
            "words": _list_of(
                _record(
                    {
                        "speaker": _SPEAKER,
                        "voice": _TEXT,
                        "text": _WORD,
                        "start_ms": _TIME,
                        "end_ms": _TIME,
                    }
                )
            ),
            "sensitive": _list_of(
                _record(
                    {
                        "label": _TEXT,
                        "speaker": _SPEAKER,
                        "text": _TEXT,
                        "start_ms": _TIME,
                        "end_ms": _TIME,
                        "word_indexes": {
                            **_list_of({"type": "integer", "minimum": 0}),
                            "minItems": 1,
                        },
                    }
                )
            ),
            "segments": _list_of(
                _record(
                    {
                        "kind": {"enum": ["ivr", "hold", "speech", "silence", "transfer", "sound"]},
                        "start_ms": _TIME,
                        "end_ms": _TIME,
                    },
                    {"speaker": _SPEAKER, "voice": _TEXT, "style": _TEXT},
                )
            ),
        },
        # voice: the synthesizer voice of a natural-voice sample ("piper en_US-joe-medium");
        # absent on the espeak-ng samples.
        {"generator": {"type": "object"}, "voice": _TEXT},
    ),
    # Unknown top-level keys are kept in Call.meta rather than rejected.
    "additionalProperties": True,
}
"""JSON Schema of the sidecar; extra top-level keys are kept in :attr:`Call.meta`."""


def dumps_sidecar(sidecar: dict[str, Any]) -> str:
    """Serialise a sidecar with one list item per line, so diffs stay readable."""
    lines = []
    for key, value in sidecar.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            items = ",\n    ".join(json.dumps(v, ensure_ascii=False) for v in value)
            text = f"[\n    {items}\n  ]"
        else:
            text = json.dumps(value, ensure_ascii=False)
        lines.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"
