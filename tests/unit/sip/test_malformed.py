"""Malformed and hostile requests against the sans-I/O user agent: each gets its exact RFC
answer (400 naming the problem, 415, 416, 420, 483, 501, 505, 513) or is dropped unanswered
(responses, ACKs, garbage); none offers a call, raises, or leaves a call behind.

RFC 4475 torture messages are in golden/rfc4475 (test_rfc4475.py checks them against the
parser); here each one's treatment by the UA is pinned, beside hostile messages of our own.
"""

from pathlib import Path

import pytest

from callcenter.sip.events import CallOffered, MessageRejected
from callcenter.sip.message import parse_head
from callcenter.sip.ua import MAX_MESSAGE_BYTES

from .helpers import OFFER, invite, new_ua, request
from .test_registrar import make_registrar

SOURCE = ("192.0.2.1", 5060)
RFC4475 = Path(__file__).parent / "golden" / "rfc4475"

# RFC 4475 §3.1.2 invalid messages: what the UA answers (None: dropped) and a word the 400's
# reason phrase must carry.
TORTURE = {
    "badaspec": (400, "enclosed in <>"),
    "baddn": (400, "display name"),
    "badinv01": (400, "Via"),
    "badvers": (505, "SIP/7.0"),
    "bigcode": (None, ""),  # a response: never answered
    "clerr": (400, "Content-Length"),
    "insuf": (400, "missing mandatory header"),
    "ltgtruri": (400, "Request-URI"),
    "lwsruri": (400, "request line"),
    "lwsstart": (400, "request line"),
    "mismatch01": (400, "CSeq method"),
    "multi01": (400, "Call-ID appears more than once"),
    "ncl": (400, "Content-Length"),
    "noheadercolon": (400, "without a name and colon"),
    "quotbal": (400, "display name"),
    "scalar02": (400, "CSeq number too large"),
    "scalarmf": (400, "Max-Forwards"),
    "trws": (400, "request line"),
    "escruri": (400, "header component"),
    "mcl01": (400, "Content-Length appears more than once"),
    "mismatch02": (400, "CSeq method"),
    "scalarlg": (None, ""),  # a response with overlarge numbers: never answered
}

# RFC 4475 messages that parse but are refused (or taken) for what they mean, §3.3 and the
# invalid ones whose fault is in a header only the registrar reads: status and a word of the
# reason. REGISTERs meet a registrar, which challenges before it reads Contact or
# Authorization schemes it does not know.
SEMANTIC = {
    "valid_unkscm": (416, ""),
    "valid_bext01": (420, ""),
    "valid_invut": (415, ""),
    "valid_sdp01": (406, "application/sdp"),
    "valid_badbranch": (200, ""),  # branch "z9hG4bK" alone is still a branch
    "valid_zeromf": (200, ""),  # OPTIONS with Max-Forwards 0: we are the target
    "valid_regaut01": (401, ""),
    "valid_cparam01": (401, ""),
    "valid_cparam02": (401, ""),
    "valid_regescrt": (401, ""),
    "lenient_regbadct": (401, ""),
    "valid_esc02": (501, ""),  # RE%47IST%45R is not REGISTER: % is no escape in a method
}


def _without(data: bytes, header: str) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(header.encode() + b":"))


def _hostile() -> dict[str, tuple[bytes, int | None, str]]:
    opts = request("OPTIONS")
    inv = invite()
    return {
        # size and count limits
        "huge header": (request("OPTIONS", extra="X-Pad: " + "a" * (MAX_MESSAGE_BYTES + 1)), 513, "larger than"),
        "many Vias": (request("OPTIONS", extra="\r\n".join(
            f"Via: SIP/2.0/UDP 10.0.{i // 250}.{i % 250};branch=z9hG4bK{i}" for i in range(100))),
            483, "Via entries"),
        "many headers under the limit": (request("OPTIONS", extra="\r\n".join(
            f"X-H{i}: v" for i in range(600))), 200, ""),
        # octets that have no place in a header
        "NUL in a header": (opts.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\x000"), 400, "control character"),
        "NUL in the Request-URI": (opts.replace(b"sip:12319@", b"sip:123\x0019@", 1), 400, "control character"),
        "non-UTF-8 Call-ID": (opts.replace(b"Call-ID: call-1", b"Call-ID: \xff\xfecall-1"), 400, "Call-ID"),
        "non-UTF-8 From": (opts.replace(b'"Zhang San"', b'"\xe5\xbc"'), 400, "non-UTF-8 octets in From"),
        "UTF-8 display name is fine": (opts.replace(b'"Zhang San"', '"张三"'.encode()), 200, ""),
        "white space in Call-ID": (opts.replace(b"Call-ID: call-1", b"Call-ID: call 1"), 400, "Call-ID"),
        # numbers
        "negative Content-Length": (opts.replace(b"Content-Length: 0", b"Content-Length: -5"), 400, "Content-Length"),
        "Content-Length past the body": (opts.replace(b"Content-Length: 0", b"Content-Length: 40"), 400,
                                         "Content-Length"),
        "Max-Forwards too large": (opts.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400, "Max-Forwards"),
        "CSeq not a number": (opts.replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"), 400, "CSeq"),
        # missing mandatory headers: still answered, the reason names the header
        "no From": (_without(opts, "From"), 400, "From"),
        "no To": (_without(opts, "To"), 400, "To"),
        "no Call-ID": (_without(opts, "Call-ID"), 400, "Call-ID"),
        "no CSeq": (_without(opts, "CSeq"), 400, "CSeq"),
        "no Via": (_without(opts, "Via"), None, ""),
        "leading fold": (opts.replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n  folded\r\nVia", 1), 400, "continuation"),
        # what the request asks for
        "unknown method": (request("FROBNICATE"), 501, ""),
        "SIP/3.0": (opts.replace(b"sip:12319@198.51.100.1 SIP/2.0", b"sip:12319@198.51.100.1 SIP/3.0"), 505,
                    "SIP/3.0"),
        "unknown URI scheme": (request("OPTIONS", uri="nobodyKnowsThisScheme:totallyopaquecontent"), 416, ""),
        "unsupported Require": (request("OPTIONS", extra="Require: nothingyouknow"), 420, ""),
        "INVITE with an unknown body type": (invite(content_type="application/unknownformat"), 415, ""),
        "INVITE with a gzip body": (invite(extra="Content-Encoding: gzip"), 415, ""),
        "INVITE with Max-Forwards 0": (inv.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"), 483, ""),
        "OPTIONS with Max-Forwards 0": (opts.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"), 200, ""),
        # unanswerable
        "binary garbage": (bytes(range(256)) * 4, None, ""),
        "text garbage": (b"hello there\r\n\r\n", None, ""),
        "ACK with a broken From": (request("ACK").replace(b"From: ", b"From: <<"), None, ""),
        "response garbage": (b"SIP/2.0 200\r\n\r\n", None, ""),
        "only a start line": (b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", None, ""),
    }


HOSTILE = _hostile()


def _feed(data: bytes):
    ua = new_ua()
    ua.receive_datagram(data, SOURCE, 0.0)
    out = ua.datagrams_to_send()
    events = ua.events()
    assert not [e for e in events if isinstance(e, CallOffered)]
    return ua, out, events


def _check(data: bytes, status: int | None, word: str) -> None:
    ua, out, events = _feed(data)
    if status is None:
        assert out == []
        assert [type(e) for e in events] == [MessageRejected] and events[0].status is None
        return
    [(resp_bytes, addr)] = out
    assert addr == SOURCE
    resp, _ = parse_head(resp_bytes, lenient=True)
    assert resp.status == status, resp.reason
    assert word in resp.reason
    assert ua._calls == {}


@pytest.mark.parametrize("name", sorted(TORTURE))
def test_rfc4475_invalid_message_gets_its_answer(name):
    """Each RFC 4475 invalid message: its exact status (or no answer), the 400 naming the problem."""
    status, word = TORTURE[name]
    _check((RFC4475 / f"invalid_{name}.sip").read_bytes().replace(b"\n", b"\r\n"), status, word)


@pytest.mark.parametrize("name", sorted(SEMANTIC))
def test_rfc4475_semantic_message_gets_its_answer(name):
    """Each RFC 4475 message refused or taken for its meaning gets its exact status, no call."""
    status, word = SEMANTIC[name]
    data = (RFC4475 / f"{name}.sip").read_bytes().replace(b"\n", b"\r\n")
    ua = new_ua(registrar=make_registrar()) if data.startswith(b"REGISTER") else new_ua()
    ua.receive_datagram(data, SOURCE, 0.0)
    [(resp_bytes, addr)] = [o for o in ua.datagrams_to_send() if not o[0].startswith(b"SIP/2.0 100")]
    assert not [e for e in ua.events() if isinstance(e, CallOffered)]
    resp, _ = parse_head(resp_bytes, lenient=True)
    assert (resp.status, addr) == (status, SOURCE), resp.reason
    assert word in resp.reason
    assert ua._calls == {}


def test_bcast_stray_response_is_dropped():
    """RFC 4475 bcast: a 200 for no transaction of ours (a broadcast Via below) is dropped
    silently: nothing sent anywhere, no call."""
    ua = new_ua()
    ua.receive_datagram((RFC4475 / "valid_bcast.sip").read_bytes().replace(b"\n", b"\r\n"), SOURCE, 0.0)
    assert ua.datagrams_to_send() == []
    assert not [e for e in ua.events() if isinstance(e, CallOffered)]
    assert ua._calls == {}


def test_baddate_invite_is_taken():
    """RFC 4475 baddate: a non-GMT Date is no reason to refuse a call (we never read Date)."""
    ua = new_ua()
    ua.receive_datagram((RFC4475 / "valid_baddate.sip").read_bytes().replace(b"\n", b"\r\n"), SOURCE, 0.0)
    assert [type(e) for e in ua.events()] == [CallOffered]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_message_gets_its_answer(name):
    """Each hostile message: its exact status (or dropped), the 400 naming the problem."""
    _check(*HOSTILE[name])


def test_every_torture_file_is_pinned():
    """A new invalid_* file needs its expected treatment here."""
    assert {p.stem.removeprefix("invalid_") for p in RFC4475.glob("invalid_*.sip")} == set(TORTURE)


def test_a_400_echoes_only_the_headers_that_are_there():
    """The answer to a request without From carries no empty From line (RFC 3261 §8.2.6.2)."""
    _, [(resp, _)], _ = _feed(_without(request("OPTIONS"), "From"))
    assert b"\r\nFrom:" not in resp and b"\r\nCall-ID: call-1@192.0.2.10\r\n" in resp


def test_reason_phrase_is_printable_ascii_whatever_the_input():
    """Non-UTF-8 and control octets never reach the reason phrase."""
    _, [(resp, _)], _ = _feed(request("OPTIONS").replace(b"Call-ID: call-1", b"Call-ID: \xff\x01call-1"))
    first = resp.split(b"\r\n", 1)[0]
    assert all(32 <= b < 127 for b in first)


def test_sdp01_accept_without_sdp_gets_406():
    """RFC 4475 §3.3.15 sdp01: an INVITE whose Accept excludes application/sdp gets 406
    (RFC 3261 §21.4.7) naming what the answer would be, not a 200 with SDP; no call is left."""
    data = (RFC4475 / "valid_sdp01.sip").read_bytes().replace(b"\n", b"\r\n")
    ua, [(resp_bytes, addr)], events = _feed(data)
    resp, _ = parse_head(resp_bytes, lenient=True)
    assert (resp.status, addr) == (406, SOURCE)
    assert "application/sdp" in resp.reason
    assert resp.headers.get("Accept") == "application/sdp"
    assert ua._calls == {}
    _check(invite(extra="Accept: text/nobodyKnowsThis"), 406, "application/sdp")
    _check(invite(extra="Accept: application/sdp;q=0, */*"), 406, "application/sdp")


@pytest.mark.parametrize("accept", ["application/sdp", "application/sdp, application/dtmf-relay",
                                    "text/plain, application/*", "*/*", "APPLICATION/SDP;level=1"])
def test_invite_whose_accept_covers_sdp_is_offered(accept):
    """An Accept that lets the answer be SDP (most phones send one) leaves the INVITE alone."""
    ua = new_ua()
    ua.receive_datagram(invite(extra=f"Accept: {accept}"), SOURCE, 0.0)
    assert [type(e) for e in ua.events()] == [CallOffered]


def test_valid_invite_with_sdp_is_still_offered():
    """The new checks leave a plain INVITE with SDP alone."""
    ua = new_ua()
    ua.receive_datagram(invite(body=OFFER), SOURCE, 0.0)
    assert [type(e) for e in ua.events()] == [CallOffered]
