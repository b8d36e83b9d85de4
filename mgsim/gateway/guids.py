"""How calls are keyed: one spelling per guid, whatever case a platform or client used."""

from __future__ import annotations

import re

__all__ = ["canonical_guid"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def canonical_guid(guid: str) -> str:
    """The key a call is kept under: a UUID (a Genesys conversationId, an Amazon Connect
    ContactId) in lower case, since UUIDs compare case-insensitively; other guids as given.

    >>> canonical_guid("0F8FAD5B-D9CB-469F-A165-70867728950E")
    '0f8fad5b-d9cb-469f-a165-70867728950e'
    """
    return guid.lower() if _UUID.fullmatch(guid) else guid
