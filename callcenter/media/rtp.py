"""RTP packets (RFC 3550) as plain values: parse and serialise, nothing else.

Owns the wire format of the fixed header, CSRC list, header extension and
padding, and the RTCP-vs-RTP test for rtcp-mux (RFC 5761). Sessions, timing
and payload meaning live elsewhere (``session``, ``dtmf``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["RtpPacket", "RtpParseError", "is_rtcp", "parse_rtp", "HEADER"]

# Exposed so the send path can build headers with one pack call per packet.
HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


class RtpParseError(ValueError):
    """A datagram that is not a well-formed RTP version 2 packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet; ``padding`` is the count of padding bytes incl. the count byte."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} outside 0..127")
        if not 0 <= self.sequence <= 0xFFFF:
            raise ValueError(f"sequence {self.sequence} outside 0..65535")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError("timestamp and ssrc must be unsigned 32-bit")
        if len(self.csrc) > 15:
            raise ValueError(f"at most 15 CSRCs, got {len(self.csrc)}")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding {self.padding} outside 0..255")
        if self.extension is not None and len(self.extension[1]) % 4:
            raise ValueError("header extension data must be a multiple of 4 bytes")

    def serialize(self) -> bytes:
        """Encode to the RTP wire format."""
        first = 0x80 | (len(self.csrc) & 0x0F)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        parts = [
            HEADER.pack(
                first,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence,
                self.timestamp,
                self.ssrc,
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            profile, data = self.extension
            parts.append(_EXT_HEADER.pack(profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one datagram; raise RtpParseError saying what is wrong with it."""
    size = len(data)
    if size < 12:
        raise RtpParseError(f"RTP packet too short: {size} bytes, header needs 12")
    first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise RtpParseError(f"RTP version {first >> 6}, expected 2")
    offset = 12
    cc = first & 0x0F
    csrc: tuple[int, ...] = ()
    if cc:
        end = offset + 4 * cc
        if end > size:
            raise RtpParseError(f"CSRC list of {cc} entries runs past the packet end")
        csrc = struct.unpack_from(f"!{cc}I", data, offset)
        offset = end
    extension = None
    if first & 0x10:
        if offset + 4 > size:
            raise RtpParseError("header extension flag set but no extension header")
        profile, words = _EXT_HEADER.unpack_from(data, offset)
        end = offset + 4 + 4 * words
        if end > size:
            raise RtpParseError(f"header extension of {words} words runs past the packet end")
        extension = (profile, bytes(data[offset + 4 : end]))
        offset = end
    padding = 0
    end = size
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > size:
            raise RtpParseError(f"invalid padding count {padding}")
        end = size - padding
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
        csrc=csrc,
        extension=extension,
        padding=padding,
    )


def is_rtcp(data: bytes) -> bool:
    """True for an RTCP packet multiplexed on the RTP port (RFC 5761 section 4).

    RTCP packet types 192–223 (SR 200, RR 201, SDES, BYE, APP among them)
    collide with RTP marker+payload-type 64–95, which RFC 5761 reserves.
    """
    return len(data) >= 8 and data[0] >> 6 == 2 and 192 <= data[1] <= 223
