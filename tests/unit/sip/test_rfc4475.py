"""Torture tests in the spirit of RFC 4475 (golden/rfc4475/*.sip, reconstructed by hand).

Files are stored with LF line ends and converted to CRLF here; `valid_*` must parse,
`invalid_*` must raise SipParseError, and the UA must never crash on any of them.
"""

from pathlib import Path

import pytest

from callcenter.sip.events import CallOffered, MessageRejected
from callcenter.sip.message import SipParseError, SipRequest, parse_message, parse_name_addr, parse_via

from .helpers import new_ua, sent

DIR = Path(__file__).parent / "golden" / "rfc4475"
VALID = sorted(DIR.glob("valid_*.sip"))
INVALID = sorted(DIR.glob("invalid_*.sip"))
# RFC 4475 invalid messages whose fault is in a header only the registrar reads: they parse.
LENIENT = sorted(DIR.glob("lenient_*.sip"))
# Valid INVITEs the UA refuses on their meaning (pinned with reasons in test_malformed.py).
ANSWERED_NOT_OFFERED = {"valid_sdp01": 406, "valid_invut": 415}


def _load(path: Path) -> bytes:
    return path.read_bytes().replace(b"\n", b"\r\n")


def test_corpus_is_present():
    """The torture corpus holds both valid and invalid messages."""
    assert len(VALID) >= 10 and len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID + LENIENT, ids=lambda p: p.stem)
def test_valid_messages_parse(path):
    """Every valid torture message parses, and its From/To/Vias are readable."""
    msg = parse_message(_load(path))
    parse_name_addr(msg.headers.get("From"))
    parse_name_addr(msg.headers.get("To"))
    assert all(parse_via(v).transport for v in msg.headers.get_all("Via"))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_messages_raise(path):
    """Every invalid torture message raises SipParseError."""
    with pytest.raises(SipParseError):
        parse_message(_load(path))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_ua_answers_or_drops_invalid(path):
    """The UA answers an invalid request 400/505 when it can, else drops it; never offers a call."""
    ua = new_ua()
    ua.receive_datagram(_load(path), ("192.0.2.1", 5060), 0.0)
    events = ua.events()
    assert len(events) == 1 and isinstance(events[0], MessageRejected)
    # The 400 echoes the peer's broken From/To, so read only the status line.
    codes = [int(data.split(b" ", 2)[1]) for data, _ in ua.datagrams_to_send()]
    assert codes == ([events[0].status] if events[0].status else [])
    assert all(c in (400, 505) for c in codes)


def test_wsinv_values():
    """wsinv: folded, spaced headers give the right values."""
    msg = parse_message(_load(DIR / "valid_wsinv.sip"))
    assert msg.headers.get("CSeq") == "0009 INVITE"
    assert parse_name_addr(msg.headers.get("To")).tag == "1918181833n"
    assert parse_name_addr(msg.headers.get("From")).display == 'J Rosenberg \\"'
    vias = [parse_via(v) for v in msg.headers.get_all("Via")]
    assert [(v.transport, v.host) for v in vias] == [
        ("UDP", "192.0.2.2"), ("TCP", "spindle.example.com"), ("UDP", "192.168.255.111")]
    assert vias[2].branch == "z9hG4bK30239"
    assert msg.headers.get("Subject") == ""
    assert len(msg.headers.get_all("Contact")) == 1


def test_valid_requests_never_crash_the_ua():
    """Feeding every valid request to the UA produces responses, not exceptions."""
    for path in VALID:
        ua = new_ua()
        ua.receive_datagram(_load(path), ("192.0.2.1", 5060), 0.0)
        msg = parse_message(_load(path))
        out = sent(ua)
        if isinstance(msg, SipRequest):
            assert out, path.stem
        if isinstance(msg, SipRequest) and msg.method == "INVITE":
            in_dialog = parse_name_addr(msg.headers.get("To")).tag is not None
            offered = any(isinstance(e, CallOffered) for e in ua.events())
            if path.stem in ANSWERED_NOT_OFFERED:
                assert not offered and out[0][0].status == ANSWERED_NOT_OFFERED[path.stem], path.stem
                continue
            # An INVITE with a To-tag we never issued is a re-INVITE for an unknown dialog.
            assert offered != in_dialog, path.stem
            assert (out[0][0].status == 481) == in_dialog, path.stem
