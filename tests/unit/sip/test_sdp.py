"""Tests for callcenter.sip.sdp: parsing offers, negotiating answers, building offers."""

import pytest

from callcenter.sip.sdp import NoCommonCodec, SdpError, build_offer, negotiate, parse_sdp

from .helpers import OFFER

LOCAL = dict(local_host="198.51.100.1", local_port=30000, session_id=42)


def _offer(m_line: str, *attrs: str, c: str = "c=IN IP4 192.0.2.10", media_c: str = "") -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", c, "t=0 0", m_line]
    if media_c:
        lines.append(media_c)
    lines += list(attrs)
    return ("\r\n".join(l for l in lines if l) + "\r\n").encode()


def test_parse_offer_fields():
    """parse_sdp reads connection, audio port, formats, rtpmap, fmtp and direction."""
    sd = parse_sdp(OFFER)
    assert sd.connection == "192.0.2.10"
    audio = sd.audio
    assert (audio.port, audio.formats) == (40000, ["0", "8", "101"])
    assert audio.rtpmap[101] == ("telephone-event", 8000, 1)
    assert audio.fmtp[101] == "0-16"
    assert audio.direction == "sendrecv"


def test_negotiate_takes_offer_order_and_dtmf():
    """The offer's first supported codec wins (PCMU here); DTMF keeps the offer's PT."""
    n = negotiate(OFFER, **LOCAL)
    assert (n.codec, n.payload_type, n.dtmf_payload_type) == ("PCMU", 0, 101)
    assert n.remote == ("192.0.2.10", 40000)
    assert n.direction == "sendrecv"
    answer = parse_sdp(n.answer)
    assert answer.audio.formats == ["0", "101"]
    assert answer.audio.ptime == 20
    assert answer.connection == "198.51.100.1" and answer.audio.port == 30000
    assert b"o=- 42 0 IN IP4 198.51.100.1" in n.answer


def test_static_payload_without_rtpmap_and_media_level_connection():
    """PT 8 works without rtpmap; a media-level c= overrides the session one."""
    offer = _offer("m=audio 5004 RTP/AVP 18 8", c="c=IN IP4 10.0.0.1",
                   media_c="c=IN IP4 192.0.2.99")
    n = negotiate(offer, **LOCAL)
    assert (n.codec, n.payload_type, n.dtmf_payload_type) == ("PCMA", 8, None)
    assert n.remote == ("192.0.2.99", 5004)
    assert b"telephone-event" not in n.answer


@pytest.mark.parametrize("attr, c_line, expected", [
    ("a=sendonly", "c=IN IP4 192.0.2.10", "recvonly"),
    ("a=recvonly", "c=IN IP4 192.0.2.10", "sendonly"),
    ("a=inactive", "c=IN IP4 192.0.2.10", "inactive"),
    ("", "c=IN IP4 0.0.0.0", "recvonly"),
])
def test_direction_mirrored_and_old_style_hold(attr, c_line, expected):
    """Answer direction mirrors the offer; c=0.0.0.0 is hold (we only receive)."""
    n = negotiate(_offer("m=audio 5004 RTP/AVP 8", attr, c=c_line), **LOCAL)
    assert n.direction == expected
    assert f"a={expected}".encode() in n.answer


def test_no_common_codec():
    """An offer with only G.729 raises NoCommonCodec (the UA answers 488)."""
    with pytest.raises(NoCommonCodec):
        negotiate(_offer("m=audio 5004 RTP/AVP 18", "a=rtpmap:18 G729/8000"), **LOCAL)
    with pytest.raises(NoCommonCodec):
        negotiate(_offer("m=audio 0 RTP/AVP 8"), **LOCAL)
    with pytest.raises(NoCommonCodec):
        negotiate(OFFER, supported=("G722",), **LOCAL)


@pytest.mark.parametrize("body", [b"", b"   ", b"hello", b"v=1\r\n", b"v=0\r\nm=audio x RTP/AVP 0\r\n",
                                  b"v=0\r\nc=IN IP4\r\n", b"\xff\xfe"])
def test_bad_sdp_raises(body):
    """Undecodable or malformed bodies raise SdpError, not a crash."""
    with pytest.raises(SdpError):
        parse_sdp(body)


def test_offer_without_connection_is_error():
    """An audio stream without any c= line cannot be answered."""
    with pytest.raises(SdpError, match="connection"):
        negotiate(_offer("m=audio 5004 RTP/AVP 8", c=""), **LOCAL)


def test_build_offer_round_trips_through_negotiate():
    """Our own offer is answerable by our own negotiate with PCMA first."""
    offer = build_offer(local_host="192.0.2.5", local_port=4000, session_id=7, version=3)
    assert b"o=- 7 3 IN IP4 192.0.2.5" in offer
    n = negotiate(offer, **LOCAL)
    assert (n.codec, n.dtmf_payload_type, n.remote) == ("PCMA", 101, ("192.0.2.5", 4000))
    with pytest.raises(ValueError):
        build_offer(local_host="h", local_port=1, session_id=1, codecs=("OPUS",))


def test_ipv6_offer():
    """IPv6 hosts produce IN IP6 lines."""
    offer = build_offer(local_host="2001:db8::5", local_port=4000, session_id=1, dtmf_payload_type=None)
    assert b"c=IN IP6 2001:db8::5" in offer
    assert parse_sdp(offer).connection == "2001:db8::5"
