"""Where SBCs carry the UCID: Avaya's ``User-to-User`` information element.

Avaya writes its 20-digit decimal UCID (5-digit node, 5-digit sequence, 10-digit time) as
an 8-byte UCID information element (tag 0xFA, length 8) in a hex-encoded ``User-to-User``
header; these two functions convert between the forms.
"""

from __future__ import annotations

__all__ = ["ucid_from_uui", "ucid_to_uui"]

_UUI_UCID = "FA08"  # UCID information element: tag 0xFA, 8 bytes long


def ucid_to_uui(ucid: str) -> str | None:
    """The hex ``User-to-User`` value carrying a 20-digit decimal Avaya UCID, or None when
    the id does not have that layout (5-digit node, 5-digit sequence, 10-digit time).

    >>> ucid_to_uui("00025000160955721139")
    '00FA080019001038F725B3;encoding=hex'
    """
    if len(ucid) != 20 or not ucid.isdigit() or not ucid.isascii():
        return None
    node, seq, stamp = int(ucid[:5]), int(ucid[5:10]), int(ucid[10:])
    if node > 0xFFFF or seq > 0xFFFF or stamp > 0xFFFFFFFF:
        return None
    return f"00{_UUI_UCID}{node:04X}{seq:04X}{stamp:08X};encoding=hex"


def ucid_from_uui(value: str) -> str | None:
    """The decimal UCID in a hex ``User-to-User`` value (with or without the protocol
    discriminator byte), or None when there is none.

    >>> ucid_from_uui("00FA080019001038F725B3;encoding=hex")
    '00025000160955721139'
    """
    hexdigits = value.split(";", 1)[0].strip().upper()
    for start in (2, 0):
        if hexdigits[start : start + 4] == _UUI_UCID:
            body = hexdigits[start + 4 : start + 20]
            if len(body) == 16 and all(c in "0123456789ABCDEF" for c in body):
                node, seq, stamp = int(body[:4], 16), int(body[4:8], 16), int(body[8:], 16)
                return f"{node:05d}{seq:05d}{stamp:010d}"
    return None
