"""DTMF: RFC 4733 telephone-events in and out, and in-band tone detection.

Owns the telephone-event payload format, the receive-side de-duplication rule
(one digit per event, keyed by RTP timestamp), the packet train for sending one
digit, a Goertzel-style in-band detector for peers that send tones inside the
audio, and a tone generator for sending in-band when no telephone-event
payload type was negotiated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from callcenter.media.rtp import RtpPacket

__all__ = [
    "DTMF_FREQUENCIES",
    "DtmfError",
    "DtmfReceiver",
    "EVENT_DIGITS",
    "GoertzelDetector",
    "TelephoneEvent",
    "dtmf_packet_payloads",
    "dtmf_tone",
    "parse_telephone_event",
]

# RFC 4733 section 3.2: event codes 0–15 in this order.
EVENT_DIGITS = "0123456789*#ABCD"
_ROWS = (697.0, 770.0, 852.0, 941.0)
_COLS = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
DTMF_FREQUENCIES = {
    digit: (_ROWS[r], _COLS[c]) for r, keys in enumerate(_KEYPAD) for c, digit in enumerate(keys)
}
_EVENT = struct.Struct("!BBH")


class DtmfError(ValueError):
    """A malformed telephone-event payload or an unknown DTMF digit."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte RFC 4733 payload: event code, end bit, volume (−dBm0), duration (samples)."""

    event: int
    end: bool
    volume: int
    duration: int

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise DtmfError(f"event code {self.event} outside 0..255")
        if not 0 <= self.volume <= 63:
            raise DtmfError(f"volume {self.volume} outside 0..63")
        if not 0 <= self.duration <= 0xFFFF:
            raise DtmfError(f"duration {self.duration} outside 0..65535")

    @property
    def digit(self) -> str | None:
        """The DTMF digit for event codes 0–15, else None (e.g. flash, tones)."""
        return EVENT_DIGITS[self.event] if self.event < 16 else None

    def serialize(self) -> bytes:
        """Encode to the 4-byte payload (reserved bit zero)."""
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Parse the first event block of a telephone-event payload."""
    if len(payload) < 4:
        raise DtmfError(f"telephone-event payload too short: {len(payload)} bytes, need 4")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, each reported once.

    An event is identified by (SSRC, RTP timestamp): every packet of one key
    press carries the same timestamp, including the repeated end packets, so a
    second press of the same digit is recognisable by its new timestamp. The
    digit is reported on the first packet seen, whichever it is, for lowest
    latency; keys are forgotten after ``memory_s`` so the set stays small.
    """

    def __init__(self, memory_s: float = 10.0) -> None:
        self._memory_s = memory_s
        self._seen: dict[tuple[int, int, int], float] = {}

    def feed(self, packet: RtpPacket, now: float) -> str | None:
        """Return the digit if this packet starts a new event, else None.

        Raises DtmfError for a payload shorter than one event block.
        """
        event = parse_telephone_event(packet.payload)
        digit = event.digit
        if digit is None:
            return None
        # The event code is part of the key so a sender that (wrongly) reuses a
        # timestamp for the next digit still gets both digits through.
        key = (packet.ssrc, packet.timestamp, event.event)
        if key in self._seen:
            self._seen[key] = now
            return None
        if len(self._seen) > 32:
            self._forget(now)
        self._seen[key] = now
        return digit

    def _forget(self, now: float) -> None:
        horizon = now - self._memory_s
        self._seen = {k: t for k, t in self._seen.items() if t >= horizon}


def dtmf_packet_payloads(
    digit: str, *, duration_ms: int = 100, volume: int = 10, end_repeats: int = 3
) -> list[tuple[bytes, bool]]:
    """Payloads (with marker flag) for one RFC 4733 event, one per 20 ms packet.

    The caller sends them on consecutive ticks with one RTP timestamp, the
    timestamp of the first packet. Durations grow by 160 samples per packet;
    the final duration is sent ``end_repeats`` times with the end bit, as
    RFC 4733 section 2.5.1.4 recommends for loss resilience.
    """
    if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in EVENT_DIGITS:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    if duration_ms < 20 or duration_ms * 8 > 0xFFFF:
        raise DtmfError(f"duration {duration_ms} ms outside 20..8191 ms")
    if end_repeats < 1:
        raise DtmfError("at least one end packet is needed")
    code = EVENT_DIGITS.index(digit.upper())
    frames = max(1, round(duration_ms / 20))
    out: list[tuple[bytes, bool]] = []
    for i in range(1, frames):
        out.append((TelephoneEvent(code, False, volume, 160 * i).serialize(), i == 1))
    final = TelephoneEvent(code, True, volume, 160 * frames).serialize()
    first_is_end = not out
    for i in range(end_repeats):
        out.append((final, first_is_end and i == 0))
    return out


def dtmf_tone(digit: str, *, duration_ms: int = 100, pause_ms: int = 60, level_dbfs: float = -10.0,
              sample_rate: int = 8000) -> bytes:
    """16-bit PCM of one in-band DTMF tone followed by silence."""
    if not isinstance(digit, str) or digit.upper() not in DTMF_FREQUENCIES:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    low, high = DTMF_FREQUENCIES[digit.upper()]
    n = sample_rate * duration_ms // 1000
    t = np.arange(n) / sample_rate
    # Each component at level-3 dB so the pair peaks near the requested level.
    amp = 32767 * 10 ** (level_dbfs / 20) / 2
    tone = amp * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    pcm = np.concatenate([tone, np.zeros(sample_rate * pause_ms // 1000)])
    return np.round(pcm).astype("<i2").tobytes()


class GoertzelDetector:
    """In-band DTMF detector working on 20 ms blocks of 16-bit PCM.

    A block counts as a digit only if: the strongest row and column tones
    both clear an absolute level; together they carry most of the block's
    energy (speech and noise spread their energy, DTMF does not); each beats
    the other tones of its group clearly; the level difference between the
    two (twist) is within limits. A digit is reported once, after it has
    held for ``min_frames`` consecutive blocks, and again only after a block
    without it.

    The tone powers are the Goertzel values computed as one matrix product
    against precomputed cos/sin rows at the exact DTMF frequencies.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        min_frames: int = 2,
        min_level_dbfs: float = -36.0,
        min_tone_ratio: float = 0.7,
        max_twist_db: float = 8.0,
        max_reverse_twist_db: float = 8.0,
        min_peak_ratio_db: float = 8.0,
    ) -> None:
        self.block = sample_rate // 50
        t = np.arange(self.block) / sample_rate
        freqs = np.array(_ROWS + _COLS)
        self._basis = np.concatenate(
            [np.cos(2 * np.pi * np.outer(freqs, t)), np.sin(2 * np.pi * np.outer(freqs, t))]
        )
        # A full-scale sine of amplitude A over N samples has energy A²N/2;
        # the threshold is on mean power relative to a full-scale sine.
        self._min_tone_energy = (32767.0**2) * self.block / 2 * 10 ** (min_level_dbfs / 10)
        self._min_tone_ratio = min_tone_ratio
        self._twist = 10 ** (max_twist_db / 10)
        self._reverse_twist = 10 ** (max_reverse_twist_db / 10)
        self._peak_ratio = 10 ** (min_peak_ratio_db / 10)
        self._min_frames = min_frames
        self._pending = b""
        self._candidate: str | None = None
        self._count = 0
        self._reported = False

    def feed(self, pcm_frame: bytes) -> str | None:
        """Feed PCM (ideally one 20 ms frame); return a digit when a press is confirmed."""
        if len(pcm_frame) & 1:
            raise ValueError(f"PCM must be whole 16-bit samples, got {len(pcm_frame)} bytes")
        data = self._pending + pcm_frame if self._pending else pcm_frame
        step = 2 * self.block
        usable = len(data) - len(data) % step
        self._pending = data[usable:]
        result = None
        for start in range(0, usable, step):
            found = self._step(self.classify(data[start : start + step]))
            result = result or found
        return result

    def classify(self, block: bytes) -> str | None:
        """The digit one block looks like on its own, without the hold rule."""
        x = np.frombuffer(block, dtype="<i2").astype(np.float64)
        energy = float(x @ x)
        if energy <= 0.0:
            return None
        proj = self._basis @ x
        # |X(f)|² scaled so a pure tone's value equals its energy in the block.
        power = (proj[:8] ** 2 + proj[8:] ** 2) * (2.0 / len(x))
        rows, cols = power[:4], power[4:]
        r = int(np.argmax(rows))
        c = int(np.argmax(cols))
        row_p, col_p = rows[r], cols[c]
        if row_p < self._min_tone_energy or col_p < self._min_tone_energy:
            return None
        if row_p + col_p < self._min_tone_ratio * energy:
            return None
        # Normal twist: the high (column) tone weaker than the low one.
        if row_p > col_p * self._twist or col_p > row_p * self._reverse_twist:
            return None
        others_r = np.delete(rows, r)
        others_c = np.delete(cols, c)
        if row_p < self._peak_ratio * others_r.max() or col_p < self._peak_ratio * others_c.max():
            return None
        return _KEYPAD[r][c]

    def _step(self, digit: str | None) -> str | None:
        if digit is None or digit != self._candidate:
            self._candidate = digit
            self._count = 1 if digit else 0
            self._reported = False
            return None
        self._count += 1
        if self._count >= self._min_frames and not self._reported:
            self._reported = True
            return digit
        return None
