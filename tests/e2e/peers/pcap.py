"""RTP capture files for sipp's ``play_pcap_audio``, and test speech to put in them.

sipp replays the UDP payloads of a libpcap file with the file's timing, to the RTP address
of the SDP answer, so the addresses written here do not matter. The G.711 encoder is a
small independent one (ITU-T G.711 segment tables), deliberately not the hotline's own
``callcenter.media.g711``: a test peer must not share code with what it tests.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "build_rtp_pcap",
    "read_pcap_udp",
    "speech_pcm",
    "encode_g711",
    "DTMF_EVENTS",
    "SPEECH_DIR",
]

SPEECH_DIR = Path(os.environ.get("HOTLINE_SPEECH_DIR", Path(__file__).resolve().parents[4] / "shared" / "speech"))

# RFC 4733 section 3.2: DTMF named events.
DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11,
               "A": 12, "B": 13, "C": 14, "D": 15}

_SAMPLE_RATE = 8000
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _alaw(pcm: np.ndarray) -> np.ndarray:
    val = pcm.astype(np.int32) >> 3  # 13-bit
    negative = val < 0
    mask = np.where(negative, 0x55, 0xD5)
    val = np.where(negative, -val - 1, val)
    seg = np.searchsorted(_ALAW_SEG_END, val, side="left")
    shift = np.where(seg < 2, 1, seg)
    aval = (np.minimum(seg, 7) << 4) | ((val >> shift) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8)


def _ulaw(pcm: np.ndarray) -> np.ndarray:
    val = pcm.astype(np.int32) >> 2  # 14-bit
    negative = val < 0
    mask = np.where(negative, 0x7F, 0xFF)
    val = np.minimum(np.abs(val), 8159) + 0x21
    seg = np.searchsorted(_ULAW_SEG_END, val, side="left")
    uval = (np.minimum(seg, 7) << 4) | ((val >> (np.minimum(seg, 7) + 1)) & 0x0F)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def encode_g711(pcm_8k_mono: bytes, codec: str) -> bytes:
    """Encode 16-bit little-endian PCM to G.711 ("PCMU" µ-law or "PCMA" A-law)."""
    samples = np.frombuffer(pcm_8k_mono, dtype="<i2")
    if codec.upper() == "PCMU":
        return _ulaw(samples).tobytes()
    if codec.upper() == "PCMA":
        return _alaw(samples).tobytes()
    raise ValueError(f"unsupported codec {codec!r} (PCMU or PCMA)")


def _rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt,
                       seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(payload: bytes, src=("127.0.0.1", 6000), dst=("127.0.0.1", 6000)) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     bytes(map(int, src[0].split("."))), bytes(map(int, dst[0].split("."))))
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    ether = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ether + ip + udp


def build_rtp_pcap(path, *, pcm_8k_mono: bytes, codec: str = "PCMU", payload_type: int = 0,
                   dtmf: Sequence[tuple[float, str]] = (), dtmf_payload_type: int = 101,
                   ptime_ms: int = 20, dtmf_duration_ms: int = 160,
                   ssrc: int = 0x12319) -> None:
    """Write a libpcap file (Ethernet/IPv4/UDP) of one RTP stream, a packet every ptime_ms.

    The audio is G.711-encoded; each (offset_seconds, digit) in ``dtmf`` becomes an
    RFC 4733 event: packets every ptime_ms for dtmf_duration_ms (marker on the first,
    one RTP timestamp for all), then three end packets; audio pauses meanwhile (its
    clock keeps running) and silence pads the stream if a digit comes after the audio.
    """
    spf = _SAMPLE_RATE * ptime_ms // 1000  # samples per frame
    encoded = encode_g711(pcm_8k_mono, codec)
    silence = encode_g711(b"\x00\x00", codec)
    event_frames = max(1, dtmf_duration_ms // ptime_ms)
    starts: dict[int, str] = {}
    for offset, digit in sorted(dtmf):
        if digit.upper() not in DTMF_EVENTS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        frame = round(offset * 1000 / ptime_ms)
        if starts and frame < max(starts) + event_frames + 3:
            raise ValueError(f"DTMF at {offset}s overlaps the previous digit")
        starts[frame] = digit.upper()
    audio_frames = -(-len(encoded) // spf)
    last = max([audio_frames] + [f + event_frames + 3 for f in starts])

    packets: list[bytes] = []
    seq, frame = 1, 0
    while frame < last:
        if frame in starts:
            event = DTMF_EVENTS[starts[frame]]
            ts = frame * spf
            for i in range(event_frames + 3):
                end = i >= event_frames
                duration = spf * min(i + 1, event_frames)
                body = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
                packets.append(_rtp(dtmf_payload_type, seq, ts, ssrc, body, marker=(i == 0)))
                seq += 1
            frame += event_frames + 3
            continue
        chunk = encoded[frame * spf:(frame + 1) * spf]
        chunk += silence * (spf - len(chunk))
        packets.append(_rtp(payload_type, seq, frame * spf, ssrc, chunk, marker=(frame == 0)))
        seq += 1
        frame += 1

    # The capture timestamps pace sipp's replay; each packet keeps its own slot. Event
    # packets take consecutive slots, which is what their ptime spacing means.
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t0 = 1_700_000_000
        for i, rtp in enumerate(packets):
            usec = i * ptime_ms * 1000
            data = _frame(rtp)
            out.write(struct.pack("<IIII", t0 + usec // 1_000_000, usec % 1_000_000,
                                  len(data), len(data)))
            out.write(data)


def read_pcap_udp(path) -> Iterator[tuple[float, bytes]]:
    """Yield (capture time in seconds, UDP payload) of each IPv4/UDP packet of a
    classic little-endian Ethernet libpcap file such as build_rtp_pcap writes."""
    data = Path(path).read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data, 0)
    if magic != 0xA1B2C3D4 or linktype != 1:
        raise ValueError("not a little-endian Ethernet pcap")
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack_from("<IIII", data, pos)
        pkt = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        if pkt[12:14] != b"\x08\x00" or pkt[23] != 17:
            continue
        ihl = (pkt[14] & 0x0F) * 4
        yield sec + usec / 1e6, pkt[14 + ihl + 8:]


def _sox_to_8k(src: str) -> bytes:
    return subprocess.run(
        ["sox", "-q", src, "-t", "raw", "-e", "signed-integer", "-b", "16",
         "-L", "-r", "8000", "-c", "1", "-"],
        check=True, capture_output=True, timeout=60).stdout


def speech_pcm(text_pinyin_or_file: str | os.PathLike) -> bytes:
    """8 kHz mono 16-bit little-endian PCM of a WAV file (a path, or a file name in
    SPEECH_DIR), or else of Mandarin pinyin text spoken by ``espeak-ng -v cmn-latn-pinyin``.
    """
    candidate = Path(text_pinyin_or_file)
    for path in (candidate, SPEECH_DIR / candidate):
        if str(path).lower().endswith(".wav") and path.is_file():
            return _sox_to_8k(str(path))
    if str(text_pinyin_or_file).lower().endswith(".wav"):
        raise FileNotFoundError(text_pinyin_or_file)
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (.ci/install-system.sh)")
    with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
        wav = os.path.join(tmp, "tts.wav")
        subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-w", wav,
                        str(text_pinyin_or_file)],
                       check=True, capture_output=True, timeout=60)
        return _sox_to_8k(wav)
