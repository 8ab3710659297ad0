"""How a text goes over the air: GSM 7-bit or UCS-2, and how it splits into concatenated parts.

Pure. A single SMS carries 160 GSM septets or 70 UCS-2 units; a concatenated one loses
room to its header (UDH), leaving 153 septets or 67 units per part. Chinese text is always
UCS-2. A part boundary never cuts a GSM escape pair or a UTF-16 surrogate pair.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GSM7", "UCS2", "SmsLayout", "layout", "is_gsm7"]

GSM7 = "gsm7"
UCS2 = "ucs2"

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table characters cost two septets (ESC + char).
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}


@dataclass(frozen=True)
class SmsLayout:
    """A text as it will be sent: encoding, total length in units, and its parts."""

    encoding: str
    units: int
    parts: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.parts)

    @property
    def data_coding(self) -> int:
        """The SMPP/Kannel data coding value: 0 (GSM default alphabet) or 8 (UCS-2)."""
        return 8 if self.encoding == UCS2 else 0


def is_gsm7(text: str) -> bool:
    return all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text)


def _unit_cost(ch: str, encoding: str) -> int:
    if encoding == GSM7:
        return 2 if ch in _GSM_EXTENDED else 1
    return 2 if ord(ch) > 0xFFFF else 1  # outside the BMP: a UTF-16 surrogate pair


def layout(text: str) -> SmsLayout:
    """Choose the encoding for `text` and split it into parts that each fit one SMS."""
    encoding = GSM7 if is_gsm7(text) else UCS2
    single, per_part = _LIMITS[encoding]
    units = sum(_unit_cost(c, encoding) for c in text)
    if units <= single:
        return SmsLayout(encoding, units, (text,) if text else ())
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        cost = _unit_cost(ch, encoding)
        if used + cost > per_part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += cost
    if current:
        parts.append("".join(current))
    return SmsLayout(encoding, units, tuple(parts))
