"""One RTP media session, pure: datagrams and time in, datagrams and events out.

Owns everything one call leg does with RTP: parsing and decoding what
arrives (audio, RFC 4733 DTMF, optional in-band DTMF), symmetric-RTP latching
of the remote address, loss/late accounting, and building exactly one packet
per 20 ms tick from queued prompts, DTMF, bridged audio or silence.

The driver owns sockets and the clock: it calls ``receive(data, addr, now)``
for every datagram and ``tick(now)`` every 20 ms, and sends what ``tick``
returns. ``tick`` is the hot path (hundreds of sessions every 20 ms), so it
slices pre-encoded audio and packs headers with one ``struct`` call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from callcenter.media import clips as _clips
from callcenter.media import g711
from callcenter.media.clips import Clip, ClipStore
from callcenter.media.dtmf import (
    DtmfError,
    DtmfReceiver,
    GoertzelDetector,
    dtmf_packet_payloads,
    dtmf_tone,
    EVENT_DIGITS,
)
from callcenter.media.events import (
    AudioReceived,
    AudioSent,
    DtmfReceived,
    MediaEvent,
    PlaybackFinished,
    PlaybackStopped,
    RemoteLatched,
    audio_received,
    audio_sent,
)
from callcenter.media.jitter import JitterBuffer
from callcenter.media.rtp import HEADER, RtpPacket, RtpParseError, is_rtcp, parse_rtp

__all__ = [
    "AudioReceived",
    "AudioSent",
    "DtmfReceived",
    "FRAME_BYTES",
    "FRAME_SAMPLES",
    "MediaEvent",
    "MediaSession",
    "MediaStats",
    "PlaybackFinished",
    "PlaybackStopped",
    "RemoteLatched",
]

FRAME_SAMPLES = 160
FRAME_BYTES = 2 * FRAME_SAMPLES
_SILENT_PCM = bytes(FRAME_BYTES)
# Bridged audio beyond this much is dropped oldest-first so a leg that bursts
# cannot build up delay for the rest of the call.
_MAX_BRIDGE_BYTES = 6 * FRAME_BYTES
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
# Consecutive in-sequence packets a new source must send before sending follows it.
RELATCH_AFTER = 5


@dataclass(frozen=True, slots=True)
class MediaStats:
    """Counters of one session, for CDRs, logs and the wallboard."""

    packets_received: int
    bytes_received: int
    packets_lost: int
    packets_late: int
    packets_malformed: int
    packets_rtcp: int
    packets_unknown_payload: int
    packets_foreign: int
    packets_sent: int
    bytes_sent: int


class _Play:
    """A queued play: a shared clip (see ``clips``) and how far into it sending is."""

    __slots__ = ("play_id", "clip", "pcm", "encoded", "pos")

    def __init__(self, play_id: str, clip: Clip, codec: str) -> None:
        self.play_id = play_id
        self.clip = clip
        self.pcm = clip.pcm
        self.encoded = clip.encoded(codec)
        self.pos = 0  # in samples


class MediaSession:
    """One RTP stream pair (send and receive) for one call leg."""

    def __init__(
        self,
        *,
        codec: str,
        payload_type: int,
        dtmf_payload_type: int | None,
        remote: tuple[str, int] | None,
        ssrc: int,
        initial_sequence: int,
        initial_timestamp: int,
        inband_dtmf: bool = False,
        record_sent: bool = False,
        jitter_frames: int = 0,
        clips: ClipStore | None = None,
    ) -> None:
        if not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError(f"ssrc {ssrc} is not an unsigned 32-bit value")
        # Prompts are interned here, so calls hearing the same prompt share one copy.
        self._clips = clips if clips is not None else _clips.shared
        self._remote: tuple[str, int] | None = None
        self._sdp_remote: tuple[str, int] | None = None
        self._latched = False
        self._candidate: tuple[tuple[str, int], int, int, int] | None = None
        self.set_remote(remote)
        self.set_codec(codec, payload_type, dtmf_payload_type)
        self.ssrc = ssrc
        self._seq = initial_sequence & 0xFFFF
        self._ts = initial_timestamp & 0xFFFFFFFF
        self.record_sent = record_sent
        self.held = False
        self._talking = False
        self._plays: deque[_Play] = deque()
        self._bridge = bytearray()
        self._dtmf_digits: deque[str] = deque()
        self._dtmf_train: deque[tuple[bytes, bool]] = deque()
        self._dtmf_train_ts = 0
        self._tone_pcm = b""
        self._tone_pos = 0
        self._dtmf_rx = DtmfReceiver()
        self._inband = GoertzelDetector() if inband_dtmf else None
        self._jitter: JitterBuffer[AudioReceived] | None = (
            JitterBuffer(jitter_frames) if jitter_frames > 0 else None
        )
        self._jitter_hold_s = 0.02 * max(jitter_frames, 1)
        self._rx_ssrc: int | None = None
        self._rx_highest = 0
        self.last_received_at: float | None = None
        self.packets_received = 0
        self.bytes_received = 0
        self.packets_lost = 0
        self.packets_late = 0
        self.packets_malformed = 0
        self.packets_rtcp = 0
        self.packets_unknown_payload = 0
        self.packets_foreign = 0
        self.packets_sent = 0
        self.bytes_sent = 0

    # -- configuration (SDP offer/answer, re-INVITE) -------------------------

    @property
    def remote(self) -> tuple[str, int] | None:
        """Where packets are sent: the SDP address, or the latched source."""
        return self._remote

    @property
    def codec(self) -> str:
        return self._codec

    def set_remote(self, addr: tuple[str, int] | None) -> None:
        """Point sending at a new SDP address; the next valid packet may latch again.

        A re-INVITE that repeats the same SDP address keeps the latched
        source, so a NATed peer does not lose packets to its private address.
        """
        new = None if addr is None else (str(addr[0]), int(addr[1]))
        if self._latched and new == self._sdp_remote:
            return
        self._sdp_remote = new
        self._remote = new
        self._latched = False
        self._candidate = None

    def set_codec(self, codec: str, payload_type: int, dtmf_payload_type: int | None) -> None:
        """Switch the send codec and payload types; queued prompts are re-encoded."""
        encode = g711.encoder(codec)
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} outside 0..127")
        if dtmf_payload_type is not None and not 0 <= dtmf_payload_type <= 127:
            raise ValueError(f"DTMF payload type {dtmf_payload_type} outside 0..127")
        self._codec = codec.upper()
        self._encode: Callable[[bytes], bytes] = encode
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self._silence = encode(_SILENT_PCM)
        # Receive either law on its static type: some peers answer one law
        # and keep sending the other they offered.
        self._decoders: dict[int, Callable[[bytes], bytes]] = {
            0: g711.ulaw_decode,
            8: g711.alaw_decode,
            payload_type: g711.decoder(codec),
        }
        for play in getattr(self, "_plays", ()):
            play.encoded = play.clip.encoded(self._codec)

    def hold(self, held: bool) -> None:
        """While held nothing is sent and prompts do not advance; the RTP clock runs on."""
        self.held = bool(held)

    # -- sending ---------------------------------------------------------------

    def play(self, pcm: bytes, play_id: str) -> None:
        """Queue linear PCM (16-bit LE, 8 kHz mono) to send after earlier plays."""
        if len(pcm) & 1:
            raise ValueError(f"prompt {play_id!r}: PCM must be whole 16-bit samples, got {len(pcm)} bytes")
        self._plays.append(_Play(play_id, self._clips.intern(pcm), self._codec))

    def stop_playback(self) -> list[MediaEvent]:
        """Drop all queued prompts, reporting each one as stopped."""
        stopped: list[MediaEvent] = [PlaybackStopped(p.play_id) for p in self._plays]
        self._plays.clear()
        return stopped

    @property
    def playing(self) -> str | None:
        """The play_id now being sent, or None."""
        return self._plays[0].play_id if self._plays else None

    def send_dtmf(self, digit: str) -> None:
        """Queue one digit: RFC 4733 events if negotiated, else in-band tones."""
        if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in EVENT_DIGITS:
            raise DtmfError(f"not a DTMF digit: {digit!r}")
        self._dtmf_digits.append(digit.upper())

    def feed_bridge(self, pcm_frame: bytes) -> None:
        """Audio from the other leg of a bridge, sent on the coming ticks."""
        if len(pcm_frame) & 1:
            raise ValueError(f"bridged PCM must be whole 16-bit samples, got {len(pcm_frame)} bytes")
        bridge = self._bridge
        bridge += pcm_frame
        if len(bridge) > _MAX_BRIDGE_BYTES:
            del bridge[: len(bridge) - _MAX_BRIDGE_BYTES]

    def tick(self, now: float) -> tuple[bytes | None, list[MediaEvent]]:
        """Build the RTP datagram for this 20 ms frame (or None) and the events it causes."""
        ts = self._ts
        self._ts = (ts + FRAME_SAMPLES) & 0xFFFFFFFF
        events: list[MediaEvent] = []
        jitter = self._jitter
        if jitter is not None and len(jitter) and self.last_received_at is not None:
            if now - self.last_received_at >= self._jitter_hold_s:
                events.extend(self._deliver(jitter.drain()))
        if self._remote is None or self.held:
            self._talking = False
            return None, events

        record = self.record_sent
        pcm: bytes | None = None
        if self._dtmf_digits and not self._dtmf_train and self._tone_pos >= len(self._tone_pcm):
            self._start_dtmf(ts)
        if self._dtmf_train:
            payload, marker = self._dtmf_train.popleft()
            header = _pack_header(0x80, (0x80 if marker else 0) | self.dtmf_payload_type,
                                  self._seq, self._dtmf_train_ts, self.ssrc)
            # Live bridged audio is dropped rather than delayed behind the digit.
            self._take_bridge()
            talk = True
            if record:
                pcm = _SILENT_PCM
        else:
            payload = None
            plays = self._plays
            if self._tone_pos < len(self._tone_pcm):
                pos = self._tone_pos
                pcm = self._tone_pcm[pos : pos + FRAME_BYTES]
                self._tone_pos = pos + FRAME_BYTES
                payload = self._encode(pcm)
                self._take_bridge()
            elif plays:
                play = plays[0]
                pos = play.pos
                end = pos + FRAME_SAMPLES
                payload = play.encoded[pos:end]
                if record:
                    pcm = play.pcm[2 * pos : 2 * end]
                play.pos = end
                if end >= len(play.encoded):
                    plays.popleft()
                    events.append(PlaybackFinished(play.play_id))
                if len(self._bridge) >= FRAME_BYTES:
                    self._take_bridge()
            elif self._bridge:
                pcm = self._take_bridge()
                if pcm is not None:
                    payload = self._encode(pcm)
            talk = payload is not None
            if payload is None:
                payload = self._silence
                pcm = _SILENT_PCM
            header = _pack_header(0x80, (0x80 if talk and not self._talking else 0) | self.payload_type,
                                  self._seq, ts, self.ssrc)
        self._talking = talk
        self._seq = (self._seq + 1) & 0xFFFF
        datagram = header + payload
        self.packets_sent += 1
        self.bytes_sent += len(datagram)
        if record:
            events.append(audio_sent(pcm if pcm is not None else _SILENT_PCM))
        return datagram, events

    def _take_bridge(self) -> bytes | None:
        bridge = self._bridge
        if len(bridge) < FRAME_BYTES:
            return None
        pcm = bytes(bridge[:FRAME_BYTES])
        del bridge[:FRAME_BYTES]
        return pcm

    def _start_dtmf(self, ts: int) -> None:
        digit = self._dtmf_digits.popleft()
        if self.dtmf_payload_type is not None:
            self._dtmf_train.extend(dtmf_packet_payloads(digit))
            self._dtmf_train_ts = ts
        else:
            self._tone_pcm = dtmf_tone(digit)
            self._tone_pos = 0

    # -- receiving ---------------------------------------------------------------

    def receive(self, data: bytes, addr: tuple[str, int], now: float) -> list[MediaEvent]:
        """Handle one datagram from the RTP port; never raises for bad packets."""
        # Fast path, taken by almost every packet of a call: a plain RTP header (no
        # padding, extension or CSRCs), not RTCP, an audio payload type, from the latched
        # source, no jitter buffer. It does what the general path below does for such a
        # packet, with fewer calls and objects.
        if len(data) > 12 and data[0] == 0x80 and self._latched and self._jitter is None:
            second = data[1]
            payload_type = second & 0x7F
            decode = self._decoders.get(payload_type)
            if (decode is not None and not 192 <= second <= 223
                    and payload_type != self.dtmf_payload_type and addr == self._remote):
                _, _, sequence, timestamp, ssrc = _unpack_header(data)
                self.packets_received += 1
                self.bytes_received += len(data)
                self.last_received_at = now
                if ssrc == self._rx_ssrc and (sequence - self._rx_highest) & 0xFFFF == 1:
                    self._rx_highest = sequence
                elif not self._track_sequence(ssrc, sequence):
                    return []
                pcm = decode(data[12:])
                audio = audio_received(pcm, sequence, timestamp)
                inband = self._inband
                if inband is None:
                    return [audio]
                digit = inband.feed(pcm)
                if digit is None:
                    return [audio]
                return [audio, DtmfReceived(digit, "inband")]
        try:
            if is_rtcp(data):
                self.packets_rtcp += 1
                return []
            if len(data) > 12 and data[0] == 0x80:
                # Fast path for the usual packet: no padding, extension or CSRCs.
                _, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
                payload_type = second & 0x7F
                payload = data[12:]
                packet = None
            else:
                packet = parse_rtp(data)
                payload_type, sequence, timestamp, ssrc = (
                    packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc)
                payload = packet.payload
        except RtpParseError:
            self.packets_malformed += 1
            return []

        decode = self._decoders.get(payload_type)
        is_dtmf = payload_type == self.dtmf_payload_type and self.dtmf_payload_type is not None
        if decode is None and not is_dtmf:
            self.packets_unknown_payload += 1
            return []

        events: list[MediaEvent] = []
        source = (addr[0], addr[1])
        if not self._latched:
            self._latched = True
            if source != self._remote:
                self._remote = source
                events.append(RemoteLatched(source))
        elif source != self._remote:
            # After latching, another source is a stray or injected stream,
            # unless it proves itself a steady stream (peer moved, e.g. an SBC
            # failover without re-INVITE): then follow it, as strict-RTP
            # learning does in common PBXes.
            self.packets_foreign += 1
            if not self._probation(source, ssrc, sequence):
                return []
            self._remote = source
            events.append(RemoteLatched(source))

        self.packets_received += 1
        self.bytes_received += len(data)
        self.last_received_at = now
        in_order = self._track_sequence(ssrc, sequence)

        if is_dtmf:
            if packet is None:
                packet = RtpPacket(payload_type, sequence, timestamp, ssrc, bytes(payload), bool(second & 0x80))
            try:
                digit = self._dtmf_rx.feed(packet, now)
            except DtmfError:
                self.packets_malformed += 1
                return events
            if digit is not None:
                # A peer that sends RFC 4733 may leak the tone in-band too.
                self._inband = None
                events.append(DtmfReceived(digit, "rfc4733"))
            return events

        if not payload:
            # Empty packets are NAT keepalives: they latch but carry no audio.
            return events
        audio = audio_received(decode(payload), sequence, timestamp)
        if self._jitter is not None:
            return events + self._deliver(self._jitter.push(sequence, audio))
        if not in_order:
            return events
        events.extend(self._deliver((audio,)))
        return events

    def _probation(self, source: tuple[str, int], ssrc: int, sequence: int) -> bool:
        cand = self._candidate
        if cand is not None and cand[0] == source and cand[1] == ssrc and (cand[2] + 1) & 0xFFFF == sequence:
            count = cand[3] + 1
        else:
            count = 1
        if count >= RELATCH_AFTER:
            self._candidate = None
            return True
        self._candidate = (source, ssrc, sequence, count)
        return False

    def _deliver(self, frames) -> list[MediaEvent]:
        out: list[MediaEvent] = []
        inband = self._inband
        for audio in frames:
            out.append(audio)
            if inband is not None:
                digit = inband.feed(audio.pcm)
                if digit is not None:
                    out.append(DtmfReceived(digit, "inband"))
        return out

    def _track_sequence(self, ssrc: int, sequence: int) -> bool:
        """Update loss/late counters; False for a duplicate or late packet."""
        if ssrc != self._rx_ssrc:
            self._rx_ssrc = ssrc
            self._rx_highest = sequence
            return True
        ahead = (sequence - self._rx_highest) & 0xFFFF
        if ahead == 0 or ahead >= 0x8000:
            self.packets_late += 1
            if self.packets_lost and ahead:
                self.packets_lost -= 1
            return False
        if ahead <= 3000:
            self.packets_lost += ahead - 1
        self._rx_highest = sequence
        return True

    def stats(self) -> MediaStats:
        """A snapshot of the counters."""
        return MediaStats(
            self.packets_received, self.bytes_received, self.packets_lost, self.packets_late,
            self.packets_malformed, self.packets_rtcp, self.packets_unknown_payload,
            self.packets_foreign, self.packets_sent, self.bytes_sent,
        )
