"""SDP (RFC 4566) for G.711 telephony: parse an offer, negotiate an answer, build an offer.

Owns the offer/answer rules of RFC 3264 as they matter for a hotline: one audio stream,
PCMA/PCMU at 8 kHz, RFC 4733 telephone-event, ptime 20, hold by direction or 0.0.0.0.
SDES (RFC 4568) is read and written here as text (`sdes_offer`, `without_sdes`, `with_sdes`);
the keys are used by `callcenter.media.srtp`, so negotiation itself stays plain RTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "SdpError",
    "NoCommonCodec",
    "MediaDescription",
    "SessionDescription",
    "Negotiated",
    "parse_sdp",
    "negotiate",
    "build_offer",
    "SDES_SUITE",
    "CryptoAttribute",
    "sdes_offer",
    "without_sdes",
    "with_sdes",
]


class SdpError(ValueError):
    """A session description we cannot read."""


class NoCommonCodec(SdpError):
    """The offer has no codec we support; the UA answers 488 Not Acceptable Here."""


STATIC_PAYLOAD_TYPES = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 3: ("GSM", 8000),
                        4: ("G723", 8000), 9: ("G722", 8000), 18: ("G729", 8000)}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly",
                     "recvonly": "sendonly", "inactive": "inactive"}


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    rtpmap: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: str | None = None

    def codec_of(self, pt: int) -> tuple[str, int] | None:
        """Encoding name (upper case) and clock rate of payload type `pt`."""
        if pt in self.rtpmap:
            name, rate, _ = self.rtpmap[pt]
            return name.upper(), rate
        return STATIC_PAYLOAD_TYPES.get(pt)


@dataclass
class SessionDescription:
    origin: str
    session_name: str
    connection: str | None
    media: list[MediaDescription]
    direction: str = "sendrecv"

    @property
    def audio(self) -> MediaDescription | None:
        """First audio stream that is not disabled (port 0)."""
        for m in self.media:
            if m.media == "audio" and m.port != 0:
                return m
        return None


def _connection_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line: {value!r}")
    return parts[2].split("/")[0]


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body; raises SdpError for anything we cannot use."""
    if not body or not body.strip():
        raise SdpError("empty session description")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError(f"session description is not UTF-8: {exc}") from None
    lines = [ln.strip("\r") for ln in text.split("\n") if ln.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("session description must start with v=")
    origin = name = ""
    connection: str | None = None
    direction = "sendrecv"
    media: list[MediaDescription] = []
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line!r}")
        kind, value = line[0], line[2:].strip()
        current = media[-1] if media else None
        if kind == "v":
            if value != "0":
                raise SdpError(f"unsupported SDP version {value!r}")
        elif kind == "o":
            origin = value
        elif kind == "s":
            name = value
        elif kind == "c":
            addr = _connection_address(value)
            if current is None:
                connection = addr
            else:
                current.connection = addr
        elif kind == "m":
            parts = value.split()
            if len(parts) < 4:
                raise SdpError(f"bad m= line {value!r}")
            port_text = parts[1].split("/")[0]
            if not port_text.isdigit() or int(port_text) > 65535:
                raise SdpError(f"bad media port in {value!r}")
            media.append(MediaDescription(parts[0], int(port_text), parts[2], parts[3:]))
        elif kind == "a":
            attr, _, arg = value.partition(":")
            if attr in _DIRECTIONS:
                if current is None:
                    direction = attr
                else:
                    current.direction = attr
            elif current is None:
                continue
            elif attr == "rtpmap":
                pt_text, _, enc = arg.partition(" ")
                enc_parts = enc.strip().split("/")
                if not pt_text.isdigit() or len(enc_parts) < 2 or not enc_parts[1].isdigit():
                    raise SdpError(f"bad rtpmap {arg!r}")
                channels = int(enc_parts[2]) if len(enc_parts) > 2 and enc_parts[2].isdigit() else 1
                current.rtpmap[int(pt_text)] = (enc_parts[0], int(enc_parts[1]), channels)
            elif attr == "fmtp":
                pt_text, _, params = arg.partition(" ")
                if pt_text.isdigit():
                    current.fmtp[int(pt_text)] = params.strip()
            elif attr == "ptime" and arg.strip().isdigit():
                current.ptime = int(arg.strip())
    return SessionDescription(origin, name, connection, media, direction)


@dataclass(frozen=True)
class Negotiated:
    codec: str
    payload_type: int
    dtmf_payload_type: int | None
    remote: tuple[str, int]
    direction: str
    answer: bytes


def _render(*, local_host: str, local_port: int, session_id: int, version: int,
            payloads: list[tuple[int, str]], dtmf_pt: int | None, direction: str) -> bytes:
    ip = "IP6" if ":" in local_host else "IP4"
    pts = [pt for pt, _ in payloads] + ([dtmf_pt] if dtmf_pt is not None else [])
    lines = [
        "v=0",
        f"o=- {session_id} {version} IN {ip} {local_host}",
        "s=hotline12319",
        f"c=IN {ip} {local_host}",
        "t=0 0",
        f"m=audio {local_port} RTP/AVP " + " ".join(str(p) for p in pts),
    ]
    for pt, name in payloads:
        lines.append(f"a=rtpmap:{pt} {name}/8000")
    if dtmf_pt is not None:
        lines.append(f"a=rtpmap:{dtmf_pt} telephone-event/8000")
        lines.append(f"a=fmtp:{dtmf_pt} 0-16")
    lines.append("a=ptime:20")
    lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def negotiate(offer: bytes, *, local_host: str, local_port: int, session_id: int,
              supported: tuple[str, ...] = ("PCMA", "PCMU"), version: int = 0) -> Negotiated:
    """Answer an offer: the offer's first codec we support, DTMF if offered, mirrored direction."""
    sd = parse_sdp(offer)
    audio = sd.audio
    if audio is None:
        raise NoCommonCodec("offer has no active audio stream")
    if audio.proto.upper() not in ("RTP/AVP", "RTP/AVPF"):
        raise NoCommonCodec(f"unsupported media transport {audio.proto!r}")
    wanted = {c.upper() for c in supported}
    chosen: tuple[int, str] | None = None
    dtmf: int | None = None
    for fmt in audio.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        codec = audio.codec_of(pt)
        if codec is None:
            continue
        name, rate = codec
        if chosen is None and name in wanted and rate == 8000:
            chosen = (pt, name)
        elif dtmf is None and name == "TELEPHONE-EVENT" and rate == 8000:
            dtmf = pt
    if chosen is None:
        raise NoCommonCodec(f"no common codec in offer formats {audio.formats}")
    address = audio.connection or sd.connection
    if address is None:
        raise SdpError("offer has no connection address")
    offered = audio.direction or sd.direction
    if address in ("0.0.0.0", "::"):
        # RFC 2543-style hold: the offerer will not receive, so we must not send.
        offered = "inactive" if offered in ("inactive", "recvonly") else "sendonly"
    direction = _ANSWER_DIRECTION[offered]
    answer = _render(local_host=local_host, local_port=local_port, session_id=session_id,
                     version=version, payloads=[chosen], dtmf_pt=dtmf, direction=direction)
    return Negotiated(chosen[1], chosen[0], dtmf, (address, audio.port), direction, answer)


_STATIC_PT = {"PCMU": 0, "PCMA": 8}


def build_offer(*, local_host: str, local_port: int, session_id: int, version: int = 0,
                codecs: tuple[str, ...] = ("PCMA", "PCMU"), dtmf_payload_type: int | None = 101,
                direction: str = "sendrecv") -> bytes:
    """An offer for one audio stream with G.711 codecs (static payload types) and DTMF."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"bad direction {direction!r}")
    payloads = []
    for c in codecs:
        if c.upper() not in _STATIC_PT:
            raise ValueError(f"unsupported codec {c!r}")
        payloads.append((_STATIC_PT[c.upper()], c.upper()))
    return _render(local_host=local_host, local_port=local_port, session_id=session_id,
                   version=version, payloads=payloads, dtmf_pt=dtmf_payload_type,
                   direction=direction)


def read_answer(answer: bytes, *, supported: tuple[str, ...] = ("PCMA", "PCMU")) -> Negotiated:
    """What the far end chose in its answer to our offer: codec, DTMF, where to send, its direction.

    Same selection rules as `negotiate` (first supported codec in the answer's order); the
    `answer` field is empty because nothing is sent back.
    """
    picked = negotiate(answer, local_host="0.0.0.0", local_port=9, session_id=0, supported=supported)
    sd = parse_sdp(answer)
    audio = sd.audio
    direction = (audio.direction if audio is not None else None) or sd.direction
    return Negotiated(picked.codec, picked.payload_type, picked.dtmf_payload_type, picked.remote, direction, b"")


# ------------------------------------------------------------------ SDES (RFC 4568)
# The one crypto suite we offer and accept: mandatory in RFC 4568 and what every SDES
# phone offers first.
SDES_SUITE = "AES_CM_128_HMAC_SHA1_80"
SDES_KEY_BYTES = 30  # 16-byte master key followed by a 14-byte master salt


@dataclass(frozen=True)
class CryptoAttribute:
    """One `a=crypto` line of an audio stream: tag, suite and the inline master key+salt."""

    tag: int
    suite: str
    key: bytes


def _crypto_lines(text: str) -> list[str]:
    """The a=crypto values of the first active audio stream (session-level ones do not count)."""
    found: list[str] = []
    in_audio = False
    for raw in text.replace("\r", "").split("\n"):
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            in_audio = not found and len(parts) > 1 and parts[0] == "audio" and parts[1] != "0"
        elif in_audio and line.startswith("a=crypto:"):
            found.append(line[len("a=crypto:"):])
    return found


def sdes_offer(body: bytes) -> tuple[str, list[CryptoAttribute]]:
    """The audio stream's transport (e.g. "RTP/SAVP") and the SDES keys we could use from it.

    Lines with another suite, an MKI, a key that is not 30 bytes of base64 or session
    parameters are skipped (RFC 4568 §6.3: the answerer picks one it supports).
    """
    import base64
    import binascii

    sd = parse_sdp(body)
    audio = sd.audio
    if audio is None:
        raise NoCommonCodec("offer has no active audio stream")
    usable: list[CryptoAttribute] = []
    for value in _crypto_lines(bytes(body).decode("utf-8")):
        parts = value.split()
        if len(parts) != 3 or not parts[0].isdigit() or parts[1] != SDES_SUITE:
            continue
        if not parts[2].startswith("inline:"):
            continue
        key_b64, *extra = parts[2][len("inline:"):].split("|")
        if any(":" in e for e in extra):  # an MKI (e.g. "1:4"): not supported
            continue
        try:
            key = base64.b64decode(key_b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(key) == SDES_KEY_BYTES:
            usable.append(CryptoAttribute(int(parts[0]), parts[1], key))
    return audio.proto.upper(), usable


def _rewrite_audio(body: bytes, proto: str, crypto: CryptoAttribute | None) -> bytes:
    """`body` with the first active audio stream's transport set to `proto`, its crypto lines
    removed and, with `crypto`, one crypto line of ours added right after its m= line."""
    import base64

    text = bytes(body).decode("utf-8")
    newline = "\r\n" if "\r\n" in text else "\n"
    out: list[str] = []
    in_audio = done = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            parts = line[2:].split()
            in_audio = not done and len(parts) > 2 and parts[0] == "audio" and parts[1] != "0"
            if in_audio:
                done = True
                parts[2] = proto
                out.append("m=" + " ".join(parts))
                if crypto is not None:
                    key = base64.b64encode(crypto.key).decode("ascii")
                    out.append(f"a=crypto:{crypto.tag} {crypto.suite} inline:{key}")
                continue
        elif in_audio and line.startswith("a=crypto:"):
            continue
        out.append(line)
    return newline.join(out).encode("utf-8")


def without_sdes(body: bytes) -> bytes:
    """The same description as plain RTP (RTP/SAVP → RTP/AVP, no crypto lines): what the
    call controller negotiates once the SRTP layer has taken the keys."""
    audio = parse_sdp(body).audio
    plain = "RTP/AVPF" if audio is not None and audio.proto.upper() == "RTP/SAVPF" else "RTP/AVP"
    return _rewrite_audio(body, plain, None)


def with_sdes(body: bytes, crypto: CryptoAttribute, proto: str = "RTP/SAVP") -> bytes:
    """Our plain-RTP description turned into `proto` (RTP/SAVP, or the offer's RTP/SAVPF)
    carrying our key (`crypto`)."""
    return _rewrite_audio(body, proto, crypto)
