"""RTP packet parsing and serialising against hand-assembled golden datagrams."""

import json
from pathlib import Path

import pytest

from callcenter.media.rtp import RtpPacket, RtpParseError, is_rtcp, parse_rtp

GOLDEN = json.loads((Path(__file__).parent / "rtp_packets.json").read_text())


def _expected(fields: dict) -> RtpPacket:
    ext = fields["extension"]
    return RtpPacket(
        payload_type=fields["payload_type"], sequence=fields["sequence"], timestamp=fields["timestamp"],
        ssrc=fields["ssrc"], payload=bytes.fromhex(fields["payload"]), marker=fields["marker"],
        csrc=tuple(fields["csrc"]), extension=None if ext is None else (ext[0], bytes.fromhex(ext[1])),
        padding=fields["padding"],
    )


@pytest.mark.parametrize("case", GOLDEN["valid"], ids=lambda c: c["name"])
def test_parse_golden_packet(case):
    """Each saved datagram parses to the documented field values."""
    assert parse_rtp(bytes.fromhex(case["hex"])) == _expected(case["fields"])


@pytest.mark.parametrize("case", GOLDEN["valid"], ids=lambda c: c["name"])
def test_serialize_reproduces_golden_bytes(case):
    """Serialising the documented fields gives back the saved datagram byte for byte."""
    assert _expected(case["fields"]).serialize().hex() == case["hex"]


@pytest.mark.parametrize("case", GOLDEN["malformed"], ids=lambda c: c["name"])
def test_malformed_packets_raise_parse_error(case):
    """Short, wrong-version and inconsistent datagrams raise RtpParseError."""
    with pytest.raises(RtpParseError):
        parse_rtp(bytes.fromhex(case["hex"]))


@pytest.mark.parametrize("case", GOLDEN["rtcp"], ids=lambda c: c["name"])
def test_rtcp_is_recognised(case):
    """Muxed RTCP reports are told apart from RTP."""
    assert is_rtcp(bytes.fromhex(case["hex"]))


@pytest.mark.parametrize("case", GOLDEN["valid"], ids=lambda c: c["name"])
def test_rtp_is_not_rtcp(case):
    """Ordinary RTP packets, including marker+PT 101, are not taken for RTCP."""
    assert not is_rtcp(bytes.fromhex(case["hex"]))


def test_packet_rejects_out_of_range_fields():
    """Constructing a packet with an impossible field value raises ValueError."""
    with pytest.raises(ValueError):
        RtpPacket(payload_type=128, sequence=0, timestamp=0, ssrc=0, payload=b"")
    with pytest.raises(ValueError):
        RtpPacket(payload_type=0, sequence=70000, timestamp=0, ssrc=0, payload=b"")
    with pytest.raises(ValueError):
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, payload=b"", extension=(1, b"abc"))


def test_roundtrip_with_padding_and_many_csrcs():
    """A packet with 15 CSRCs and 7 padding bytes survives serialise→parse."""
    p = RtpPacket(96, 12, 34, 56, b"payload", True, tuple(range(15)), (0x1000, b"abcdefgh"), 7)
    assert parse_rtp(p.serialize()) == p
